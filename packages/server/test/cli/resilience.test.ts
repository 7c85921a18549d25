/**
 * The CLI under hostile conditions of the machine rather than the agent: an AGENTGATE_HOME that is not a
 * directory, and a disk that fills up during a run (a real tmpfs of a few MB, mounted in a private mount
 * namespace with `unshare -m`, so nothing outside the test sees it).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { AGENTS, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0).reverse()) fn();
});

function setup(): TempRepo {
  const repo = makeRepo();
  cleanups.push(repo.cleanup);
  return repo;
}

describe('agentgate exec', () => {
  it('exits 2 naming the path when AGENTGATE_HOME is a file', async () => {
    const r = setup();
    const home = join(r.root, 'home-is-a-file');
    writeFileSync(home, 'not a directory');
    const res = await runCli(['exec', '--path', r.repo, '--prompt', 'x', '--agent', 'command', '--agent-command', `sh ${writeAgent(r.root, 'a', AGENTS.correct)}`, '--json'], {
      env: { AGENTGATE_HOME: home },
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('AG_ERR_CONFIG_INVALID');
    expect(res.stderr).toContain(home);
    expect(res.json).toMatchObject({ error: { code: 'AG_ERR_CONFIG_INVALID' } });
  });

  it('classifies a full disk, closes the run once space is back, and still prints its runId', async () => {
    const r = setup();
    // The agent fills the disk AGENTGATE_HOME lives on (its workspace is there) and then "succeeds".
    const agent = writeAgent(r.root, 'a', `${AGENTS.correct}\nhead -c 64M /dev/zero > filler.bin 2>/dev/null || true\nexit 0`);
    const mountHome = 'mkdir -p "$AGENTGATE_HOME" && mount -t tmpfs -o size=6m tmpfs "$AGENTGATE_HOME" && exec "$@"';
    const res = await runCli(['exec', '--path', r.repo, '--prompt', 'x', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json'], {
      env: { AGENTGATE_HOME: r.home },
      wrap: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', mountHome, 'sh'],
    });
    expect(res.code, res.stderr).toBe(1);
    expect(res.json?.['runId'], res.stdout + res.stderr).toEqual(expect.stringMatching(/^[0-9a-f-]{36}$/));
    expect(res.json).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_DISK_FULL' } });
  });
});
