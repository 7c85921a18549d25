/**
 * The worktree pool (issue 12, "worktrees reused"): a few idle worktrees per source repository, so a run
 * pays for the files that differ from its base commit instead of a whole checkout and a whole removal.
 *
 * ```
 * $AGENTGATE_HOME/worktrees/.pool/<repoKey>/
 *   <slot>/              an idle slot: tree/ (the files), manifest, index, state.json
 *   .run-<runId>/        manifest and index of a live run's worktree (becomes a slot when the run ends)
 *   .taken-<runId>/      a slot being reused by a run
 *   .evict-<random>/     a slot being deleted
 * ```
 *
 * `repoKey` is a hash of the source's object directory. The pool lives below `$AGENTGATE_HOME`, which the
 * sandbox hides; only a run's own `worktrees/<runId>` is visible to it. A slot is moved (renamed) to
 * `worktrees/<runId>` when a run takes it, so the workspace path, the sandbox's writable directory, the
 * gates' `findRunGit` and the reaper all see exactly what they saw without a pool.
 *
 * Safety (docs/workspaces.md "Reused worktrees"): after every checkout AgentGate records a manifest of the
 * worktree (`pool-manifest.ts`); when the run ends the worktree is scrubbed down to the entries whose
 * status is unchanged since then (`scrubForPool`) and, within the bounds, renamed into the pool; when a run
 * reuses it, every path is checked again and changed directories are rebuilt (`scrubIntoWorkspace`), the
 * agent's `.git` is created anew, and AgentGate's `read-tree --reset -u` from its previous index rewrites
 * whatever differs from the new base. Every slot is claimed by a rename, so two processes never share one,
 * and a run that crashes leaves only dot-named directories, which are never reused and are reaped.
 *
 * Kept in one file (over 400 lines) on purpose: it is one class whose claim, park, eviction and reaping
 * all move slots by rename under the one pool lock and share its bounds and its table of live runs; split,
 * the rule "a slot is only ever claimed, parked or evicted whole, by a rename under the lock" would be
 * scattered over files. What needs neither lives beside it: the manifest (pool-manifest.ts) and the
 * scrubbing (pool-scrub.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError, toAgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { objectFormatOf, removeTree, type IsolatedGit, type ObjectFormat } from './isolated-git.js';
import type { KeyedMutex } from './keyed-mutex.js';
import { assertRunBranchFree, assertRunDirectoriesFree, checkoutRunWorkspace, createWhileChecking, removeRunDirectories, removeRunWorkspace, type CreateWorkspaceRequest, type RunGit } from './local.js';
import { poolFilesystem, recordManifest, rerecordEntries, TreeManifest } from './pool-manifest.js';
import { scrubForPool, scrubIntoWorkspace } from './pool-scrub.js';

/** Bounds of the pool. Idle slots beyond them are deleted, least recently pooled first. */
export interface WorktreePoolOptions {
  /** Idle slots per source repository (default 2). */
  maxIdlePerRepository?: number;
  /** Idle slots in all (default 8). */
  maxIdle?: number;
  /** Bytes of files in all idle slots (default 4 GiB). A worktree larger than this is never pooled. */
  maxIdleBytes?: number;
  /** An idle slot older than this is deleted instead of reused (default 30 minutes). */
  idleTtlMs?: number;
}

export const DEFAULT_WORKTREE_POOL: Required<WorktreePoolOptions> = {
  maxIdlePerRepository: 2,
  maxIdle: 8,
  maxIdleBytes: 4 * 1024 * 1024 * 1024,
  idleTtlMs: 30 * 60 * 1000,
};

/** The logging the pool needs (a pino logger fits): why a worktree was not reused or not pooled. */
export interface PoolLogger {
  warn(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

interface SlotState {
  version: 1;
  /** The commit the slot's files belong to. */
  baseSha: string;
  /** When the slot entered the pool (the pool's clock). */
  pooledAt: number;
  /** Bytes of its files. */
  bytes: number;
}

interface IdleSlot {
  repoKey: string;
  name: string;
  dir: string;
  state: SlotState;
}

const SLOT_STATE = 'state.json';
const SLOT_MANIFEST = 'manifest';
const SLOT_INDEX = 'index';
const SLOT_TREE = 'tree';
const POOL_LOCK = 'agentgate:worktree-pool';

/** What the pool did with a finished run's worktree. */
export type ReleaseOutcome = 'pooled' | 'removed';

export interface PoolReleaseRequest {
  runId: string;
  worktreePath: string;
  worktreesRoot: string;
  gitDir: string;
  signal: AbortSignal;
}

export class WorktreePool {
  private readonly bounds: Required<WorktreePoolOptions>;
  /** Runs whose worktree has a manifest and may return to the pool: run id → pool key and base commit. */
  private readonly live = new Map<string, { repoKey: string; baseSha: string }>();
  private supported: Promise<boolean> | undefined;

  constructor(
    readonly root: string,
    private readonly clock: Clock,
    private readonly mutex: KeyedMutex,
    options: WorktreePoolOptions = {},
    private readonly logger?: PoolLogger,
  ) {
    this.bounds = { ...DEFAULT_WORKTREE_POOL, ...options };
    for (const [name, value] of Object.entries(this.bounds)) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`worktree pool option ${name} must be a non-negative number, got ${String(value)}`);
    }
  }

  /** Whether the home's file system keeps real ctimes (checked once; see `POOL_FILESYSTEMS`). */
  private enabled(): Promise<boolean> {
    this.supported ??= (async () => {
      try {
        await mkdir(this.root, { recursive: true });
        const fs = await poolFilesystem(this.root);
        if (!fs.supported) this.logger?.warn({ filesystemType: `0x${fs.type.toString(16)}`, dir: this.root }, 'worktree pool off: this file system is not known to keep real change times');
        return fs.supported;
      } catch (error) {
        const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_SETUP');
        this.logger?.warn({ err: classified, code: classified.code, dir: this.root }, 'worktree pool off: its directory cannot be prepared');
        return false;
      }
    })();
    return this.supported;
  }

  /**
   * The pool key of a source repository: its object directory (already a real path), hashed — with the
   * object format for SHA-256, so a slot is never reused across a repository replaced by one of the other
   * format at the same path (its index would not even parse).
   */
  static repoKey(objectsDir: string, format: ObjectFormat): string {
    const key = format === 'sha1' ? path.resolve(objectsDir) : `${path.resolve(objectsDir)}\0${format}`;
    return createHash('sha256').update(key).digest('hex').slice(0, 32);
  }

  /** Whether `runId` has a worktree this pool may take back (so a reaper must leave its state alone). */
  tracks(runId: string): boolean {
    return this.live.has(runId);
  }

  /**
   * Creates the run's workspace, from an idle slot of the same repository when there is one. A reused
   * worktree must pass `recordManifest`'s check (exactly the base commit's paths); any failure of the reuse
   * (other than a cancel) is logged and answered with a fresh checkout. The manifest of the new worktree is
   * kept for the pool; when it cannot be recorded the run goes on and its worktree is removed at the end.
   * The run branch is checked while the workspace is made, as `createRunWorkspace` does.
   *
   * @throws AG_ERR_WORKSPACE_SETUP, the cancellation reason.
   */
  async createWorkspace(request: CreateWorkspaceRequest, runId: string): Promise<RunGit> {
    assertRunDirectoriesFree(request);
    const [, git] = await createWhileChecking(assertRunBranchFree(request), this.checkOut(request, runId), () => this.discard(request, runId));
    return git;
  }

  /**
   * Removes a workspace {@link createWorkspace} made for a run whose acquisition failed after all, and what
   * the pool kept of it.
   */
  async discard(request: Pick<CreateWorkspaceRequest, 'worktreePath' | 'gitDir'>, runId: string): Promise<void> {
    const run = this.live.get(runId);
    this.live.delete(runId);
    await Promise.all([removeRunDirectories(request), run === undefined ? undefined : removeTree(this.runDir(run.repoKey, runId))]);
  }

  /** The checkout part of {@link createWorkspace}: from a claimed slot, or afresh. */
  private async checkOut(request: CreateWorkspaceRequest, runId: string): Promise<RunGit> {
    if (!(await this.enabled())) return (await checkoutRunWorkspace(request)).git;
    const repoKey = WorktreePool.repoKey(request.objectsDir, objectFormatOf(request.baseSha));
    const slot = await this.claim(repoKey, runId, request.signal);
    const reused = slot === undefined ? undefined : await this.reuse(slot.dir, request, runId);
    const checkout = reused ?? (await checkoutRunWorkspace(request));
    try {
      const manifest = 'manifest' in checkout ? checkout.manifest : await this.record(request, checkout.lsFilesStage);
      await this.keepRun(repoKey, runId, request, checkout.git, manifest);
    } catch (error) {
      const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_SETUP');
      this.logger?.warn({ err: classified, code: classified.code, runId }, 'worktree not recorded for the pool; it is removed when the run ends');
      await removeTree(this.runDir(repoKey, runId));
    }
    return checkout.git;
  }

  /**
   * Checks the base out over the claimed slot and verifies the result; undefined (everything rolled back,
   * the slot deleted) when that fails for any reason but a cancel.
   */
  private async reuse(slotDir: string, request: CreateWorkspaceRequest, runId: string): Promise<{ git: RunGit; manifest: TreeManifest } | undefined> {
    let checkedOut = false;
    try {
      const previous = TreeManifest.parse(await readFile(path.join(slotDir, SLOT_MANIFEST), 'utf8'));
      const checkout = await checkoutRunWorkspace(request, {
        indexFile: path.join(slotDir, SLOT_INDEX),
        populate: () => scrubIntoWorkspace(path.join(slotDir, SLOT_TREE), request.worktreePath, previous),
      });
      checkedOut = true;
      return { git: checkout.git, manifest: await this.record(request, checkout.lsFilesStage) };
    } catch (error) {
      // checkoutRunWorkspace rolls itself back; a worktree that failed the check after it is removed here.
      if (checkedOut) await Promise.all([removeTree(request.worktreePath), removeTree(request.gitDir)]);
      if (request.signal.aborted) throw error;
      const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_SETUP');
      this.logger?.warn({ err: classified, code: classified.code, runId }, 'pooled worktree not reused; checking out afresh');
      return undefined;
    } finally {
      await removeTree(slotDir);
    }
  }

  private record(request: CreateWorkspaceRequest, lsFilesStage: string): Promise<TreeManifest> {
    return recordManifest({ root: request.worktreePath, lsFilesStage, stampDir: this.root });
  }

  /** Keeps the manifest and index of a run's worktree in `.run-<runId>`, so its release can pool it. */
  private async keepRun(repoKey: string, runId: string, request: CreateWorkspaceRequest, git: IsolatedGit, manifest: TreeManifest): Promise<void> {
    const runDir = this.runDir(repoKey, runId);
    await mkdir(runDir, { recursive: true });
    await Promise.all([writeFile(path.join(runDir, SLOT_MANIFEST), manifest.serialize()), copyFile(git.indexFile, path.join(runDir, SLOT_INDEX))]);
    this.live.set(runId, { repoKey, baseSha: request.baseSha });
  }

  /**
   * Returns a finished run's worktree to the pool when it is recorded, can be scrubbed and fits the
   * bounds; otherwise removes it as a pool-less release would. AgentGate's git directory of the run is
   * removed either way.
   *
   * @throws AG_ERR_WORKSPACE_CLEANUP when the worktree can be neither pooled nor removed.
   */
  async release(request: PoolReleaseRequest): Promise<ReleaseOutcome> {
    const run = this.live.get(request.runId);
    const remove = (): Promise<void> => removeRunWorkspace({ worktreePath: request.worktreePath, worktreesRoot: request.worktreesRoot, gitDir: request.gitDir, signal: request.signal });
    if (run === undefined) {
      await remove();
      return 'removed';
    }
    const runDir = this.runDir(run.repoKey, request.runId);
    try {
      // Only the run's own workspace directory is ever scrubbed or moved; anything else is refused by the removal.
      const own = path.resolve(request.worktreePath) === path.join(path.resolve(request.worktreesRoot), request.runId);
      const pooled = own && (await this.park(run.repoKey, run.baseSha, runDir, request));
      await (pooled ? removeTree(request.gitDir) : remove());
      return pooled ? 'pooled' : 'removed';
    } catch (error) {
      if (request.signal.aborted || (error instanceof AgentGateError && error.code === 'AG_ERR_WORKSPACE_PATH_ESCAPE')) throw error;
      const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_CLEANUP');
      this.logger?.warn({ err: classified, code: classified.code, runId: request.runId }, 'worktree not pooled; removing it');
      await remove();
      return 'removed';
    } finally {
      await removeTree(runDir);
      this.live.delete(request.runId);
    }
  }

  /** Scrubs the worktree and moves it into the pool; false when the bounds leave no room for it. */
  private async park(repoKey: string, baseSha: string, runDir: string, request: PoolReleaseRequest): Promise<boolean> {
    const recorded = TreeManifest.parse(await readFile(path.join(runDir, SLOT_MANIFEST), 'utf8'));
    const { bytes, changedByScrub } = await scrubForPool(request.worktreePath, recorded);
    const manifest = changedByScrub.length === 0 ? recorded : await rerecordEntries(recorded, request.worktreePath, changedByScrub, this.root);
    const doomed: string[] = [];
    try {
      return await this.mutex.runExclusive(POOL_LOCK, request.signal, async () => {
        if (!(await this.makeRoom(repoKey, bytes, doomed))) return false;
        const state: SlotState = { version: 1, baseSha, pooledAt: this.clock.now(), bytes };
        await Promise.all([writeFile(path.join(runDir, SLOT_MANIFEST), manifest.serialize()), writeFile(path.join(runDir, SLOT_STATE), `${JSON.stringify(state)}\n`)]);
        await rename(request.worktreePath, path.join(runDir, SLOT_TREE));
        await rename(runDir, path.join(this.root, repoKey, `s-${randomBytes(8).toString('hex')}`));
        return true;
      });
    } finally {
      await removeAll(doomed);
    }
  }

  /**
   * Deletes idle slots until one more slot of `bytes` for `repoKey` fits the bounds: expired ones first,
   * then the least recently pooled (of this repository for its own bound). False when it cannot fit.
   */
  private async makeRoom(repoKey: string, bytes: number, doomed: string[]): Promise<boolean> {
    const { maxIdle, maxIdlePerRepository, maxIdleBytes } = this.bounds;
    if (bytes > maxIdleBytes || maxIdle === 0 || maxIdlePerRepository === 0) return false;
    const slots = (await this.evictExpired(await this.idleSlots(undefined, doomed), doomed)).sort((a, b) => a.state.pooledAt - b.state.pooledAt);
    const total = (): number => slots.reduce((sum, slot) => sum + slot.state.bytes, 0);
    const mine = (): IdleSlot[] => slots.filter((slot) => slot.repoKey === repoKey);
    while (mine().length >= maxIdlePerRepository || slots.length >= maxIdle || total() + bytes > maxIdleBytes) {
      const victim = mine().length >= maxIdlePerRepository ? mine()[0] : slots[0];
      if (victim === undefined) return false;
      slots.splice(slots.indexOf(victim), 1);
      await this.evict(victim, doomed);
    }
    return true;
  }

  /** Takes the most recently pooled unexpired slot of `repoKey` by renaming it to `.taken-<runId>`. */
  private async claim(repoKey: string, runId: string, signal: AbortSignal): Promise<{ dir: string } | undefined> {
    const doomed: string[] = [];
    try {
      return await this.mutex.runExclusive(POOL_LOCK, signal, () => this.claimLocked(repoKey, runId, doomed));
    } finally {
      await removeAll(doomed);
    }
  }

  private async claimLocked(repoKey: string, runId: string, doomed: string[]): Promise<{ dir: string } | undefined> {
    const slots = (await this.evictExpired(await this.idleSlots(repoKey, doomed), doomed)).sort((a, b) => b.state.pooledAt - a.state.pooledAt);
    const taken = path.join(this.root, repoKey, `.taken-${runId}`);
    if (slots.length > 0) await removeTree(taken);
    for (const slot of slots) {
      const won = await rename(slot.dir, taken).then(
        () => true,
        (error: NodeJS.ErrnoException) => {
          // Another process took it first.
          if (error.code === 'ENOENT') return false;
          throw error;
        },
      );
      if (won) return { dir: taken };
    }
    return undefined;
  }

  /**
   * Deletes what the pool holds for runs that are gone (`.run-*`, `.taken-*` of runs `isStale` says are
   * dead), interrupted evictions, unreadable slots and slots idle longer than the TTL.
   */
  async reap(isStale: (runId: string) => Promise<boolean>): Promise<void> {
    for (const repoKey of await listDir(this.root)) {
      if (!/^[0-9a-f]{32}$/.test(repoKey)) continue;
      for (const name of await listDir(path.join(this.root, repoKey))) {
        const dir = path.join(this.root, repoKey, name);
        const owner = /^\.(?:run|taken)-(.+)$/.exec(name)?.[1];
        if (owner !== undefined) {
          if (!this.live.has(owner) && (await isStale(owner))) await removeTree(dir);
        } else if (name.startsWith('.evict-')) {
          await removeTree(dir);
        }
      }
    }
    const doomed: string[] = [];
    try {
      await this.mutex.runExclusive(POOL_LOCK, new AbortController().signal, async () => {
        await this.evictExpired(await this.idleSlots(undefined, doomed), doomed);
      });
    } finally {
      await removeAll(doomed);
    }
  }

  /** Idle slots (of one repository, or all); a slot whose state cannot be read is deleted. */
  private async idleSlots(onlyRepoKey: string | undefined, doomed: string[]): Promise<IdleSlot[]> {
    const keys = onlyRepoKey === undefined ? (await listDir(this.root)).filter((key) => /^[0-9a-f]{32}$/.test(key)) : [onlyRepoKey];
    const slots: IdleSlot[] = [];
    for (const repoKey of keys) {
      for (const name of await listDir(path.join(this.root, repoKey))) {
        if (name.startsWith('.')) continue;
        const dir = path.join(this.root, repoKey, name);
        const state = await readSlotState(dir);
        if (state === undefined) await this.evict({ repoKey, name, dir, state: { version: 1, baseSha: '', pooledAt: 0, bytes: 0 } }, doomed);
        else slots.push({ repoKey, name, dir, state });
      }
    }
    return slots;
  }

  /** Evicts the expired slots of `slots` and returns the others. */
  private async evictExpired(slots: IdleSlot[], doomed: string[]): Promise<IdleSlot[]> {
    const now = this.clock.now();
    const kept: IdleSlot[] = [];
    for (const slot of slots) {
      if (now - slot.state.pooledAt > this.bounds.idleTtlMs) await this.evict(slot, doomed);
      else kept.push(slot);
    }
    return kept;
  }

  /**
   * Takes a slot out of the pool by renaming it to `.evict-<random>` (so a concurrent claim gets it whole
   * or not at all) and adds that directory to `doomed`, deleted by the caller once the pool lock is free.
   */
  private async evict(slot: IdleSlot, doomed: string[]): Promise<void> {
    const target = path.join(this.root, slot.repoKey, `.evict-${randomBytes(8).toString('hex')}`);
    const taken = await rename(slot.dir, target).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return false;
        throw error;
      },
    );
    if (taken) doomed.push(target);
    this.logger?.debug({ repoKey: slot.repoKey, slot: slot.name }, 'worktree pool slot evicted');
  }

  private runDir(repoKey: string, runId: string): string {
    return path.join(this.root, repoKey, `.run-${runId}`);
  }
}

/** Deletes evicted slots (outside the pool lock: deleting a large tree takes a while). */
async function removeAll(dirs: readonly string[]): Promise<void> {
  for (const dir of dirs) await removeTree(dir);
}

async function readSlotState(dir: string): Promise<SlotState | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, SLOT_STATE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw error;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const state = parsed as Partial<SlotState>;
    if (state.version !== 1 || typeof state.pooledAt !== 'number' || typeof state.bytes !== 'number' || typeof state.baseSha !== 'string') return undefined;
    return { version: 1, baseSha: state.baseSha, pooledAt: state.pooledAt, bytes: state.bytes };
  } catch (error) {
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `Cannot list ${dir}`, { cause: error });
  }
}
