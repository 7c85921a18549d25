/**
 * FeedbackPhase: turns the last failed verification into the bounded, deterministic prompt the agent
 * receives in the next iteration.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentGateError, toAgentGateError } from '../../errors.js';
import { generateFeedback } from '../feedback-generator.js';
import type { FeedbackOutput, PhaseContext, PhaseHandler, PhaseResult } from '../context.js';

export class FeedbackPhase implements PhaseHandler<'feedback'> {
  readonly name = 'feedback' as const;

  async execute(ctx: PhaseContext): Promise<PhaseResult<FeedbackOutput>> {
    const report = ctx.progress.lastReport;
    if (report === undefined) {
      return { ok: false, error: new AgentGateError('AG_ERR_PHASE_FEEDBACK', 'no verification report to generate feedback from'), cancelled: false };
    }
    try {
      const feedback = generateFeedback({ iteration: ctx.iteration, report });
      await writeFile(join(ctx.artifactsDir, `iteration-${ctx.iteration}-feedback.md`), feedback.text);
      return { ok: true, value: { text: feedback.text, truncated: feedback.truncated } };
    } catch (error) {
      return { ok: false, error: toAgentGateError(error, 'AG_ERR_PHASE_FEEDBACK'), cancelled: false };
    }
  }
}
