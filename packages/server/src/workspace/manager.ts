/**
 * Gives every run an isolated workspace (SPEC section 8) and takes it away again.
 *
 * `acquire` resolves the source (the user's repository, or a cached clone of a remote), takes the
 * lease on `<repository>#<run branch>` when a lease store is configured, and adds a worktree at
 * `$AGENTGATE_HOME/worktrees/<runId>` on the new branch `agentgate/<runId>`. `release` removes the
 * worktree and releases the lease; the branch — the run's result — stays.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import type { TimerClock } from '../util/clock.js';
import { withCleanupFailure, withRepositoryLock } from './git.js';
import { RemoteRepositoryCache, resolveRemoteSource, type ForgeCloneConfig } from './git-remote.js';
import { KeyedMutex } from './keyed-mutex.js';
import { DEFAULT_LEASE_TTL_MS, LeaseKeeper, defaultLeaseOwner, leaseKey, type LeaseStore } from './lease.js';
import { createRunWorktree, inspectLocalRepository, removeRunWorktree, type PreparedSource } from './local.js';

export type { PreparedSource } from './local.js';
import { DEFAULT_BRANCH_PREFIX, isInside, runBranchName, validateRunId, worktreePath, worktreesRoot } from './paths.js';
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
}

export interface AcquireWorkspaceOptions {
  runId: string;
  /** The source as {@link WorkspaceManager.resolveSource} returned it; resolved here when absent. */
  source?: PreparedSource;
  /** Run branches are `<branchPrefix><runId>`; default `agentgate/`. */
  branchPrefix?: string;
  signal: AbortSignal;
}

export interface ReleaseWorkspaceOptions {
  /** Pass an unaborted signal when releasing after a cancel: cleanup must still finish. */
  signal: AbortSignal;
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

  constructor(options: WorkspaceManagerOptions) {
    this.home = path.resolve(options.home);
    this.options = options;
    this.leaseOwner = options.leaseOwner ?? defaultLeaseOwner();
    this.remotes = new RemoteRepositoryCache(this.home, repositoryLocks);
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
    const prepared = options.source ?? (await this.resolveSource(spec, signal));
    await this.takeLease(prepared.repoPath, branch, runId, signal);
    try {
      await withRepositoryLock(repositoryLocks, prepared.repoPath, signal, () =>
        createRunWorktree({ repoPath: prepared.repoPath, worktreePath: target, branch, baseSha: prepared.baseSha, signal }),
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
      repoPath: prepared.repoPath,
      source: prepared.source,
      warnings: prepared.warnings,
    };
  }

  /**
   * Removes the run's worktree (`git worktree remove --force`, then prune) and releases its lease. The
   * branch and its commits stay. Idempotent.
   *
   * @throws AG_ERR_WORKSPACE_CLEANUP (the lease is released anyway).
   */
  async release(workspace: Workspace, options: ReleaseWorkspaceOptions): Promise<void> {
    try {
      await withRepositoryLock(repositoryLocks, workspace.repoPath, options.signal, () =>
        removeRunWorktree({
          repoPath: workspace.repoPath,
          worktreePath: workspace.path,
          worktreesRoot: worktreesRoot(this.home),
          signal: options.signal,
        }),
      );
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
   * Removes worktrees left behind by runs that are no longer live (a crash between acquire and
   * release). Returns the run ids whose worktrees were removed.
   */
  async reapStale(options: ReapStaleOptions): Promise<string[]> {
    const root = worktreesRoot(this.home);
    const entries = await readdir(root, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [];
      throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Cannot list ${root}`, { cause: error });
    });
    const reaped: string[] = [];
    for (const entry of entries) {
      if (!entry.isDirectory() || this.leasesByRun.has(entry.name) || (await options.isLive(entry.name))) continue;
      const dir = path.join(root, entry.name);
      const repoPath = await owningRepository(dir, root);
      await withRepositoryLock(repositoryLocks, repoPath ?? dir, options.signal, () =>
        removeRunWorktree({ repoPath, worktreePath: dir, worktreesRoot: root, signal: options.signal }),
      );
      reaped.push(entry.name);
    }
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

/**
 * The repository a linked worktree belongs to, read from its `.git` file
 * (`gitdir: <repo>/.git/worktrees/<name>` or `<bare>/worktrees/<name>`); undefined when unreadable.
 */
async function owningRepository(worktreeDir: string, root: string): Promise<string | undefined> {
  const content = await readFile(path.join(worktreeDir, '.git'), 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'EISDIR') return undefined;
    throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Cannot read ${worktreeDir}/.git`, { cause: error });
  });
  const match = content === undefined ? null : /^gitdir:\s*(.+)$/m.exec(content);
  if (match?.[1] === undefined) return undefined;
  const adminDir = path.resolve(worktreeDir, match[1].trim());
  const commonDir = path.dirname(path.dirname(adminDir));
  const repo = path.basename(commonDir) === '.git' ? path.dirname(commonDir) : commonDir;
  // Never treat something inside our own worktrees as the owning repository.
  return isInside(root, repo) ? undefined : repo;
}
