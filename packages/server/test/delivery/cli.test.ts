import { afterEach, describe, expect, it } from 'vitest';
import { taskSpecFromFlags, type ExecFlags } from '../../src/cli/run-command.js';
import { runCli } from '../helpers/cli.js';
import { thrownAgentGateError } from '../helpers/errors.js';
import { join } from 'node:path';
import { AGENTS, git, makeRepo, writeAgent } from '../helpers/git-repo.js';
import { GitHubEmulator } from '../fixtures/forge/github-emulator.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const BASE: ExecFlags = { prompt: 'Implement add', agent: 'command', agentCommand: 'true', delivery: 'local' };

describe('agentgate exec --delivery github|gitlab --wait-ci', () => {
  it('turns the flags into a pull request on the forge workspace that waits for CI', () => {
    const spec = taskSpecFromFlags({ ...BASE, github: 'acme/calc', delivery: 'github', waitCi: true }, '/');
    expect(spec.spec.execution.workspace).toEqual({ source: 'github', repo: 'acme/calc' });
    expect(spec.spec.delivery.pr.create).toBe(true);
    expect(spec.spec.delivery.ci.wait).toBe(true);
    const gitlab = taskSpecFromFlags({ ...BASE, gitlab: 'group/calc', delivery: 'gitlab' }, '/');
    expect(gitlab.spec.execution.workspace).toEqual({ source: 'gitlab', project: 'group/calc' });
    expect(gitlab.spec.delivery.ci.wait).toBe(false);
  });

  it('rejects a forge delivery without that forge’s workspace, and --wait-ci without a forge', () => {
    const usage = (flags: ExecFlags): string => thrownAgentGateError(() => taskSpecFromFlags(flags, '/')).message;
    expect(usage({ ...BASE, path: '.', delivery: 'github' })).toContain('--delivery github needs --github <owner/name>');
    expect(usage({ ...BASE, path: '.', waitCi: true })).toContain('--wait-ci needs --delivery github or gitlab');
    expect(usage({ ...BASE, path: '.', github: 'a/b' })).toContain('cannot be used together');
  });

  it('exits 2 naming the token to set when GitHub is not configured, before any run', async () => {
    const repo = makeRepo();
    cleanups.push(() => repo.cleanup());
    const result = await runCli(['exec', '--github', 'acme/calc', '--delivery', 'github', '--wait-ci', '--prompt', 'x', '--agent', 'command', '--agent-command', 'true', '--json'], {
      env: { AGENTGATE_HOME: repo.home, AGENTGATE_GITHUB_TOKEN: '', GITHUB_TOKEN: '' },
    });
    expect(result.code).toBe(2);
    expect(result.json?.['error']).toMatchObject({ code: 'AG_ERR_DELIVERY_UNSUPPORTED' });
    expect(String((result.json?.['error'] as { message: string }).message)).toContain('AGENTGATE_GITHUB_TOKEN');
  }, 30_000);

  it('runs a task to a pull request whose CI passed, through the real CLI and the configured runtime', async () => {
    const repo = makeRepo();
    cleanups.push(() => repo.cleanup());
    const bare = join(repo.root, 'origin.git');
    git(repo.root, 'clone', '--quiet', '--bare', repo.repo, bare);
    const token = 'ghp_cliEmulatorToken0123456789abcdefghijkl';
    const emulator = await GitHubEmulator.start({ owner: 'acme', repo: 'calc', bareRepo: bare, token, ci: [{ kind: 'pass' }] });
    cleanups.push(() => emulator.close());
    const agent = writeAgent(repo.root, 'agent', AGENTS.correct);
    const result = await runCli(['exec', '--github', 'acme/calc', '--delivery', 'github', '--wait-ci', '--prompt', 'Implement add and multiply', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json'], {
      env: { AGENTGATE_HOME: repo.home, AGENTGATE_GITHUB_TOKEN: token, AGENTGATE_GITHUB_API_URL: emulator.url },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.json).toMatchObject({ state: 'succeeded', result: 'passed', prUrl: expect.stringContaining('/pull/') });
    expect(emulator.pulls).toHaveLength(1);
    expect(emulator.pulls[0]?.draft).toBe(false);
    expect(git(bare, 'rev-parse', `refs/heads/${String(result.json?.['branch'])}`)).toMatch(/^[0-9a-f]{40}$/);
    expect(result.stdout + result.stderr).not.toContain(token);
    expect(emulator.schemaErrors).toEqual([]);
  }, 60_000);
});
