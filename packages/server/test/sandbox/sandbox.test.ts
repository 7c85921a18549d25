/**
 * util/sandbox.ts: the bwrap invocation, the per-run directories, the availability probe and policy
 * resolution; and util/process.ts running real processes inside bubblewrap (skipped where it does not work).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { runProcess } from '../../src/util/process.js';
import {
  BWRAP_PATH_ENV,
  currentSandboxPolicy,
  effectiveSandbox,
  prepareRunSandbox,
  probeBwrap,
  removeRunSandbox,
  runSandboxRoot,
  runWithSandboxPolicy,
  sandboxCommand,
  sandboxWarnings,
  type SandboxSpec,
} from '../../src/util/sandbox.js';

// Where bubblewrap cannot run (a developer's container), these suites are skipped; in CI (`.ci/run`
// installs bubblewrap) they always run, so a broken sandbox fails the build instead of passing silently.
const BWRAP_WORKS = probeBwrap().available;
const NO_BWRAP_ENV = { ...process.env, [BWRAP_PATH_ENV]: '/nonexistent/bwrap' };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** `<root>/home` laid out like $AGENTGATE_HOME, with a run's worktree and artifacts. */
function layout(): { root: string; home: string; workspace: string; artifacts: string; outside: string } {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-sandbox-'));
  dirs.push(root);
  const home = join(root, 'home');
  const workspace = join(home, 'worktrees', 'run-1');
  const artifacts = join(home, 'runs', 'run-1');
  const outside = join(root, 'outside');
  for (const dir of [workspace, artifacts, outside]) mkdirSync(dir, { recursive: true });
  writeFileSync(join(home, 'agentgate.db'), 'store');
  writeFileSync(join(artifacts, 'iteration-1-prompt.md'), 'the prompt');
  return { root, home, workspace, artifacts, outside };
}

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return { bwrapPath: '/usr/bin/bwrap', network: true, writable: ['/w'], readable: [], hidden: [], masked: [], home: '/h', tmp: '/t', ...overrides };
}

const TASK: TaskSpecInput = {
  apiVersion: 'agentgate.io/v1',
  kind: 'TaskSpec',
  metadata: { name: 'sandbox' },
  spec: { goal: { prompt: 'p' }, execution: { workspace: { source: 'local', path: '/repo' } } },
};

describe('sandboxCommand', () => {
  it('runs the argv in bwrap with the host read-only, its own PID namespace, dying with its parent', () => {
    const cmd = sandboxCommand(spec(), ['sh', '-c', 'echo hi'], { PATH: '/usr/bin' }, '/w');
    expect(cmd.file).toBe('/usr/bin/bwrap');
    expect(cmd.args.slice(0, 3)).toEqual(['--ro-bind', '/', '/']);
    for (const flag of ['--unshare-pid', '--die-with-parent', '--unshare-ipc', '--unshare-uts']) expect(cmd.args).toContain(flag);
    expect(cmd.args.join(' ')).toContain('--cap-drop ALL');
    expect(cmd.args.join(' ')).toContain('--bind /w /w');
    expect(cmd.args.join(' ')).toContain('--chdir /w -- sh -c echo hi');
    expect(cmd.args).not.toContain('--unshare-net');
  });

  it('cuts the network only when the policy says so', () => {
    expect(sandboxCommand(spec({ network: false }), ['true'], {}, '/w').args).toContain('--unshare-net');
  });

  it('passes the environment to bwrap, never on its command line, with HOME and TMPDIR of the run', () => {
    const cmd = sandboxCommand(spec(), ['true'], { ANTHROPIC_API_KEY: 'sk-ant-secret', HOME: '/root', SSH_AUTH_SOCK: '/tmp/agent.sock' }, '/w');
    expect(cmd.args.join(' ')).not.toContain('sk-ant-secret');
    expect(cmd.env).toMatchObject({ ANTHROPIC_API_KEY: 'sk-ant-secret', HOME: '/h', TMPDIR: '/t', XDG_CONFIG_HOME: '/h/.config' });
    expect(cmd.env['SSH_AUTH_SOCK']).toBeUndefined();
  });

  it('hides, then re-exposes read-only, then binds writable — in that order', () => {
    const args = sandboxCommand(spec({ hidden: ['/ag'], readable: ['/ag/runs/r'], writable: ['/ag/worktrees/r'] }), ['true'], {}, '/w').args.join(' ');
    expect(args.indexOf('--tmpfs /ag')).toBeLessThan(args.indexOf('--ro-bind /ag/runs/r'));
    expect(args.indexOf('--ro-bind /ag/runs/r')).toBeLessThan(args.indexOf('--bind /ag/worktrees/r'));
  });
});

describe('policy', () => {
  it('is the run scope, else undefined outside any run (unless AGENTGATE_SANDBOX is set)', () => {
    expect(currentSandboxPolicy({})).toBeUndefined();
    expect(currentSandboxPolicy({ AGENTGATE_SANDBOX: 'none' })).toEqual({ mode: 'none', network: true });
    runWithSandboxPolicy({ mode: 'bwrap', network: false }, () => expect(currentSandboxPolicy({})).toEqual({ mode: 'bwrap', network: false }));
  });

  it('resolves into the ResolvedTaskSpec: auto with network by default, the spec over the configured mode', () => {
    expect(resolveTaskSpec(TASK).sandbox).toEqual({ mode: 'auto', network: true });
    expect(resolveTaskSpec(TASK, { sandboxMode: 'none' }).sandbox).toEqual({ mode: 'none', network: true });
    const explicit: TaskSpecInput = { ...TASK, spec: { ...TASK.spec, execution: { ...TASK.spec.execution, sandbox: { mode: 'bwrap', network: false } } } };
    expect(resolveTaskSpec(explicit, { sandboxMode: 'none', checkSandbox: () => undefined }).sandbox).toEqual({ mode: 'bwrap', network: false });
  });

  it('rejects a required bwrap that is unavailable at submission with AG_ERR_CONFIG_INVALID', () => {
    const explicit: TaskSpecInput = { ...TASK, spec: { ...TASK.spec, execution: { ...TASK.spec.execution, sandbox: { mode: 'bwrap' } } } };
    const unavailable = (): void => {
      effectiveSandbox({ mode: 'bwrap', network: true }, NO_BWRAP_ENV);
    };
    expect(() => resolveTaskSpec(explicit, { checkSandbox: unavailable })).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }) as unknown as Error);
  });

  it('reads AGENTGATE_SANDBOX in the configuration and rejects a bad value', () => {
    expect(loadConfig({ HOME: '/h', AGENTGATE_SANDBOX: 'bwrap' }).sandbox).toBe('bwrap');
    expect(loadConfig({ HOME: '/h' }).sandbox).toBeUndefined();
    expect(() => loadConfig({ HOME: '/h', AGENTGATE_SANDBOX: 'docker' })).toThrow(AgentGateError);
  });
});

describe('availability', () => {
  it('reports a missing bwrap, falls back under auto with a warning, and refuses a required one', () => {
    expect(probeBwrap(NO_BWRAP_ENV)).toMatchObject({ available: false });
    expect(effectiveSandbox({ mode: 'auto', network: true }, NO_BWRAP_ENV)).toMatchObject({ kind: 'none', requested: 'auto' });
    expect(sandboxWarnings({ mode: 'auto', network: true }, NO_BWRAP_ENV)).toEqual([expect.stringContaining('unsandboxed')]);
    expect(sandboxWarnings({ mode: 'none', network: true }, NO_BWRAP_ENV)).toEqual([]);
    expect(() => effectiveSandbox({ mode: 'bwrap', network: true }, NO_BWRAP_ENV)).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }) as unknown as Error);
  });

  it('gives no sandbox for none', () => {
    const l = layout();
    expect(prepareRunSandbox({ policy: { mode: 'none', network: true }, role: 'agent', workspacePath: l.workspace, artifactsDir: l.artifacts, env: {} })).toBeUndefined();
  });
});

describe.skipIf(!BWRAP_WORKS && process.env['CI'] !== 'true')('prepareRunSandbox (bwrap available)', () => {
  it('keeps the per-run home outside the artifacts, hides $AGENTGATE_HOME, re-exposes what the run needs, and is removable', async () => {
    const l = layout();
    const stateDir = join(l.outside, 'claude-config');
    const sandbox = prepareRunSandbox({ policy: { mode: 'auto', network: true }, role: 'agent', workspacePath: l.workspace, artifactsDir: l.artifacts, env: { CLAUDE_CONFIG_DIR: stateDir } });
    expect(sandbox).toBeDefined();
    if (sandbox === undefined) return;
    expect(runSandboxRoot(l.artifacts, 'agent').root).toBe(join(l.home, 'sandbox', 'run-1', 'agent'));
    expect(sandbox.home).toBe(join(l.home, 'sandbox', 'run-1', 'agent', 'home'));
    expect(existsSync(sandbox.home) && existsSync(sandbox.tmp) && existsSync(stateDir)).toBe(true);
    expect(sandbox.writable).toEqual([l.workspace, stateDir, sandbox.home, sandbox.tmp]);
    expect(sandbox.hidden).toContain(l.home);
    expect(sandbox.readable).toContain(l.artifacts);
    await removeRunSandbox(l.artifacts);
    expect(existsSync(join(l.home, 'sandbox', 'run-1'))).toBe(false);
    expect(existsSync(l.artifacts)).toBe(true);
  });
});

describe.skipIf(!BWRAP_WORKS && process.env['CI'] !== 'true')('what git may read outside the workspace', () => {
  it('comes from AgentGate’s own git directory of the run, never from the agent’s .git', () => {
    const l = layout();
    // AgentGate's record: the run's repositories borrow the cache clone's objects (under the hidden home).
    const cacheObjects = join(l.home, 'repos', 'abc.git', 'objects');
    mkdirSync(cacheObjects, { recursive: true });
    mkdirSync(join(l.artifacts, 'git', 'objects', 'info'), { recursive: true });
    writeFileSync(join(l.artifacts, 'git', 'objects', 'info', 'alternates'), `${cacheObjects}\n`);
    // The agent rewrites its own .git to name the whole home: nothing of it may become readable.
    mkdirSync(join(l.workspace, '.git', 'objects', 'info'), { recursive: true });
    writeFileSync(join(l.workspace, '.git', 'objects', 'info', 'alternates'), `${l.home}\n${join(l.home, 'worktrees')}\n`);
    writeFileSync(join(l.workspace, '.git', 'commondir'), `${l.home}\n`);
    const sandbox = prepareRunSandbox({ policy: { mode: 'bwrap', network: true }, role: 'gate', workspacePath: l.workspace, artifactsDir: l.artifacts, env: {} });
    expect(sandbox?.readable).toContain(cacheObjects);
    expect(sandbox?.readable).not.toContain(l.home);
    expect(sandbox?.readable).not.toContain(join(l.home, 'worktrees'));
    expect(sandbox?.readable.every((p) => p === cacheObjects || !p.startsWith(`${l.home}/`) || p === l.artifacts)).toBe(true);
  });
});

describe.skipIf(!BWRAP_WORKS && process.env['CI'] !== 'true')('runProcess inside bubblewrap', () => {
  function sandboxFor(l: ReturnType<typeof layout>): SandboxSpec {
    const sandbox = prepareRunSandbox({ policy: { mode: 'bwrap', network: true }, role: 'gate', workspacePath: l.workspace, artifactsDir: l.artifacts, env: {} });
    if (sandbox === undefined) throw new Error('bwrap should be available');
    return sandbox;
  }

  it('writes in the workspace and its home; everything else is read-only or hidden', async () => {
    const l = layout();
    const script = [
      'echo ok > inside.txt',
      'echo ok > "$HOME/home.txt"',
      'echo ok > "$TMPDIR/tmp.txt"',
      `(echo x > ${l.outside}/escaped.txt) 2>/dev/null || echo outside-refused`,
      `(echo x > ${l.artifacts}/escaped.txt) 2>/dev/null || echo artifacts-refused`,
      `cat ${l.artifacts}/iteration-1-prompt.md; echo`,
      `test -e ${l.home}/agentgate.db || echo store-hidden`,
    ].join('; ');
    const result = await runProcess({ command: script, cwd: l.workspace, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, sandbox: sandboxFor(l) });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout.split('\n')).toEqual(['outside-refused', 'artifacts-refused', 'the prompt', 'store-hidden', '']);
    expect(readFileSync(join(l.workspace, 'inside.txt'), 'utf8')).toBe('ok\n');
    expect(existsSync(join(l.outside, 'escaped.txt'))).toBe(false);
    expect(existsSync(join(l.artifacts, 'escaped.txt'))).toBe(false);
  });

  it('cannot see the environment of this process in any /proc/*/environ', async () => {
    const l = layout();
    process.env['AGENTGATE_SANDBOX_TEST_SENTINEL'] = 'sentinel-value-0123456789';
    try {
      const result = await runProcess({
        command: 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c sentinel-value-0123456789 || true',
        cwd: l.workspace,
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
        sandbox: sandboxFor(l),
      });
      expect(result.stdout.trim()).toBe('0');
    } finally {
      delete process.env['AGENTGATE_SANDBOX_TEST_SENTINEL'];
    }
  });

  it('reports an inner death by signal as 128+n, which the drivers classify as a crash by signal', async () => {
    const l = layout();
    const result = await runProcess({ command: 'kill -KILL $$', cwd: l.workspace, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, sandbox: sandboxFor(l) });
    expect(result.exitCode).toBe(137);
  });
});
