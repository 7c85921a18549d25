import { runTimedOut } from '../../src/util/abort.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Verifier } from '../../src/gates/verifier.js';
import type { GateContext, VerifyResult } from '../../src/gates/verifier.js';
import type { VerificationReport } from '../../src/gates/types.js';
import type { EmitFn, ProgressEvents } from '../../src/observability/events.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { createRepo, gateContext, isRunning, snapshot, writeFile } from './helpers.js';
import type { TempRepo } from './helpers.js';

let repo: TempRepo;
const verifier = new Verifier({ killGraceMs: 200 });

beforeEach(() => {
  repo = createRepo({ 'package.json': '{}', 'test/math.test.js': 'ok\n', 'verify.yaml': 'tests:\n  - { name: unit, command: "true" }\n' });
});
afterEach(() => repo.cleanup());

function inline(config: Record<string, unknown>, overrides: Partial<GateContext> = {}): GateContext {
  return gateContext(repo, { inline: parseVerifyConfig(config), ...overrides });
}

function report(result: VerifyResult): VerificationReport {
  if (!result.ok) throw new Error(`verification failed to run: ${result.error.code} ${result.error.message}`);
  return result.report;
}

const gate = (r: VerificationReport, name: string) => r.gates.find((g) => g.name === name);

function recorder(): { emit: EmitFn; gateEvents: Array<ProgressEvents['gate_checked']> } {
  const gateEvents: Array<ProgressEvents['gate_checked']> = [];
  const emit: EmitFn = (type, data) => {
    if (type === 'gate_checked') gateEvents.push(data as ProgressEvents['gate_checked']);
  };
  return { emit, gateEvents };
}

describe('Verifier', () => {
  describe('L1 test gates', () => {
    it('passes when every command exits 0, with a full log per gate and one gate_checked event each', async () => {
      const { emit, gateEvents } = recorder();
      const r = report(await verifier.verify(gateContext(repo, { emit, iteration: 2 })));
      expect(r).toMatchObject({ passed: true, unverified: false, source: 'verify.yaml', passRatio: 1 });
      expect(r.gates.map((g) => [g.level, g.name, g.passed])).toEqual([
        ['L0', 'protected-paths', true],
        ['L1', 'unit', true],
      ]);
      expect(gate(r, 'unit')).toMatchObject({ exitCode: 0, command: 'true', diagnostics: [], logPath: path.join(repo.artifactsDir, 'iteration-2-gate-unit.log') });
      expect(gateEvents.map((e) => [e.iteration, e.gate, e.level, e.passed])).toEqual([
        [2, 'protected-paths', 'L0', true],
        [2, 'unit', 'L1', true],
      ]);
    });

    it('fails with exit code, output tail, diagnostics and log, and still runs the gates after it', async () => {
      const tscLike = `node -e "console.log('src/a.ts(3,7): error TS2322: Type string is not assignable to type number.'); process.exit(2)"`;
      const { emit, gateEvents } = recorder();
      const r = report(await verifier.verify(inline({ tests: [{ name: 'typecheck', command: tscLike }, { name: 'unit', command: 'echo all good' }] }, { emit })));
      expect(r.passed).toBe(false);
      expect(r.passRatio).toBeCloseTo(2 / 3);
      expect(gate(r, 'typecheck')).toMatchObject({
        passed: false,
        exitCode: 2,
        message: 'exit code 2 (expected 0)',
        diagnostics: [{ tool: 'tsc', file: 'src/a.ts', line: 3, column: 7, message: 'TS2322: Type string is not assignable to type number.' }],
      });
      expect(gate(r, 'typecheck')?.outputTail).toContain('error TS2322');
      expect(readFileSync(gate(r, 'typecheck')!.logPath!, 'utf8')).toMatch(/^\$ node -e .*\nsrc\/a\.ts\(3,7\): error TS2322.*\n\[exit code 2 after \d+ ms\]\n$/);
      expect(gate(r, 'unit')).toMatchObject({ passed: true, outputTail: 'all good' });
      expect(gateEvents.find((e) => e.gate === 'typecheck')).toMatchObject({ passed: false, exitCode: 2, message: 'exit code 2 (expected 0)' });
    });

    it('honours expectedExit', async () => {
      const r = report(await verifier.verify(inline({ tests: [{ name: 'exits-3', command: 'exit 3', expectedExit: 3 }, { name: 'exits-0', command: 'true', expectedExit: 1 }] })));
      expect(gate(r, 'exits-3')?.passed).toBe(true);
      expect(gate(r, 'exits-0')).toMatchObject({ passed: false, message: 'exit code 0 (expected 1)' });
    });

    it('keeps only a bounded tail of a long output', async () => {
      const r = report(await verifier.verify(inline({ tests: [{ name: 'noisy', command: `node -e "for (let i = 0; i < 5000; i++) console.log('line ' + i)"` }] })));
      const tail = gate(r, 'noisy')!.outputTail!;
      expect(tail.length).toBeLessThanOrEqual(8 * 1024 + 1);
      expect(tail.endsWith('line 4999')).toBe(true);
      expect(readFileSync(gate(r, 'noisy')!.logPath!, 'utf8')).toContain('line 0\n');
    });

    it('stops a gate at its timeout, kills its whole process group and reports timedOut', async () => {
      const pidFile = path.join(repo.root, 'sleep.pid');
      const env = { ...process.env, PID_FILE: pidFile };
      const r = report(await verifier.verify(inline({ tests: [{ name: 'hangs', command: 'sleep 30 & echo $! > "$PID_FILE"; wait', timeout: 1 }] }, { env })));
      expect(gate(r, 'hangs')).toMatchObject({ passed: false, timedOut: true, message: 'timed out after 1s' });
      expect(isRunning(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
    });

    it('stops at policy.maxRuntimeSeconds and lists the remaining gates as skipped', async () => {
      const r = report(
        await verifier.verify(inline({ policy: { maxRuntimeSeconds: 1 }, tests: [{ name: 'slow', command: 'sleep 30' }, { name: 'after', command: 'true' }], blackbox: [{ name: 'cli', command: 'true', assertions: [{ exitCode: 0 }] }] })),
      );
      expect(gate(r, 'slow')).toMatchObject({ passed: false, timedOut: true, message: 'stopped: the verification reached policy.maxRuntimeSeconds (1s)' });
      expect(gate(r, 'after')).toMatchObject({ passed: false, skipped: true, message: 'not run: the verification reached policy.maxRuntimeSeconds (1s)' });
      expect(gate(r, 'cli')).toMatchObject({ level: 'L2', skipped: true });
    });

    it('runs gates without AgentGate tokens or model keys in their environment, with CI=true', async () => {
      const env = { ...process.env, AGENTGATE_GITHUB_TOKEN: 'ghp_testtokenvalue1234567890', ANTHROPIC_API_KEY: 'sk-ant-test-key-value', KEEP_ME: 'yes' };
      const r = report(await verifier.verify(inline({ tests: [{ name: 'env', command: 'env | cut -d= -f1 | sort; echo "CI=$CI"' }] }, { env })));
      const names = gate(r, 'env')!.outputTail!.split('\n');
      expect(names).toContain('KEEP_ME');
      expect(names).toContain('CI=true');
      expect(names).not.toContain('AGENTGATE_GITHUB_TOKEN');
      expect(names).not.toContain('ANTHROPIC_API_KEY');
    });

    it('uses process.env when no environment is given, still without secrets', async () => {
      const saved = { token: process.env.AGENTGATE_GITHUB_TOKEN, key: process.env.ANTHROPIC_API_KEY };
      process.env.AGENTGATE_GITHUB_TOKEN = 'ghp_processenvtoken1234567890';
      process.env.ANTHROPIC_API_KEY = 'sk-ant-process-env-key';
      try {
        const r = report(await verifier.verify(inline({ tests: [{ name: 'env', command: 'env | cut -d= -f1' }] })));
        expect(gate(r, 'env')!.outputTail).not.toMatch(/AGENTGATE_GITHUB_TOKEN|ANTHROPIC_API_KEY/);
      } finally {
        if (saved.token === undefined) delete process.env.AGENTGATE_GITHUB_TOKEN;
        else process.env.AGENTGATE_GITHUB_TOKEN = saved.token;
        if (saved.key === undefined) delete process.env.ANTHROPIC_API_KEY;
        else process.env.ANTHROPIC_API_KEY = saved.key;
      }
    });
  });

  describe('cancellation', () => {
    it('returns cancelled (not failed) when aborted during a long gate, and leaves no process behind', async () => {
      const controller = new AbortController();
      const server = net.createServer((socket) => {
        socket.destroy();
        controller.abort({ kind: 'canceled', reason: 'user' });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as AddressInfo).port;
      const pidFile = path.join(repo.root, 'long.pid');
      const command = `sleep 30 & echo $! > "$PID_FILE"; node -e "require('net').connect(${port}, '127.0.0.1').end()"; wait`;
      try {
        const result = await verifier.verify(inline({ tests: [{ name: 'long', command }, { name: 'never', command: 'true' }] }, { signal: controller.signal, env: { ...process.env, PID_FILE: pidFile } }));
        expect(result).toMatchObject({ ok: false, cancelled: true, error: { code: 'AG_ERR_RUN_CANCELED' } });
        expect(isRunning(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
        expect(existsSync(path.join(repo.artifactsDir, 'iteration-1-gate-never.log'))).toBe(false);
      } finally {
        server.close();
      }
    });

    it('reports a run timeout as AG_ERR_RUN_TIMEOUT, still cancelled', async () => {
      const controller = new AbortController();
      controller.abort(runTimedOut(1000));
      const result = await verifier.verify(inline({ tests: [{ name: 'unit', command: 'true' }] }, { signal: controller.signal }));
      expect(result).toMatchObject({ ok: false, cancelled: true, error: { code: 'AG_ERR_RUN_TIMEOUT' } });
    });
  });

  describe('L0 contracts', () => {
    it('fails on a modified protected test and skips the commands, which would test tampered files', async () => {
      writeFile(repo.dir, 'test/math.test.js', 'weakened\n');
      snapshot(repo);
      const r = report(await verifier.verify(inline({ contracts: { protectedPaths: ['test/**'] }, tests: [{ name: 'unit', command: 'true' }] })));
      expect(r.passed).toBe(false);
      expect(gate(r, 'protected-paths')?.message).toBe('tamper: the agent modified protected file test/math.test.js (protectedPaths: test/**)');
      expect(gate(r, 'unit')).toMatchObject({ passed: false, skipped: true, message: 'not run: the L0 contracts failed' });
      expect(existsSync(path.join(repo.artifactsDir, 'iteration-1-gate-unit.log'))).toBe(false);
    });

    it("keeps the base commit's gates when the agent weakens verify.yaml, and reports the tampering", async () => {
      repo.cleanup();
      repo = createRepo({ 'verify.yaml': 'tests:\n  - { name: strict, command: "exit 1" }\n' });
      writeFile(repo.dir, 'verify.yaml', 'tests:\n  - { name: strict, command: "exit 0" }\n');
      snapshot(repo);
      const r = report(await verifier.verify(gateContext(repo)));
      expect(r.passed).toBe(false);
      expect(gate(r, 'protected-paths')?.message).toBe('tamper: the agent modified protected file verify.yaml (the gate plan is always protected)');
      expect(gate(r, 'strict')).toMatchObject({ command: 'exit 1', skipped: true });
    });

    it('checks required files and forbidden patterns before the commands', async () => {
      writeFile(repo.dir, '.env', 'TOKEN=x\n');
      const r = report(await verifier.verify(inline({ contracts: { requiredFiles: ['package.json', 'README.md'], forbiddenPatterns: ['**/.env'] } })));
      expect(r.gates.map((g) => [g.name, g.passed])).toEqual([
        ['required-files', false],
        ['forbidden-patterns', false],
        ['protected-paths', true],
      ]);
    });
  });

  describe('L2 black-box gates', () => {
    const echoJson = `node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const n=JSON.parse(s);console.log(JSON.stringify({sum:n.a+n.b,ok:true}))})"`;

    it.each([
      ['exitCode', { exitCode: 0 }, { exitCode: 1 }, 'expected exit code 1, got 0'],
      ['contains', { contains: '"sum":5' }, { contains: '"sum":6' }, 'expected stdout to contain "\\"sum\\":6"'],
      ['matches', { matches: '^\\{"sum":\\d+' }, { matches: '^sum' }, 'expected stdout to match /^sum/'],
      ['jsonEquals', { jsonEquals: { ok: true, sum: 5 } }, { jsonEquals: { sum: 6, ok: true } }, 'expected stdout JSON to equal {"sum":6,"ok":true}, got {"sum":5,"ok":true}'],
    ])('checks %s assertions', async (_kind, passing, failing, message) => {
      const r = report(
        await verifier.verify(
          inline({
            blackbox: [
              { name: 'pass', command: echoJson, stdin: '{"a":2,"b":3}', assertions: [passing] },
              { name: 'fail', command: echoJson, stdin: '{"a":2,"b":3}', assertions: [failing] },
            ],
          }),
        ),
      );
      expect(gate(r, 'pass')).toMatchObject({ level: 'L2', passed: true });
      expect(gate(r, 'fail')).toMatchObject({ level: 'L2', passed: false, message, diagnostics: [{ tool: 'generic', test: 'fail', message }] });
    });

    it('fails jsonEquals when stdout is not JSON', async () => {
      const r = report(await verifier.verify(inline({ blackbox: [{ name: 'text', command: 'echo hello', assertions: [{ jsonEquals: { a: 1 } }] }] })));
      expect(gate(r, 'text')?.message).toMatch(/^expected stdout to be JSON equal to \{"a":1\}, but it is not valid JSON/);
    });

    it('requires exit code 0 unless an exitCode assertion says otherwise, and reports every failed assertion', async () => {
      const r = report(await verifier.verify(inline({ blackbox: [{ name: 'crash', command: 'echo partial; exit 3', assertions: [{ contains: 'partial' }, { contains: 'complete' }] }] })));
      expect(gate(r, 'crash')).toMatchObject({ passed: false, exitCode: 3, message: 'expected exit code 0, got 3 (and 1 more)' });
      expect(gate(r, 'crash')?.diagnostics).toHaveLength(2);
    });

    it('reads stdin from a fixture file in the worktree and protects that file', async () => {
      repo.cleanup();
      repo = createRepo({ 'fixtures/input.json': '{"a":1,"b":1}' });
      const config = { blackbox: [{ name: 'sum', command: echoJson, stdinFile: 'fixtures/input.json', assertions: [{ jsonEquals: { sum: 2, ok: true } }] }] };
      expect(gate(report(await verifier.verify(inline(config))), 'sum')?.passed).toBe(true);
      writeFile(repo.dir, 'fixtures/input.json', '{"a":1,"b":2}');
      const r = report(await verifier.verify(inline(config)));
      expect(gate(r, 'protected-paths')?.message).toBe('tamper: the agent modified protected file fixtures/input.json (stdin fixture of black-box gate sum)');
    });

    it('fails the gate when the stdin fixture is missing', async () => {
      const r = report(await verifier.verify(inline({ blackbox: [{ name: 'nofile', command: 'cat', stdinFile: 'missing.txt', assertions: [{ exitCode: 0 }] }] })));
      expect(gate(r, 'nofile')).toMatchObject({ passed: false, message: 'stdin file missing.txt does not exist' });
    });

    it('refuses a stdin fixture outside the worktree: in verify.yaml, and again when the gate runs', async () => {
      const escaping = { blackbox: [{ name: 'escape', command: 'cat', stdinFile: '../../etc/passwd', assertions: [{ exitCode: 0 }] }] };
      expect(() => parseVerifyConfig(escaping)).toThrow(/stdinFile: must be a path inside the repository/);
      const valid = parseVerifyConfig({ blackbox: [{ name: 'escape', command: 'cat', stdinFile: 'fixture.txt', assertions: [{ exitCode: 0 }] }] });
      const [gate] = valid.blackbox;
      const unchecked = { ...valid, blackbox: gate === undefined ? [] : [{ ...gate, stdinFile: '../../etc/passwd' }] };
      const result = await verifier.verify(gateContext(repo, { inline: unchecked }));
      expect(result).toMatchObject({ ok: false, cancelled: false, error: { code: 'AG_ERR_WORKSPACE_PATH_ESCAPE' } });
    });
  });

  describe('plans', () => {
    it('marks a repository without any plan as unverified: passed, but flagged', async () => {
      repo.cleanup();
      repo = createRepo({ 'README.md': '# nothing to run' });
      const { emit, gateEvents } = recorder();
      expect(report(await verifier.verify(gateContext(repo, { emit })))).toMatchObject({ passed: true, unverified: true, source: 'none', gates: [], passRatio: 1 });
      expect(gateEvents).toEqual([]);
    });

    it('runs a plan detected from package.json and says where it came from', async () => {
      repo.cleanup();
      repo = createRepo({ 'package.json': JSON.stringify({ scripts: { test: 'node -e "process.exit(0)"' } }), 'package-lock.json': '{}' });
      const r = report(await verifier.verify(gateContext(repo)));
      expect(r).toMatchObject({ source: 'detected', unverified: false, passed: true, notes: ['detected from package.json'] });
      expect(gate(r, 'test')).toMatchObject({ command: 'npm run test', passed: true });
    });

    it('protects the files a detected plan came from: rewriting the test script is tampering', async () => {
      repo.cleanup();
      repo = createRepo({ 'package.json': JSON.stringify({ scripts: { test: 'node -e "process.exit(1)"' } }), 'package-lock.json': '{}' });
      writeFileSync(path.join(repo.dir, 'package.json'), JSON.stringify({ scripts: { test: 'exit 0' } }));
      const r = report(await verifier.verify(gateContext(repo)));
      expect(r.passed).toBe(false);
      expect(gate(r, 'protected-paths')).toMatchObject({ passed: false, message: expect.stringContaining('package.json (the detected gate commands come from it)') });
    });

    it('reports an invalid verify.yaml as a configuration error naming file and line', async () => {
      repo.cleanup();
      repo = createRepo({ 'verify.yaml': 'tests:\n  - name: unit\n    command: npm test\n    timeout: soon\n' });
      const result = await verifier.verify(gateContext(repo));
      expect(result).toMatchObject({ ok: false, cancelled: false, error: { code: 'AG_ERR_VERIFY_CONFIG_INVALID' } });
      expect(!result.ok && result.error.message).toMatch(/^verify\.yaml:4: tests\[0\]\.timeout: /);
    });

    it('reports an unreadable base commit as AG_ERR_PHASE_VERIFY', async () => {
      const result = await verifier.verify(gateContext(repo, { baseSha: '0123456789012345678901234567890123456789' }));
      expect(result).toMatchObject({ ok: false, cancelled: false, error: { code: 'AG_ERR_PHASE_VERIFY' } });
    });

    it('gives gates with the same file-name form distinct log files', async () => {
      const r = report(await verifier.verify(inline({ tests: [{ name: 'unit test', command: 'true' }, { name: 'unit/test', command: 'true' }] })));
      expect(r.gates.slice(1).map((g) => path.basename(g.logPath!))).toEqual(['iteration-1-gate-unit-test.log', 'iteration-1-gate-unit-test-2.log']);
    });
  });

  describe('setup', () => {
    it('runs environment.setup in order and emits setup-level gate events', async () => {
      const marker = path.join(repo.root, 'installed');
      const { emit, gateEvents } = recorder();
      const result = await verifier.setup(
        inline({ environment: { setup: [{ name: 'first', command: 'echo one >> "$MARK"' }, { name: 'second', command: 'echo two >> "$MARK"' }] } }, { emit, env: { ...process.env, MARK: marker } }),
      );
      expect(result).toMatchObject({ ok: true, results: [{ name: 'first', level: 'setup', passed: true }, { name: 'second', passed: true }] });
      expect(readFileSync(marker, 'utf8')).toBe('one\ntwo\n');
      expect(gateEvents.map((e) => [e.gate, e.level])).toEqual([
        ['first', 'setup'],
        ['second', 'setup'],
      ]);
      expect(existsSync(path.join(repo.artifactsDir, 'setup-first.log'))).toBe(true);
    });

    it('fails with AG_ERR_GATE_SETUP_FAILED at the first failing step and runs nothing after it', async () => {
      const marker = path.join(repo.root, 'after');
      const result = await verifier.setup(
        inline({ environment: { setup: [{ name: 'install', command: 'echo "npm ERR! network" >&2; exit 1' }, { name: 'after', command: 'touch "$MARK"' }] } }, { env: { ...process.env, MARK: marker } }),
      );
      expect(result).toMatchObject({ ok: false, cancelled: false, error: { code: 'AG_ERR_GATE_SETUP_FAILED', details: { step: 'install', exitCode: 1 } } });
      expect(!result.ok && result.error.message).toMatch(/^setup step install failed: exit code 1 \(expected 0\)/);
      expect(existsSync(marker)).toBe(false);
    });

    it('has nothing to do without a plan', async () => {
      repo.cleanup();
      repo = createRepo({ 'README.md': '#' });
      expect(await verifier.setup(gateContext(repo))).toEqual({ ok: true, results: [] });
    });
  });
});
