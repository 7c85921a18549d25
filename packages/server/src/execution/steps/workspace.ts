/**
 * `queued` → acquire the run's workspace (worktree on its branch, branch lease) and its artifact
 * directory. A workspace lease lost later aborts the run with a typed reason.
 */
import { mkdir } from 'node:fs/promises';
import { toAgentGateError } from '../../errors.js';
import { leaseLost } from '../../util/abort.js';
import type { RunContext, StepOutcome } from './types.js';

export async function acquireWorkspace(run: RunContext): Promise<StepOutcome<'queued'>> {
  const started = run.clock.now();
  run.emit('phase_started', { iteration: 1, phase: 'workspace' });
  try {
    run.workspace = await run.services.workspaces.acquire(run.spec.workspace, { runId: run.runId, branchPrefix: run.spec.delivery.branchPrefix, signal: run.signal });
    await mkdir(run.artifactsDir, { recursive: true });
  } catch (error) {
    const failure = run.failure(toAgentGateError(error, 'AG_ERR_WORKSPACE_SETUP'), 'workspace');
    run.emit('phase_completed', { iteration: 1, phase: 'workspace', ok: false, durationMs: run.clock.now() - started, error: failure });
    return { event: 'system_error', error: failure };
  }
  const workspace = run.workspace;
  const lost = run.services.workspaces.leaseLost(run.runId);
  if (lost?.aborted) run.abort(leaseLost('the run lost its workspace lease'));
  lost?.addEventListener('abort', () => run.abort(leaseLost('the run lost its workspace lease')), { once: true });
  run.emit('phase_completed', { iteration: 1, phase: 'workspace', ok: true, durationMs: run.clock.now() - started });
  await run.updateMeta({ workspacePath: workspace.path, warnings: workspace.warnings });
  return { event: 'workspace_acquired' };
}
