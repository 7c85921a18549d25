/**
 * Protected files that no git query of the tamper check lists: those below a directory whose content git
 * never looks at.
 *
 * - A **submodule** (gitlink) path of the base commit. AgentGate checks it out as an empty directory, git
 *   lists nothing below a gitlink path, and no git command may run inside it (it would run with the config
 *   and filters of a repository the agent made there: `DIFF_OPTIONS` of `workspace/isolated-git.ts`).
 * - A **nested repository** (a directory with its own `.git`) that is not in the base commit: `git ls-files
 *   --others` lists it as `dir/` and nothing below it, and no snapshot holds it.
 *
 * A protected pattern that matches the directory itself (`test/**` for `test/suite`) already names it:
 * a populated submodule directory counts as modified, a nested repository as added. A pattern that only
 * matches files below it (`test/**\/*.test.js`, `**\/*.test.js`, `test/suite/*`) needs the files: the
 * directory is walked without git (`workspace/tree-walk.ts`: `lstat`-level listings, no symlink followed,
 * `.git` entries skipped as git skips them, bounded in entries and depth) and every file is matched with
 * the check's own matcher. A directory too large or too deep to list, or unreadable, counts as tampering
 * whenever a protected pattern could match a path below it. The other entries it lists at paths a pattern
 * could reach into are returned too: a symlink among them counts as tampering (`symlinks.ts`).
 */
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { readBaseGitlinks } from '../workspace/isolated-git.js';
import { directoryKind, populatedDirectories, walkFiles, type WalkOptions } from '../workspace/tree-walk.js';
import type { ChangedFile } from './changed-files.js';
import { gitQuery, parseLsTree, type GitQueryOptions } from './git.js';

/** The tamper check's matcher of a protected pattern (also used on the paths git reports). */
export function protectedMatcher(pattern: string): (file: string) => boolean {
  return picomatch(pattern, { dot: true });
}

/**
 * Whether `pattern` could match some path strictly below the directory `dir` (conservative: true whenever
 * that is not plainly impossible). A pattern without glob syntax is a path; otherwise its segments are
 * matched against those of `dir` one by one, a `**` anywhere meaning anything; brace and extglob syntax,
 * which can span segments, only compare the literal part before the first glob character.
 */
export function couldMatchBelow(pattern: string, dir: string): boolean {
  return belowMatcher(pattern)(dir);
}

/** {@link couldMatchBelow} for one pattern, compiled once (it is asked about many paths). */
function belowMatcher(pattern: string): (dir: string) => boolean {
  const scan = picomatch.scan(pattern);
  if (scan.negated || scan.negatedExtglob) return () => true;
  if (!scan.isGlob) return (dir) => pattern.startsWith(`${dir}/`);
  if (/[{}()\\]/.test(pattern) || scan.prefix !== '') {
    const base = scan.base;
    return (dir) => base === '' || `${dir}/`.startsWith(`${base}/`) || base.startsWith(`${dir}/`);
  }
  const segments = pattern.split('/').map((segment) => (segment.includes('**') ? 'any' : picomatch(segment, { dot: true })));
  return (dir) => {
    const parts = dir.split('/');
    for (const [i, part] of parts.entries()) {
      const segment = segments[i];
      if (segment === undefined) return false;
      if (segment === 'any') return true;
      if (!segment(part)) return false;
    }
    return segments.length > parts.length;
  };
}

/** How a set of protected patterns judges a path (see {@link reachTest}). */
export interface ReachTest {
  /** Whether a pattern matches the path itself (or names it exactly): it is then checked as a protected file. */
  matches(file: string): boolean;
  /**
   * A pattern that could match a path below `file` taken for a directory, when none matches `file` itself:
   * what a symlink there could reach (`symlinks.ts`). Undefined when none could.
   */
  below(file: string): string | undefined;
}

/** The patterns' matchers, compiled once: {@link protectedMatcher} and {@link couldMatchBelow}. */
export function reachTest(patterns: readonly string[]): ReachTest {
  const matchers = patterns.map(protectedMatcher);
  const belows = patterns.map((pattern) => ({ pattern, below: belowMatcher(pattern) }));
  const matches = (file: string): boolean => patterns.includes(file) || matchers.some((match) => match(file));
  return { matches, below: (file) => (matches(file) ? undefined : belows.find((entry) => entry.below(file))?.pattern) };
}

/** `*`, `?`, `[` and `\` escaped for a `:(glob)` pathspec. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\\]/g, (char) => `\\${char}`);
}

/**
 * The directory below which `pattern` can match, as far as its literal part tells: a glob's literal
 * leading directories (`test` for `test/**\/*.test.js`, `''` — anywhere — for `**\/*.test.js`), a plain
 * path's directory (`undefined` for a file at the top, which no nested repository can hold).
 */
export function patternDirectory(pattern: string): string | undefined {
  const scan = picomatch.scan(pattern);
  if (scan.negated || scan.prefix !== '') return '';
  if (scan.isGlob) return scan.base;
  const dir = path.posix.dirname(pattern);
  return dir === '.' ? undefined : dir;
}

/**
 * Pathspecs under which `git ls-files --others` lists the nested repositories a protected pattern could
 * reach into: `:(glob)<dir>/**\/` lists only directories — the `dir/` entries of nested repositories — at
 * or below `<dir>`, the pattern's {@link patternDirectory} (`**\/` for a pattern starting with a glob).
 * Git walks no more of the tree for them than the pattern's own pathspec makes it walk. A repository in a
 * directory above `<dir>` is found by {@link nestedAncestors}.
 */
export function nestedRepositoryPathspecs(patterns: readonly string[]): string[] {
  const specs = new Set<string>();
  for (const pattern of patterns) {
    const dir = patternDirectory(pattern);
    if (dir !== undefined) specs.add(dir === '' ? ':(glob)**/' : `:(glob)${escapeGlob(dir)}/**/`);
  }
  return [...specs];
}

/**
 * The directories above each pattern's {@link patternDirectory} (`test` for `test/unit/**`) that hold a
 * `.git` of their own, as `dir/`: a nested repository there hides everything the pattern could match,
 * and no pathspec of {@link nestedRepositoryPathspecs} reaches it. A few `lstat` calls, no git.
 */
export async function nestedAncestors(workTree: string, patterns: readonly string[]): Promise<string[]> {
  const ancestors = new Set<string>();
  for (const pattern of patterns) {
    const parts = patternDirectory(pattern)?.split('/') ?? [];
    for (let i = 1; i < parts.length; i++) ancestors.add(parts.slice(0, i).join('/'));
  }
  const found = await Promise.all(
    [...ancestors].map(async (dir) => {
      // One it cannot even look at is no repository git would list either (its own queries fail there).
      if ((await directoryKind(workTree, dir).catch(() => 'other')) !== 'directory') return undefined;
      const dotGit = await lstat(path.join(workTree, dir, '.git')).catch(() => undefined);
      return dotGit === undefined ? undefined : `${dir}/`;
    }),
  );
  return found.filter((dir): dir is string => dir !== undefined);
}

/** A directory that could not be listed whole, with a protected pattern that could match below it. */
export interface UnlistedDirectory {
  path: string;
  change: ChangedFile['change'];
  protectedBy: string;
}

export interface HiddenFindings {
  /** Populated submodule directories a protected pattern matches themselves, as modified. */
  submodules: ChangedFile[];
  /** Files below submodule directories and nested repositories that a protected pattern matches. */
  files: string[];
  /** Directories too large, too deep or unreadable to list, below which a protected pattern could match. */
  unlisted: UnlistedDirectory[];
  /**
   * The other entries below them (no directory) that no pattern matches but below which one could, were
   * they a directory: a symlink among them is a way to protected files (`symlinks.ts` tells which are).
   */
  reachable: string[];
}

export interface HiddenInput {
  workTree: string;
  patterns: readonly string[];
  /** The base commit's gitlink (submodule) paths. */
  gitlinks: readonly string[];
  /** Nested repositories git listed, as `dir/`. */
  nested: readonly string[];
  /** Bounds of each walk (tests); default `workspace/tree-walk.ts`'s. */
  limits?: Pick<WalkOptions, 'maxEntries' | 'maxDepth'>;
}

/** See the module comment. Only file system calls: no git process. */
export async function hiddenProtectedFiles(input: HiddenInput): Promise<HiddenFindings> {
  const reach = reachTest(input.patterns);
  const { matches } = reach;
  const reaching = (dir: string): string | undefined => input.patterns.find((pattern) => couldMatchBelow(pattern, dir));
  const gitlinksNamed = input.gitlinks.filter((gitlink) => matches(gitlink));
  // A directory a pattern matches is reported as a whole (or, for a nested repository, already listed).
  const toWalk = [
    ...input.gitlinks.filter((gitlink) => !matches(gitlink)).map((dir) => ({ dir, reported: dir, change: 'modified' as const })),
    ...input.nested.filter((entry) => !matches(entry)).map((entry) => ({ dir: entry.replace(/\/$/, ''), reported: entry, change: 'added' as const })),
  ].flatMap((target) => {
    const protectedBy = reaching(target.dir);
    return protectedBy === undefined ? [] : [{ ...target, protectedBy }];
  });
  const [populated, walks] = await Promise.all([
    populatedDirectories(input.workTree, gitlinksNamed),
    Promise.all(toWalk.map(async (target) => ({ target, walk: await walkFiles(input.workTree, target.dir, { keep: (file) => matches(file) || reach.below(file) !== undefined, ...input.limits }) }))),
  ]);
  const listed = walks.flatMap(({ walk }) => walk.files);
  return {
    submodules: populated.map((dir): ChangedFile => ({ path: dir, change: 'modified' })),
    files: listed.filter(matches),
    unlisted: walks.filter(({ walk }) => !walk.complete).map(({ target }) => ({ path: target.reported, change: target.change, protectedBy: target.protectedBy })),
    reachable: listed.filter((file) => !matches(file)),
  };
}

/**
 * {@link hiddenProtectedFiles} of a tamper check: below the base commit's submodule paths and `nested` (the
 * nested repositories git listed, as `dir/`), in the work tree of `own` (AgentGate's git state).
 */
export async function hiddenFiles(baseSha: string, patterns: readonly string[], nested: readonly string[], own: GitQueryOptions): Promise<HiddenFindings> {
  if (patterns.length === 0 || own.isolated === undefined) return { submodules: [], files: [], unlisted: [], reachable: [] };
  const { gitDir, workTree } = own.isolated;
  // A run's git directory recorded them at creation; a scratch one (no run) asks the base commit.
  const gitlinks = (await readBaseGitlinks(gitDir)) ?? parseLsTree(await gitQuery(['ls-tree', '-r', '-z', '--full-tree', baseSha], own)).filter((entry) => entry.type === 'commit').map((entry) => entry.path);
  return hiddenProtectedFiles({ workTree, patterns, gitlinks, nested: [...new Set([...nested, ...(await nestedAncestors(workTree, patterns))])] });
}
