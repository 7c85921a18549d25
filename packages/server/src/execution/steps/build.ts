/**
 * `building` → one agent invocation (a new iteration begins here). A failed build's usage was paid for
 * too: it counts against the budgets and is kept in the iteration record.
 */
import type { AgentSummary } from '../../agents/types.js';
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function build(run: RunContext): Promise<StepOutcome<'building'>> {
  const { progress } = run;
  run.iterations.begin(progress.iteration);
  const result = await run.services.orchestrator.run('build', phaseContext(run));
  const summary: AgentSummary | undefined = result.ok ? result.value.agent : result.agent;
  const record = run.iterations.record;
  if (summary !== undefined) {
    record.agent = summary;
    if (summary.usage !== undefined) {
      progress.usage.inputTokens += summary.usage.inputTokens;
      progress.usage.outputTokens += summary.usage.outputTokens;
      progress.usage.costUsd += summary.usage.costUsd;
      await run.updateMeta({ usage: { ...progress.usage } });
    }
  }
  if (!result.ok) {
    record.error = { code: result.error.code, message: result.error.message, phase: 'build' };
    return { event: 'build_failed', error: run.failure(result.error, 'build') };
  }
  progress.sessionId = result.value.agent.sessionId ?? progress.sessionId;
  return { event: 'build_completed' };
}
