/**
 * The real `agentgate exec` CLI with the sandbox on (the default, `auto`): nothing an agent or a gate
 * starts — `setsid`, ignoring SIGTERM/SIGHUP — outlives the run, whether it ends normally, is canceled or
 * the CLI is killed with SIGKILL; AgentGate's environment is unreadable from inside; writes outside the
 * workspace fail. Skipped where bubblewrap does not work (the fallback is covered by the `none` cases).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONFORMANCE_MARKER_ENV, liveProcessesWithMarker } from '../agents/conformance.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { AGENTS, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { BWRAP_PATH_ENV, probeBwrap } from '../../src/util/sandbox.js';

// Where bubblewrap cannot run (a developer's container), these suites are skipped; in CI (`.ci/run`
// installs bubblewrap) they always run, so a broken sandbox fails the build instead of passing silently.
const BWRAP_WORKS = probeBwrap().available;
const FORGE_TOKEN = 'ghp_sandboxSentinelForgeToken0123456789AB';
const SERVER_KEY = 'agentgate-sandbox-sentinel-api-key-0123456789';

/** A daemon that escapes the process group and ignores the signals a polite kill sends. */
const escape = (seconds: number): string => `setsid sh -c 'trap "" TERM HUP; exec sleep ${seconds}' >/dev/null 2>&1 &`;
const WRITE_MATH = AGENTS.correct;

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

/** A repository whose gate is `gate` (committed: the plan is read from the base commit). */
function setup(gate = 'grep -q "a \\* b" src/math.js'): TempRepo {
  const r = makeRepo();
  repos.push(r);
  writeFileSync(join(r.repo, 'verify.yaml'), `version: "1"\ntests:\n  - name: unit\n    command: |\n      ${gate}\n    timeout: 900\n`);
  git(r.repo, 'commit', '-qam', 'gate');
  return r;
}

interface Started {
  pid: number;
  done: Promise<CliResult>;
}

function exec(r: TempRepo, agentBody: string, env: Record<string, string>, extra: string[] = []): Started {
  let pid = 0;
  const done = runCli(
    ['exec', '--path', r.repo, '--prompt', 'Implement multiply', '--agent', 'command', '--agent-command', `sh ${writeAgent(r.root, 'agent', agentBody)}`, '--json', ...extra],
    { env: { AGENTGATE_HOME: r.home, ...env }, onSpawn: (p) => (pid = p) },
  );
  return { pid, done };
}

/** Polls /proc (up to `timeoutMs`) until `check` holds for the processes carrying `marker`. */
async function waitForProcesses(marker: string, check: (args: string[]) => boolean, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const args = (await liveProcessesWithMarker(marker)).map((p) => p.args);
    if (check(args) || Date.now() > deadline) return args;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const noneLeft = (marker: string): Promise<string[]> => waitForProcesses(marker, (args) => args.length === 0, 5000);
const running = (marker: string, command: string): Promise<string[]> => waitForProcesses(marker, (args) => args.some((a) => a.includes(command)), 60_000);

function marker(name: string): Record<string, string> {
  return { [CONFORMANCE_MARKER_ENV]: `sandbox-${name}-${process.pid}-${Date.now()}` };
}

describe.skipIf(!BWRAP_WORKS && process.env['CI'] !== 'true')('agentgate exec in the bubblewrap sandbox', () => {
  describe('when an agent and a gate leave escaped daemons behind', () => {
    it('after a normal end, no process of the run is left', async () => {
      const r = setup(`${escape(1002)} grep -q "a \\* b" src/math.js`);
      const env = marker('normal');
      const res = await exec(r, `${escape(1001)}\n${WRITE_MATH}`, env).done;
      expect(res.code, res.stderr).toBe(0);
      expect(res.json).toMatchObject({ state: 'succeeded' });
      expect(await noneLeft(Object.values(env)[0] ?? '')).toEqual([]);
    });

    it('after a cancel during the agent, no process of the run is left', async () => {
      const r = setup();
      const env = marker('cancel-agent');
      const m = Object.values(env)[0] ?? '';
      const run = exec(r, `${escape(1001)}\nexec sleep 1003`, env);
      expect(await running(m, 'sleep 1003')).toEqual(expect.arrayContaining([expect.stringContaining('sleep 1001')]));
      process.kill(run.pid, 'SIGINT');
      const res = await run.done;
      expect(res.code).toBe(130);
      expect(await noneLeft(m)).toEqual([]);
    });

    it('after a cancel during the gate, no process of the run is left', async () => {
      const r = setup(`${escape(1002)} sleep 1004`);
      const env = marker('cancel-gate');
      const m = Object.values(env)[0] ?? '';
      const run = exec(r, WRITE_MATH, env);
      expect(await running(m, 'sleep 1004')).toEqual(expect.arrayContaining([expect.stringContaining('sleep 1002')]));
      process.kill(run.pid, 'SIGINT');
      const res = await run.done;
      expect(res.code).toBe(130);
      expect(await noneLeft(m)).toEqual([]);
    });

    it('after kill -9 of the CLI during the agent, no process of the run is left', async () => {
      const r = setup();
      const env = marker('kill-agent');
      const m = Object.values(env)[0] ?? '';
      const run = exec(r, `${escape(1001)}\nexec sleep 1003`, env);
      await running(m, 'sleep 1003');
      process.kill(run.pid, 'SIGKILL');
      expect((await run.done).signal).toBe('SIGKILL');
      expect(await noneLeft(m)).toEqual([]);
    });

    it('after kill -9 of the CLI during the gate, no process of the run is left', async () => {
      const r = setup(`${escape(1002)} sleep 1004`);
      const env = marker('kill-gate');
      const m = Object.values(env)[0] ?? '';
      const run = exec(r, WRITE_MATH, env);
      await running(m, 'sleep 1004');
      process.kill(run.pid, 'SIGKILL');
      expect((await run.done).signal).toBe('SIGKILL');
      expect(await noneLeft(m)).toEqual([]);
    });
  });

  describe("AgentGate's own secrets", () => {
    const SNOOP = `cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -e ${FORGE_TOKEN} -e ${SERVER_KEY} > found-secrets.txt || true\n${WRITE_MATH}`;

    it('cannot be read from any /proc/*/environ inside the sandbox', async () => {
      const r = setup();
      const res = await exec(r, SNOOP, { AGENTGATE_GITHUB_TOKEN: FORGE_TOKEN, AGENTGATE_API_KEY: SERVER_KEY }).done;
      expect(res.code, res.stderr).toBe(0);
      expect(git(r.repo, 'show', `${String(res.json?.['branch'])}:found-secrets.txt`)).toBe('');
    });

    it('can be read without it (--sandbox none), which is what the sandbox prevents', async () => {
      const r = setup();
      const res = await exec(r, SNOOP, { AGENTGATE_GITHUB_TOKEN: FORGE_TOKEN, AGENTGATE_API_KEY: SERVER_KEY }, ['--sandbox', 'none']).done;
      expect(res.code, res.stderr).toBe(0);
      expect(git(r.repo, 'show', `${String(res.json?.['branch'])}:found-secrets.txt`)).toContain(FORGE_TOKEN);
    });
  });

  describe('writes outside the workspace', () => {
    it("fail: the user's repository, the user's home, AgentGate's home; the store is not even visible", async () => {
      const r = setup();
      const userHome = join(r.root, 'user-home');
      mkdirSync(userHome);
      const agent = [
        'for target in "$SBX_USER_REPO/escaped.txt" "$SBX_USER_HOME/escaped.txt" "$AGENTGATE_HOME/escaped.txt"; do',
        '  if (echo x > "$target") 2>/dev/null; then echo "wrote $target"; else echo refused; fi',
        'done > outside-writes.txt',
        'test -e "$AGENTGATE_HOME/agentgate.db" && echo store-visible >> outside-writes.txt || true',
        'echo ok > "$HOME/inside-home.txt" && echo "home writable: $(cat "$HOME/inside-home.txt")" >> outside-writes.txt',
        WRITE_MATH,
      ].join('\n');
      const res = await exec(r, agent, { HOME: userHome, SBX_USER_HOME: userHome, SBX_USER_REPO: r.repo }).done;
      expect(res.code, res.stderr).toBe(0);
      expect(git(r.repo, 'show', `${String(res.json?.['branch'])}:outside-writes.txt`).split('\n')).toEqual(['refused', 'refused', 'refused', 'home writable: ok']);
      for (const file of [join(r.repo, 'escaped.txt'), join(userHome, 'escaped.txt'), join(r.home, 'escaped.txt')]) expect(existsSync(file)).toBe(false);
      // The run's own home took the write instead; it lived outside the artifacts and ended with the run.
      const runId = String(res.json?.['runId']);
      expect(existsSync(join(r.home, 'sandbox', runId))).toBe(false);
      expect(existsSync(join(r.home, 'runs', runId, 'sandbox'))).toBe(false);
    });
  });
});

describe('agentgate exec --sandbox', () => {
  it('none runs the agent and the gates without bubblewrap', async () => {
    const r = setup();
    const res = await exec(r, WRITE_MATH, {}, ['--sandbox', 'none']).done;
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).not.toContain('warning: sandbox');
  });

  it('bwrap without a working bubblewrap is a configuration error: exit 2, nothing runs', async () => {
    const r = setup();
    const res = await exec(r, WRITE_MATH, { [BWRAP_PATH_ENV]: '/nonexistent/bwrap' }, ['--sandbox', 'bwrap']).done;
    expect(res.code).toBe(2);
    expect(res.json).toMatchObject({ error: { code: 'AG_ERR_CONFIG_INVALID' } });
    expect(existsSync(join(r.home, 'worktrees'))).toBe(false);
  });

  it('auto without a working bubblewrap warns and runs unsandboxed', async () => {
    const r = setup();
    const res = await exec(r, WRITE_MATH, { [BWRAP_PATH_ENV]: '/nonexistent/bwrap' }).done;
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/warning: sandbox: .*unsandboxed/);
  });

  it('AGENTGATE_SANDBOX=bwrap is the default a flag overrides', async () => {
    const r = setup();
    const refused = await exec(r, WRITE_MATH, { [BWRAP_PATH_ENV]: '/nonexistent/bwrap', AGENTGATE_SANDBOX: 'bwrap' }).done;
    expect(refused.code).toBe(2);
    const res = await exec(r, WRITE_MATH, { [BWRAP_PATH_ENV]: '/nonexistent/bwrap', AGENTGATE_SANDBOX: 'bwrap' }, ['--sandbox', 'none']).done;
    expect(res.code, res.stderr).toBe(0);
  });
});
