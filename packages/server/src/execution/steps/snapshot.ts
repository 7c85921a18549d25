/** `snapshotting` → commit the iteration on the run branch. */
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function snapshot(run: RunContext): Promise<StepOutcome<'snapshotting'>> {
  const result = await run.services.orchestrator.run('snapshot', phaseContext(run));
  if (!result.ok) {
    run.iterations.record.error = { code: result.error.code, message: result.error.message, phase: 'snapshot' };
    return { event: 'snapshot_failed', error: run.failure(result.error, 'snapshot') };
  }
  run.iterations.record.snapshot = result.value.snapshot;
  run.progress.uncaptured = result.value.snapshot.uncaptured;
  if (result.value.snapshot.committed === true && !run.progress.branchPublished) {
    run.progress.branchPublished = true;
    await run.updateMeta({ branchPublished: true });
  }
  return { event: 'snapshot_completed' };
}
