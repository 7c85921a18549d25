/**
 * Review findings on d50932f (submodule tamper fix), both failing before the fix:
 *
 * 1. A populated submodule directory counted as modified only when the submodule's own path matched a
 *    protected pattern. A file-glob pattern such as `test/**\/*.test.js` or `**\/*.test.js` does not match
 *    the directory `test/suite`, and git never lists files inside a gitlink path, so a test planted there
 *    passed the tamper check — while the same file in an ordinary directory was reported. The same held for
 *    a nested repository (a directory with its own `.git`, which git lists as `dir/` and nothing below).
 *    Now such directories are listed without git and their files matched against the protected patterns.
 * 2. Every base submodule still staged was excluded from `git add` by a literal pathspec and staged with
 *    `update-index`; both refuse a path "beyond a symbolic link", so an agent that replaced the directory
 *    holding a submodule with a symlink turned the snapshot into AG_ERR_PHASE_SNAPSHOT (a plain
 *    `git add --all`, as before the commit, recorded it). Now such a submodule is dropped from the index
 *    with `update-index --force-remove` first.
 */
import { chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GateResult } from '../../src/gates/types.js';
import { Snapshotter, type SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import { WALK_MAX_DEPTH } from '../../src/workspace/tree-walk.js';
import type { Workspace } from '../../src/workspace/types.js';
import { git, liveSignal } from '../workspace/helpers.js';
import { SUITE, addSubmodule, makeBaseRepo } from './submodule-repo.js';
import { openTamperWorkspace, protectedPathsGate, snapshotRef, takeSnapshot, writeAgentFile } from './tamper-check.js';

const PLANTED = `${SUITE}/planted.test.js`;

describe('a submodule below a protected glob', () => {
  let home: string;
  let repo: string;
  let ws: Workspace;
  let close: () => Promise<void>;

  beforeEach(async () => {
    ({ repo, home, ws, close } = await openTamperWorkspace('agentgate-submodule-glob-', async (dir) => {
      await makeBaseRepo(dir);
      await addSubmodule(dir);
    }));
  });

  afterEach(() => close());

  const snapshot = (): Promise<SnapshotOutcome> => new Snapshotter().snapshot({ workspace: ws, iteration: 1, artifactsDir: path.join(home, 'runs', ws.runId), signal: liveSignal() });
  /** The protected-paths gate after a snapshot (as the verify phase runs it), or against the work tree alone. */
  const tamper = async (pattern: string, mode: 'snapshot' | 'work tree'): Promise<GateResult> =>
    protectedPathsGate(ws, [pattern], mode === 'snapshot' ? snapshotRef(ws, await takeSnapshot(ws, home)) : undefined);
  const agentWrites = (file: string, content: string): Promise<void> => writeAgentFile(ws, file, content);
  /** A repository of the agent's in the submodule directory whose HEAD names the recorded commit. */
  const repositoryAtRecordedCommit = async (): Promise<void> => {
    const dir = path.join(ws.path, SUITE);
    git(dir, 'init', '--quiet');
    await copyFile(path.join(ws.path, '.git', 'objects', 'info', 'alternates'), path.join(dir, '.git', 'objects', 'info', 'alternates'));
    await writeFile(path.join(dir, '.git', 'HEAD'), `${git(repo, 'rev-parse', `HEAD:${SUITE}`)}\n`);
  };

  for (const pattern of ['test/**/*.test.js', '**/*.test.js', `${SUITE}/*`]) {
    it(`reports a test planted in the submodule directory (protectedPaths: ${pattern})`, async () => {
      await agentWrites(PLANTED, 'test("passes", () => {});\n');
      const gate = await tamper(pattern, 'snapshot');
      expect(gate).toMatchObject({ passed: false, message: `tamper: the agent added protected file ${PLANTED} (protectedPaths: ${pattern})` });
      expect((await tamper(pattern, 'work tree')).passed).toBe(false);
    });
  }

  it('reports a test planted next to a repository of the agent’s at the recorded commit, deep below the submodule path', async () => {
    await repositoryAtRecordedCommit();
    await agentWrites(`${SUITE}/unit/deep/planted.test.js`, 'test("passes", () => {});\n');
    const gate = await tamper('test/**/*.test.js', 'snapshot');
    expect(gate.diagnostics.map((d) => d.file)).toEqual([`${SUITE}/unit/deep/planted.test.js`]);
    expect((await tamper('test/**/*.test.js', 'work tree')).passed).toBe(false);
  });

  it('reports a symlink planted there by its own name, without following it', async () => {
    await agentWrites('spec/real.js', 'test("passes", () => {});\n');
    await symlink('../../spec/real.js', path.join(ws.path, PLANTED));
    expect((await tamper('**/*.test.js', 'snapshot')).diagnostics.map((d) => d.file)).toEqual([PLANTED]);
  });

  it('passes what the patterns do not match: other files, a repository’s own .git', async () => {
    await repositoryAtRecordedCommit();
    await agentWrites(`${SUITE}/README.md`, 'notes\n');
    // Nothing in a `.git` is a file of any repository; git lists none of it for the work tree either.
    await agentWrites(`${SUITE}/.git/hooks/hidden.test.js`, 'test("passes", () => {});\n');
    for (const pattern of ['test/**/*.test.js', '**/*.test.js', `${SUITE}/*.test.js`]) {
      expect(await tamper(pattern, 'snapshot')).toMatchObject({ passed: true });
      expect(await tamper(pattern, 'work tree')).toMatchObject({ passed: true });
    }
  });

  it('reports a symlink to a directory of tests there, without following it, where a pattern could match below it', async () => {
    await repositoryAtRecordedCommit();
    // Followed, this link would show test/math.test.js again below the submodule path (and never end).
    await symlink('../..', path.join(ws.path, SUITE, 'loop'));
    for (const pattern of ['test/**/*.test.js', '**/*.test.js']) {
      const message = `tamper: the agent added a symlink ${SUITE}/loop where protected files (protectedPaths: ${pattern}) could be reached through it`;
      expect(await tamper(pattern, 'snapshot')).toMatchObject({ passed: false, message });
      expect(await tamper(pattern, 'work tree')).toMatchObject({ passed: false, message });
    }
    // Nothing below test/suite/loop could match test/suite/*.test.js.
    expect(await tamper(`${SUITE}/*.test.js`, 'snapshot')).toMatchObject({ passed: true });
  });

  it('does not look into a submodule directory no protected pattern can reach', async () => {
    await agentWrites(PLANTED, 'test("passes", () => {});\n');
    for (const pattern of ['src/**/*.test.js', 'test/*.test.js', `${SUITE}-other/**`]) expect((await tamper(pattern, 'snapshot')).passed).toBe(true);
  });

  it('reports a submodule directory too deep to list as modified, for a pattern that could match below it', async () => {
    const deep = Array.from({ length: WALK_MAX_DEPTH + 2 }, (_, i) => `d${i}`).join('/');
    await mkdir(path.join(ws.path, SUITE, deep), { recursive: true });
    const gate = await tamper('**/*.test.js', 'snapshot');
    expect(gate).toMatchObject({ passed: false, message: expect.stringMatching(/^tamper: the agent modified protected file test\/suite \(protectedPaths: \*\*\/\*\.test\.js, which may match files in this directory/) });
    expect((await tamper('src/**', 'snapshot')).passed).toBe(true);
    // Moved as well: the snapshot lists the submodule as modified for itself, and it keeps the pattern.
    git(path.join(ws.path, SUITE), 'init', '--quiet');
    git(path.join(ws.path, SUITE), 'commit', '--quiet', '--allow-empty', '-m', 'moved');
    expect((await takeSnapshot(ws, home)).changesFromBase).toContainEqual({ path: SUITE, change: 'modified' });
    expect(await tamper('**/*.test.js', 'snapshot')).toMatchObject({ passed: false, diagnostics: [expect.objectContaining({ file: SUITE, message: expect.stringContaining('**/*.test.js, which may match files') })] });
  });

  it.skipIf(process.getuid?.() === 0)('reports a submodule directory it may not read as modified', async () => {
    await agentWrites(`${SUITE}/locked/planted.test.js`, 'test("passes", () => {});\n');
    await chmod(path.join(ws.path, SUITE, 'locked'), 0o000);
    try {
      expect(await tamper('**/*.test.js', 'work tree')).toMatchObject({ passed: false, diagnostics: [expect.objectContaining({ file: SUITE })] });
    } finally {
      await chmod(path.join(ws.path, SUITE, 'locked'), 0o755);
    }
  });

  it('reports a test planted in a nested repository of the agent’s, even one its own .gitignore hides', async () => {
    const nested = path.join(ws.path, 'test', 'newdir');
    await agentWrites('test/newdir/planted.test.js', 'test("passes", () => {});\n');
    git(nested, 'init', '--quiet');
    for (const mode of ['snapshot', 'work tree'] as const) {
      expect(await tamper('test/**/*.test.js', mode)).toMatchObject({ passed: false, message: 'tamper: the agent added protected file test/newdir/planted.test.js (protectedPaths: test/**/*.test.js)' });
    }
    await agentWrites('.gitignore', 'test/newdir/\n');
    for (const mode of ['snapshot', 'work tree'] as const) expect((await tamper('**/*.test.js', mode)).diagnostics.map((d) => d.file)).toEqual(['test/newdir/planted.test.js']);
  });

  it('reports a test planted in a repository the agent made above the directory a pattern names', async () => {
    await rm(path.join(ws.path, 'test'), { recursive: true });
    await mkdir(path.join(ws.path, 'test'));
    git(path.join(ws.path, 'test'), 'init', '--quiet');
    // Once a snapshot holds nothing below test/, git takes it for a nested repository and lists nothing in it
    // (`test/` only, which no pathspec below it matches).
    await takeSnapshot(ws, home);
    await agentWrites('test/unit/planted.test.js', 'test("passes", () => {});\n');
    for (const mode of ['snapshot', 'work tree'] as const) expect((await tamper('test/unit/**/*.test.js', mode)).diagnostics.map((d) => d.file)).toEqual(['test/unit/planted.test.js']);
  });

  it('snapshots a workspace whose directory holding the submodule became a symlink, as git add --all did', async () => {
    await rm(path.join(ws.path, 'test'), { recursive: true });
    await mkdir(path.join(ws.path, 'spec'));
    await writeFile(path.join(ws.path, 'spec', 'math.test.js'), 'assert(add(1, 2) === 3);\n');
    await symlink('spec', path.join(ws.path, 'test'));
    const outcome = await snapshot();
    expect(outcome.ok ? 'ok' : outcome.error.message).toBe('ok');
    if (!outcome.ok) return;
    expect(git(repo, 'ls-tree', '-r', outcome.snapshot.sha).split('\n').map((line) => line.replace(/ [0-9a-f]{40}\t/, ' '))).toEqual([
      '100644 blob .gitmodules',
      '100644 blob app.js',
      '100644 blob spec/math.test.js',
      '120000 blob test',
    ]);
    expect(outcome.changesFromBase).toEqual(
      expect.arrayContaining([
        { path: 'spec/math.test.js', change: 'added' },
        { path: 'test', change: 'added' },
        { path: 'test/math.test.js', change: 'deleted' },
        { path: SUITE, change: 'deleted' },
      ]),
    );
    expect(outcome.snapshot.uncaptured).toEqual([]);
    expect(await readFile(outcome.snapshot.patchPath, 'utf8')).toContain('-Subproject commit');
    // The tamper check sees the deleted test, and nothing behind the link is taken for the submodule's.
    expect(await tamper('test/**', 'snapshot')).toMatchObject({ passed: false, diagnostics: expect.arrayContaining([expect.objectContaining({ file: 'test/math.test.js' })]) });
    // A second snapshot: the index no longer holds the submodule, nothing to drop.
    const again = await new Snapshotter().snapshot({ workspace: ws, iteration: 2, artifactsDir: path.join(home, 'runs', ws.runId), signal: liveSignal() });
    expect(again.ok && again.snapshot.noChange).toBe(true);
  });
});
