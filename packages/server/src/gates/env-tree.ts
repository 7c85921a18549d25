/**
 * Directory trees placed for the environment cache (env-cache.ts): recreated file by file — hard-linked or
 * copied, symlinks recreated and never followed, eight files at a time — sealed against in-place writes,
 * measured, and reached only through directories that are their own. Everything here runs outside the
 * sandbox on trees that untrusted install scripts or an agent shaped, so no symlink is ever followed: not
 * inside a tree (recreated as a link) and not on the way to it ({@link ownDirectoryPath}).
 */
import type { Dirent } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

export type MaterializeMode = 'hardlink' | 'copy';

/**
 * While materialising, files selected by `files` (and symlinks) that name `from` are copied with `from`
 * replaced by `to` instead of being linked: virtualenv scripts carry their interpreter's absolute path
 * in the shebang, and `pyvenv.cfg` and `activate` name the directory.
 */
export interface Relocation {
  from: string;
  to: string;
  /** Entry-relative path (e.g. `venv/bin/pytest`) → whether to look into it. */
  files: (relative: string) => boolean;
}

/** Files larger than this are never searched for a path to relocate (compiled tools in `bin/`). */
const RELOCATE_MAX_BYTES = 1024 * 1024;

export interface TreeStats {
  sizeBytes: number;
  fileCount: number;
}

interface CloneOptions {
  mode: MaterializeMode;
  stats: TreeStats;
  /** Bounds the files placed at once across the whole tree (made by {@link cloneTree} when absent). */
  limit?: Limit;
  /** Sees each source file once, before it is placed. */
  onFile?: (file: string) => Promise<void>;
  /** Source files (absolute paths) left out. */
  skip?: ReadonlySet<string>;
  /** Relocation, with `relative` the path of `from` inside the entry (see {@link Relocation}). */
  relocate?: Relocation;
  relative?: string;
}

/**
 * Recreates the tree `from` at `to`: directories created, files hard-linked (or copied: `mode`, or a
 * different file system), symlinks recreated with the same target — except what `relocate` rewrites.
 */
export async function cloneTree(from: string, to: string, options: CloneOptions): Promise<void> {
  const limit = options.limit ?? limiter(CLONE_CONCURRENCY);
  await mkdir(to, { recursive: true });
  const entries: Dirent[] = await readdir(from, { withFileTypes: true });
  // Each file is a few system calls that wait on the disk: several at once (bounded for the whole tree)
  // instead of one after another. A directory's own files are placed after the directory was made. Every
  // entry settles before the first failure is thrown, so nothing is still writing when a caller cleans up.
  const settled = await Promise.allSettled(
    entries.map(async (entry) => {
      const source = path.join(from, entry.name);
      const target = path.join(to, entry.name);
      const relative = options.relative === undefined ? entry.name : `${options.relative}/${entry.name}`;
      if (options.skip?.has(source) === true) return;
      if (entry.isDirectory()) {
        await cloneTree(source, target, { ...options, relative, limit });
      } else if (entry.isSymbolicLink()) {
        await limit(async () => {
          const linkTarget = await readlink(source);
          const moved = options.relocate !== undefined && isInsideOrSame(linkTarget, options.relocate.from) ? options.relocate.to + linkTarget.slice(options.relocate.from.length) : linkTarget;
          await symlink(moved, target);
        });
      } else if (entry.isFile()) {
        await limit(async () => {
          if (options.onFile !== undefined) await options.onFile(source);
          const { size, mode } = await lstat(source);
          options.stats.fileCount += 1;
          options.stats.sizeBytes += size;
          if (options.relocate !== undefined && size <= RELOCATE_MAX_BYTES && options.relocate.files(relative) && (await relocateFile(source, target, mode, options.relocate))) return;
          await placeFile(source, target, options.mode);
        });
      }
      // Sockets, FIFOs and devices have no place in an installed dependency tree: not kept.
    }),
  );
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Files placed at once by one {@link cloneTree} (libuv runs four file-system calls at a time by default). */
const CLONE_CONCURRENCY = 8;

type Limit = (task: () => Promise<void>) => Promise<void>;

/** Runs at most `max` of the tasks given to it at once, the others in the order they came. */
function limiter(max: number): Limit {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    // A finished task hands its slot to the next waiting one, so no newcomer slips in between.
    if (running >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    else running += 1;
    try {
      await task();
    } finally {
      const next = waiting.shift();
      if (next === undefined) running -= 1;
      else next();
    }
  };
}

/** Writes `source` to `target` with `from` replaced by `to` when it names `from`; false (nothing written) when it does not. */
async function relocateFile(source: string, target: string, mode: number, relocation: Relocation): Promise<boolean> {
  const content = await readFile(source);
  const needle = Buffer.from(relocation.from);
  if (content.indexOf(needle) === -1) return false;
  const parts: Buffer[] = [];
  let at = 0;
  for (let found = content.indexOf(needle, at); found !== -1; found = content.indexOf(needle, at)) {
    parts.push(content.subarray(at, found), Buffer.from(relocation.to));
    at = found + needle.length;
  }
  parts.push(content.subarray(at));
  await writeFile(target, Buffer.concat(parts), { mode: mode & 0o7777 });
  // writeFile's mode is filtered by the umask; the entry's (sealed, executable) mode is what counts.
  await chmod(target, mode & 0o7777);
  return true;
}

function isInsideOrSame(candidate: string, root: string): boolean {
  return candidate === root || candidate.startsWith(`${root}/`);
}

async function placeFile(source: string, target: string, mode: MaterializeMode): Promise<void> {
  if (mode === 'hardlink') {
    try {
      await link(source, target);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // EXDEV: another file system; EPERM/EMLINK: links refused or the inode's link count is full.
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw error;
    }
  }
  // EXCL: targets are always new (their directory was just made), so an existing one — a link someone
  // placed — fails the copy instead of being written through.
  await copyFile(source, target, fsConstants.COPYFILE_FICLONE | fsConstants.COPYFILE_EXCL);
}

/** Removes every write bit of a file: an in-place write through a hard link then fails (unless root). */
export async function sealFile(file: string): Promise<void> {
  const { mode } = await lstat(file);
  if ((mode & 0o222) !== 0) await chmod(file, mode & 0o7555);
}

/**
 * `root/relative`, when every directory on the way down from `root` is a directory of its own — a symlink
 * is never followed. `find`: undefined when one is missing, a symlink or not a directory. `make`: a
 * missing one is created, and a symlink or anything else in the way is removed first (the link itself,
 * not what it names).
 */
export async function ownDirectoryPath(root: string, relative: string, mode: 'find' | 'make'): Promise<string | undefined> {
  let at = root;
  for (const part of relative.split('/')) {
    at = path.join(at, part);
    let kind: 'dir' | 'other' | 'missing';
    try {
      kind = (await lstat(at)).isDirectory() ? 'dir' : 'other';
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      kind = 'missing';
    }
    if (kind === 'dir') continue;
    if (mode === 'find') return undefined;
    if (kind === 'other') await rm(at, { force: true });
    await mkdir(at);
  }
  return at;
}

/** The sizes of the regular files below `dir` added up (symlinks not followed). */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await treeBytes(child);
    else if (entry.isFile()) total += (await lstat(child)).size;
  }
  return total;
}

/** Removes every write bit of every file below `dir` (the entry's own copies). */
export async function sealTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) await sealTree(child);
    else if (entry.isFile()) await sealFile(child);
  }
}
