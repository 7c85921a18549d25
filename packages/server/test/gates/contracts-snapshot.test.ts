/**
 * Tamper detection against the iteration's snapshot (issue 12): with the snapshot commit the verify phase
 * passes, the protected-paths gate compares the base and snapshot trees and looks at the work tree only
 * below the protected patterns. Every verdict must be the one the file-by-file comparison of the work tree
 * gives — for plain edits and for every way an agent can try to hide one. Real workspaces, real git.
 */
import { mkdir, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkContracts, type SnapshotRef } from '../../src/gates/contracts.js';
import type { GateResult } from '../../src/gates/types.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { Snapshotter } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';
import { TempDirs, git, liveSignal } from '../workspace/helpers.js';

const temp = new TempDirs();

const PROTECTED = ['test/**'];
const ALWAYS = [{ path: 'verify.yaml', reason: 'the gate plan is always protected' }];
const BASE_FILES: Record<string, string> = {
  '.gitignore': 'node_modules/\n*.log\n',
  'src/math.js': 'export const add = (a, b) => a - b;\n',
  'test/math.test.js': 'assert(add(1, 2) === 3);\n',
  'test/old.test.js': 'assert(true);\n',
  'verify.yaml': 'version: "1"\n',
};

/** What a verdict is made of: pass/fail and each offending file with its kind of change. */
interface Verdict {
  passed: boolean;
  files: string[];
}

function verdict(results: GateResult[]): Verdict {
  const gate = results.find((result) => result.name === 'protected-paths');
  if (gate === undefined) throw new Error('no protected-paths gate in the results');
  return { passed: gate.passed, files: gate.diagnostics.map((d) => `${d.file ?? '?'}: ${d.message.split(' (')[0] ?? ''}`).sort() };
}

async function put(dir: string, relative: string, content: string): Promise<void> {
  await mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
  await writeFile(path.join(dir, relative), content);
}

async function makeRepo(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  git(dir, 'init', '--quiet', '--initial-branch=main');
  for (const [name, content] of Object.entries(files)) await put(dir, name, content);
  git(dir, 'add', '--all');
  git(dir, 'commit', '--quiet', '-m', 'base');
  return git(dir, 'rev-parse', 'HEAD');
}

describe('protected-paths against the snapshot commit', () => {
  let root: string;
  let repo: string;
  let manager: WorkspaceManager;
  let ws: Workspace;

  /** The last snapshot's commit and its changes from the base, as the snapshot phase reported them. */
  let taken: { sha: string; changesFromBase: SnapshotRef['changesFromBase'] } | undefined;
  const takeSnapshot = async (iteration = 1): Promise<string> => {
    const outcome = await new Snapshotter().snapshot({ workspace: ws, iteration, artifactsDir: path.join(root, 'artifacts'), signal: liveSignal(), ...(taken !== undefined && { previousSha: taken.sha }) });
    if (!outcome.ok) throw outcome.error;
    taken = { sha: outcome.snapshot.sha, changesFromBase: outcome.changesFromBase };
    return outcome.snapshot.sha;
  };
  /** The snapshot as the verify phase passes it without the snapshot's changes: HEAD of AgentGate's git directory of the run. */
  const runSnapshot = (): SnapshotRef => ({ commit: 'HEAD', git: { gitDir: ws.gitDir, indexFile: ws.indexFile, workTree: ws.path } });
  /** The snapshot as the verify phase passes it in a run: its sha and the changes the snapshot phase listed. */
  const reportedSnapshot = (): SnapshotRef => {
    if (taken === undefined) throw new Error('no snapshot taken');
    return { ...runSnapshot(), commit: taken.sha, ...(taken.changesFromBase !== undefined && { changesFromBase: taken.changesFromBase }) };
  };
  const check = async (snapshot?: SnapshotRef): Promise<Verdict> =>
    verdict(
      await checkContracts({
        worktreePath: ws.path,
        baseSha: ws.baseSha,
        contracts: parseVerifyConfig({ contracts: { protectedPaths: PROTECTED } }).contracts,
        alwaysProtected: ALWAYS,
        signal: liveSignal(),
        clock: systemClock,
        ...(snapshot !== undefined && { snapshot }),
      }),
    );
  /**
   * The verdict through the snapshot, after checking that the file-by-file comparison agrees with it, and
   * that the snapshot's own list of changes from the base (no tree-to-tree diff) gives it too.
   */
  const checkBothWays = async (): Promise<Verdict> => {
    const byTree = await check(runSnapshot());
    expect(byTree).toEqual(await check());
    expect(await check(reportedSnapshot())).toEqual(byTree);
    return byTree;
  };
  const file = (relative: string): string => path.join(ws.path, relative);

  beforeEach(async () => {
    root = await realpath(await temp.make('agentgate-tree-tamper-'));
    repo = path.join(root, 'repo');
    await makeRepo(repo, BASE_FILES);
    manager = new WorkspaceManager({ home: path.join(root, 'home') });
    ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
  });

  afterEach(async () => {
    taken = undefined;
    await manager.release(ws, { signal: liveSignal() });
    await temp.cleanup();
  });

  describe('when the agent changed what the snapshot holds', () => {
    const cases: Array<{ name: string; act: () => Promise<void>; expected: Verdict }> = [
      { name: 'passes when only unprotected files changed', act: () => put(ws.path, 'src/math.js', 'export const add = (a, b) => a + b;\n'), expected: { passed: true, files: [] } },
      { name: 'names a modified protected test', act: () => put(ws.path, 'test/math.test.js', 'assert(true);\n'), expected: { passed: false, files: ['test/math.test.js: protected file modified'] } },
      { name: 'names a deleted protected test', act: () => rm(file('test/old.test.js')), expected: { passed: false, files: ['test/old.test.js: protected file deleted'] } },
      {
        name: 'sees a rename as a deletion and an addition',
        act: () => rename(file('test/old.test.js'), file('test/renamed.test.js')),
        expected: { passed: false, files: ['test/old.test.js: protected file deleted', 'test/renamed.test.js: protected file added'] },
      },
      { name: 'names a new file under a protected path', act: () => put(ws.path, 'test/helper.js', 'globalThis.assert = () => {};\n'), expected: { passed: false, files: ['test/helper.js: protected file added'] } },
      { name: 'names a loosened verify.yaml', act: () => put(ws.path, 'verify.yaml', 'version: "1"\n# weakened\n'), expected: { passed: false, files: ['verify.yaml: protected file modified'] } },
      {
        name: 'catches an edit the agent marked skip-worktree in its own index',
        act: async () => {
          await put(ws.path, 'test/math.test.js', 'assert(true);\n');
          git(ws.path, 'update-index', '--skip-worktree', 'test/math.test.js');
        },
        expected: { passed: false, files: ['test/math.test.js: protected file modified'] },
      },
    ];
    for (const { name, act, expected } of cases) {
      it(name, async () => {
        await act();
        await takeSnapshot();
        expect(await checkBothWays()).toEqual(expected);
      });
    }
  });

  describe('when the agent hides files from the snapshot', () => {
    it('names a new conftest hidden by a .gitignore the agent wrote under the protected path', async () => {
      await put(ws.path, 'test/.gitignore', '*\n');
      await put(ws.path, 'test/conftest.py', 'import pytest\n');
      await takeSnapshot();
      expect(git(root, `--git-dir=${ws.gitDir}`, 'ls-tree', '-r', '--name-only', 'HEAD')).not.toContain('conftest.py');
      expect(await checkBothWays()).toEqual({ passed: false, files: ['test/.gitignore: protected file added', 'test/conftest.py: protected file added'] });
    });

    it('names a protected file hidden by a rule the agent added to the root .gitignore', async () => {
      await put(ws.path, '.gitignore', `${BASE_FILES['.gitignore'] ?? ''}test/setup.js\n`);
      await put(ws.path, 'test/setup.js', 'globalThis.assert = () => {};\n');
      await takeSnapshot();
      expect(await checkBothWays()).toEqual({ passed: false, files: ['test/setup.js: protected file added'] });
    });

    it('names a nested repository under a protected path, which no snapshot can hold', async () => {
      const nested = file('test/evil');
      await mkdir(nested, { recursive: true });
      git(nested, 'init', '--quiet');
      await put(nested, 'conftest.py', 'import pytest\n');
      await takeSnapshot();
      const byTree = await checkBothWays();
      expect(byTree.passed).toBe(false);
      expect(byTree.files).toEqual(['test/evil/: protected file added']);
    });

    it('still ignores what the base commit’s own .gitignore ignores', async () => {
      await put(ws.path, 'test/node_modules/x.js', 'dependency\n');
      await put(ws.path, 'test/run.log', 'log\n');
      await takeSnapshot();
      expect(await checkBothWays()).toEqual({ passed: true, files: [] });
    });
  });

  describe('when the work tree changed after the snapshot', () => {
    it('names a protected test edited after the snapshot', async () => {
      await takeSnapshot();
      await put(ws.path, 'test/math.test.js', 'assert(true); // after the snapshot\n');
      expect(await checkBothWays()).toEqual({ passed: false, files: ['test/math.test.js: protected file modified'] });
    });

    it('names a protected test deleted after the snapshot, and one created after it', async () => {
      await takeSnapshot();
      await rm(file('test/math.test.js'));
      await put(ws.path, 'test/late.test.js', 'assert(true);\n');
      expect(await checkBothWays()).toEqual({ passed: false, files: ['test/late.test.js: protected file added', 'test/math.test.js: protected file deleted'] });
    });

    it('keeps the kind of change relative to the base for a file the snapshot already changed', async () => {
      await put(ws.path, 'test/new.test.js', 'assert(1);\n');
      await takeSnapshot();
      await put(ws.path, 'test/new.test.js', 'assert(2);\n');
      expect(await checkBothWays()).toEqual({ passed: false, files: ['test/new.test.js: protected file added'] });
    });
  });

  describe('over several iterations', () => {
    it('measures the last snapshot against the base, not against the previous snapshot', async () => {
      await put(ws.path, 'test/math.test.js', 'assert(true);\n');
      await takeSnapshot(1);
      await put(ws.path, 'src/math.js', 'export const add = (a, b) => a + b;\n');
      await takeSnapshot(2);
      expect(await checkBothWays()).toEqual({ passed: false, files: ['test/math.test.js: protected file modified'] });
      await put(ws.path, 'test/math.test.js', BASE_FILES['test/math.test.js'] ?? '');
      await takeSnapshot(3);
      expect(await checkBothWays()).toEqual({ passed: true, files: [] });
    });
  });

  describe('given the snapshot as a sha, without the run’s git state', () => {
    it('finds the run’s git state and gives the same verdict', async () => {
      await put(ws.path, 'test/math.test.js', 'assert(true);\n');
      const sha = await takeSnapshot();
      expect(await check({ commit: sha })).toEqual({ passed: false, files: ['test/math.test.js: protected file modified'] });
    });
  });

  describe('on a large tree', () => {
    it('names exactly the protected file changed among 2,000 unchanged ones, and passes once it is restored', async () => {
      await manager.release(ws, { signal: liveSignal() });
      const files: Record<string, string> = { ...BASE_FILES };
      for (let i = 0; i < 2000; i += 1) files[`src/pkg${Math.floor(i / 100)}/file${i}.js`] = `export const value${i} = ${i};\n`;
      const big = path.join(root, 'big');
      await makeRepo(big, files);
      ws = await manager.acquire({ source: 'local', path: big }, { runId: 'run-big', signal: liveSignal() });

      await put(ws.path, 'test/math.test.js', 'assert(true);\n');
      await put(ws.path, 'src/pkg3/file300.js', 'export const value300 = -1;\n');
      await takeSnapshot(1);
      expect(await check(runSnapshot())).toEqual({ passed: false, files: ['test/math.test.js: protected file modified'] });
      expect(await check(reportedSnapshot())).toEqual({ passed: false, files: ['test/math.test.js: protected file modified'] });

      await put(ws.path, 'test/math.test.js', BASE_FILES['test/math.test.js'] ?? '');
      await takeSnapshot(2);
      expect(await check(runSnapshot())).toEqual({ passed: true, files: [] });
      expect(await check(reportedSnapshot())).toEqual({ passed: true, files: [] });
    });
  });
});

describe('protected-paths of a directory that is not a run workspace, given a snapshot commit', () => {
  afterEach(async () => {
    await temp.cleanup();
  });

  it('gives the verdict of the file-by-file comparison, with the snapshot read into a scratch index', async () => {
    const dir = path.join(await realpath(await temp.make('agentgate-tree-scratch-')), 'repo');
    const baseSha = await makeRepo(dir, BASE_FILES);
    await put(dir, 'test/math.test.js', 'assert(true);\n');
    await put(dir, 'test/.gitignore', '*\n');
    await put(dir, 'test/hidden.js', 'x\n');
    git(dir, 'add', '--all');
    git(dir, 'commit', '--quiet', '-m', 'snapshot');
    const sha = git(dir, 'rev-parse', 'HEAD');
    const input = {
      worktreePath: dir,
      baseSha,
      contracts: parseVerifyConfig({ contracts: { protectedPaths: PROTECTED } }).contracts,
      alwaysProtected: ALWAYS,
      signal: liveSignal(),
      clock: systemClock,
    };
    const byTree = verdict(await checkContracts({ ...input, snapshot: { commit: sha } }));
    expect(byTree).toEqual(verdict(await checkContracts(input)));
    expect(byTree).toEqual({ passed: false, files: ['test/.gitignore: protected file added', 'test/hidden.js: protected file added', 'test/math.test.js: protected file modified'] });
  });
});
