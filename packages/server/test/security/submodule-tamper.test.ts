/**
 * Submodules below a protected path, against an agent that controls `.gitmodules`. `submodule.<name>.ignore`
 * (`all`, `dirty`, `untracked`), read by git from the work tree — even for tree-to-tree diffs — used to hide
 * a gitlink the agent moved from the snapshot's diffs and the tamper check, and edits inside a submodule
 * directory from the check; and AgentGate's `git add` and work-tree diffs ran `git status` inside a
 * repository the agent made at a submodule path, with that repository's clean filter. Real git, real runs.
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GateResult } from '../../src/gates/types.js';
import type { RunOutcome } from '../../src/execution/engine.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import type { SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';
import { AGENTS, EXAMPLE_REPO, agentOutput, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';
import { commandTask } from '../helpers/tasks.js';
import { git } from '../workspace/helpers.js';
import { SUITE, addSubmodule, gitmodules, makeBaseRepo } from './submodule-repo.js';
import { openTamperWorkspace, protectedPathsGate, snapshotRef, takeSnapshot } from './tamper-check.js';

/** A repository of the agent's at `dir` (two levels below the work tree), its HEAD naming `head` (a new commit of its own when omitted). */
async function nestedRepository(dir: string, head?: string): Promise<string> {
  git(dir, 'init', '--quiet');
  if (head === undefined) {
    git(dir, 'commit', '--quiet', '--allow-empty', '-m', 'moved by the agent');
    return git(dir, 'rev-parse', 'HEAD');
  }
  // The objects the workspace borrows, so that HEAD names a commit this repository has.
  await copyFile(path.join(dir, '..', '..', '.git', 'objects', 'info', 'alternates'), path.join(dir, '.git', 'objects', 'info', 'alternates'));
  await writeFile(path.join(dir, '.git', 'HEAD'), `${head}\n`);
  return head;
}

describe('an agent-written .gitmodules against the snapshot and the tamper check', () => {
  let repo: string;
  let home: string;
  let baseGitlink: string;
  let ws: Workspace;
  let close: () => Promise<void>;
  let reacquire: (runId: string) => Promise<Workspace>;
  let taken: SnapshotOutcome | undefined;

  const snapshot = async (): Promise<SnapshotOutcome & { ok: true }> => {
    taken = await takeSnapshot(ws, home);
    return taken;
  };
  /** The tamper check as the verify phase runs it (after `snapshot()`), or against the work tree alone. */
  const tamper = (mode: 'snapshot' | 'work tree'): Promise<GateResult> =>
    protectedPathsGate(ws, ['test/**'], mode === 'work tree' || taken?.ok !== true ? undefined : snapshotRef(ws, taken));
  const agentWrites = (file: string, content: string): Promise<void> => writeFile(path.join(ws.path, file), content);

  beforeEach(async () => {
    ({ repo, home, ws, close, reacquire } = await openTamperWorkspace('agentgate-submodule-', async (dir) => {
      await makeBaseRepo(dir);
      baseGitlink = await addSubmodule(dir);
    }));
  });

  afterEach(async () => {
    taken = undefined;
    await close();
  });

  for (const ignore of ['all', 'dirty', 'untracked']) {
    it(`records a moved submodule in the snapshot and reports it as tampering (ignore = ${ignore})`, async () => {
      await agentWrites('.gitmodules', gitmodules(ignore));
      const moved = await nestedRepository(path.join(ws.path, SUITE));

      const { snapshot: snap, changesFromBase } = await snapshot();

      expect(git(repo, 'ls-tree', snap.sha, SUITE)).toBe(`160000 commit ${moved}\t${SUITE}`);
      expect(changesFromBase).toContainEqual({ path: SUITE, change: 'modified' });
      expect(snap.changedFiles).toContain(SUITE);
      expect(snap.uncaptured).toEqual([SUITE]);
      expect(await readFile(snap.patchPath, 'utf8')).toContain(`+Subproject commit ${moved}`);
      expect(await tamper('snapshot')).toMatchObject({ passed: false, message: `tamper: the agent modified protected file ${SUITE} (protectedPaths: test/**)` });
      expect((await tamper('work tree'))?.passed).toBe(false);
    });
  }

  it('reports a submodule moved after the snapshot, which an ignore = all written with it hides from git', async () => {
    await agentWrites('app.js', 'export const x = 1;\n');
    await snapshot();
    expect((await tamper('snapshot'))?.passed).toBe(true);
    // A process of the agent's still running once the snapshot was taken.
    await agentWrites('.gitmodules', gitmodules('all'));
    await nestedRepository(path.join(ws.path, SUITE));

    expect(await tamper('snapshot')).toMatchObject({ passed: false, diagnostics: [expect.objectContaining({ file: SUITE })] });
  });

  it('reports files put into a protected submodule directory, at the submodule’s own commit (ignore = dirty) or without a repository', async () => {
    await agentWrites('.gitmodules', gitmodules('dirty'));
    await nestedRepository(path.join(ws.path, SUITE), baseGitlink);
    await agentWrites(`${SUITE}/neutered.test.js`, 'test("passes", () => {});\n');

    const { snapshot: snap } = await snapshot();

    expect(git(repo, 'ls-tree', snap.sha, SUITE)).toBe(`160000 commit ${baseGitlink}\t${SUITE}`);
    expect(snap.uncaptured).toEqual([SUITE]);
    expect((await tamper('snapshot'))?.diagnostics.map((d) => d.file)).toEqual([SUITE]);
    expect((await tamper('work tree'))?.passed).toBe(false);
    await rm(path.join(ws.path, SUITE, '.git'), { recursive: true, force: true });
    expect((await tamper('snapshot'))?.passed).toBe(false);
  });

  it('is not hidden by submodule.<name>.ignore in the configuration of AgentGate’s own git directory', async () => {
    await writeFile(path.join(ws.gitDir, 'config'), `${await readFile(path.join(ws.gitDir, 'config'), 'utf8')}[submodule "suite"]\n\tignore = all\n[diff]\n\tignoreSubmodules = all\n`);
    const moved = await nestedRepository(path.join(ws.path, SUITE));

    const { snapshot: snap } = await snapshot();

    expect(git(repo, 'ls-tree', snap.sha, SUITE)).toBe(`160000 commit ${moved}\t${SUITE}`);
    expect(snap.changedFiles).toEqual([SUITE]);
    expect((await tamper('snapshot'))?.passed).toBe(false);
  });

  it('stages a submodule path the way git add --all would: deleted, replaced by a file, or an unborn repository (unchanged)', async () => {
    const suite = path.join(ws.path, SUITE);
    await agentWrites('.gitmodules', gitmodules('all'));
    await rm(suite, { recursive: true });
    expect((await snapshot()).changesFromBase).toContainEqual({ path: SUITE, change: 'deleted' });

    ws = await reacquire('run-2');
    await rm(path.join(ws.path, SUITE), { recursive: true });
    await agentWrites(SUITE, 'a file now\n');
    expect(git(repo, 'ls-tree', (await snapshot()).snapshot.sha, SUITE)).toMatch(/^100644 blob [0-9a-f]+\ttest\/suite$/);

    ws = await reacquire('run-3');
    git(path.join(ws.path, SUITE), 'init', '--quiet');
    await agentWrites(`${SUITE}/notes.txt`, 'uncommitted\n');
    const unborn = await snapshot();
    expect(unborn.snapshot.noChange).toBe(true);
    expect(unborn.snapshot.uncaptured).toEqual([SUITE]);
  });
});

describe('a run whose agent hides a change below a protected submodule path', () => {
  const repos: TempRepo[] = [];
  afterEach(() => {
    for (const r of repos.splice(0)) r.cleanup();
  });

  /** Writes a `.gitmodules` naming the submodule with `ignore = <ignore>`, as an agent script line. */
  const writeGitmodules = (ignore: string): string => `printf '${gitmodules(ignore).replaceAll('\n', '\\n').replaceAll('\t', '\\t')}' > .gitmodules`;

  /**
   * A run of the calculator example (protected: test/**, or `protectedPaths` given) with a submodule at
   * test/suite, whose agent implements the task and then runs `attack(root)` (root: the test's temp directory).
   */
  async function runAgent(attack: (root: string) => string[], protectedPaths?: string): Promise<{ r: TempRepo; outcome: RunOutcome; gate: GateResult | undefined; said: string }> {
    const r = makeRepo(protectedPaths === undefined ? {} : { 'verify.yaml': (await readFile(path.join(EXAMPLE_REPO, 'verify.yaml'), 'utf8')).replace('["test/**"]', `["${protectedPaths}"]`) });
    repos.push(r);
    await addSubmodule(r.repo);
    const agent = writeAgent(r.root, 'attacker', [AGENTS.correct, ...attack(r.root)].join('\n'));
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: r.home }), logger: silentLogger() });
    try {
      const spec = commandTask(r.repo, `sh ${agent}`, { limits: { maxIterations: 1 }, name: 'submodule-attack' });
      const outcome = await runtime.engine.run(spec);
      const view = await readRun(r.home, outcome.runId);
      const gate = view.records[0]?.record.verification?.gates.find((g) => g.name === 'protected-paths');
      return { r, outcome, gate, said: agentOutput(view.events) };
    } finally {
      await runtime.close();
    }
  }

  it('ignore = all and a moved submodule: the run fails on tampering and its branch records the move', async () => {
    const { r, outcome, gate, said } = await runAgent(() => [
      writeGitmodules('all'),
      `cd ${SUITE}`,
      'git init -q',
      'git -c user.name=agent -c user.email=agent@localhost commit -q --allow-empty -m moved',
      'echo "moved-to: $(git rev-parse HEAD)"',
    ]);
    const moved = /moved-to: ([0-9a-f]{40})/.exec(said)?.[1];

    expect(moved).toBeDefined();
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    expect(gate).toMatchObject({ passed: false, message: `tamper: the agent modified protected file ${SUITE} (protectedPaths: test/**)` });
    expect(git(r.repo, 'ls-tree', outcome.branch ?? '', SUITE)).toBe(`160000 commit ${moved ?? ''}\t${SUITE}`);
  });

  it('ignore = dirty, a planted test at the submodule’s own commit and a clean filter: tampering, and AgentGate ran nothing of the agent’s', async () => {
    const marker = (root: string): string => path.join(root, 'agent-filter-ran');
    const { r, outcome, gate } = await runAgent((root) => [
      writeGitmodules('dirty'),
      `base=$(git rev-parse HEAD:${SUITE})`,
      `cd ${SUITE}`,
      'git init -q',
      // The objects the workspace borrows, so the submodule's HEAD below names a commit it has.
      'cp ../../.git/objects/info/alternates .git/objects/info/alternates',
      `printf 'import { test } from "node:test";\\ntest("planted", () => {});\\n' > planted.test.js`,
      'git add planted.test.js',
      // HEAD names the commit the superproject records: only the planted test differs.
      'echo "$base" > .git/HEAD',
      // Run by any `git status` here that reads the file again (its mtime no longer matches the index).
      `git config filter.agent.clean "sh -c 'echo ran >> ${marker(root)}; cat'"`,
      'echo "* filter=agent" > .gitattributes',
      "touch -d '2001-01-01 00:00:00' planted.test.js",
    ]);

    expect(existsSync(marker(r.root))).toBe(false);
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    expect(gate).toMatchObject({ passed: false, message: `tamper: the agent modified protected file ${SUITE} (protectedPaths: test/**)` });
    expect(git(r.repo, 'ls-tree', outcome.branch ?? '', SUITE)).toBe(`160000 commit ${git(r.repo, 'rev-parse', `HEAD:${SUITE}`)}\t${SUITE}`);
  });

  it('a test planted in the submodule directory under a file glob (test/**/*.test.js): the run fails on tampering', async () => {
    const { outcome, gate } = await runAgent(() => [`printf 'import { test } from "node:test";\\ntest("planted", () => {});\\n' > ${SUITE}/planted.test.js`], 'test/**/*.test.js');

    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    expect(gate).toMatchObject({ passed: false, message: `tamper: the agent added protected file ${SUITE}/planted.test.js (protectedPaths: test/**/*.test.js)` });
  });

  it('the directory holding the submodule replaced by a symlink: the snapshot records it and the run fails on tampering, not on an error', async () => {
    const { r, outcome, gate } = await runAgent(() => ['mv test spec', 'ln -s spec test']);

    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    expect(gate).toMatchObject({ passed: false, diagnostics: expect.arrayContaining([expect.objectContaining({ file: 'test/math.test.js', message: expect.stringMatching(/^protected file deleted/) })]) });
    expect(git(r.repo, 'ls-tree', outcome.branch ?? '', 'test')).toMatch(/^120000 blob [0-9a-f]{40}\ttest$/);
    expect(git(r.repo, 'ls-tree', '-r', outcome.branch ?? '', 'test/suite')).toBe('');
  });
});
