/**
 * SnapshotPhase: commits the worktree as `agentgate: iteration <n>` on the run branch and records
 * stats, the patch against the base commit and the sha. A git failure is `snapshot_failed`.
 */
import type { PhaseContext, PhaseHandler, PhaseResult, SnapshotOutput } from '../context.js';

export class SnapshotPhase implements PhaseHandler<'snapshot'> {
  readonly name = 'snapshot' as const;

  async execute(ctx: PhaseContext): Promise<PhaseResult<SnapshotOutput>> {
    // Measured against the previous snapshot, so an agent that commits on its own is still compared right.
    const previousSha = ctx.progress.history.at(-1)?.snapshotSha;
    const result = await ctx.services.snapshotter.snapshot({
      workspace: ctx.workspace,
      iteration: ctx.iteration,
      artifactsDir: ctx.artifactsDir,
      signal: ctx.signal,
      ...(previousSha !== undefined && { previousSha }),
    });
    if (!result.ok) return { ok: false, error: result.error, cancelled: ctx.signal.aborted };
    return { ok: true, value: { snapshot: result.snapshot, changesFromBase: result.changesFromBase } };
  }
}
