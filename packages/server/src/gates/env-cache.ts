/**
 * The environment cache: the plan's dependency installation (`environment.setup`) runs once per
 * repository, lockfile and setup command, and later runs get its result without running it again
 * (SPEC 8 "Dependencies", issue 11 item 1).
 *
 * An entry is `$AGENTGATE_HOME/env-cache/<key>/` with `meta.json`, `files/` and, for a setup that filled
 * the gates' sandbox home, `home/` ({@link HOME_CACHE_DIRS}). A `node` entry holds the
 * dependency directories (`node_modules`, at any depth) the setup produced in the workspace; a `python`
 * entry holds AgentGate's virtualenv of a run without the project itself (python-env.ts builds, keys and
 * links it; {@link MaterializeOptions.relocate} moves it to the next run's path). The node key hashes the
 * repository (its root commits), every manifest and lockfile of the workspace (`package.json`, `package-lock.json`,
 * `npm-shrinkwrap.json`, `pnpm-lock.yaml`, `yarn.lock`, `.npmrc`, `.yarnrc*`), the setup commands and the
 * platform: a changed lockfile is a different key, so it is a miss and a new entry.
 *
 * Only setups that are nothing but package-manager installs are cached ({@link cacheability}): a setup
 * that also builds, generates or installs the repository itself has effects outside `node_modules` that
 * a restored entry would not reproduce, so it keeps running every time.
 *
 * Materialising an entry links every file into the workspace (`cp -al`: new directories, hard-linked
 * files, symlinks recreated as they were — npm and pnpm only write relative ones); it falls back to
 * copying across file systems. Cached files are made read-only, so a tool writing into `node_modules` in
 * place fails instead of changing the entry; replacing or deleting files in the workspace never touches
 * it. The files' owner (every gate) can make one writable again and write through the link:
 * `materialize: 'copy'` is the mode for that (docs/gates.md "Environment cache" has the measurements).
 * How trees are placed without ever following a symlink is `env-tree.ts`.
 *
 * The cache is bounded: after each store, entries are evicted least recently used first until the total
 * size is within `maxBytes`.
 *
 * Kept in one file (over 400 lines) on purpose: the key, the cacheability rules, store/restore and eviction
 * guard one invariant — an entry is never written through a workspace and never served for another
 * lockfile — which should be checkable in one reading.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../util/clock.js';
import { findRunGit } from '../workspace/isolated-git.js';
import { gitQuery } from './git.js';
import { cloneTree, ownDirectoryPath, sealFile, sealTree, treeBytes, type MaterializeMode, type Relocation, type TreeStats } from './env-tree.js';

export type { MaterializeMode, Relocation } from './env-tree.js';

/** Bumped when the entry layout or the key's inputs change: old entries are then simply never hit. */
export const ENV_CACHE_VERSION = 1;

/** Default bound of the whole cache: room for a few large JavaScript projects. */
export const DEFAULT_ENV_CACHE_MAX_BYTES = 8 * 1024 * 1024 * 1024;

/** Directory names that hold installed dependencies, the only things an entry keeps. */
const DEPENDENCY_DIRS = new Set(['node_modules']);

/** Files whose content decides what an install produces. */
const KEY_FILES = new Set(['package.json', 'package-lock.json', 'npm-shrinkwrap.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml', 'yarn.lock', '.npmrc', '.yarnrc', '.yarnrc.yml']);

/** Lockfiles: without one an install is not reproducible, so it is not cached. */
const LOCKFILES = ['package-lock.json', 'npm-shrinkwrap.json', 'pnpm-lock.yaml', 'yarn.lock'];

/** Directories never searched for manifests. */
const SKIPPED_DIRS = new Set(['.git', 'node_modules', '.venv', 'venv', '.tox', '.nox', '__pycache__', 'dist', 'build', 'coverage']);

/** How deep manifests are searched (a monorepo's `packages/<name>/package.json` is depth 2). */
const MAX_MANIFEST_DEPTH = 4;

/**
 * `npm ci`, `npm install`, `pnpm install --frozen-lockfile`, `yarn`, `yarn install --immutable`… and nothing
 * else; pnpm and yarn also through `corepack` (what detection runs instead of `corepack enable`).
 */
const INSTALL_COMMAND = /^(?:npm\s+(?:ci|install|i)|(?:corepack\s+)?pnpm\s+(?:install|i)|(?:corepack\s+)?yarn(?:\s+install)?)(?:\s+--?[A-Za-z][A-Za-z0-9-]*(?:=[A-Za-z0-9._-]+)?)*$/;

/** Root lifecycle scripts an install runs: they may write anywhere in the workspace. */
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepublish', 'preprepare', 'prepare', 'postprepare'];

/** What an entry holds: `node_modules` directories of the workspace, or a Python virtualenv (python-env.ts). */
export type EnvKind = 'node' | 'python';

/** What a `python` entry needs to be used by another run (a virtualenv is not relocatable by itself). */
export interface PythonEntryInfo {
  /** The virtualenv's absolute path when it was stored: rewritten to the run's path when materialised. */
  prefix: string;
  /** The base interpreter the virtualenv was made from. */
  interpreter: string;
  /** Its version (`3.11.7`). */
  version: string;
  /** Worktree-relative project directories linked into each run's virtualenv instead of installed. */
  linked: string[];
}

export interface MaterializeOptions {
  relocate?: Relocation;
}

/**
 * Directories of a sandbox home that a setup fills and every later gate needs, relative to the home
 * (`XDG_CACHE_HOME` is `<home>/.cache` inside the sandbox): the package managers corepack downloads for
 * `corepack pnpm …` / `corepack yarn …` (`$XDG_CACHE_HOME/node/corepack/v1/<name>/<version>/`). A sandboxed
 * run starts with an empty home, so without them each run downloads its pinned pnpm again (~1.5 s here)
 * before its first gate. Only `v1/`, the installed versions: corepack's own state files beside it
 * (`lastKnownGood.json`) are written again by corepack and stay the run's.
 *
 * Stored as a copy (sealed in the entry), so the run that stored it keeps no inode of the entry; restored
 * like `node_modules`, hard-linked (or copied with `materialize: 'copy'`): ~1,100 files for a pnpm, which
 * copied one by one took up to 0.9 s of a loaded machine, more than the download saved. A gate that makes
 * a restored file writable again (it owns it) can change the entry through the link — the exposure every
 * hard-linked `node_modules` file, executables included, already has (docs/gates.md). Every directory on
 * the way, from the home down, must be a directory of its own (no symlink): the home is what the setup —
 * untrusted install scripts — left, and is read and written outside the sandbox.
 */
export const HOME_CACHE_DIRS: readonly string[] = ['.cache/node/corepack/v1'];

/** The most a home directory may hold to be kept (by the files' sizes). */
export const HOME_DIR_MAX_BYTES = 256 * 1024 * 1024;

export interface SetupStepLike {
  name: string;
  command: string;
}

export type Cacheability = { cacheable: true; lockfiles: string[] } | { cacheable: false; reason: string };

/** What the setup result says about the cache (the run record and `gate_checked` messages carry it). */
export type EnvCacheOutcome =
  | {
      status: 'hit';
      kind: EnvKind;
      key: string;
      materializeMs: number;
      mode: MaterializeMode;
      dirs: string[];
      /** Home directories put into the gates' sandbox home ({@link HOME_CACHE_DIRS}). */
      homeDirs?: string[];
      /** Why the entry's home directories could not be put there (the gates then fetch them again). */
      homeError?: string;
    }
  | { status: 'miss'; kind: EnvKind; key: string; stored: true; storeMs: number; dirs: string[]; evicted: string[] }
  | { status: 'miss'; kind: EnvKind; key: string; stored: false; reason: string }
  | { status: 'bypass'; kind: EnvKind; reason: string };

export interface EnvCacheEntryMeta {
  version: number;
  key: string;
  /** Entries written before kinds existed are `node`. */
  kind: EnvKind;
  /** The setup commands the entry was built with. */
  commands: string[];
  lockfiles: string[];
  /** Workspace-relative dependency directories kept under `files/`. */
  dirs: string[];
  /**
   * Directories of the gates' sandbox home the setup filled, kept under `home/` (home-relative): the
   * package managers corepack downloaded ({@link HOME_CACHE_DIRS}). Absent on entries stored without a
   * sandbox home, and on entries written before they were kept.
   */
  homeDirs?: string[];
  sizeBytes: number;
  fileCount: number;
  createdAt: string;
  lastUsedAt: string;
  /** Repository root commit(s), for `agentgate cache ls`. */
  repository: string;
  /** Only on `python` entries. */
  python?: PythonEntryInfo;
}

export interface EnvCacheOptions {
  /** `$AGENTGATE_HOME/env-cache`. */
  root: string;
  clock: Clock;
  maxBytes?: number;
  materialize?: MaterializeMode;
}

/**
 * Whether a setup plan may be cached: every step a package-manager install, a lockfile present, and no
 * root install script. Pure apart from reading the root package.json and checking for lockfiles.
 */
export async function cacheability(steps: readonly SetupStepLike[], worktreePath: string): Promise<Cacheability> {
  if (steps.length === 0) return { cacheable: false, reason: 'no setup steps' };
  const other = steps.find((s) => !INSTALL_COMMAND.test(s.command.trim()));
  if (other !== undefined) return { cacheable: false, reason: `setup step ${other.name} is not a package-manager install (${other.command})` };
  const lockfiles: string[] = [];
  for (const name of LOCKFILES) if (await isFile(path.join(worktreePath, name))) lockfiles.push(name);
  if (lockfiles.length === 0) return { cacheable: false, reason: 'no lockfile at the repository root' };
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(path.join(worktreePath, 'package.json'), 'utf8'));
  } catch {
    return { cacheable: false, reason: 'no readable package.json at the repository root' };
  }
  const scripts = isRecord(manifest) && isRecord(manifest.scripts) ? manifest.scripts : {};
  const script = INSTALL_SCRIPTS.find((name) => typeof scripts[name] === 'string');
  if (script !== undefined) return { cacheable: false, reason: `package.json has a ${script} script, which may write outside node_modules` };
  return { cacheable: true, lockfiles };
}

/**
 * The entry key: the repository (root commits of the base), every manifest and lockfile in the workspace
 * as it is now (the agent may have changed them), the setup commands, the platform and Node's ABI.
 */
export async function environmentKey(input: { worktreePath: string; baseSha: string; steps: readonly SetupStepLike[]; signal: AbortSignal; clock: Clock }): Promise<{ key: string; repository: string }> {
  return computeEnvironmentKey({
    ...input,
    kind: 'node',
    platform: `${process.platform}-${process.arch}-node-abi-${process.versions.modules}`,
    files: await findKeyFiles(input.worktreePath, (_relative, name) => KEY_FILES.has(name)),
  });
}

/**
 * A key of either kind: the layout version, the kind, the repository (root commits of `baseSha`), the
 * platform, the setup commands and the content of `files` (worktree-relative, read now; a missing one
 * counts as missing).
 */
export async function computeEnvironmentKey(input: {
  kind: EnvKind;
  worktreePath: string;
  baseSha: string;
  steps: readonly SetupStepLike[];
  platform: string;
  files: readonly string[];
  signal: AbortSignal;
  clock: Clock;
}): Promise<{ key: string; repository: string }> {
  // Through AgentGate's own git directory of the run: the agent's `.git` (its `shallow` file, grafts,
  // replace refs) must not choose the repository a setup is stored under. A directory that is not a run
  // workspace (tests, tools) is asked directly.
  const isolated = await findRunGit(input.worktreePath);
  const stdout = await gitQuery(['rev-list', '--max-parents=0', input.baseSha], { cwd: input.worktreePath, signal: input.signal, clock: input.clock, ...(isolated !== undefined && { isolated }) });
  const roots = stdout.split('\n').map((line) => line.trim()).filter((line) => line !== '').sort();
  const repository = roots.join(',');
  const hash = createHash('sha256');
  const part = (label: string, value: string | Buffer): void => {
    hash.update(`${label}\0${String(Buffer.byteLength(value))}\0`);
    hash.update(value);
  };
  part('version', String(ENV_CACHE_VERSION));
  // Node keys predate kinds: leaving the kind out of them keeps their entries valid.
  if (input.kind !== 'node') part('kind', input.kind);
  part('repository', repository);
  part('platform', input.platform);
  for (const step of input.steps) part('command', step.command.trim());
  for (const file of [...new Set(input.files)].sort()) {
    let content: Buffer | string;
    try {
      content = await readFile(path.join(input.worktreePath, file));
    } catch (error) {
      // A file a command names that does not exist: the install fails the same way every time.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      content = '\0missing';
    }
    part(`file:${file}`, content);
  }
  return { key: hash.digest('hex').slice(0, 32), repository };
}

/** Files for which `wanted(relativePath, name)` holds, workspace-relative, sorted (up to four directories deep). */
export async function findKeyFiles(worktreePath: string, wanted: (relative: string, name: string) => boolean): Promise<string[]> {
  const found: string[] = [];
  const walk = async (relative: string, depth: number): Promise<void> => {
    const entries = await readdir(path.join(worktreePath, relative), { withFileTypes: true });
    for (const entry of entries) {
      const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isFile() && wanted(child, entry.name)) found.push(child);
      else if (entry.isDirectory() && depth < MAX_MANIFEST_DEPTH && !SKIPPED_DIRS.has(entry.name)) await walk(child, depth + 1);
    }
  };
  await walk('', 0);
  return found.sort();
}

/** Workspace-relative dependency directories (not nested inside another one), sorted. */
export async function findDependencyDirs(worktreePath: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (relative: string, depth: number): Promise<void> => {
    const entries = await readdir(path.join(worktreePath, relative), { withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (DEPENDENCY_DIRS.has(entry.name)) found.push(child);
      else if (depth < MAX_MANIFEST_DEPTH && !SKIPPED_DIRS.has(entry.name)) await walk(child, depth + 1);
    }
  };
  await walk('', 0);
  return found.sort();
}

/** A home-relative directory as an entry keeps it: relative, normalised, never leaving the home. */
function safeHomeDir(dir: string): string {
  if (!isEntryRelative(dir)) throw new RangeError(`not a directory inside the home: ${JSON.stringify(dir)}`);
  return dir;
}

export class EnvCache {
  readonly root: string;
  readonly maxBytes: number;
  readonly mode: MaterializeMode;
  private readonly clock: Clock;

  constructor(options: EnvCacheOptions) {
    this.root = path.resolve(options.root);
    this.clock = options.clock;
    this.maxBytes = options.maxBytes ?? DEFAULT_ENV_CACHE_MAX_BYTES;
    this.mode = options.materialize ?? 'hardlink';
    if (!Number.isFinite(this.maxBytes) || this.maxBytes < 0) throw new RangeError(`maxBytes must be a non-negative number, got ${String(options.maxBytes)}`);
  }

  private entryDir(key: string): string {
    if (!/^[0-9a-f]{8,64}$/.test(key)) throw new RangeError(`not an environment cache key: ${key}`);
    return path.join(this.root, key);
  }

  /** The entry of `key`, or undefined (absent, incomplete or of another layout version). */
  async get(key: string): Promise<EnvCacheEntryMeta | undefined> {
    const meta = await readMeta(path.join(this.entryDir(key), 'meta.json'));
    return meta !== undefined && meta.version === ENV_CACHE_VERSION && meta.key === key ? meta : undefined;
  }

  /** Every complete entry, most recently used first. */
  async list(): Promise<EnvCacheEntryMeta[]> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const entries: EnvCacheEntryMeta[] = [];
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const meta = await readMeta(path.join(this.root, name, 'meta.json'));
      if (meta !== undefined && meta.key === name) entries.push(meta);
    }
    return entries.sort((a, b) => b.lastUsedAt.localeCompare(a.lastUsedAt));
  }

  /**
   * Puts the entry's dependency directories into the workspace, replacing what is there (as the install
   * it stands for would), and marks the entry used.
   */
  async materialize(meta: EnvCacheEntryMeta, worktreePath: string, options: MaterializeOptions = {}): Promise<void> {
    const files = path.join(this.entryDir(meta.key), 'files');
    for (const dir of meta.dirs) {
      // The agent shaped the workspace: a symlink on the way to `dir` (`pkg` → anywhere) would have the
      // removal and the links below happen wherever it points, outside the workspace. Each directory on
      // the way must be the workspace's own; a link or file in the way is replaced by one.
      const parent = path.posix.dirname(dir);
      const under = parent === '.' ? worktreePath : await ownDirectoryPath(worktreePath, parent, 'make');
      if (under === undefined) throw new Error(`no directory ${parent} in ${worktreePath}`);
      const target = path.join(under, path.posix.basename(dir));
      await rm(target, { recursive: true, force: true });
      await cloneTree(path.join(files, dir), target, { mode: this.mode, stats: { sizeBytes: 0, fileCount: 0 }, relative: dir, ...(options.relocate === undefined ? {} : { relocate: options.relocate }) });
    }
    await this.touch(meta);
  }

  /**
   * Puts the entry's {@link EnvCacheEntryMeta.homeDirs} into `home` (the run's gate sandbox home), linked
   * like `node_modules`. A symlink or a file on the way down from `home` is removed (only the link, never
   * what it names) and replaced by a directory, so nothing is written outside `home`. Returns the
   * directories put.
   */
  async restoreHome(meta: EnvCacheEntryMeta, home: string): Promise<string[]> {
    const restored: string[] = [];
    for (const dir of meta.homeDirs ?? []) {
      const relative = safeHomeDir(dir);
      const target = await ownDirectoryPath(home, relative, 'make');
      if (target === undefined) continue;
      // Placed beside it and renamed into place: a restore that fails half-way leaves no partial tree,
      // which corepack would take for an installed version (it looks for one marker file).
      const staging = `${target}.restoring-${randomBytes(6).toString('hex')}`;
      try {
        await cloneTree(path.join(this.entryDir(meta.key), 'home', relative), staging, { mode: this.mode, stats: { sizeBytes: 0, fileCount: 0 } });
        await rm(target, { recursive: true, force: true });
        await rename(staging, target);
      } catch (error) {
        await rm(staging, { recursive: true, force: true });
        throw error;
      }
      restored.push(relative);
    }
    return restored;
  }

  /**
   * Stores the workspace's dependency directories `dirs` as the entry `key`, then evicts beyond the bound.
   * Concurrent stores of one key are harmless: the first rename wins, the other copy is dropped.
   */
  async store(input: {
    key: string;
    repository: string;
    commands: string[];
    lockfiles: string[];
    dirs: string[];
    worktreePath: string;
    /** Default `node`. */
    kind?: EnvKind;
    python?: PythonEntryInfo;
    /** Files (absolute paths) under `dirs` that are not part of the entry. */
    skip?: ReadonlySet<string>;
    /** The gates' sandbox home and which of its directories (home-relative, those that exist) to keep. */
    home?: { path: string; dirs: readonly string[] };
  }): Promise<{ meta: EnvCacheEntryMeta; evicted: string[] }> {
    const final = this.entryDir(input.key);
    await mkdir(this.root, { recursive: true });
    const staging = path.join(this.root, `.staging-${input.key}-${randomBytes(6).toString('hex')}`);
    try {
      const stats: TreeStats = { sizeBytes: 0, fileCount: 0 };
      for (const dir of input.dirs) {
        // The workspace's files are sealed first, so the entry's inodes (shared with the workspace) are read-only too.
        await cloneTree(path.join(input.worktreePath, dir), path.join(staging, 'files', dir), { mode: 'hardlink', stats, onFile: sealFile, ...(input.skip === undefined ? {} : { skip: input.skip }) });
      }
      // Copied, then sealed in the entry (see HOME_CACHE_DIRS). A directory the setup did not create (no
      // corepack call), or one reached through a symlink, is not kept.
      const homeDirs: string[] = [];
      if (input.home !== undefined) {
        for (const dir of input.home.dirs.map(safeHomeDir)) {
          const source = await ownDirectoryPath(input.home.path, dir, 'find');
          // Corepack's versions are a few megabytes; a setup that filled the directory with more (sparse
          // files count at their full size) does not get it copied into the cache.
          if (source === undefined || (await treeBytes(source)) > HOME_DIR_MAX_BYTES) continue;
          const kept = path.join(staging, 'home', dir);
          await cloneTree(source, kept, { mode: 'copy', stats });
          await sealTree(kept);
          homeDirs.push(dir);
        }
      }
      const now = new Date(this.clock.now()).toISOString();
      const meta: EnvCacheEntryMeta = {
        version: ENV_CACHE_VERSION,
        key: input.key,
        kind: input.kind ?? 'node',
        commands: input.commands,
        lockfiles: input.lockfiles,
        dirs: input.dirs,
        ...(homeDirs.length === 0 ? {} : { homeDirs }),
        sizeBytes: stats.sizeBytes,
        fileCount: stats.fileCount,
        createdAt: now,
        lastUsedAt: now,
        repository: input.repository,
        ...(input.python === undefined ? {} : { python: input.python }),
      };
      await writeFile(path.join(staging, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
      try {
        await rename(staging, final);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      }
      const evicted = await this.prune({ maxBytes: this.maxBytes, keep: input.key });
      return { meta, evicted };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /**
   * Evicts entries, least recently used first, until the total is within `maxBytes` (`0` empties the
   * cache); `keep` is never evicted (the entry a run just stored). Also removes abandoned staging dirs.
   * Returns the evicted keys.
   */
  async prune(options: { maxBytes?: number; keep?: string } = {}): Promise<string[]> {
    const maxBytes = options.maxBytes ?? this.maxBytes;
    const entries = await this.list();
    let total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
    const evicted: string[] = [];
    for (const entry of [...entries].reverse()) {
      if (total <= maxBytes) break;
      if (entry.key === options.keep) continue;
      await this.remove(entry.key);
      total -= entry.sizeBytes;
      evicted.push(entry.key);
    }
    return evicted;
  }

  /** Removes one entry; its meta goes first, so a half-removed entry is never hit. */
  async remove(key: string): Promise<void> {
    const dir = this.entryDir(key);
    const doomed = path.join(this.root, `.removing-${key}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(dir, doomed);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  private async touch(meta: EnvCacheEntryMeta): Promise<void> {
    const file = path.join(this.entryDir(meta.key), 'meta.json');
    const updated: EnvCacheEntryMeta = { ...meta, lastUsedAt: new Date(this.clock.now()).toISOString() };
    const temp = `${file}.${randomBytes(4).toString('hex')}`;
    await writeFile(temp, `${JSON.stringify(updated, null, 2)}\n`);
    await rename(temp, file);
    const when = new Date(this.clock.now());
    await utimes(file, when, when);
  }
}

async function readMeta(file: string): Promise<EnvCacheEntryMeta | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // A torn or hand-edited meta.json: the entry is treated as absent and replaced by the next store.
    return undefined;
  }
  if (!isRecord(value)) return undefined;
  const { version, key, commands, lockfiles, dirs, homeDirs, sizeBytes, fileCount, createdAt, lastUsedAt, repository, kind, python } = value;
  if (typeof version !== 'number' || typeof key !== 'string' || typeof sizeBytes !== 'number' || typeof fileCount !== 'number') return undefined;
  if (typeof createdAt !== 'string' || typeof lastUsedAt !== 'string' || typeof repository !== 'string') return undefined;
  if (!isStringArray(commands) || !isStringArray(lockfiles) || !isStringArray(dirs)) return undefined;
  // Entry directories are workspace-relative: anything escaping the workspace is not an entry of ours.
  // (An empty or `.` entry would name the workspace itself, which materialising replaces.)
  if (!dirs.every(isEntryRelative)) return undefined;
  // Home directories likewise stay strictly inside the home they are put into.
  if (homeDirs !== undefined && (!isStringArray(homeDirs) || !homeDirs.every(isEntryRelative))) return undefined;
  const entryKind: EnvKind | undefined = kind === undefined || kind === 'node' ? 'node' : kind === 'python' ? 'python' : undefined;
  if (entryKind === undefined) return undefined;
  const base = { version, key, kind: entryKind, commands, lockfiles, dirs, ...(homeDirs === undefined ? {} : { homeDirs }), sizeBytes, fileCount, createdAt, lastUsedAt, repository };
  if (entryKind === 'node') return base;
  // A python entry is unusable without where it was built (relocation) and what to link.
  if (!isRecord(python)) return undefined;
  const { prefix, interpreter, version: pythonVersion, linked } = python;
  if (typeof prefix !== 'string' || !path.isAbsolute(prefix) || typeof interpreter !== 'string' || typeof pythonVersion !== 'string' || !isStringArray(linked)) return undefined;
  if (linked.some((d) => path.isAbsolute(d) || d.split('/').includes('..'))) return undefined;
  return { ...base, python: { prefix, interpreter, version: pythonVersion, linked } };
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/** A relative path an entry may name: not absolute, not empty or `.`, no `..`, already normalised. */
function isEntryRelative(dir: string): boolean {
  return dir !== '' && !path.posix.isAbsolute(dir) && path.posix.normalize(dir) === dir && dir !== '.' && !dir.split('/').includes('..');
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
