/**
 * Symlinks as a way to protected files. Git records a symlink under its own name (mode 120000) and the
 * files it points to under theirs, but a test command follows it: with `test/link -> ../spec`, `node --test
 * test/` or pytest runs `spec/planted.test.js` as `test/link/planted.test.js`, a path `test/**\/*.test.js`
 * matches and no git query of the tamper check ever lists. So a symlink the agent added or changed counts
 * as tampering wherever a protected pattern could match a path below it, were it a directory
 * (`couldMatchBelow` of `hidden-files.ts`); one a pattern matches itself is reported as a protected file.
 *
 * Every symlink is taken for a possible directory, its target never read or followed: a link to a file
 * (`test/helper.js -> ../lib/helper.js` under `test/**\/*.test.js`) counts as well, because what it points
 * to can become a directory without the link changing (an unprotected path, changed later, on the
 * delivered branch or by a command that runs before the tests). Symlinks of the base commit that the agent
 * left alone are not its doing and do not count.
 *
 * Where the check looks, without a git process of its own (the listings are those of the check, some
 * with wider pathspecs):
 * - every entry added or changed in the snapshot (its tree against the base; or, without a snapshot, the
 *   work tree against the base and every untracked, non-ignored file), checked with `lstat` in the work
 *   tree, which the snapshot was taken from (the snapshot phase's list of changes carries no file modes,
 *   and asking git for them would cost a process);
 * - below each glob pattern's literal directory ({@link reachPathspecs}: `test/` of `test/**\/*.test.js`),
 *   tracked paths changed after the snapshot and files the snapshot does not hold (ignored by rules the
 *   agent wrote, or made later), as for protected files; the base commit's ignore rules decide as for them;
 * - the directories leading to a pattern's literal directory, that directory included, with `lstat`
 *   ({@link symlinkedAncestors}: `test` itself replaced by a link);
 * - below submodule paths and nested repositories, the entries `hidden-files.ts` lists.
 *
 * A path the snapshot added or changed that changed type or was deleted after the snapshot may be a
 * symlink in the snapshot, which only another git process could tell: it counts (`symlink: 'maybe'`), as
 * does an entry `lstat` may not look at. Not seen: symlinks kept out of the snapshot, or made or changed
 * after it, for a pattern without a literal directory (`**\/*.test.js`): listing every ignored file of the
 * work tree (`node_modules` …) after each snapshot would cost too much.
 */
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { directoryKind } from '../workspace/tree-walk.js';
import type { ChangedFile } from './changed-files.js';
import { escapeGlob, patternDirectory, type ReachTest } from './hidden-files.js';

/**
 * Pathspecs of every path below each glob pattern's literal directory (`:(glob)test/**` for
 * `test/**\/*.test.js`), where the check lists changes after the snapshot and files it does not hold. None
 * for a pattern that can match anywhere, nor for a plain path (only its directories lead to it:
 * {@link symlinkedAncestors}).
 */
export function reachPathspecs(patterns: readonly string[]): string[] {
  const specs = new Set<string>();
  for (const pattern of patterns) {
    if (!picomatch.scan(pattern).isGlob) continue;
    const dir = patternDirectory(pattern);
    if (dir !== undefined && dir !== '') specs.add(`:(glob)${escapeGlob(dir)}/**`);
  }
  return [...specs];
}

/**
 * The directories leading to each pattern's literal directory, that directory included (`test` for
 * `test/**\/*.test.js`; `spec` and `spec/a` for `spec/a/b.txt`), that are symlinks in the work tree: no
 * pathspec below them reaches them. Each chain stops at its first symlink, or at anything that is not a
 * directory. A few `lstat` calls, no git.
 */
export async function symlinkedAncestors(workTree: string, patterns: readonly string[]): Promise<string[]> {
  const dirs = new Set(patterns.map(patternDirectory).filter((dir): dir is string => dir !== undefined && dir !== ''));
  const found = await Promise.all(
    [...dirs].map(async (dir) => {
      const parts = dir.split('/');
      for (let i = 1; i <= parts.length; i++) {
        const prefix = parts.slice(0, i).join('/');
        const info = await lstat(path.join(workTree, prefix)).catch(() => undefined);
        if (info?.isSymbolicLink() === true) return prefix;
        if (info?.isDirectory() !== true) return undefined;
      }
      return undefined;
    }),
  );
  return [...new Set(found.filter((dir): dir is string => dir !== undefined))].sort();
}

/** An entry the check listed, to be looked at as a possible symlink. */
export interface LinkCandidate {
  path: string;
  change: ChangedFile['change'];
  /** Not tracked in the snapshot (or, without one, ignored): counts only unless the base commit's ignore rules ignore it. */
  untracked?: boolean;
  /** The snapshot holds it as the agent made it, but it changed type or was deleted after the snapshot. */
  changedAfterSnapshot?: boolean;
}

/** A symlink (or possible one) a protected pattern could reach through: a {@link ChangedFile} with `protectedBy` and `symlink`. */
export type LinkFinding = ChangedFile & { protectedBy: string; symlink: 'yes' | 'maybe'; untracked: boolean };

/**
 * Which of `candidates` are symlinks in the work tree (or may be: see the module comment) at a path below
 * which a protected pattern could match and which none matches itself. Only `lstat`: a path whose parent
 * is not a real directory is no symlink here (git lists that parent).
 */
export async function agentSymlinks(workTree: string, reach: ReachTest, candidates: readonly LinkCandidate[]): Promise<LinkFinding[]> {
  const parents = new Map<string, Promise<boolean>>();
  const realParent = (dir: string): Promise<boolean> => {
    if (dir === '.') return Promise.resolve(true);
    let known = parents.get(dir);
    if (known === undefined) {
      known = directoryKind(workTree, dir).then((kind) => kind === 'directory');
      parents.set(dir, known);
    }
    return known;
  };
  const kind = async (file: string): Promise<'yes' | 'maybe' | undefined> => {
    try {
      if (!(await realParent(path.posix.dirname(file)))) return undefined;
      return (await lstat(path.join(workTree, file))).isSymbolicLink() ? 'yes' : undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Gone, or a parent is not a directory: nothing there. Anything else (a parent it may not search,
      // a path too long): it cannot tell.
      return code === 'ENOENT' || code === 'ENOTDIR' ? undefined : 'maybe';
    }
  };
  const seen = new Set<string>();
  const found = await Promise.all(
    candidates.map(async (candidate): Promise<LinkFinding | undefined> => {
      if (candidate.change === 'deleted' || candidate.path.endsWith('/') || seen.has(candidate.path)) return undefined;
      seen.add(candidate.path);
      const protectedBy = reach.below(candidate.path);
      if (protectedBy === undefined) return undefined;
      const symlink = (await kind(candidate.path)) ?? (candidate.changedAfterSnapshot === true ? 'maybe' : undefined);
      return symlink === undefined ? undefined : { path: candidate.path, change: candidate.change, protectedBy, symlink, untracked: candidate.untracked === true };
    }),
  );
  return found.filter((entry): entry is LinkFinding => entry !== undefined);
}

/** The gate's wording for a symlink finding: the message's part after "the agent ", and the diagnostic. */
export function describeSymlink(file: ChangedFile, why: string): { summary: string; detail: string } {
  const verb = file.change === 'added' ? 'added' : 'changed';
  if (file.symlink === 'maybe') {
    return {
      summary: `${verb} ${file.path}, which may be a symlink where protected files (${why}) could be reached through it (the work tree no longer shows what the snapshot holds there, or cannot be inspected)`,
      detail: `may be a symlink the agent ${verb} where protected files could be reached through it (${why}); restore the base commit's version`,
    };
  }
  return {
    summary: `${verb} a symlink ${file.path} where protected files (${why}) could be reached through it`,
    detail: `symlink ${verb} where protected files could be reached through it (${why}): a command following it runs or reads files no protected pattern checks; remove it or restore the base commit's version`,
  };
}
