/**
 * `verifying` → run the gates on the snapshot. Passed: delivery. Failed: the convergence controller
 * decides between another iteration (`verify_failed_retryable`) and stopping (`verify_failed_terminal`,
 * or `timeout` when the wall clock is the limit that stopped it).
 */
import type { ConvergenceDecision } from '../../convergence/types.js';
import type { RunErrorInfo } from '../../orchestrator/state-machine.js';
import { deliverPassed } from './delivery.js';
import { settleSnapshot } from './snapshot.js';
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function verify(run: RunContext): Promise<StepOutcome<'verifying'>> {
  const { progress } = run;
  const record = run.iterations.record;
  // The gates run while the snapshot's patch and publication finish (`settling` never rejects); both have
  // ended before anything is recorded — also when the store refuses what `settleSnapshot` records. A
  // failed publication fails the run whatever the gates say, so it stops them instead of waiting them out.
  const settling = progress.snapshotSettling ?? Promise.resolve(undefined);
  const publicationFailed = new AbortController();
  void settling.then((failed) => {
    if (failed !== undefined) publicationFailed.abort(failed);
  });
  const gates = { ...phaseContext(run), signal: AbortSignal.any([run.signal, publicationFailed.signal]) };
  const [result] = await Promise.all([run.services.orchestrator.run('verify', gates), settling]);
  const published = await settleSnapshot(run);
  if (published !== undefined) return { event: 'system_error', error: run.failure(published, 'snapshot') };
  if (!result.ok) {
    record.error = { code: result.error.code, message: result.error.message, phase: 'verify' };
    return { event: 'system_error', error: run.failure(result.error, 'verify') };
  }
  const report = result.value.report;
  record.verification = report;
  progress.lastReport = report;
  if (report.unverified && !progress.unverified) {
    progress.unverified = true;
    await run.updateMeta({ unverified: true });
  }
  progress.history.push({
    iteration: progress.iteration,
    passRatio: report.passRatio,
    snapshotSha: record.snapshot?.sha ?? '',
    treeSha: record.snapshot?.treeSha ?? '',
    agentOutput: record.agent?.output ?? '',
  });
  await run.iterations.complete(report.passed);
  if (report.passed) return deliverPassed(run);
  return decide(run, 'verification failed');
}

/** Asks the convergence controller whether to go on after a failed verification. */
async function decide(run: RunContext, what: string): Promise<StepOutcome<'verifying'>> {
  const { progress, spec } = run;
  const record = run.iterations.record;
  const decided = run.services.convergence.decide({ iteration: progress.iteration, history: progress.history, usage: progress.usage });
  if (!decided.ok) {
    record.error = { code: decided.error.code, message: decided.error.message, phase: 'convergence' };
    await run.iterations.save();
    return { event: 'system_error', error: run.failure(decided.error, 'convergence') };
  }
  const decision = decided.decision;
  record.decision = decision;
  await run.iterations.save();
  run.emit('convergence_decision', { iteration: progress.iteration, strategy: spec.convergence.strategy, decision: decision.action, reason: decision.reason });
  if (decision.action === 'continue') return { event: 'verify_failed_retryable' };
  return stopped(decision, what, progress.iteration);
}

function stopped(decision: ConvergenceDecision, what: string, iteration: number): StepOutcome<'verifying'> {
  if (decision.limit === 'wall_clock') {
    return { event: 'timeout', error: { code: 'AG_ERR_RUN_TIMEOUT', message: decision.reason, iteration } };
  }
  const code = decision.limit === 'tokens' || decision.limit === 'cost' ? 'AG_ERR_RUN_BUDGET_EXCEEDED' : 'AG_ERR_VERIFY_FAILED';
  const error: RunErrorInfo = { code, message: `${what}: ${decision.reason}`, phase: 'verify', iteration };
  return { event: 'verify_failed_terminal', error };
}
