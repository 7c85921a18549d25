/**
 * `feedback` → the bounded feedback the next iteration's agent receives. Entered after a failed
 * verification whose strategy continues, or after failed CI; in the CI case the convergence controller
 * is asked here (CI retry off or limits reached → `verify_failed_terminal`, naming CI).
 */
import type { RunErrorInfo } from '../../orchestrator/state-machine.js';
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function feedback(run: RunContext): Promise<StepOutcome<'feedback'>> {
  const { progress } = run;
  const record = run.iterations.record;
  const ciFeedback = progress.ciFeedback;
  if (ciFeedback !== undefined) {
    progress.ciFeedback = undefined;
    const stop = await ciStops(run);
    if (stop !== undefined) return { event: 'verify_failed_terminal', error: stop };
    record.feedback = { text: ciFeedback, truncated: false };
    await run.iterations.save();
    progress.feedback = ciFeedback;
    return { event: 'feedback_generated' };
  }
  const result = await run.services.orchestrator.run('feedback', phaseContext(run));
  if (!result.ok) {
    record.error = { code: result.error.code, message: result.error.message, phase: 'feedback' };
    await run.iterations.save();
    return { event: 'system_error', error: run.failure(result.error, 'feedback') };
  }
  // An iteration that changed nothing is said to be one, so the agent does not believe its edits were tested.
  const text = record.snapshot?.noChange === true ? `${NO_CHANGE_NOTE}\n\n${result.value.text}` : result.value.text;
  record.feedback = { text, truncated: result.value.truncated };
  await run.iterations.save();
  progress.feedback = text;
  return { event: 'feedback_generated' };
}

/** Put before the feedback of an iteration in which the agent changed no file. */
export const NO_CHANGE_NOTE = 'Note: your last iteration changed no files in the workspace, so the gates below ran on the same code as before. Edit the files to fix the failures.';

/** The error that ends the run after failed CI, or undefined when another iteration may fix it. */
async function ciStops(run: RunContext): Promise<RunErrorInfo | undefined> {
  const iteration = run.progress.iteration;
  if (!run.spec.delivery.ci.retryOnFailure) {
    return { code: 'AG_ERR_VERIFY_FAILED', message: 'CI failed and spec.delivery.ci.retryOnFailure is off', phase: 'delivery', iteration };
  }
  const decided = run.services.convergence.decide({ iteration, history: run.progress.history, usage: run.progress.usage });
  if (!decided.ok) return run.failure(decided.error, 'convergence');
  run.iterations.record.decision = decided.decision;
  await run.iterations.save();
  run.emit('convergence_decision', { iteration, strategy: run.spec.convergence.strategy, decision: decided.decision.action, reason: decided.decision.reason });
  if (decided.decision.action === 'continue') return undefined;
  return { code: 'AG_ERR_VERIFY_FAILED', message: `CI failed: ${decided.decision.reason}`, phase: 'delivery', iteration };
}
