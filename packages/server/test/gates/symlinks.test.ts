/**
 * The rule of `gates/symlinks.ts`: a symlink the agent added or changed counts as tampering where a protected
 * pattern could match below it, were it a directory. Its pieces without git; whole checks and runs are in
 * `test/security/symlink-tamper.test.ts`.
 */
import { chmod, mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reachTest } from '../../src/gates/hidden-files.js';
import { agentSymlinks, describeSymlink, reachPathspecs, symlinkedAncestors } from '../../src/gates/symlinks.js';
import { TempDirs } from '../workspace/helpers.js';

describe('reachPathspecs', () => {
  it('covers what lies below each glob pattern’s literal directory; nothing for a plain path or a pattern that matches anywhere', () => {
    expect(reachPathspecs(['test/**/*.test.js', 'test/**', 'spec/unit/*.py', 'verify.yaml', '.agentgate/verify.yaml', '**/*.test.js', '!src/**', 'we[i]rd/**'])).toEqual([
      ':(glob)test/**',
      ':(glob)spec/unit/**',
    ]);
    expect(reachPathspecs(['dir[x]/sub/*.js'])).toEqual([]);
    expect(reachPathspecs(['a*b/c/**'])).toEqual([]);
    expect(reachPathspecs(['lit[e]ral/x*/**'])).toEqual([]);
    expect(reachPathspecs(['odd?name/**'])).toEqual([]);
  });
});

describe('the work tree', () => {
  const temp = new TempDirs();
  let root: string;
  const put = async (file: string): Promise<void> => {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await writeFile(path.join(root, file), 'x\n');
  };
  const link = async (target: string, file: string): Promise<void> => {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await symlink(target, path.join(root, file));
  };

  beforeEach(async () => {
    root = await realpath(await temp.make('agentgate-symlinks-'));
  });
  afterEach(() => temp.cleanup());

  it('symlinkedAncestors: a link on the way to a pattern’s literal directory, that directory included, and no further', async () => {
    await put('spec/x.js');
    await link('spec', 'test');
    await put('packages/app/real/x.js');
    await link('real', 'packages/app/tests');
    await put('fixtures/a/b.txt');
    await link('../elsewhere', 'deep/a');
    await put('elsewhere/b/c/keep');
    expect(await symlinkedAncestors(root, ['test/**/*.test.js', 'packages/app/tests/unit/**', 'fixtures/a/b.txt', 'deep/a/b/c/**', '**/*.js', 'verify.yaml', 'missing/dir/**'])).toEqual([
      'deep/a',
      'packages/app/tests',
      'test',
    ]);
  });

  it('agentSymlinks: added or changed links below which a pattern could match, not deleted entries, links a pattern matches or links no pattern reaches', async () => {
    await link('../spec', 'test/link');
    await link('../lib/helper.js', 'test/helper.js');
    await link('../../spec', 'test/new/deep/link');
    await link('../spec', 'test/linked.test.js');
    await link('../lib', 'docs/lib');
    await put('test/plain.js');
    await put('real/inner/x');
    await link('../real', 'test/via');
    await link('elsewhere', 'real/inner/sym');
    const reach = reachTest(['test/**/*.test.js']);
    const found = await agentSymlinks(root, reach, [
      { path: 'test/link', change: 'added' },
      { path: 'test/helper.js', change: 'modified' },
      { path: 'test/new/deep/link', change: 'added', untracked: true },
      { path: 'test/linked.test.js', change: 'added' },
      { path: 'docs/lib', change: 'added' },
      { path: 'test/plain.js', change: 'added' },
      { path: 'test/gone', change: 'deleted' },
      // Behind a symlinked parent: git lists the parent, which is what counts.
      { path: 'test/via/inner/sym', change: 'added' },
      { path: 'test/link', change: 'modified' },
      { path: 'test/nothing', change: 'added' },
    ]);
    expect(found).toEqual([
      { path: 'test/link', change: 'added', protectedBy: 'test/**/*.test.js', symlink: 'yes', untracked: false },
      { path: 'test/helper.js', change: 'modified', protectedBy: 'test/**/*.test.js', symlink: 'yes', untracked: false },
      { path: 'test/new/deep/link', change: 'added', protectedBy: 'test/**/*.test.js', symlink: 'yes', untracked: true },
    ]);
  });

  it('agentSymlinks: an entry the snapshot holds that changed type or went away since may be a link, and so may one it cannot inspect', async () => {
    await put('test/now-a-file');
    const found = await agentSymlinks(root, reachTest(['test/**/*.test.js']), [
      { path: 'test/now-a-file', change: 'added', changedAfterSnapshot: true },
      { path: 'test/gone', change: 'added', changedAfterSnapshot: true },
      { path: 'test/unchanged-file', change: 'added' },
    ]);
    expect(found.map((f) => [f.path, f.symlink])).toEqual([
      ['test/now-a-file', 'maybe'],
      ['test/gone', 'maybe'],
    ]);
    // test/** matches these itself: reported as protected files, never as links.
    expect(await agentSymlinks(root, reachTest(['test/**']), [{ path: 'test/gone', change: 'added', changedAfterSnapshot: true }])).toEqual([]);
  });

  it.skipIf(process.getuid?.() === 0)('agentSymlinks: a directory it may not search hides nothing', async () => {
    await link('../../spec', 'test/locked/link');
    await chmod(path.join(root, 'test', 'locked'), 0o000);
    try {
      expect(await agentSymlinks(root, reachTest(['test/**/*.test.js']), [{ path: 'test/locked/link', change: 'added' }])).toMatchObject([{ path: 'test/locked/link', symlink: 'maybe' }]);
    } finally {
      await chmod(path.join(root, 'test', 'locked'), 0o755);
    }
  });
});

describe('describeSymlink', () => {
  it('words the message and the diagnostic', () => {
    expect(describeSymlink({ path: 'test/link', change: 'added', symlink: 'yes' }, 'protectedPaths: test/**/*.test.js')).toEqual({
      summary: 'added a symlink test/link where protected files (protectedPaths: test/**/*.test.js) could be reached through it',
      detail: "symlink added where protected files could be reached through it (protectedPaths: test/**/*.test.js): a command following it runs or reads files no protected pattern checks; remove it or restore the base commit's version",
    });
    expect(describeSymlink({ path: 'test/link', change: 'modified', symlink: 'yes' }, 'x').summary).toBe('changed a symlink test/link where protected files (x) could be reached through it');
    expect(describeSymlink({ path: 'test/link', change: 'added', symlink: 'maybe' }, 'x').summary).toMatch(/^added test\/link, which may be a symlink where protected files \(x\) could be reached through it \(/);
  });
});
