/**
 * Gives every run an isolated workspace (SPEC section 8) and takes it away again.
 *
 * `acquire` resolves the source (the user's repository, or a cached clone of a remote), takes the
 * lease on `<repository>#<run branch>` when a lease store is configured, creates the branch
 * `agentgate/<runId>` there and the run's two repositories: the workspace at
 * `$AGENTGATE_HOME/worktrees/<runId>` (a repository of the agent's own) and AgentGate's git directory at
 * `$AGENTGATE_HOME/runs/<runId>/git` (see `isolated-git.ts`). `release` removes both and releases the
 * lease; the branch — the run's result, published into the repository after every snapshot — stays.
 *
 * With the worktree pool (on unless `pool: false`; `worktree-pool.ts`), `acquire` starts from an idle
 * worktree of the same repository when there is one and `release` scrubs the worktree and returns it to
 * the pool instead of deleting it; the workspace path, the run's git directory and everything else a run
 * sees are the same either way.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { systemClock, type TimerClock } from '../util/clock.js';
import { withCleanupFailure, withRepositoryLock } from './git.js';
import { RemoteRepositoryCache, resolveRemoteSource, type ForgeCloneConfig } from './git-remote.js';
import { removeTree } from './isolated-git.js';
import { KeyedMutex } from './keyed-mutex.js';
import { WorktreePool, type PoolLogger, type WorktreePoolOptions } from './worktree-pool.js';
import { DEFAULT_LEASE_TTL_MS, LeaseKeeper, defaultLeaseOwner, leaseKey, type LeaseStore } from './lease.js';
import { createRunWorkspace, createWhileChecking, inspectLocalRepository, legacyOwningRepository, removeRunDirectories, removeRunWorkspace, type PreparedSource } from './local.js';

export type { PreparedSource } from './local.js';
import { DEFAULT_BRANCH_PREFIX, WORKTREE_POOL_DIR_NAME, runBranchName, runGitDir, runsRoot, validateRunId, worktreePath, worktreePoolRoot, worktreesRoot } from './paths.js';
import type { Workspace } from './types.js';

/** The resolved workspace of a task (structurally the same as `ResolvedWorkspace` of the schemas). */
export type WorkspaceSpec =
  | { source: 'local'; path: string; ref?: string }
  | { source: 'git'; url: string; ref?: string }
  | { source: 'github'; repo: string; ref?: string }
  | { source: 'gitlab'; project: string; ref?: string };

export interface WorkspaceManagerOptions {
  /** `$AGENTGATE_HOME`. */
  home: string;
  /**
   * Usually `Repositories.leases`. When given, every workspace holds a lease on `<repoPath>#<branch>`
   * for as long as it exists.
   */
  leases?: LeaseStore;
  /** Identifies this process as lease owner; default `<host>:<pid>:<uuid>`. */
  leaseOwner?: string;
  /** Default {@link DEFAULT_LEASE_TTL_MS}. */
  leaseTtlMs?: number;
  clock?: TimerClock;
  /** GitHub clone access; github workspaces are unsupported without it. */
  github?: ForgeCloneConfig;
  /** GitLab clone access; gitlab workspaces are unsupported without it. */
  gitlab?: ForgeCloneConfig;
  /**
   * Reuse of worktrees (docs/workspaces.md "Reused worktrees"): bounds of the pool, or `false` for a fresh
   * checkout and a full removal per run (`AGENTGATE_WORKTREE_POOL=off`). Default: on, with
   * `DEFAULT_WORKTREE_POOL` bounds.
   */
  pool?: WorktreePoolOptions | false;
  /** Where the pool reports a worktree it could not reuse or keep (the run goes on either way). */
  logger?: PoolLogger;
}

export interface AcquireWorkspaceOptions {
  runId: string;
  /** The source as {@link WorkspaceManager.resolveSource} returned it; resolved here when absent. */
  source?: PreparedSource;
  /** Run branches are `<branchPrefix><runId>`; default `agentgate/`. */
  branchPrefix?: string;
  /**
   * Whether the workspace may go back to the pool when it is released (default true). False (a run without
   * the sandbox, whose release will say `reusable: false`) makes it without the pool: no idle slot is
   * claimed and no manifest recorded for a worktree that can never return to it.
   */
  reusable?: boolean;
  signal: AbortSignal;
}

export interface ReleaseWorkspaceOptions {
  /** Pass an unaborted signal when releasing after a cancel: cleanup must still finish. */
  signal: AbortSignal;
  /**
   * Whether the worktree may go back to the pool (default true). The engine passes false for a run that
   * ran without a sandbox: a process of it that escaped both its process group and its run tag could
   * still write into the worktree after the next run took it over; in bubblewrap the PID namespace ended
   * with the run, so nothing of it is left.
   */
  reusable?: boolean;
}

export interface ReapStaleOptions {
  /** Whether the run that owns a worktree directory is still running; its worktree is kept then. */
  isLive: (runId: string) => boolean | Promise<boolean>;
  signal: AbortSignal;
}

/** Serialises worktree and cache changes per repository across every manager of this process. */
const repositoryLocks = new KeyedMutex();

export class WorkspaceManager {
  private readonly home: string;
  private readonly options: WorkspaceManagerOptions;
  private readonly leaseOwner: string;
  private readonly remotes: RemoteRepositoryCache;
  private readonly leasesByRun = new Map<string, LeaseKeeper>();
  private readonly pool: WorktreePool | undefined;

  constructor(options: WorkspaceManagerOptions) {
    this.home = path.resolve(options.home);
    this.options = options;
    this.leaseOwner = options.leaseOwner ?? defaultLeaseOwner();
    this.remotes = new RemoteRepositoryCache(this.home, repositoryLocks);
    this.pool = options.pool === false ? undefined : new WorktreePool(worktreePoolRoot(this.home), options.clock ?? systemClock, repositoryLocks, options.pool ?? {}, options.logger);
  }

  /**
   * Creates the run's worktree on `agentgate/<runId>` from `spec.ref` (or the source's HEAD / default
   * branch). The user's working tree, index and current branch are never touched.
   *
   * @throws AG_ERR_WORKSPACE_NOT_A_REPO, AG_ERR_WORKSPACE_REF_NOT_FOUND, AG_ERR_WORKSPACE_SETUP,
   *   AG_ERR_WORKSPACE_UNSUPPORTED, AG_ERR_WORKSPACE_PATH_ESCAPE, AG_ERR_LEASE_HELD; the abort reason when
   *   canceled.
   */
  async acquire(spec: WorkspaceSpec, options: AcquireWorkspaceOptions): Promise<Workspace> {
    const { runId, signal } = options;
    validateRunId(runId);
    const branch = runBranchName(runId, options.branchPrefix ?? DEFAULT_BRANCH_PREFIX);
    const target = worktreePath(this.home, runId);
    const gitDir = runGitDir(this.home, runId);
    const prepared = options.source ?? (await this.resolveSource(spec, signal));
    await this.takeLease(prepared.repoPath, branch, runId, signal);
    let indexFile: string;
    let baseTree: string | undefined;
    let laterWarnings: string[];
    try {
      const request = { repoPath: prepared.repoPath, objectsDir: prepared.objectsDir, worktreePath: target, gitDir, branch, baseSha: prepared.baseSha, signal };
      const pool = options.reusable === false ? undefined : this.pool;
      // The source's deferred check (a local work tree's status) only reads the source: it runs while the
      // workspace is created, and when it fails the workspace is removed again.
      [laterWarnings, { indexFile, baseTree }] = await createWhileChecking(
        prepared.deferredWarnings?.(signal) ?? Promise.resolve([]),
        withRepositoryLock(repositoryLocks, prepared.repoPath, signal, () => (pool === undefined ? createRunWorkspace(request) : pool.createWorkspace(request, runId))),
        () => (pool === undefined ? removeRunDirectories(request) : pool.discard(request, runId)),
      );
    } catch (error) {
      throw withCleanupFailure(error, await this.dropLease(runId), 'releasing the lease');
    }
    return {
      runId,
      kind: spec.source,
      path: target,
      branch,
      baseSha: prepared.baseSha,
      ...(baseTree !== undefined && { baseTree }),
      repoPath: prepared.repoPath,
      gitDir,
      indexFile,
      objectsDir: prepared.objectsDir,
      source: prepared.source,
      warnings: [...prepared.warnings, ...laterWarnings],
    };
  }

  /**
   * Deletes the run's workspace and AgentGate's git directory of the run (whatever the agent did to
   * them: read-only files, a locked or corrupted `.git`) and releases its lease. With the pool, the
   * workspace is scrubbed and kept for a later run of the same repository instead, when it fits the
   * pool's bounds. The branch and its commits stay in the repository. Idempotent.
   *
   * @throws AG_ERR_WORKSPACE_CLEANUP (the lease is released anyway).
   */
  async release(workspace: Workspace, options: ReleaseWorkspaceOptions): Promise<void> {
    try {
      const request = { worktreePath: workspace.path, worktreesRoot: worktreesRoot(this.home), gitDir: runGitDir(this.home, workspace.runId), signal: options.signal };
      if (this.pool === undefined || options.reusable === false) await removeRunWorkspace(request);
      else await this.pool.release({ ...request, runId: workspace.runId });
    } catch (error) {
      throw withCleanupFailure(error, await this.dropLease(workspace.runId), 'releasing the lease');
    }
    const leaseFailure = await this.dropLease(workspace.runId);
    if (leaseFailure !== undefined) throw leaseFailure;
  }

  /** Releases the run's lease, if any; resolves to the release failure instead of throwing it. */
  private async dropLease(runId: string): Promise<unknown> {
    const lease = this.leasesByRun.get(runId);
    if (lease === undefined) return undefined;
    this.leasesByRun.delete(runId);
    return lease.release().then(
      () => undefined,
      (error: unknown) => error,
    );
  }

  /**
   * Aborted when the run's lease is lost (another process took over the repository branch): the engine
   * should stop the run. Undefined when leases are not configured or the run holds no workspace.
   */
  leaseLost(runId: string): AbortSignal | undefined {
    return this.leasesByRun.get(runId)?.lost;
  }

  /**
   * Removes workspaces and AgentGate git directories left behind by runs that are no longer live (a crash
   * between acquire and release), including linked worktrees made by earlier versions, and the pool's
   * leftovers of such runs and its slots idle longer than its TTL. Returns the run ids whose workspaces
   * were removed.
   */
  async reapStale(options: ReapStaleOptions): Promise<string[]> {
    const root = worktreesRoot(this.home);
    const list = (dir: string): Promise<string[]> =>
      readdir(dir, { withFileTypes: true }).then(
        (entries) => entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name),
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT') return [];
          throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Cannot list ${dir}`, { cause: error });
        },
      );
    const [workspaces, runs] = await Promise.all([list(root), list(runsRoot(this.home))]);
    const isStale = async (runId: string): Promise<boolean> => !this.leasesByRun.has(runId) && this.pool?.tracks(runId) !== true && !(await options.isLive(runId));
    const reaped: string[] = [];
    for (const runId of workspaces) {
      // The pool's directory is no run's workspace (its name can never be a run id).
      if (runId === WORKTREE_POOL_DIR_NAME || !(await isStale(runId))) continue;
      const dir = path.join(root, runId);
      const legacyRepoPath = await legacyOwningRepository(dir, root);
      const gitDir = safeRunGitDir(this.home, runId);
      await withRepositoryLock(repositoryLocks, legacyRepoPath ?? dir, options.signal, () =>
        removeRunWorkspace({ legacyRepoPath, worktreePath: dir, worktreesRoot: root, gitDir, signal: options.signal }),
      );
      reaped.push(runId);
    }
    // AgentGate git directories whose workspace is already gone (a crash in the middle of a release).
    for (const runId of runs) {
      const gitDir = safeRunGitDir(this.home, runId);
      if (gitDir === undefined || workspaces.includes(runId) || !existsSync(gitDir) || !(await isStale(runId))) continue;
      await removeTree(gitDir);
    }
    // The pool's state of dead runs (only ever dot-named, never reused) and its expired slots.
    await this.pool?.reap(isStale);
    return reaped;
  }

  /**
   * Resolves the source repository and the base commit without creating anything. The engine uses it to
   * read the gate plan from the base commit while the worktree is being created.
   */
  async resolveSource(spec: WorkspaceSpec, signal: AbortSignal): Promise<PreparedSource> {
    switch (spec.source) {
      case 'local':
        return inspectLocalRepository(spec, signal);
      case 'git':
      case 'github':
      case 'gitlab': {
        const remote = resolveRemoteSource(spec, { github: this.options.github, gitlab: this.options.gitlab });
        return this.remotes.prepare(remote, spec.ref, signal);
      }
      default: {
        const unreachable: never = spec;
        return unreachable;
      }
    }
  }

  private async takeLease(repoPath: string, branch: string, runId: string, signal: AbortSignal): Promise<void> {
    if (this.options.leases === undefined) return;
    const keeper = new LeaseKeeper({
      store: this.options.leases,
      key: leaseKey(repoPath, branch),
      owner: this.leaseOwner,
      runId,
      ttlMs: this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
      ...(this.options.clock === undefined ? {} : { clock: this.options.clock }),
    });
    await keeper.acquire(signal);
    this.leasesByRun.set(runId, keeper);
  }
}

/** The run's git directory, or undefined for a directory name that is not a valid run id. */
function safeRunGitDir(home: string, runId: string): string | undefined {
  try {
    return runGitDir(home, runId);
  } catch (error) {
    if (error instanceof AgentGateError && error.code === 'AG_ERR_WORKSPACE_PATH_ESCAPE') return undefined;
    throw error;
  }
}
