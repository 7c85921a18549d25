/**
 * The pieces of the tamper check that look below directories git lists nothing inside (submodule paths,
 * nested repositories): which patterns could match there, where git is asked for nested repositories, and
 * the bounded, symlink-blind listing of the work tree (`workspace/tree-walk.ts`).
 */
import { mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { couldMatchBelow, hiddenProtectedFiles, nestedAncestors, nestedRepositoryPathspecs, reachTest } from '../../src/gates/hidden-files.js';
import { behindSymlinks, directoryKind, populatedDirectories, walkFiles } from '../../src/workspace/tree-walk.js';
import { TempDirs } from '../workspace/helpers.js';

describe('couldMatchBelow', () => {
  it.each([
    ['test/**/*.test.js', 'test/suite', true],
    ['**/*.test.js', 'vendor/lib', true],
    ['test/suite/*', 'test/suite', true],
    ['test/*/unit/*.js', 'test/suite', true],
    ['t*/s*/**', 'test/suite', true],
    ['{test,spec}/**', 'test/suite', true],
    ['!src/**', 'test/suite', true],
    ['test/suite/fixture.json', 'test/suite', true],
    ['test/suite', 'test/suite', false],
    ['test/*', 'test/suite', false],
    ['test/*.test.js', 'test/suite', false],
    ['src/**/*.test.js', 'test/suite', false],
    ['test/suite-other/**', 'test/suite', false],
    ['test/suite-other.json', 'test/suite', false],
    // Brace and extglob syntax can span segments: only the literal part before them is compared (conservative).
    ['{src,lib}/**', 'test/suite', true],
    ['src/{a,b}/**', 'test/suite', false],
  ])('%s below %s: %s', (pattern, dir, expected) => {
    expect(couldMatchBelow(pattern, dir)).toBe(expected);
  });
});

describe('reachTest', () => {
  it('tells a path a pattern matches from one below which a pattern could match, were it a directory', () => {
    const reach = reachTest(['test/**/*.test.js', 'verify.yaml', '.agentgate/verify.yaml', 'fixtures/[1].txt']);
    expect(['test/a.test.js', 'verify.yaml', 'fixtures/[1].txt', 'test/link', 'test/helper.js'].map(reach.matches)).toEqual([true, true, true, false, false]);
    expect(reach.below('test/a.test.js')).toBeUndefined();
    expect(reach.below('test/link')).toBe('test/**/*.test.js');
    // A file name no pattern matches: taken for a directory, test/helper.js/x.test.js would match.
    expect(reach.below('test/helper.js')).toBe('test/**/*.test.js');
    expect(reach.below('test')).toBe('test/**/*.test.js');
    expect(reach.below('.agentgate')).toBe('.agentgate/verify.yaml');
    expect(reach.below('fixtures')).toBe('fixtures/[1].txt');
    expect(reach.below('src/link')).toBeUndefined();
    expect(reach.below('docs')).toBeUndefined();
  });
});

describe('nestedRepositoryPathspecs', () => {
  it('asks for directories only, at and below the directory of each pattern’s literal part', () => {
    expect(nestedRepositoryPathspecs(['verify.yaml', '.agentgate/verify.yaml', 'test/**', 'test/unit/*.js', 'spec/a/b.txt'])).toEqual([
      ':(glob).agentgate/**/',
      ':(glob)test/**/',
      ':(glob)test/unit/**/',
      ':(glob)spec/a/**/',
    ]);
    expect(nestedRepositoryPathspecs(['**/*.test.js', 'test/**'])).toEqual([':(glob)**/', ':(glob)test/**/']);
    expect(nestedRepositoryPathspecs(['[ts]est/x.js', 'verify.yaml'])).toEqual([':(glob)**/']);
  });
});

describe('the work tree without git', () => {
  const temp = new TempDirs();
  let root: string;
  const put = async (file: string, content = 'x\n'): Promise<void> => {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await writeFile(path.join(root, file), content);
  };

  beforeEach(async () => {
    root = await realpath(await temp.make('agentgate-tree-walk-'));
  });
  afterEach(() => temp.cleanup());

  it('tells real directories from paths behind a symlink', async () => {
    await put('real/sub/file');
    await symlink('real', path.join(root, 'link'));
    expect(await directoryKind(root, 'real/sub')).toBe('directory');
    expect(await directoryKind(root, 'link/sub')).toBe('symlinked');
    expect(await directoryKind(root, 'link')).toBe('other');
    expect(await directoryKind(root, 'real/sub/file')).toBe('other');
    expect(await directoryKind(root, 'real/missing/x')).toBe('other');
    expect(await behindSymlinks(root, ['real/sub', 'link/sub', 'link/sub/deeper', 'missing/x'])).toEqual(['link/sub', 'link/sub/deeper']);
    expect(await populatedDirectories(root, ['real', 'link/sub', 'link', 'real/sub/file', 'missing'])).toEqual(['real']);
  });

  it('lists every non-directory entry below a directory, skipping .git and following no symlink', async () => {
    await put('sub/a.test.js');
    await put('sub/deep/er/b.test.js');
    await put('sub/.git/c.test.js');
    await put('sub/inner/.git', 'gitdir: elsewhere\n');
    await put('sub/inner/d.test.js');
    await put('outside/e.test.js');
    await symlink('../outside', path.join(root, 'sub', 'dirlink'));
    await symlink('../outside/e.test.js', path.join(root, 'sub', 'f.test.js'));
    expect(await walkFiles(root, 'sub', { keep: () => true })).toEqual({
      files: ['sub/a.test.js', 'sub/deep/er/b.test.js', 'sub/dirlink', 'sub/f.test.js', 'sub/inner/d.test.js'],
      complete: true,
    });
    expect(await walkFiles(root, 'sub', { keep: (file) => file.endsWith('.test.js') })).toMatchObject({ files: ['sub/a.test.js', 'sub/deep/er/b.test.js', 'sub/f.test.js', 'sub/inner/d.test.js'] });
    await symlink('sub', path.join(root, 'via'));
    expect(await walkFiles(root, 'via/deep', { keep: () => true })).toEqual({ files: [], complete: true });
    expect(await walkFiles(root, 'missing', { keep: () => true })).toEqual({ files: [], complete: true });
  });

  it('stops at its bounds and says so', async () => {
    for (let i = 0; i < 6; i++) await put(`sub/f${i}`);
    await put('deep/a/b/c/d');
    expect(await walkFiles(root, 'sub', { keep: () => true, maxEntries: 5 })).toMatchObject({ complete: false });
    expect(await walkFiles(root, 'sub', { keep: () => true, maxEntries: 6 })).toMatchObject({ complete: true });
    expect(await walkFiles(root, 'deep', { keep: () => true, maxDepth: 2 })).toMatchObject({ complete: false });
    expect(await walkFiles(root, 'deep', { keep: () => true, maxDepth: 3 })).toEqual({ files: ['deep/a/b/c/d'], complete: true });
  });

  it('nestedAncestors: a repository above the directory of a pattern', async () => {
    await put('test/.git/HEAD');
    await put('spec/a/.git', 'gitdir: elsewhere\n');
    await put('deep/x/.git/HEAD');
    expect((await nestedAncestors(root, ['test/unit/**', 'spec/a/b/c.txt', 'deep/x/**', 'verify.yaml', '**/*.js'])).sort()).toEqual(['spec/a/', 'test/']);
  });

  it('hiddenProtectedFiles: named directories, matched files, and directories it could not list whole', async () => {
    await put('test/named/x');
    await put('test/suite/planted.test.js');
    await put('test/suite/notes.md');
    await put('test/nested/n.test.js');
    await put('test/big/a/b/c/d.txt');
    const found = await hiddenProtectedFiles({
      workTree: root,
      patterns: ['test/named', 'test/**/*.test.js'],
      gitlinks: ['test/named', 'test/suite', 'test/big', 'vendor/lib'],
      nested: ['test/nested/'],
      limits: { maxDepth: 2 },
    });
    expect(found).toEqual({
      submodules: [{ path: 'test/named', change: 'modified' }],
      files: ['test/suite/planted.test.js', 'test/nested/n.test.js'],
      unlisted: [{ path: 'test/big', change: 'modified', protectedBy: 'test/**/*.test.js' }],
      // A symlink there would be a way to protected files: `symlinks.ts` looks at these.
      reachable: ['test/suite/notes.md'],
    });
  });
});
