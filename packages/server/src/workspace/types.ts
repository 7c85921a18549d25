/** A run's isolated workspace and the snapshot of one iteration (SPEC 4, 8). */

export interface Workspace {
  runId: string;
  kind: 'local' | 'git' | 'github' | 'gitlab';
  /**
   * The workspace the agent and gates work in: `$AGENTGATE_HOME/worktrees/<runId>`. Its `.git` is the
   * agent's own repository (objects borrowed from the source); AgentGate never reads it.
   */
  path: string;
  /** The run branch, `agentgate/<runId>` by default. */
  branch: string;
  /** Commit the run started from. */
  baseSha: string;
  /**
   * The tree of {@link baseSha}, when the checkout read it from the index it wrote (`index-file.ts`): the
   * first snapshot is measured against it without a `rev-parse`. Absent in records and scratch workspaces.
   */
  baseTree?: string;
  /**
   * The repository that receives the run branch (published from {@link gitDir} after every snapshot): the
   * user's repository (local) or the cached bare clone.
   */
  repoPath: string;
  /**
   * AgentGate's own git directory of the run (`$AGENTGATE_HOME/runs/<runId>/git`): the run branch with the
   * snapshot commits, the index every AgentGate git call on the run uses, a config of AgentGate's. Outside
   * the workspace, so nothing the agent writes is consulted.
   */
  gitDir: string;
  /** The index file of {@link gitDir}. */
  indexFile: string;
  /**
   * The object directory of {@link repoPath} that {@link gitDir} borrows, where a snapshot's new objects are
   * copied (`publish-branch.ts`); absent in a record made without it, whose snapshots are fetched instead.
   */
  objectsDir?: string;
  /** Human-readable source (path or URL without credentials). */
  source: string;
  warnings: string[];
}

/** One path that differs between two trees (a rename is a deletion and an addition). */
export interface TreeChange {
  path: string;
  change: 'added' | 'deleted' | 'modified';
}

export interface SnapshotResult {
  iteration: number;
  sha: string;
  /** Tree of the snapshot commit: equal trees mean identical content (used to detect no-progress loops). */
  treeSha: string;
  /** True when the agent changed nothing in this iteration. */
  noChange: boolean;
  /**
   * Whether this iteration got a commit on AgentGate's run branch, which is then published into the
   * repository (if that fails, the iteration's error says so, in phase `snapshot`). False for an
   * iteration that changed nothing, unless empty commits are configured;
   * absent in records written before AgentGate skipped empty commits (they always committed).
   */
  committed?: boolean;
  filesChanged: number;
  insertions: number;
  deletions: number;
  /** Files changed relative to the run's base commit (cumulative). */
  changedFiles: string[];
  /** Patch of the whole run so far against the base commit. */
  patchPath: string;
  /**
   * Paths whose content the snapshot could not capture: nested repositories and submodule paths (a
   * directory with its own `.git`, or a gitlink of the base commit the agent wrote files into). Their
   * content is not part of the run's result; the feedback should tell the agent.
   */
  uncaptured: string[];
}
