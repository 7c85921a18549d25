import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keepReason } from '../../src/cli/branches-command.js';
import type { StoredRun } from '../../src/store/types.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { Snapshotter } from '../../src/workspace/snapshotter.js';
import { runCli } from '../helpers/cli.js';
import { readRun } from '../helpers/store-checks.js';
import { AGENTS, agentOutput, agentReceived, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

function setup(): TempRepo {
  const r = makeRepo();
  repos.push(r);
  return r;
}

async function exec(r: TempRepo, agent: string, extra: string[] = []) {
  const res = await runCli(
    ['exec', '--path', r.repo, '--prompt', 'Implement add and multiply in src/math.js', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json', ...extra],
    { env: { AGENTGATE_HOME: r.home } },
  );
  return { ...res, runId: String(res.json?.['runId']) };
}

const runBranches = (r: TempRepo): string[] => git(r.repo, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/agentgate/').split('\n').filter((b) => b !== '');

describe('honest branches', () => {
  it('prints the gate plan at the start and the uncommitted-changes warning at the end and in the --json line', async () => {
    const r = setup();
    writeFileSync(join(r.repo, 'README.md'), 'local edit, not committed\n');
    const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.correct));
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(/^gate plan: /m);
    const warnings = res.json?.['warnings'];
    expect(Array.isArray(warnings) && warnings.some((w) => typeof w === 'string' && /uncommitted/i.test(w))).toBe(true);
    expect(res.stderr).toMatch(/^ {2}warning: .*uncommitted/im);
  });

  describe('agentgate branches prune', () => {
    it('removes the branches of failed runs, keeps succeeded ones unless --result all, and branches of unknown runs', async () => {
      const r = setup();
      const failed = await exec(r, writeAgent(r.root, 'wrong', AGENTS.alwaysWrong), ['--max-iterations', '1']);
      expect(failed.code).toBe(1);
      const passed = await exec(r, writeAgent(r.root, 'right', AGENTS.correct));
      expect(passed.code).toBe(0);
      // A branch whose run this home does not know (another home, or still being created) is kept.
      git(r.repo, 'branch', 'agentgate/not-a-known-run');
      expect(runBranches(r).sort()).toEqual([`agentgate/${failed.runId}`, `agentgate/${passed.runId}`, 'agentgate/not-a-known-run'].sort());

      const recent = await runCli(['branches', 'prune', '--path', r.repo], { env: { AGENTGATE_HOME: r.home } });
      expect(recent.code).toBe(0);
      expect(runBranches(r)).toHaveLength(3); // finished less than 7 days ago

      const dry = await runCli(['branches', 'prune', '--path', r.repo, '--older-than', '0', '--dry-run'], { env: { AGENTGATE_HOME: r.home } });
      expect(dry.stdout).toContain(`would remove agentgate/${failed.runId}`);
      expect(runBranches(r)).toHaveLength(3);

      const pruned = await runCli(['branches', 'prune', '--path', r.repo, '--older-than', '0'], { env: { AGENTGATE_HOME: r.home } });
      expect(pruned.code).toBe(0);
      expect(pruned.stdout).toContain(`removed agentgate/${failed.runId}`);
      expect(pruned.stderr).toContain(`kept agentgate/${passed.runId}: its run succeeded (passed)`);
      expect(pruned.stderr).toContain('kept agentgate/not-a-known-run: no run of that id in this AgentGate home');
      expect(runBranches(r).sort()).toEqual([`agentgate/${passed.runId}`, 'agentgate/not-a-known-run'].sort());

      const all = await runCli(['branches', 'prune', '--path', r.repo, '--older-than', '0', '--result', 'all'], { env: { AGENTGATE_HOME: r.home } });
      expect(all.code).toBe(0);
      expect(runBranches(r)).toEqual(['agentgate/not-a-known-run']);
    });

    it('rejects an unknown --result with exit 2', async () => {
      const r = setup();
      const res = await runCli(['branches', 'prune', '--path', r.repo, '--result', 'passed'], { env: { AGENTGATE_HOME: r.home } });
      expect(res.code).toBe(2);
    });
  });
});

describe('a run that ends before its first snapshot', () => {
  it('leaves no branch and prints none', async () => {
    const r = setup();
    // An invalid verify.yaml fails the run after its workspace exists, before any agent runs.
    writeFileSync(join(r.repo, 'verify.yaml'), 'version: "1"\ntests: 42\n');
    git(r.repo, 'add', 'verify.yaml');
    git(r.repo, 'commit', '-q', '-m', 'broken gates');
    const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.correct));
    expect(res.code).toBe(2);
    expect(res.json?.['branch']).toBeNull();
    expect(res.stderr).toContain('no branch (no iteration changed anything)');
    expect(runBranches(r)).toEqual([]);
  });
});

describe('keepReason', () => {
  const run = (state: StoredRun['state'], completedAt: string | null): StoredRun => ({
    id: 'r',
    workOrderId: 'w',
    state,
    iteration: 1,
    maxIterations: 3,
    result: null,
    error: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    completedAt,
    branch: 'agentgate/r',
    meta: {},
    version: 1,
  });
  const later = Date.parse('2026-02-01T00:00:00.000Z');

  it('never removes the branch of a run that has not finished, whatever --result and age', () => {
    for (const state of ['queued', 'building', 'verifying', 'snapshotting'] as const) {
      expect(keepReason(run(state, null), 'all', later)).toBe(`its run is ${state}`);
    }
  });

  it('removes finished runs by result and age', () => {
    expect(keepReason(run('failed', '2026-01-02T00:00:00.000Z'), 'failed', later)).toBeUndefined();
    expect(keepReason(run('canceled', '2026-01-02T00:00:00.000Z'), 'failed', later)).toBe('its run canceled');
    expect(keepReason(run('canceled', '2026-01-02T00:00:00.000Z'), 'canceled', later)).toBeUndefined();
    expect(keepReason(run('failed', '2026-03-01T00:00:00.000Z'), 'failed', later)).toBe('its run finished too recently');
    expect(keepReason(null, 'all', later)).toBe('no run of that id in this AgentGate home');
  });
});

describe('the Snapshotter by default', () => {
  it('records an iteration that changed nothing without a commit or a branch, and the first change creates the branch', async () => {
    const r = setup();
    const artifacts = join(r.home, 'runs', 'run-skip');
    const ws = await new WorkspaceManager({ home: r.home }).acquire({ source: 'local', path: r.repo }, { runId: 'run-skip', signal: new AbortController().signal });
    const snapshotter = new Snapshotter();
    const snap = async (iteration: number, previousSha?: string) => {
      const outcome = await snapshotter.snapshot({ workspace: ws, iteration, artifactsDir: artifacts, signal: new AbortController().signal, ...(previousSha === undefined ? {} : { previousSha }) });
      if (!outcome.ok) throw outcome.error;
      return outcome.snapshot;
    };
    const first = await snap(1);
    expect(first).toMatchObject({ noChange: true, committed: false, sha: ws.baseSha, filesChanged: 0 });
    expect(runBranches(r)).toEqual([]);
    writeFileSync(join(ws.path, 'added.txt'), 'x\n');
    const second = await snap(2, first.sha);
    expect(second).toMatchObject({ noChange: false, committed: true, filesChanged: 1, changedFiles: ['added.txt'] });
    expect(git(r.repo, 'rev-parse', 'agentgate/run-skip')).toBe(second.sha);
    const third = await snap(3, second.sha);
    expect(third).toMatchObject({ noChange: true, committed: false, sha: second.sha, changedFiles: ['added.txt'] });
    expect(git(r.repo, 'log', '--format=%s', 'agentgate/run-skip', `^${ws.baseSha}`)).toBe('agentgate: iteration 2');
  });
});

describe('an iteration in which the agent changed nothing', () => {
  it("is said so in the next iteration's feedback", async () => {
    const r = setup();
    const idle = `printf 'received-feedback-%s: %s\\n' "$AGENTGATE_ITERATION" "$(printf '%s' "\${AGENTGATE_FEEDBACK:-}" | base64 -w0)"`;
    const res = await exec(r, writeAgent(r.root, 'idle', idle), ['--max-iterations', '2', '--strategy', 'fixed']);
    expect(res.code).toBe(1);
    const output = agentOutput((await readRun(r.home, res.runId)).events);
    expect(agentReceived(output, 'feedback', 2)).toMatch(/^Note: your last iteration changed no files/);
  });
});
