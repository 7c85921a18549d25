/**
 * Delivery steps (SPEC 3, 9). After the gates pass, the verifying step hands the run to
 * {@link deliverPassed}: push the snapshot when the task asks for it, open (or reuse) the pull/merge
 * request, then `verify_passed` (no change request) or `pr_created`. `pr_created` and `ci_polling` are
 * states of their own with their own steps, so waiting for CI is a step in the table, not a branch in
 * a loop. Managers never throw; a failed delivery fails the run with the manager's classification and
 * the branch with the work stays.
 */
import type { DeliveryManager, DeliveryTarget, IterationDeliveryContext, PreparedDeliveryContext } from '../../delivery/manager.js';
import { AgentGateError } from '../../errors.js';
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export interface DeliveryStepServices {
  readonly delivery: DeliveryManager;
}

/** Per-run delivery state kept in the run's progress. */
export interface DeliveryProgress {
  target?: DeliveryTarget;
  change?: { number: number; url: string; draft: boolean };
  delivered?: { iteration: number; snapshotSha: string };
}

function baseContext(run: RunContext): Omit<PreparedDeliveryContext, 'target'> {
  const { workspace } = phaseContext(run);
  return { runId: run.runId, workOrderId: run.workOrderId, spec: run.spec, workspace, branch: workspace.branch, signal: run.signal, clock: run.clock, logger: run.logger, emit: run.emit };
}

/** Run once before the first build: checks the delivery target while the repository is untouched. */
export async function prepareDelivery(run: RunContext): Promise<AgentGateError | undefined> {
  const prepared = await run.services.delivery.prepare(baseContext(run));
  if (!prepared.ok) return prepared.error;
  run.progress.delivery.target = prepared.value;
  return undefined;
}

function iterationContext(run: RunContext): IterationDeliveryContext {
  const target = run.progress.delivery.target;
  const snapshotSha = run.iterations.record.snapshot?.sha;
  if (target === undefined || snapshotSha === undefined) {
    throw new AgentGateError('AG_ERR_INTERNAL', `run ${run.runId} reached delivery without a prepared target or a snapshot`);
  }
  return { ...baseContext(run), target, iteration: run.progress.iteration, snapshotSha };
}

/** `verifying`, gates passed → push, open the change. */
export async function deliverPassed(run: RunContext): Promise<StepOutcome<'verifying'>> {
  const manager = run.services.delivery;
  const ctx = iterationContext(run);
  const kind = manager.name;
  run.emit('delivery_started', { kind, iteration: ctx.iteration });
  const pushed = await manager.pushIteration(ctx);
  if (!pushed.ok) {
    run.emit('delivery_completed', { kind, ok: false, branch: ctx.branch, error: run.failure(pushed.error, 'delivery') });
    return { event: 'system_error', error: run.failure(pushed.error, 'delivery') };
  }
  run.progress.delivery.delivered = { iteration: ctx.iteration, snapshotSha: ctx.snapshotSha };
  const change = await manager.openChange(ctx);
  if (!change.ok) {
    run.emit('delivery_completed', { kind, ok: false, branch: ctx.branch, error: run.failure(change.error, 'delivery') });
    return { event: 'system_error', error: run.failure(change.error, 'delivery') };
  }
  if (change.value.status === 'none') {
    run.emit('delivery_completed', { kind, ok: true, branch: ctx.branch });
    return { event: 'verify_passed' };
  }
  run.progress.delivery.change = { ...change.value.change };
  await run.updateMeta({ prUrl: change.value.change.url });
  run.emit('delivery_completed', { kind, ok: true, branch: ctx.branch, prUrl: change.value.change.url });
  return { event: 'pr_created' };
}

/** `pr_created` → wait for CI when the task asks for it, otherwise the run is done. */
export function afterChange(run: RunContext): Promise<StepOutcome<'pr_created'>> {
  return Promise.resolve(run.spec.delivery.ci.wait ? { event: 'ci_polling_started' } : { event: 'verify_passed' });
}

/** `ci_polling` → the CI result of the delivered snapshot. */
export async function pollCi(run: RunContext): Promise<StepOutcome<'ci_polling'>> {
  const ctx = iterationContext(run);
  const waited = await run.services.delivery.waitForCI(ctx, run.signal);
  if (!waited.ok) return { event: 'system_error', error: run.failure(waited.error, 'delivery') };
  const outcome = waited.value;
  switch (outcome.status) {
    case 'passed':
    case 'none':
      return { event: 'ci_passed' };
    case 'failed':
      run.progress.ciFeedback = outcome.feedback;
      return { event: 'ci_failed' };
    case 'timeout':
      return { event: 'ci_timeout', error: { code: 'AG_ERR_RUN_TIMEOUT', message: `CI did not finish within ${Math.round(outcome.waitedMs / 1000)} s`, phase: 'delivery', iteration: ctx.iteration } };
    default: {
      const unreachable: never = outcome;
      return unreachable;
    }
  }
}
