/** `snapshotting` → commit the iteration on the run branch. */
import type { AgentGateError } from '../../errors.js';
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function snapshot(run: RunContext): Promise<StepOutcome<'snapshotting'>> {
  const result = await run.services.orchestrator.run('snapshot', phaseContext(run));
  if (!result.ok) {
    run.iterations.record.error = { code: result.error.code, message: result.error.message, phase: 'snapshot' };
    return { event: 'snapshot_failed', error: run.failure(result.error, 'snapshot') };
  }
  const { snapshot: taken, changesFromBase, settled } = result.value;
  run.iterations.record.snapshot = taken;
  run.progress.uncaptured = taken.uncaptured;
  run.progress.snapshot = { iteration: taken.iteration, sha: taken.sha, ...(changesFromBase !== undefined && { changesFromBase }) };
  // The patch and the publication finish during verification; the verify step awaits them (`settleSnapshot`).
  run.progress.snapshotSettling = settled;
  return { event: 'snapshot_completed' };
}

/**
 * Awaits the last snapshot's patch file and branch publication, if any is pending, and records how they
 * ended: undefined when they succeeded (the run branch then exists in the repository if the snapshot made
 * a commit, and `meta.branchPublished` says so), else their error, recorded on the iteration as a snapshot
 * failure. Called by the verify step once its gates have run, before a run closes (`onBeforeTerminal`,
 * so the closing event and a work-in-progress push see the branch as it is) and by the cleanup.
 * @throws the store's error when the meta update is refused (the publication itself has ended).
 */
export async function settleSnapshot(run: RunContext): Promise<AgentGateError | undefined> {
  const settling = run.progress.snapshotSettling;
  if (settling === undefined) return undefined;
  const failed = await settling;
  run.progress.snapshotSettling = undefined;
  if (failed !== undefined) {
    run.iterations.record.error = { code: failed.code, message: failed.message, phase: 'snapshot' };
    return failed;
  }
  if (run.iterations.record.snapshot?.committed === true && !run.progress.branchPublished) {
    run.progress.branchPublished = true;
    await run.updateMeta({ branchPublished: true });
  }
  return undefined;
}
