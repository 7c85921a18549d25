/**
 * What AgentGate knows about the files of a worktree it may reuse: a manifest of every path of the base
 * commit (files, symlinks, directories, submodule directories) with the file status AgentGate saw right
 * after it made the worktree equal to that commit itself.
 *
 * Why a status comparison can prove that a file is unchanged: the key of an entry holds the inode, mode,
 * owner, link count, size, mtime **and ctime** (nanoseconds). Every change of a file — its content
 * (`write`, `truncate`, a shared `mmap` write), its mode, owner, extended attributes or ACL, a new hard link,
 * a rename, a `utimes` that puts the mtime back — sets its ctime to the current time, and no system call
 * sets a ctime to a chosen value (only changing the system clock, which needs `CAP_SYS_TIME`, could). A
 * file whose key is still the recorded one has therefore not been touched since it was recorded, so it
 * still holds the bytes AgentGate recorded. A directory whose key is unchanged has gained or lost no entry
 * (creating, removing or renaming an entry sets the directory's ctime too) and kept its metadata.
 *
 * The one gap is time resolution: a change in the same clock tick as the recording could leave the ctime
 * equal. {@link recordManifest} closes it as git closes its "racy clean" entries: after recording it makes a
 * timestamp of its own on the same file system and waits (a few milliseconds at most) until that timestamp
 * is newer than every recorded ctime (by {@link CTIME_MARGIN_MS}); an entry it cannot prove older is
 * recorded as {@link UNTRUSTED}, which never matches. A later change then has a ctime newer than any
 * recorded one: file-system timestamps never go backwards (multigrain timestamps included) unless the
 * system clock is stepped back.
 *
 * This relies on ctime being a real change time, which holds on the local Linux file systems listed in
 * {@link POOL_FILESYSTEMS}; elsewhere (network and FUSE file systems, whose attributes are cached or
 * synthesised) the pool is not used.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, rmdirSync, type Dirent, type Stats } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentGateError } from '../errors.js';

/** Kinds of manifest entries: regular file, symlink, directory, submodule (gitlink) directory. */
export const EntryKind = { File: 'f', Symlink: 'l', Directory: 'd', Gitlink: 'g' } as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export interface ManifestEntry {
  readonly kind: EntryKind;
  /** {@link statKey} of the entry when AgentGate last verified it, or {@link UNTRUSTED}. */
  readonly key: string;
}

/** The key of an entry AgentGate could not prove unchanged: it matches no file status. */
export const UNTRUSTED = '-';

/** Directory kinds: a gitlink path is an (empty) directory in a checkout. */
export function isDirectoryKind(kind: EntryKind): boolean {
  return kind === EntryKind.Directory || kind === EntryKind.Gitlink;
}

/**
 * Everything a change of the entry would change, ctime included. Times are Node's millisecond floats,
 * exact to about 0.25 µs at today's dates (a float64 ulp); {@link settle} keeps every recorded ctime at
 * least {@link CTIME_MARGIN_MS} older than any later change, so two different times never print alike.
 * (`bigint` stats are exact too, but twice as slow and twice the garbage on 20,000 files.)
 */
export function statKey(stats: Stats): string {
  return `${stats.dev}.${stats.ino}.${stats.mode}.${stats.uid}.${stats.gid}.${stats.nlink}.${stats.size}.${stats.mtimeMs}.${stats.ctimeMs}`;
}

/** How much older than the file system's "now" every trusted ctime is when recorded: 1 µs. */
export const CTIME_MARGIN_MS = 0.001;

/** Whether the file status `stats` is the one recorded in `entry` (same kind, same key). */
export function matchesEntry(entry: ManifestEntry, stats: Stats): boolean {
  if (entry.key === UNTRUSTED) return false;
  const kindMatches = entry.kind === EntryKind.File ? stats.isFile() : entry.kind === EntryKind.Symlink ? stats.isSymbolicLink() : stats.isDirectory();
  return kindMatches && statKey(stats) === entry.key;
}

const MANIFEST_HEADER = '#agentgate-worktree-manifest 1';

/** The entries of a worktree by path (`/`-separated, relative to the worktree; the root itself is not an entry). */
export class TreeManifest {
  constructor(readonly entries: ReadonlyMap<string, ManifestEntry>) {}

  /** The entry of `name` inside the directory `dir` (`''` for the root). */
  child(dir: string, name: string): ManifestEntry | undefined {
    return this.entries.get(joinRelative(dir, name));
  }

  /** NUL-separated records `<kind> <key>\t<path>` (paths may hold any byte but NUL). */
  serialize(): string {
    const records = [MANIFEST_HEADER];
    for (const [relative, entry] of this.entries) records.push(`${entry.kind} ${entry.key}\t${relative}`);
    return `${records.join('\0')}\0`;
  }

  /** @throws AG_ERR_WORKSPACE_SETUP for anything that is not a manifest this version wrote. */
  static parse(text: string): TreeManifest {
    const records = text.split('\0');
    if (records[0] !== MANIFEST_HEADER || records.at(-1) !== '') {
      throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', 'The worktree manifest is not one this AgentGate version wrote');
    }
    const entries = new Map<string, ManifestEntry>();
    for (const record of records.slice(1, -1)) {
      const tab = record.indexOf('\t');
      const kind = record[0];
      if (tab < 3 || record[1] !== ' ' || !isEntryKind(kind)) throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', 'The worktree manifest holds a malformed record');
      entries.set(record.slice(tab + 1), { kind, key: record.slice(2, tab) });
    }
    return new TreeManifest(entries);
  }
}

function isEntryKind(value: string | undefined): value is EntryKind {
  return value === 'f' || value === 'l' || value === 'd' || value === 'g';
}

export function joinRelative(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/**
 * Counts file-system calls and says when to yield to the event loop (every few hundred): walking 20,000
 * files must not stall a server. `if (pace.due()) await pace.yield()` — an `await` per entry would cost
 * more than the `lstat` it paces.
 */
export class Pace {
  private count = 0;

  constructor(private readonly every = 512) {}

  due(): boolean {
    this.count += 1;
    return this.count % this.every === 0;
  }

  yield(): Promise<void> {
    return new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** `lstat`; undefined when the path does not exist. */
export function lstatExact(file: string): Stats | undefined {
  return lstatSync(file, { throwIfNoEntry: false });
}

/**
 * `readdir` of a directory the agent may have made unreadable (`chmod 000`): on EACCES/EPERM the owner's
 * permissions are restored first. Only for directories that are being emptied or rebuilt.
 */
export function readdirRepairing(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw error;
  }
  chmodSync(dir, 0o700);
  return readdirSync(dir, { withFileTypes: true });
}

/**
 * Magic numbers (`statfs` f_type, see statfs(2)) of the file systems whose ctime is kept by the kernel
 * itself for every change: ext2/3/4, XFS, Btrfs, tmpfs, overlayfs (containers), ZFS, F2FS, bcachefs.
 */
export const POOL_FILESYSTEMS: ReadonlyMap<number, string> = new Map([
  [0xef53, 'ext4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs'],
  [0x794c7630, 'overlayfs'],
  [0x2fc12fc1, 'zfs'],
  [0xf2f52010, 'f2fs'],
  [0xca451a4e, 'bcachefs'],
]);

/** The file system of `dir` when the pool may be used on it, else undefined (with the magic number). */
export async function poolFilesystem(dir: string): Promise<{ supported: true; name: string } | { supported: false; type: number }> {
  const { type } = await statfs(dir);
  const name = POOL_FILESYSTEMS.get(Number(type));
  return name === undefined ? { supported: false, type: Number(type) } : { supported: true, name };
}

/** The permission bits git gives what it checks out under the current umask. */
interface CheckoutPermissions {
  dir: number;
  file: number;
  executable: number;
}

/**
 * Makes a directory of AgentGate's inside `dir` and returns its ctime (the file system's "now") and the
 * permissions a new directory gets under the current umask. Removed again at once.
 */
export function fileSystemNow(dir: string): { ctimeMs: number; permissions: CheckoutPermissions } {
  const stamp = path.join(dir, `.stamp-${randomBytes(6).toString('hex')}`);
  mkdirSync(stamp);
  try {
    const stats = lstatSync(stamp);
    const dirBits = stats.mode & 0o777;
    return { ctimeMs: stats.ctimeMs, permissions: { dir: dirBits, file: dirBits & 0o666, executable: dirBits } };
  } finally {
    rmdirSync(stamp);
  }
}

/** One tracked path of the checkout (from `git ls-files --stage`). */
interface TrackedPath {
  kind: EntryKind;
  executable: boolean;
}

/**
 * The tracked paths of `git ls-files -z --stage` output, plus every directory above them.
 *
 * @throws AG_ERR_WORKSPACE_SETUP for an entry git would not check out as a plain path.
 */
export function trackedPaths(lsFilesStage: string): Map<string, TrackedPath> {
  const tracked = new Map<string, TrackedPath>();
  for (const record of lsFilesStage.split('\0')) {
    if (record === '') continue;
    const tab = record.indexOf('\t');
    const mode = record.slice(0, 6);
    const relative = record.slice(tab + 1);
    const kind = mode === '120000' ? EntryKind.Symlink : mode === '160000' ? EntryKind.Gitlink : mode === '100644' || mode === '100755' ? EntryKind.File : undefined;
    if (tab < 0 || kind === undefined || relative === '' || relative.split('/').some((part) => part === '' || part === '.' || part === '..' || part === '.git')) {
      throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `Unexpected index entry ${JSON.stringify(record.slice(0, 200))}`);
    }
    tracked.set(relative, { kind, executable: mode === '100755' });
    for (let slash = relative.lastIndexOf('/'); slash > 0; slash = relative.lastIndexOf('/', slash - 1)) {
      const dir = relative.slice(0, slash);
      if (tracked.has(dir)) break;
      tracked.set(dir, { kind: EntryKind.Directory, executable: false });
    }
  }
  return tracked;
}

export interface RecordOptions {
  /** The checked-out worktree. */
  root: string;
  /** `git ls-files -z --stage` of AgentGate's index after the checkout. */
  lsFilesStage: string;
  /** A directory of AgentGate's on the same file system (for timestamps); the sandbox never shows it. */
  stampDir: string;
  /** How many times to wait 1 ms for the file system's clock to pass the newest recorded ctime (default 25). */
  settleAttempts?: number;
}

/**
 * Records the manifest of a worktree AgentGate has just made equal to its base commit, and checks that it
 * is exactly that: every tracked path present with its kind, nothing else but the root's `.git` (empty
 * directories git left behind are removed), permissions those of a fresh checkout (corrected when not).
 *
 * @throws AG_ERR_WORKSPACE_SETUP when the worktree holds anything else.
 */
export async function recordManifest(options: RecordOptions): Promise<TreeManifest> {
  const { root, stampDir } = options;
  const tracked = trackedPaths(options.lsFilesStage);
  const { permissions } = fileSystemNow(stampDir);
  const recorded = new Map<string, ManifestEntry>();
  const ctimes = new Map<string, number>();
  const pace = new Pace();

  const walk = async (dir: string, absolute: string): Promise<void> => {
    for (const dirent of readdirSync(absolute, { withFileTypes: true })) {
      if (pace.due()) await pace.yield();
      if (dir === '' && dirent.name === '.git') continue;
      const relative = joinRelative(dir, dirent.name);
      const file = `${absolute}/${dirent.name}`;
      const want = tracked.get(relative);
      if (want === undefined) {
        if (!removeEmptyDirectories(file)) throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The checkout holds an unexpected entry ${JSON.stringify(relative)}`);
        continue;
      }
      let stats = lstatSync(file);
      const directory = isDirectoryKind(want.kind);
      const kindMatches = directory ? stats.isDirectory() : want.kind === EntryKind.Symlink ? stats.isSymbolicLink() : stats.isFile();
      if (!kindMatches) throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The checkout holds ${JSON.stringify(relative)} as the wrong kind of file`);
      const mode = stats.mode;
      if (want.kind !== EntryKind.Symlink) {
        const expected = directory ? permissions.dir : want.executable ? permissions.executable : permissions.file;
        const actual = directory ? mode & 0o5777 : mode & 0o7777;
        if (actual !== expected) {
          // Keeps an inherited setgid bit of directories, as mkdir would.
          chmodSync(file, expected | (directory ? mode & 0o2000 : 0));
          stats = lstatSync(file);
        }
      }
      recorded.set(relative, { kind: want.kind, key: statKey(stats) });
      ctimes.set(relative, stats.ctimeMs);
      if (directory) await walk(relative, file);
    }
  };
  await walk('', root);
  if (recorded.size !== tracked.size) {
    const missing = [...tracked.keys()].filter((relative) => !recorded.has(relative)).slice(0, 5);
    throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The checkout lacks ${tracked.size - recorded.size} tracked path(s): ${missing.map((m) => JSON.stringify(m)).join(', ')}`);
  }
  return new TreeManifest(await settle(recorded, ctimes, stampDir, options.settleAttempts ?? 25));
}

/**
 * Re-records the entries `paths` of `manifest` from their current status (AgentGate changed them itself,
 * knowing what they hold), with the same racy-timestamp rule as {@link recordManifest}.
 */
export async function rerecordEntries(manifest: TreeManifest, root: string, paths: readonly string[], stampDir: string): Promise<TreeManifest> {
  const updated = new Map(manifest.entries);
  const ctimes = new Map<string, number>();
  for (const relative of paths) {
    const entry = manifest.entries.get(relative);
    const stats = lstatExact(path.join(root, relative));
    if (entry === undefined) continue;
    if (stats === undefined) {
      updated.delete(relative);
      continue;
    }
    updated.set(relative, { kind: entry.kind, key: statKey(stats) });
    ctimes.set(relative, stats.ctimeMs);
  }
  return new TreeManifest(await settle(updated, ctimes, stampDir, 25));
}

/**
 * Waits until the file system's clock is at least {@link CTIME_MARGIN_MS} past every ctime in `ctimes`:
 * a later change then gets a ctime that differs from each recorded one. Entries it never gets that far
 * past (a clock that stands still, a ctime in the future) become {@link UNTRUSTED}. See the module comment.
 */
async function settle(entries: Map<string, ManifestEntry>, ctimes: ReadonlyMap<string, number>, stampDir: string, attempts: number): Promise<Map<string, ManifestEntry>> {
  let newest = 0;
  for (const ctime of ctimes.values()) if (ctime > newest) newest = ctime;
  let now = fileSystemNow(stampDir).ctimeMs;
  for (let attempt = 0; now - newest < CTIME_MARGIN_MS && attempt < attempts; attempt += 1) {
    await sleep(1);
    now = fileSystemNow(stampDir).ctimeMs;
  }
  if (now - newest >= CTIME_MARGIN_MS) return entries;
  for (const [relative, ctime] of ctimes) {
    const entry = entries.get(relative);
    if (entry !== undefined && now - ctime < CTIME_MARGIN_MS) entries.set(relative, { kind: entry.kind, key: UNTRUSTED });
  }
  return entries;
}

/** Removes `dir` when it holds nothing but (recursively) empty directories; false (nothing removed) otherwise. */
function removeEmptyDirectories(dir: string): boolean {
  const stats = lstatSync(dir);
  if (!stats.isDirectory()) return false;
  for (const dirent of readdirSync(dir, { withFileTypes: true })) {
    if (!dirent.isDirectory() || !removeEmptyDirectories(path.join(dir, dirent.name))) return false;
  }
  rmdirSync(dir);
  return true;
}
