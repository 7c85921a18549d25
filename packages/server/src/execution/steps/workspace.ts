/**
 * `queued` → acquire the run's workspace (worktree on its branch, branch lease) and its artifact
 * directory. The gate plan is read from the base commit while the worktree is being created (the
 * `leased` step judges it). A workspace lease lost later aborts the run with a typed reason.
 */
import { mkdir } from 'node:fs/promises';
import { AgentGateError, toAgentGateError } from '../../errors.js';
import { leaseLost } from '../../util/abort.js';
import type { RunContext, StepOutcome } from './types.js';

export async function acquireWorkspace(run: RunContext): Promise<StepOutcome<'queued'>> {
  const started = run.clock.now();
  run.emit('phase_started', { iteration: 1, phase: 'workspace' });
  try {
    const { workspaces, verifier } = run.services;
    const source = run.workspaceSource ?? (await workspaces.resolveSource(run.spec.workspace, run.signal));
    const plan = verifier
      .loadPlan({
        worktreePath: source.repoPath,
        baseSha: source.baseSha,
        // Read in the source repository itself: a plan already read from this commit there (the CLI shows
        // it before the run) comes from the plan cache.
        objectStore: source.objectsDir,
        signal: run.signal,
        clock: run.clock,
        ...(run.spec.verify !== undefined && { inline: run.spec.verify }),
      })
      .then(
        (loaded) => ({ ok: true as const, plan: loaded }),
        (error: unknown) => ({ ok: false as const, error: toAgentGateError(error, 'AG_ERR_PHASE_VERIFY') }),
      );
    const [workspace] = await Promise.all([
      workspaces.acquire(run.spec.workspace, { runId: run.runId, branchPrefix: run.spec.delivery.branchPrefix, reusable: run.reusableWorkspace, signal: run.signal, source }),
      mkdir(run.artifactsDir, { recursive: true }),
    ]);
    run.workspace = workspace;
    run.progress.planLoad = await plan;
  } catch (error) {
    const failure = run.failure(toAgentGateError(error, 'AG_ERR_WORKSPACE_SETUP'), 'workspace');
    run.emit('phase_completed', { iteration: 1, phase: 'workspace', ok: false, durationMs: run.clock.now() - started, error: failure });
    return { event: 'system_error', error: failure };
  }
  const workspace = run.workspace;
  if (workspace === undefined) return { event: 'system_error', error: run.failure(new AgentGateError('AG_ERR_INTERNAL', 'no workspace after acquiring it'), 'workspace') };
  const lost = run.services.workspaces.leaseLost(run.runId);
  if (lost?.aborted) run.abort(leaseLost('the run lost its workspace lease'));
  lost?.addEventListener('abort', () => run.abort(leaseLost('the run lost its workspace lease')), { once: true });
  run.emit('phase_completed', { iteration: 1, phase: 'workspace', ok: true, durationMs: run.clock.now() - started });
  await run.updateMeta({ workspacePath: workspace.path, warnings: workspace.warnings });
  return { event: 'workspace_acquired' };
}
