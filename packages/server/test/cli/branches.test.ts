import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { AGENTS, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

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
    it('removes the branches of failed runs, keeps succeeded ones unless --result all, and never a running one', async () => {
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
