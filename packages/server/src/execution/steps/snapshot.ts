/** `snapshotting` → commit the iteration on the run branch. */
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function snapshot(run: RunContext): Promise<StepOutcome<'snapshotting'>> {
  const result = await run.services.orchestrator.run('snapshot', phaseContext(run));
  if (!result.ok) {
    run.iterations.record.error = { code: result.error.code, message: result.error.message, phase: 'snapshot' };
    return { event: 'snapshot_failed', error: run.failure(result.error, 'snapshot') };
  }
  const { snapshot: taken, changesFromBase } = result.value;
  run.iterations.record.snapshot = taken;
  run.progress.uncaptured = taken.uncaptured;
  run.progress.snapshot = { iteration: taken.iteration, sha: taken.sha, ...(changesFromBase !== undefined && { changesFromBase }) };
  if (result.value.snapshot.committed === true && !run.progress.branchPublished) {
    run.progress.branchPublished = true;
    await run.updateMeta({ branchPublished: true });
  }
  return { event: 'snapshot_completed' };
}
