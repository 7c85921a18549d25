/**
 * SnapshotPhase: commits the worktree as `agentgate: iteration <n>` on the run branch and records
 * stats, the patch against the base commit and the sha. A git failure is `snapshot_failed`. It returns
 * once the commit and its changes are known; the patch file and the run branch's publication into the
 * repository go on during verification (`SnapshotOutput.settled`, awaited by the verify step).
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
      // The patch and the branch publication run on while the iteration verifies (steps/verify.ts).
      background: true,
      ...(previousSha !== undefined && { previousSha }),
    });
    if (!result.ok) return { ok: false, error: result.error, cancelled: ctx.signal.aborted };
    return { ok: true, value: { snapshot: result.snapshot, changesFromBase: result.changesFromBase, settled: result.settled } };
  }
}
