/**
 * Delivery steps (SPEC 3, 9). After the gates pass, the verifying step hands the run to
 * {@link deliverPassed}: push the snapshot when the task asks for it, open (or reuse) the pull/merge
 * request, then `verify_passed` (no change request) or `pr_created`. `pr_created` and `ci_polling` are
 * states of their own with their own steps, so waiting for CI is a step in the table, not a branch in
 * a loop. Managers never throw; a failed delivery fails the run with the manager's classification and
 * the branch with the work stays.
 */
import type { DeliveryManager, DeliveryReport, DeliveryTarget, IterationDeliveryContext, PreparedDeliveryContext } from '../../delivery/manager.js';
import { AgentGateError, toAgentGateError } from '../../errors.js';
import type { RunErrorInfo, RunEvent, RunResult } from '../../orchestrator/state-machine.js';
import { runGit } from '../../workspace/git.js';
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

/** What the change request reports: iterations, the last gate results, usage. */
function deliveryReport(run: RunContext): DeliveryReport {
  const { progress } = run;
  return {
    iterations: progress.iteration,
    gates: (progress.lastReport?.gates ?? []).map((gate) => ({ name: gate.name, passed: gate.passed })),
    costUsd: progress.usage.costUsd,
    inputTokens: progress.usage.inputTokens,
    outputTokens: progress.usage.outputTokens,
  };
}

function iterationContext(run: RunContext): IterationDeliveryContext {
  const target = run.progress.delivery.target;
  const snapshotSha = run.progress.delivery.delivered?.iteration === run.progress.iteration ? run.progress.delivery.delivered.snapshotSha : run.iterations.record.snapshot?.sha;
  if (target === undefined || snapshotSha === undefined) {
    throw new AgentGateError('AG_ERR_INTERNAL', `run ${run.runId} reached delivery without a prepared target or a snapshot`);
  }
  return { ...baseContext(run), target, iteration: run.progress.iteration, snapshotSha, report: deliveryReport(run) };
}

/**
 * A failed delivery step: classified (the manager's code), and the message names the branch that keeps
 * the work, which the run record also names (`meta.delivery`).
 */
async function deliveryFailed(run: RunContext, error: AgentGateError, branch: string): Promise<RunErrorInfo> {
  const where = run.progress.delivery.target?.repoPath;
  await run.updateMeta({ delivery: { kind: run.services.delivery.name, branch, ...(where === undefined ? {} : { repository: where }), failed: { code: error.code } } });
  const failure = run.failure(error, 'delivery');
  return { ...failure, message: `${failure.message} (the work is kept on branch ${branch}${where === undefined ? '' : ` in ${where}`})` };
}

/** `verifying`, gates passed → push, open the change. */
export async function deliverPassed(run: RunContext): Promise<StepOutcome<'verifying'>> {
  const manager = run.services.delivery;
  const ctx = iterationContext(run);
  const kind = manager.name;
  run.emit('delivery_started', { kind, iteration: ctx.iteration });
  const pushed = await manager.pushIteration(ctx);
  if (!pushed.ok) {
    const error = await deliveryFailed(run, pushed.error, ctx.branch);
    run.emit('delivery_completed', { kind, ok: false, branch: ctx.branch, error });
    return { event: 'system_error', error };
  }
  run.progress.delivery.delivered = { iteration: ctx.iteration, snapshotSha: ctx.snapshotSha };
  const pushedTo = pushed.value.status === 'pushed' ? { pushedTo: pushed.value.url, sha: pushed.value.sha } : {};
  await run.updateMeta({ delivery: { kind, branch: ctx.branch, ...pushedTo } });
  const change = await manager.openChange(ctx);
  if (!change.ok) {
    const error = await deliveryFailed(run, change.error, ctx.branch);
    run.emit('delivery_completed', { kind, ok: false, branch: ctx.branch, error });
    return { event: 'system_error', error };
  }
  if (change.value.status === 'none') {
    run.emit('delivery_completed', { kind, ok: true, branch: ctx.branch });
    return { event: 'verify_passed' };
  }
  run.progress.delivery.change = { ...change.value.change };
  await run.updateMeta({ prUrl: change.value.change.url, delivery: { kind, branch: ctx.branch, ...pushedTo, change: { ...change.value.change } } });
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
  if (!waited.ok) return { event: 'system_error', error: await deliveryFailed(run, waited.error, ctx.branch) };
  const outcome = waited.value;
  switch (outcome.status) {
    case 'passed':
    case 'none':
      return { event: 'ci_passed' };
    case 'failed':
      run.progress.ciFeedback = outcome.feedback;
      return { event: 'ci_failed' };
    case 'timeout':
      return {
        event: 'ci_timeout',
        error: { code: 'AG_ERR_DELIVERY_CI_TIMEOUT', message: `CI did not finish within ${Math.round(outcome.waitedMs / 1000)} s (spec.delivery.ci.timeout); the work is on branch ${ctx.branch}`, phase: 'delivery', iteration: ctx.iteration },
      };
    default: {
      const unreachable: never = outcome;
      return unreachable;
    }
  }
}

/** Results after which the last snapshot is still pushed as work in progress (when the task pushes). */
const WIP_RESULTS: ReadonlySet<RunResult> = new Set(['failed_timeout', 'canceled', 'failed_verification']);

/** The result a closing event gives, for the events after which work in progress is pushed. */
export function workInProgressResult(event: RunEvent): RunResult | undefined {
  switch (event) {
    case 'timeout':
    case 'ci_timeout':
      return 'failed_timeout';
    case 'user_canceled':
      return 'canceled';
    case 'verify_failed_terminal':
      return 'failed_verification';
    default:
      return undefined;
  }
}

/**
 * Before a run that timed out, was canceled or used up its iterations becomes terminal: push the run
 * branch's last snapshot as work in progress, when the task pushes and that snapshot was not delivered
 * yet (users ask for partial work not to be lost), and record it in the run's meta
 * (`delivery.workInProgress`). Runs on `signal`, a scope of its own with a time limit: the run's signal
 * may already be aborted. Never throws; a failure is recorded and logged.
 */
export async function pushWorkInProgress(run: RunContext, result: RunResult, signal: AbortSignal): Promise<void> {
  const { target, delivered } = run.progress.delivery;
  const workspace = run.workspace;
  if (!WIP_RESULTS.has(result) || !run.spec.delivery.push || target === undefined || workspace === undefined) return;
  const manager = run.services.delivery;
  try {
    const tip = (
      await runGit({ cwd: workspace.repoPath, args: ['rev-parse', '--verify', '--quiet', `refs/heads/${workspace.branch}^{commit}`], signal, failAs: 'AG_ERR_DELIVERY_PUSH', what: 'read the run branch', hardened: true })
    ).trim();
    if (tip === '' || tip === workspace.baseSha || tip === delivered?.snapshotSha) return;
    const ctx: IterationDeliveryContext = { ...baseContext(run), signal, target, iteration: run.progress.iteration, snapshotSha: tip, report: deliveryReport(run) };
    run.emit('delivery_started', { kind: manager.name, iteration: ctx.iteration });
    const pushed = await manager.pushIteration(ctx);
    if (!pushed.ok) {
      run.emit('delivery_completed', { kind: manager.name, ok: false, branch: workspace.branch, error: { code: pushed.error.code, message: pushed.error.message } });
      await run.updateMeta({ delivery: { kind: manager.name, branch: workspace.branch, workInProgress: { pushed: false, result, error: { code: pushed.error.code, message: pushed.error.message } } } });
      return;
    }
    run.emit('delivery_completed', { kind: manager.name, ok: true, branch: workspace.branch });
    if (pushed.value.status === 'pushed') {
      run.logger.info({ result, sha: tip, url: pushed.value.url }, 'work in progress pushed');
      await run.updateMeta({ delivery: { kind: manager.name, branch: workspace.branch, pushedTo: pushed.value.url, sha: tip, workInProgress: { pushed: true, result, sha: tip } } });
    }
  } catch (error) {
    const classified = toAgentGateError(error, 'AG_ERR_DELIVERY_PUSH');
    run.logger.error({ code: classified.code, err: classified.message }, 'work in progress push failed');
  }
}
