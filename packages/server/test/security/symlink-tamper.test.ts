/**
 * Known hole of the tamper check, closed here: a symlink to a directory below a protected directory.
 * `test/link -> ../spec` with `spec/planted.test.js`, under `test/**\/*.test.js`: git records the link
 * (mode 120000) under its own name, which no file pattern matches, and `spec/planted.test.js` under its own,
 * which is not protected — so the check passed — while `node --test test/` followed the link and ran the
 * planted test. Now a symlink the agent added or changed where a protected pattern could match below it
 * counts as tampering (`gates/symlinks.ts`). Real git, real snapshots, and whole runs of a command agent.
 */
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GateResult } from '../../src/gates/types.js';
import type { RunOutcome } from '../../src/execution/engine.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import type { SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';
import { AGENTS, EXAMPLE_REPO, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';
import { commandTask } from '../helpers/tasks.js';
import { git } from '../workspace/helpers.js';
import { openTamperWorkspace, protectedPathsGate, snapshotRef, takeSnapshot, writeAgentFile } from './tamper-check.js';

const FILE_GLOB = 'test/**/*.test.js';
const linkMessage = (link: string, pattern = FILE_GLOB, verb = 'added'): string => `tamper: the agent ${verb} a symlink ${link} where protected files (protectedPaths: ${pattern}) could be reached through it`;
const PLANTED = 'import { test } from "node:test";\ntest("planted", () => {});\n';

describe('a symlink below a protected directory', () => {
  let home: string;
  let repo: string;
  let ws: Workspace;
  let close: () => Promise<void>;
  let taken: SnapshotOutcome | undefined;

  beforeEach(async () => {
    ({ repo, home, ws, close } = await openTamperWorkspace('agentgate-symlink-', async (dir) => {
      // The base: a test, a helper below test/ that no pattern matches, a symlink of the project's own below
      // test/, and ignore rules for scratch output below test/.
      await mkdir(path.join(dir, 'test'), { recursive: true });
      await mkdir(path.join(dir, 'fixtures'));
      await mkdir(path.join(dir, 'lib'));
      git(dir, 'init', '--quiet', '--initial-branch=main');
      await writeFile(path.join(dir, 'test', 'math.test.js'), 'assert(add(1, 2) === 3);\n');
      await writeFile(path.join(dir, 'test', 'README.md'), 'how to run the tests\n');
      await writeFile(path.join(dir, 'fixtures', 'data.json'), '{}\n');
      await writeFile(path.join(dir, 'lib', 'helper.js'), 'export {};\n');
      await writeFile(path.join(dir, 'app.js'), 'export {};\n');
      await writeFile(path.join(dir, '.gitignore'), 'test/tmp/\n');
      await symlink('../fixtures', path.join(dir, 'test', 'fixtures'));
      git(dir, 'add', '--all');
      git(dir, 'commit', '--quiet', '-m', 'base');
    }));
  });

  afterEach(async () => {
    taken = undefined;
    await close();
  });

  const snapshot = async (): Promise<void> => {
    taken = await takeSnapshot(ws, home);
  };
  /**
   * The protected-paths gate: after a new snapshot (as the verify phase runs it), against the last snapshot
   * taken (`'last snapshot'`: the work tree changed since), or against the work tree alone.
   */
  const tamper = async (pattern: string, mode: 'snapshot' | 'last snapshot' | 'work tree'): Promise<GateResult> => {
    if (mode === 'snapshot') await snapshot();
    return protectedPathsGate(ws, [pattern], mode === 'work tree' || taken?.ok !== true ? undefined : snapshotRef(ws, taken));
  };
  const agentWrites = (file: string, content: string): Promise<void> => writeAgentFile(ws, file, content);
  const agentLinks = async (target: string, file: string): Promise<void> => {
    await mkdir(path.dirname(path.join(ws.path, file)), { recursive: true });
    await symlink(target, path.join(ws.path, file));
  };

  it('reports test/link -> ../spec beside a planted spec/planted.test.js, in the snapshot and in the work tree', async () => {
    await agentWrites('spec/planted.test.js', PLANTED);
    await agentLinks('../spec', 'test/link');
    for (const mode of ['snapshot', 'work tree'] as const) {
      const gate = await tamper(FILE_GLOB, mode);
      expect(gate).toMatchObject({ passed: false, message: linkMessage('test/link') });
      expect(gate.diagnostics).toEqual([{ tool: 'generic', file: 'test/link', message: expect.stringMatching(/^symlink added where protected files could be reached through it \(protectedPaths: test\/\*\*\/\*\.test\.js\)/) }]);
    }
    // A pattern that can match anywhere: the link counts as well (the planted file too, by its own name).
    const anywhere = await tamper('**/*.test.js', 'snapshot');
    expect(anywhere.diagnostics.map((d) => d.file).sort()).toEqual(['spec/planted.test.js', 'test/link']);
  });

  it('reports a link kept out of the snapshot by a .gitignore the agent wrote, or made after the snapshot', async () => {
    await agentWrites('.gitignore', 'test/tmp/\ntest/link\n');
    await agentLinks('../spec', 'test/link');
    for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(FILE_GLOB, mode)).toMatchObject({ passed: false, message: linkMessage('test/link') });
    await rm(path.join(ws.path, 'test', 'link'));
    expect((await tamper(FILE_GLOB, 'snapshot')).passed).toBe(true);
    // A process of the agent's still running once the snapshot was taken.
    await agentLinks('../spec', 'test/later');
    expect(await tamper(FILE_GLOB, 'last snapshot')).toMatchObject({ passed: false, message: linkMessage('test/later') });
  });

  it('reports a link whose parent directory is new, and one inside a nested repository of the agent’s', async () => {
    await agentLinks('../../spec', 'test/unit/deep/link');
    for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(FILE_GLOB, mode)).toMatchObject({ passed: false, message: linkMessage('test/unit/deep/link') });
    await rm(path.join(ws.path, 'test', 'unit'), { recursive: true });
    await agentLinks('../../spec', 'test/repo/link');
    git(path.join(ws.path, 'test', 'repo'), 'init', '--quiet');
    for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(FILE_GLOB, mode)).toMatchObject({ passed: false, message: linkMessage('test/repo/link') });
  });

  it('reports the directory a pattern names made a link, even one the agent’s .gitignore hides', async () => {
    const pattern = 'test/unit/**/*.test.js';
    await agentLinks('../spec', 'test/unit');
    for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(pattern, mode)).toMatchObject({ passed: false, message: linkMessage('test/unit', pattern) });
    await agentWrites('.gitignore', 'test/tmp/\ntest/unit\n');
    for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(pattern, mode)).toMatchObject({ passed: false, message: linkMessage('test/unit', pattern) });
  });

  it('counts a link to a file at a name no pattern matches (every link may be a directory), but not where no pattern could reach', async () => {
    await agentLinks('../lib/helper.js', 'test/helper.js');
    expect(await tamper(FILE_GLOB, 'snapshot')).toMatchObject({ passed: false, message: linkMessage('test/helper.js') });
    // Nothing below test/helper.js could match test/*.test.js, nor anything below a link at the top.
    expect((await tamper('test/*.test.js', 'snapshot')).passed).toBe(true);
    await agentLinks('spec', 'top-link');
    expect((await tamper('test/*.test.js', 'snapshot')).passed).toBe(true);
  });

  it('keeps the protected-file message for a link a pattern matches itself', async () => {
    await agentLinks('../spec', 'test/link');
    expect(await tamper('test/**', 'snapshot')).toMatchObject({ passed: false, message: 'tamper: the agent added protected file test/link (protectedPaths: test/**)' });
    await rm(path.join(ws.path, 'test', 'link'));
    await agentLinks('../spec/real.js', 'test/linked.test.js');
    expect(await tamper(FILE_GLOB, 'snapshot')).toMatchObject({ passed: false, message: `tamper: the agent added protected file test/linked.test.js (protectedPaths: ${FILE_GLOB})` });
  });

  it('passes links outside the protected directories, the base commit’s own links left alone, and links the base commit’s rules ignore', async () => {
    await agentWrites('app.js', 'export const x = 1;\n');
    await agentLinks('../lib', 'docs/lib');
    await agentLinks('lib/helper.js', 'helper.js');
    // Below test/, but ignored by the base commit's own rules (as a file there would be).
    await agentLinks('../../spec', 'test/tmp/link');
    for (const pattern of [FILE_GLOB, 'test/**']) {
      for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(pattern, mode)).toMatchObject({ passed: true });
    }
    expect(git(repo, 'ls-tree', 'HEAD', 'test/fixtures')).toMatch(/^120000 blob /);
  });

  it('reports a link of the base commit the agent changed, and a tracked file turned into a link after the snapshot', async () => {
    await rm(path.join(ws.path, 'test', 'fixtures'));
    await agentLinks('../spec', 'test/fixtures');
    for (const mode of ['snapshot', 'work tree'] as const) expect(await tamper(FILE_GLOB, mode)).toMatchObject({ passed: false, message: linkMessage('test/fixtures', FILE_GLOB, 'changed') });
    await rm(path.join(ws.path, 'test', 'fixtures'));
    await agentLinks('../fixtures', 'test/fixtures');
    expect((await tamper(FILE_GLOB, 'snapshot')).passed).toBe(true);
    await rm(path.join(ws.path, 'test', 'README.md'));
    await agentLinks('../spec', 'test/README.md');
    expect(await tamper(FILE_GLOB, 'last snapshot')).toMatchObject({ passed: false, message: linkMessage('test/README.md', FILE_GLOB, 'changed') });
  });

  it('reports a link the snapshot holds that changed type or went away after it: it may still be a link there', async () => {
    await agentLinks('../spec', 'test/link');
    await snapshot();
    await rm(path.join(ws.path, 'test', 'link'));
    const maybe = `tamper: the agent added test/link, which may be a symlink where protected files (protectedPaths: ${FILE_GLOB}) could be reached through it`;
    expect(await tamper(FILE_GLOB, 'last snapshot')).toMatchObject({ passed: false, message: expect.stringContaining(maybe) });
    await agentWrites('test/link', 'a file now\n');
    expect((await tamper(FILE_GLOB, 'last snapshot')).message).toMatch(/^tamper: the agent added test\/link, which may be a symlink/);
    // Taken again, the snapshot holds the file: nothing to report.
    expect((await tamper(FILE_GLOB, 'snapshot')).passed).toBe(true);
  });
});

describe('a run whose agent plants tests behind a symlink below a protected directory', () => {
  const repos: TempRepo[] = [];
  afterEach(() => {
    for (const r of repos.splice(0)) r.cleanup();
  });

  /** A run of the calculator example, `test/**\/*.test.js` protected, whose agent implements the task and then runs `extra`. */
  async function runAgent(extra: string[]): Promise<{ outcome: RunOutcome; gates: GateResult[] }> {
    const r = makeRepo({ 'verify.yaml': (await readFile(path.join(EXAMPLE_REPO, 'verify.yaml'), 'utf8')).replace('["test/**"]', `["${FILE_GLOB}"]`) });
    repos.push(r);
    const agent = writeAgent(r.root, 'agent', [AGENTS.correct, ...extra].join('\n'));
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: r.home }), logger: silentLogger() });
    try {
      const outcome = await runtime.engine.run(commandTask(r.repo, `sh ${agent}`, { limits: { maxIterations: 1 }, name: 'symlink-attack' }));
      const view = await readRun(r.home, outcome.runId);
      return { outcome, gates: view.records[0]?.record.verification?.gates ?? [] };
    } finally {
      await runtime.close();
    }
  }

  it('test/link -> ../spec with spec/planted.test.js: the run fails verification on tampering, and the tests behind the link are not run', async () => {
    const { outcome, gates } = await runAgent(['mkdir -p spec', `printf '${PLANTED.replaceAll('\n', '\\n')}' > spec/planted.test.js`, 'ln -s ../spec test/link']);

    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    expect(gates.find((g) => g.name === 'protected-paths')).toMatchObject({ passed: false, message: linkMessage('test/link') });
    expect(gates.find((g) => g.name === 'unit-tests')).toMatchObject({ passed: false, message: expect.stringMatching(/^not run/) });
  });

  it('a symlink outside the protected directories: the run passes', async () => {
    const { outcome, gates } = await runAgent(['mkdir -p docs', 'ln -s ../src docs/src', 'ln -s src/math.js math.js']);

    expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed' });
    expect(gates.find((g) => g.name === 'protected-paths')).toMatchObject({ passed: true });
  });
});
