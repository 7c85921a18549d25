/**
 * FeedbackPhase: turns the last failed verification into the bounded, deterministic prompt the agent
 * receives in the next iteration.
 */
import { AgentGateError, toAgentGateError } from '../../errors.js';
import { generateFeedback } from '../feedback-generator.js';
import { secretValues } from '../../util/secrets.js';
import type { FeedbackOutput, PhaseContext, PhaseHandler, PhaseResult } from '../context.js';

export class FeedbackPhase implements PhaseHandler<'feedback'> {
  readonly name = 'feedback' as const;

  async execute(ctx: PhaseContext): Promise<PhaseResult<FeedbackOutput>> {
    const report = ctx.progress.lastReport;
    if (report === undefined) {
      return { ok: false, error: new AgentGateError('AG_ERR_PHASE_FEEDBACK', 'no verification report to generate feedback from'), cancelled: false };
    }
    try {
      // Kept in the iteration record; the driver writes it as the next iteration's input file.
      const feedback = generateFeedback({ iteration: ctx.iteration, report, secrets: secretValues(ctx.services.baseEnv), uncaptured: ctx.progress.uncaptured });
      return { ok: true, value: { text: feedback.text, truncated: feedback.truncated } };
    } catch (error) {
      return { ok: false, error: toAgentGateError(error, 'AG_ERR_PHASE_FEEDBACK'), cancelled: false };
    }
  }
}
