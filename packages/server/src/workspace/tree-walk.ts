/**
 * Looking at the agent's work tree without git and without following a symlink: which submodule
 * directories hold anything, which paths have a symlink among their parent directories, and the files
 * below a directory whose content git never lists (a submodule's, a nested repository's).
 *
 * These run as AgentGate, outside the sandbox, on a tree the agent wrote: only directory listings and
 * `lstat` (no file is opened or read), every path component is checked to be a real directory before a
 * directory is listed, symlinks are reported as entries and never descended into, and a listing is bounded
 * in entries and depth. (A process of the agent's still running could swap a directory for a symlink
 * between the check and the listing; what leaks then is the names in a directory elsewhere, never content.)
 */
import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

/** Most entries {@link walkFiles} lists below one directory before it gives up (`complete: false`). */
export const WALK_MAX_ENTRIES = 20_000;
/** Deepest directory level below the walked one that {@link walkFiles} lists. */
export const WALK_MAX_DEPTH = 64;

/** Errors that mean "not there (any more)": the path, or one of its parents, is gone or is not a directory. */
function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Errors that mean "cannot be listed": no permission (the agent may `chmod 000` a directory), too long, a loop. */
function isUnreadable(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM' || code === 'ENAMETOOLONG' || code === 'ELOOP';
}

/**
 * What `relative` (below `root`, `/`-separated) is: `directory` when it and every parent below `root` are
 * real directories (none a symlink), `symlinked` when a parent is a symlink, `other` otherwise (missing,
 * a file, or itself a symlink).
 */
export async function directoryKind(root: string, relative: string): Promise<'directory' | 'symlinked' | 'other'> {
  const parts = relative.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const info = await lstat(path.join(root, ...parts.slice(0, i))).catch((error: unknown) => {
      if (isGone(error)) return undefined;
      throw error;
    });
    if (info === undefined) return 'other';
    if (info.isSymbolicLink()) return i < parts.length ? 'symlinked' : 'other';
    if (!info.isDirectory()) return 'other';
  }
  return 'directory';
}

/**
 * Which of `dirs` (relative to `root`) are real directories — no symlink in the path — with at least one
 * entry. A submodule is checked out as an empty directory, so a populated one holds what someone put there
 * afterwards. A submodule path below a symlink is not one any more (git records the symlink; what lies
 * behind it is captured under its own path).
 */
export async function populatedDirectories(root: string, dirs: readonly string[]): Promise<string[]> {
  const found = await Promise.all(
    dirs.map(async (dir) => {
      if ((await directoryKind(root, dir)) !== 'directory') return undefined;
      const entries = await readdir(path.join(root, dir)).catch((error: unknown) => {
        if (isGone(error)) return [];
        throw error;
      });
      return entries.length > 0 ? dir : undefined;
    }),
  );
  return found.filter((dir): dir is string => dir !== undefined);
}

/**
 * Which of `paths` (relative to `root`) have a symlink among their parent directories in the work tree.
 * git refuses such a path ("beyond a symbolic link") in a pathspec and in `update-index --remove`.
 */
export async function behindSymlinks(root: string, paths: readonly string[]): Promise<string[]> {
  const kinds = await Promise.all(paths.map(async (entry) => ((await directoryKind(root, entry)) === 'symlinked' ? entry : undefined)));
  return kinds.filter((entry): entry is string => entry !== undefined);
}

export interface WalkResult {
  /** Paths (relative to `root`, `/`-separated, sorted) of every non-directory entry `keep` accepted. */
  files: string[];
  /**
   * False when the walk stopped short: more than `maxEntries` entries, a level deeper than `maxDepth`, a
   * directory it may not read, or a path too long. What it did not see may hold anything.
   */
  complete: boolean;
}

export interface WalkOptions {
  /** Keeps a file (`<dir>/<relative path>`); only kept files are returned. */
  keep: (file: string) => boolean;
  maxEntries?: number;
  maxDepth?: number;
}

/**
 * Every entry below `dir` (relative to `root`) that is not a directory — files, symlinks (never followed),
 * anything else — named `<dir>/<relative path>`, that `options.keep` accepts. Entries named `.git` (a
 * repository's own directory, or the file pointing to it) are skipped at every level, as git skips them:
 * no repository can track a path there, and git lists none of them for the top-level work tree either. A
 * `dir` that is not a real directory (missing, or below a symlink) has no files.
 */
export async function walkFiles(root: string, dir: string, options: WalkOptions): Promise<WalkResult> {
  const maxEntries = options.maxEntries ?? WALK_MAX_ENTRIES;
  const maxDepth = options.maxDepth ?? WALK_MAX_DEPTH;
  const files: string[] = [];
  const stopped = (): WalkResult => ({ files: files.sort(), complete: false });
  try {
    if ((await directoryKind(root, dir)) !== 'directory') return { files, complete: true };
  } catch (error) {
    if (isUnreadable(error)) return stopped();
    throw error;
  }
  let seen = 0;
  const pending: Array<{ relative: string; depth: number }> = [{ relative: dir, depth: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(root, next.relative), { withFileTypes: true });
    } catch (error) {
      if (isGone(error)) continue;
      if (isUnreadable(error)) return stopped();
      throw error;
    }
    seen += entries.length;
    if (seen > maxEntries) return stopped();
    for (const entry of entries) {
      if (entry.name === '.git') continue;
      const relative = `${next.relative}/${entry.name}`;
      // The entry's type comes from the listing (lstat where the file system does not say): a symlink to a
      // directory is a symlink here, so it is matched as an entry and never followed.
      if (entry.isDirectory()) {
        if (next.depth + 1 > maxDepth) return stopped();
        pending.push({ relative, depth: next.depth + 1 });
      } else if (options.keep(relative)) {
        files.push(relative);
      }
    }
  }
  return { files: files.sort(), complete: true };
}
