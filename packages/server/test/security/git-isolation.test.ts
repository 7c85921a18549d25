/**
 * Issue 8, item 1: the agent's workspace must not share the user's `.git`, and AgentGate's own git
 * calls (snapshot, tamper detection) must not run anything the agent defined. Real git, real processes:
 * the "agent" is this test writing files and running git inside the workspace as an agent would.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkContracts } from '../../src/gates/contracts.js';
import type { GateResult } from '../../src/gates/types.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { Snapshotter } from '../../src/workspace/snapshotter.js';
import type { SnapshotResult, Workspace } from '../../src/workspace/types.js';
import { TempDirs, git, liveSignal } from '../workspace/helpers.js';

const temp = new TempDirs();

const ORIGINAL_TEST = 'import { add } from "../src/math.js";\nif (add(1, 2) !== 3) throw new Error("add is broken");\n';
const NEUTERED_TEST = '// nothing to see here\n';

/** sha256 of every file below `dir` (relative path → hash); missing directory → empty. */
async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  for (const entry of entries.filter((e) => e.isFile())) {
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file)] = createHash('sha256').update(await readFile(file)).digest('hex');
  }
  return out;
}

/** What must stay byte-identical in the user's repository: config, info/, hooks, HEAD, the refs but the run branch. */
async function userGitState(repo: string): Promise<{ config: string; info: Record<string, string>; hooks: Record<string, string>; head: string; refs: string }> {
  const dotGit = path.join(repo, '.git');
  return {
    config: createHash('sha256').update(await readFile(path.join(dotGit, 'config'))).digest('hex'),
    info: await hashTree(path.join(dotGit, 'info')),
    hooks: await hashTree(path.join(dotGit, 'hooks')),
    head: await readFile(path.join(dotGit, 'HEAD'), 'utf8'),
    refs: git(repo, 'for-each-ref', '--format=%(refname) %(objectname)')
      .split('\n')
      .filter((line) => !line.startsWith('refs/heads/agentgate/'))
      .join('\n'),
  };
}

/** A program the agent defines: records that it ran, then prints the original test (what a filter would "restore"). */
async function agentProgram(dir: string, marker: string, originalFile: string): Promise<string> {
  const script = path.join(dir, 'agent-program.sh');
  await writeFile(script, `#!/bin/sh\necho "ran: $0 $*" >> '${marker}'\ncat '${originalFile}'\n`);
  await chmod(script, 0o755);
  return script;
}

function tamperGate(results: GateResult[]): GateResult | undefined {
  return results.find((result) => result.name === 'protected-paths');
}

describe('git isolation between the agent and AgentGate', () => {
  let root: string;
  let home: string;
  let repo: string;
  let marker: string;
  let manager: WorkspaceManager;
  let ws: Workspace;

  const snapshot = async (iteration = 1): Promise<SnapshotResult> => {
    const outcome = await new Snapshotter().snapshot({ workspace: ws, iteration, artifactsDir: path.join(home, 'runs', ws.runId), signal: liveSignal() });
    if (!outcome.ok) throw outcome.error;
    return outcome.snapshot;
  };
  const contracts = (): Promise<GateResult[]> =>
    checkContracts({
      worktreePath: ws.path,
      baseSha: ws.baseSha,
      contracts: parseVerifyConfig({ contracts: { protectedPaths: ['test/**'] } }).contracts,
      alwaysProtected: [{ path: 'verify.yaml', reason: 'the gate plan is always protected' }],
      signal: liveSignal(),
      clock: systemClock,
    });
  /** Runs git in the workspace as the agent: its own repository, its own config. */
  const agentGit = (...args: string[]): string => git(ws.path, ...args);

  beforeEach(async () => {
    root = await realpath(await temp.make('agentgate-isolation-'));
    home = path.join(root, 'home');
    repo = path.join(root, 'user-repo');
    marker = path.join(root, 'agent-program-ran');
    await mkdir(path.join(repo, 'test'), { recursive: true });
    await mkdir(path.join(repo, 'src'), { recursive: true });
    git(repo, 'init', '--quiet', '--initial-branch=main');
    await writeFile(path.join(repo, 'src', 'math.js'), 'export const add = (a, b) => a - b;\n');
    await writeFile(path.join(repo, 'test', 'math.test.js'), ORIGINAL_TEST);
    await writeFile(path.join(repo, 'verify.yaml'), 'version: "1"\ncontracts:\n  protectedPaths: ["test/**"]\n');
    git(repo, 'add', '--all');
    git(repo, 'commit', '--quiet', '-m', 'base');
    manager = new WorkspaceManager({ home });
    ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
  });

  afterEach(async () => {
    // Read-only leftovers of a failed test must not break the temp cleanup.
    await manager.release(ws, { signal: liveSignal() });
    await temp.cleanup();
  });

  describe('when the agent defines a clean filter that restores the protected test', () => {
    beforeEach(async () => {
      const original = path.join(root, 'original.test.js');
      await writeFile(original, ORIGINAL_TEST);
      const program = await agentProgram(root, marker, original);
      agentGit('config', 'filter.x.clean', program);
      agentGit('config', 'filter.x.smudge', program);
      agentGit('config', 'filter.x.required', 'true');
      await writeFile(path.join(ws.path, '.gitattributes'), 'test/math.test.js filter=x\n');
      await mkdir(path.join(ws.path, '.git', 'info'), { recursive: true });
      await writeFile(path.join(ws.path, '.git', 'info', 'attributes'), 'test/math.test.js filter=x\n');
      await writeFile(path.join(ws.path, 'test', 'math.test.js'), NEUTERED_TEST);
    });

    it('is a real attack: git in the agent’s own repository runs the filter and sees no change', async () => {
      agentGit('add', '--all');
      expect(agentGit('diff', '--cached', '--name-only')).toBe('.gitattributes');
      expect(existsSync(marker)).toBe(true);
    });

    it('reports the protected test as tampered, snapshots the neutered bytes and runs no agent program', async () => {
      const before = await userGitState(repo);
      const snap = await snapshot();
      const results = await contracts();

      expect(tamperGate(results)).toMatchObject({ passed: false, message: expect.stringContaining('test/math.test.js') });
      expect(snap.changedFiles).toContain('test/math.test.js');
      expect(git(repo, 'show', `${snap.sha}:test/math.test.js`)).toBe(NEUTERED_TEST.trimEnd());
      expect(await readFile(snap.patchPath, 'utf8')).toContain(`+${NEUTERED_TEST.trimEnd()}`);
      expect(existsSync(marker)).toBe(false);
      expect(await userGitState(repo)).toEqual(before);
    });

    it('ignores git configuration and external diff programs inherited from the environment', async () => {
      const program = path.join(root, 'agent-program.sh');
      const saved = { params: process.env['GIT_CONFIG_PARAMETERS'], diff: process.env['GIT_EXTERNAL_DIFF'] };
      process.env['GIT_CONFIG_PARAMETERS'] = `'filter.x.clean'='${program}' 'filter.x.required'='true' 'diff.noprefix'='true'`;
      process.env['GIT_EXTERNAL_DIFF'] = program;
      try {
        const snap = await snapshot();
        expect(tamperGate(await contracts())?.passed).toBe(false);
        expect(snap.changedFiles).toContain('test/math.test.js');
        expect(await readFile(snap.patchPath, 'utf8')).toContain('diff --git a/test/math.test.js b/test/math.test.js');
      } finally {
        for (const [key, value] of [['GIT_CONFIG_PARAMETERS', saved.params], ['GIT_EXTERNAL_DIFF', saved.diff]] as const) {
          if (value === undefined) delete process.env[key];
          else process.env[key] = value;
        }
      }
      expect(existsSync(marker)).toBe(false);
    });
  });

  describe('when the agent defines textconv and external diff drivers', () => {
    it('neither the snapshot’s diffs nor the tamper check run them, and the patch holds the real bytes', async () => {
      const original = path.join(root, 'original.test.js');
      await writeFile(original, ORIGINAL_TEST);
      const program = await agentProgram(root, marker, original);
      agentGit('config', 'diff.x.textconv', program);
      agentGit('config', 'diff.x.command', program);
      agentGit('config', 'diff.external', program);
      await writeFile(path.join(ws.path, '.gitattributes'), '* diff=x\n');
      await writeFile(path.join(ws.path, 'test', 'math.test.js'), NEUTERED_TEST);
      const before = await userGitState(repo);

      const snap = await snapshot();
      const results = await contracts();

      expect(tamperGate(results)?.passed).toBe(false);
      const patch = await readFile(snap.patchPath, 'utf8');
      expect(patch).toContain(`-${ORIGINAL_TEST.split('\n')[0] ?? ''}`);
      expect(patch).toContain(`+${NEUTERED_TEST.trimEnd()}`);
      expect(existsSync(marker)).toBe(false);
      expect(await userGitState(repo)).toEqual(before);
    });
  });

  describe('when the agent adds attributes that convert content', () => {
    it('stores the exact bytes of the files: no encoding, end-of-line or ident conversion', async () => {
      await writeFile(path.join(ws.path, '.gitattributes'), 'test/math.test.js working-tree-encoding=UTF-16LE\nsrc/math.js text eol=crlf ident\n');
      const crlf = Buffer.from('export const add = (a, b) => a + b;\r\n// $Id$\r\n');
      await writeFile(path.join(ws.path, 'src', 'math.js'), crlf);
      await writeFile(path.join(ws.path, 'test', 'math.test.js'), NEUTERED_TEST);

      const snap = await snapshot();

      const blob = (file: string): Buffer => execFileSync('git', ['cat-file', 'blob', `${snap.sha}:${file}`], { cwd: repo });
      expect(blob('src/math.js')).toEqual(crlf);
      expect(blob('test/math.test.js').toString('utf8')).toBe(NEUTERED_TEST);
      expect(tamperGate(await contracts())?.passed).toBe(false);
    });
  });

  describe('when the agent installs hooks', () => {
    it('runs none of them, nor the user’s, during the snapshot and the fetch into the user’s repository', async () => {
      const hook = `#!/bin/sh\necho "hook: $0" >> '${marker}'\n`;
      const hooksDir = path.join(ws.path, '.git', 'hooks');
      const customHooks = path.join(root, 'agent-hooks');
      await mkdir(hooksDir, { recursive: true });
      await mkdir(customHooks, { recursive: true });
      for (const name of ['pre-commit', 'commit-msg', 'post-commit', 'reference-transaction', 'post-index-change', 'pre-auto-gc']) {
        await writeFile(path.join(hooksDir, name), hook, { mode: 0o755 });
        await writeFile(path.join(customHooks, name), hook, { mode: 0o755 });
      }
      agentGit('config', 'core.hooksPath', customHooks);
      // A hook in the user's own repository would run on the fetch's ref update if hooks were on.
      const userHook = path.join(repo, '.git', 'hooks', 'reference-transaction');
      await writeFile(userHook, hook, { mode: 0o755 });
      await writeFile(path.join(ws.path, 'feature.txt'), 'work\n');

      const snap = await snapshot();

      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(snap.sha);
      expect(existsSync(marker)).toBe(false);
    });
  });

  describe('when the agent locks its repository or makes everything read-only', () => {
    it('release still removes the workspace and AgentGate’s git directory, and the user’s repository lists no worktree', async () => {
      await writeFile(path.join(ws.path, 'work.txt'), 'work\n');
      await snapshot();
      // `git worktree lock` on the main working tree fails; an agent can still lock one it adds itself.
      agentGit('worktree', 'add', '--quiet', '-b', 'side', path.join(ws.path, 'side'));
      agentGit('worktree', 'lock', path.join(ws.path, 'side'));
      await mkdir(path.join(ws.path, 'sealed'), { recursive: true });
      await writeFile(path.join(ws.path, 'sealed', 'file.txt'), 'x\n');
      await chmod(path.join(ws.path, 'sealed'), 0o000);
      execFileSync('chmod', ['-R', 'a-w', ws.path]);

      await manager.release(ws, { signal: liveSignal() });

      expect(existsSync(ws.path)).toBe(false);
      expect(existsSync(ws.gitDir)).toBe(false);
      expect(git(repo, 'worktree', 'list', '--porcelain').split('\n').filter((line) => line.startsWith('worktree '))).toEqual([`worktree ${repo}`]);
      expect(git(repo, 'show', 'agentgate/run-1:work.txt')).toBe('work');
    });

    it('reaping removes a locked, read-only linked worktree left by an earlier version without a stale entry', async () => {
      const old = path.join(home, 'worktrees', 'old-run');
      git(repo, 'worktree', 'add', '--quiet', '-b', 'agentgate/old-run', old);
      git(repo, 'worktree', 'lock', old);
      execFileSync('chmod', ['-R', 'a-w', old]);

      const reaped = await new WorkspaceManager({ home }).reapStale({ isLive: (runId) => runId === 'run-1', signal: liveSignal() });

      expect(reaped).toEqual(['old-run']);
      expect(existsSync(old)).toBe(false);
      expect(git(repo, 'worktree', 'list', '--porcelain')).not.toContain(old);
      expect(existsSync(path.join(repo, '.git', 'worktrees', 'old-run'))).toBe(false);
    });
  });

  describe('when the agent creates nested repositories or writes into a submodule path', () => {
    it('snapshots everything else and reports those paths as uncaptured', async () => {
      const lib = path.join(ws.path, 'vendor', 'lib');
      await mkdir(lib, { recursive: true });
      git(lib, 'init', '--quiet');
      await writeFile(path.join(lib, 'lib.js'), 'export {}\n');
      git(lib, 'add', '--all');
      git(lib, 'commit', '--quiet', '-m', 'nested');
      const empty = path.join(ws.path, 'scratch');
      await mkdir(empty, { recursive: true });
      git(empty, 'init', '--quiet');
      await writeFile(path.join(empty, 'notes.txt'), 'never committed\n');
      await writeFile(path.join(ws.path, 'src', 'math.js'), 'export const add = (a, b) => a + b;\n');

      const snap = await snapshot();

      expect(snap.uncaptured).toEqual(['scratch', 'vendor/lib']);
      expect(snap.changedFiles).toEqual(['src/math.js']);
      expect(git(repo, 'ls-tree', '-r', '--name-only', snap.sha)).not.toMatch(/vendor|scratch/);
    });

    it('reports files written below a gitlink of the base commit', async () => {
      await manager.release(ws, { signal: liveSignal() });
      const subCommit = git(repo, 'rev-parse', 'HEAD');
      git(repo, 'update-index', '--add', '--cacheinfo', `160000,${subCommit},sub`);
      git(repo, 'commit', '--quiet', '-m', 'add a submodule');
      ws = await manager.acquire({ source: 'local', path: repo }, { runId: 'run-2', signal: liveSignal() });
      await writeFile(path.join(ws.path, 'sub', 'inside.txt'), 'lost\n');

      const snap = await snapshot();

      expect(snap.uncaptured).toEqual(['sub']);
      expect(snap.noChange).toBe(true);
    });
  });

  describe('the run branch', () => {
    it('reaches the user’s repository after each snapshot and nothing else there changes', async () => {
      const before = await userGitState(repo);
      await writeFile(path.join(ws.path, 'one.txt'), '1\n');
      const first = await snapshot(1);
      expect(git(repo, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(first.sha);
      await writeFile(path.join(ws.path, 'two.txt'), '2\n');
      const second = await snapshot(2);

      expect(git(repo, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(second.sha);
      expect(git(repo, 'rev-list', '--count', `${ws.baseSha}..agentgate/run-1`)).toBe('2');
      expect(git(repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/agentgate/')).toBe('refs/heads/agentgate/run-1');
      expect(await userGitState(repo)).toEqual(before);
      expect(existsSync(path.join(repo, '.git', 'FETCH_HEAD'))).toBe(false);
      expect(git(repo, 'fsck', '--no-progress', '--no-dangling')).toBe('');
    });

    it('is not moved by the agent’s branch switches, resets or commits in its own repository', async () => {
      await writeFile(path.join(ws.path, 'one.txt'), '1\n');
      agentGit('add', '--all');
      agentGit('commit', '--quiet', '-m', 'agent commit');
      agentGit('checkout', '--quiet', '-b', 'other');
      agentGit('branch', '--force', 'agentgate/run-1', ws.baseSha);
      const snap = await snapshot();

      expect(git(repo, 'log', '--format=%s', `${ws.baseSha}..agentgate/run-1`)).toBe('agentgate: iteration 1');
      expect(git(repo, 'show', `${snap.sha}:one.txt`)).toBe('1');
      expect(git(repo, 'branch', '--list', 'other')).toBe('');
      await rm(path.join(ws.path, 'one.txt'));
    });
  });
});
