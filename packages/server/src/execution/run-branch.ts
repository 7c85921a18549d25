/**
 * Whether a run has a branch to show. The branch name is chosen when the run is created, but the branch
 * only exists in the repository once the first snapshot commit was fetched there (`snapshotter.ts`):
 * the API, the closing event and the CLI name it only then.
 */
import type { RunMeta } from '../store/types.js';

/**
 * The run's branch as the repository has it, or null when it has none (yet). Runs recorded before
 * AgentGate kept `branchPublished` always created their branch, so they keep it.
 */
export function publishedBranch(run: { readonly branch: string | null; readonly meta: RunMeta }): string | null {
  return run.meta.branchPublished === false ? null : run.branch;
}
