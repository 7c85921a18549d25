/** A run's isolated workspace and the snapshot of one iteration (SPEC 4, 8). */

export interface Workspace {
  runId: string;
  kind: 'local' | 'git' | 'github' | 'gitlab';
  /** The worktree the agent and gates work in: `$AGENTGATE_HOME/worktrees/<runId>`. */
  path: string;
  /** The run branch, `agentgate/<runId>` by default. */
  branch: string;
  /** Commit the run started from. */
  baseSha: string;
  /** The repository holding the branch: the user's repository (local) or the cached bare clone. */
  repoPath: string;
  /** Human-readable source (path or URL without credentials). */
  source: string;
  warnings: string[];
}

export interface SnapshotResult {
  iteration: number;
  sha: string;
  /** Tree of the snapshot commit: equal trees mean identical content (used to detect no-progress loops). */
  treeSha: string;
  /** True when the agent changed nothing in this iteration (an empty commit was recorded). */
  noChange: boolean;
  filesChanged: number;
  insertions: number;
  deletions: number;
  /** Files changed relative to the run's base commit (cumulative). */
  changedFiles: string[];
  /** Patch of the whole run so far against the base commit. */
  patchPath: string;
}
