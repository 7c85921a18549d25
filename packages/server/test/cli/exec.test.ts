import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONFORMANCE_MARKER_ENV, liveProcessesWithMarker } from '../agents/conformance.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { AGENTS, REPO_ROOT, agentOutput, agentReceived, git, makeRepo, userTreeState, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { passingPath, readRun } from '../helpers/store-checks.js';

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

function setup(files: Record<string, string> = {}): TempRepo {
  const r = makeRepo(files);
  repos.push(r);
  return r;
}

function exec(r: TempRepo, agent: string, extra: string[] = [], env: Record<string, string> = {}, options: Parameters<typeof runCli>[1] = {}): Promise<CliResult> {
  return runCli(
    ['exec', '--path', r.repo, '--prompt', 'Implement add and multiply in src/math.js', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json', ...extra],
    { ...options, env: { AGENTGATE_HOME: r.home, ...env, ...options.env } },
  );
}

describe('agentgate exec', () => {
  describe('when the agent gets it right at once', () => {
    it('succeeds in 1 iteration on branch agentgate/<runId> and leaves the user tree untouched', async () => {
      const r = setup();
      const before = userTreeState(r.repo);
      const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.correct));
      expect(res.code).toBe(0);
      expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
      const runId = String(res.json?.['runId']);
      expect(res.json?.['branch']).toBe(`agentgate/${runId}`);
      expect(res.stdout.trim().split('\n')).toHaveLength(1);
      expect(git(r.repo, 'show', `agentgate/${runId}:src/math.js`)).toContain('return a * b');
      expect(git(r.repo, 'log', '-1', '--format=%s', `agentgate/${runId}`)).toBe('agentgate: iteration 1');
      expect(userTreeState(r.repo)).toEqual(before);
      expect(readFileSync(join(r.repo, 'src/math.js'), 'utf8')).toContain('not implemented');
      const view = await readRun(r.home, runId);
      expect(view.transitions).toEqual(passingPath(1));
      expect(existsSync(join(r.home, 'worktrees', runId))).toBe(false);
    });
  });

  describe('when an interrupted run left its worktree behind', () => {
    it('removes it before starting (its branch stays)', async () => {
      const r = setup();
      const orphan = join(r.home, 'worktrees', 'orphan-run');
      git(r.repo, 'worktree', 'add', '-q', '-b', 'agentgate/orphan-run', orphan);
      const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.correct));
      expect(res.code).toBe(0);
      expect(res.stderr).toContain('removed 1 worktree(s) left behind by interrupted runs');
      expect(existsSync(orphan)).toBe(false);
      expect(git(r.repo, 'worktree', 'list')).not.toContain('orphan-run');
      expect(git(r.repo, 'branch', '--list', 'agentgate/orphan-run')).toContain('agentgate/orphan-run');
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions).toEqual(passingPath(1));
    });
  });

  describe('when the first attempt fails a test', () => {
    it('succeeds after 2 iterations and iteration 2 received feedback naming the failing test', async () => {
      const r = setup();
      const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.failThenPass));
      expect(res.code).toBe(0);
      expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 2 });
      const runId = String(res.json?.['runId']);
      const feedback = readFileSync(join(r.home, 'runs', runId, 'iteration-2-feedback.md'), 'utf8');
      expect(feedback).toContain('unit-tests');
      expect(feedback).toContain('multiply multiplies two numbers');
      expect(feedback).toContain('test/math.test.js:9:1');
      expect(readFileSync(join(r.home, 'runs', runId, 'iteration-1-feedback.md'), 'utf8')).toBe('');
      // What the agent itself received in iteration 2, through AGENTGATE_FEEDBACK and stdin.
      const view = await readRun(r.home, runId);
      const said = agentOutput(view.events);
      const received = agentReceived(said, 'feedback', 2);
      expect(received).toContain('multiply multiplies two numbers');
      expect(received).toContain('test/math.test.js:9:1');
      expect(agentReceived(said, 'stdin', 2)).toContain('multiply multiplies two numbers');
      expect(agentReceived(said, 'feedback', 1)).toBe('');
      expect(view.transitions).toEqual(passingPath(2));
      expect(view.iterations).toBe(2);
      expect(res.stderr).toContain('gate unit-tests [L1] FAIL');
      expect(res.stderr).toContain('gate unit-tests [L1] PASS');
    });
  });

  describe('when the gate always fails', () => {
    it('fails as failed_verification after exactly 3 iterations, with no 4th build', async () => {
      const r = setup();
      const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.alwaysWrong), ['--max-iterations', '3']);
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_verification', iterations: 3, error: { code: 'AG_ERR_VERIFY_FAILED' } });
      const view = await readRun(r.home, String(res.json?.['runId']));
      expect(agentOutput(view.events).match(/attempt \d/g)).toEqual(['attempt 1', 'attempt 2', 'attempt 3']);
      expect(view.transitions.at(-1)).toBe('verifying→failed');
      expect(view.transitions.filter((t) => t === 'feedback→building')).toHaveLength(2);
    });
  });

  describe('on a terminal', () => {
    it('shows a live status line (iteration, phase, elapsed) above permanent lines', async () => {
      const r = setup();
      const agent = writeAgent(r.root, 'agent', AGENTS.failThenPass);
      const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
      const main = join(REPO_ROOT, 'packages', 'server', 'src', 'cli', 'main.ts');
      // util-linux `script` runs the CLI on a real pseudo-terminal.
      const command = `node --import ${tsx} ${main} exec --path ${r.repo} --prompt x --agent command --agent-command 'sh ${agent}'`;
      const out = execFileSync('script', ['-qec', command, '/dev/null'], { env: { ...process.env, AGENTGATE_HOME: r.home }, encoding: 'utf8' });
      expect(out).toContain('\r\x1b[K');
      expect(out).toMatch(/iteration 2\/3 · (build|snapshot|verify|feedback) · \d\d:\d\d/);
      expect(out).toContain('\r\x1b[K  gate unit-tests [L1] FAIL');
      expect(out).toMatch(/succeeded \(passed\) after 2 iteration\(s\)/);
    });
  });

  describe('when the agent exits non-zero', () => {
    it('fails as failed_build', async () => {
      const r = setup();
      const res = await exec(r, writeAgent(r.root, 'agent', 'echo "cannot do it" >&2\nexit 3'));
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_build', error: { code: 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE' } });
      expect(String((res.json?.['error'] as { message: string }).message)).toContain('cannot do it');
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions).toEqual(['queued→leased', 'leased→building', 'building→failed']);
    });
  });

  describe('when git cannot snapshot', () => {
    it('fails as failed_error with the snapshot code', async () => {
      const r = setup();
      // Fault injection: a stale lock on AgentGate's own index for the run (its git dir sits next to the
      // workspace in AGENTGATE_HOME), so `git add` of the file the agent changed fails (an iteration with
      // nothing to stage never writes the index). Unsandboxed: inside the sandbox that directory is out of
      // the agent's reach, which test/security covers.
      const lock = '"$PWD/../../runs/$AGENTGATE_RUN_ID/git/index.lock"';
      const res = await exec(r, writeAgent(r.root, 'agent', `touch ${lock}\necho changed > changed.txt\necho locked`), ['--sandbox', 'none']);
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_PHASE_SNAPSHOT' } });
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions.at(-1)).toBe('snapshotting→failed');
    });
  });

  describe('when the run branch cannot be published into the repository', () => {
    it('fails as failed_error with the snapshot code, stops the gates at once, and names no branch', async () => {
      // A gate that would leave a mark outside the workspace after 30 s, had it not been stopped.
      const mark = join(tmpdir(), `agentgate-gate-mark-${process.pid}-${Date.now()}`);
      const r = setup({ 'verify.yaml': `version: "1"\ntests:\n  - name: slow\n    command: sleep 30 && touch '${mark}'\n    timeout: 120\n` });
      // A stale lock on the run branch in the user's repository: the snapshot commits, the verification
      // runs while the publication's `update-ref` fails, and the run must not pass without its branch.
      const refs = join(r.repo, '.git', 'refs', 'heads', 'agentgate');
      const agent = writeAgent(r.root, 'agent', `${AGENTS.correct}
mkdir -p '${refs}'
touch '${refs}'/"$AGENTGATE_RUN_ID.lock"`);
      const res = await exec(r, agent, ['--sandbox', 'none']);
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_PHASE_SNAPSHOT' } });
      expect(String((res.json?.['error'] as Record<string, unknown> | undefined)?.['message'])).toMatch(/\.lock/);
      expect(res.json?.['branch'] ?? null).toBeNull();
      const view = await readRun(r.home, String(res.json?.['runId']));
      expect(view.transitions.at(-1)).toBe('verifying→failed');
      expect(git(r.repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      expect(existsSync(mark)).toBe(false);
    });
  });

  describe('when the wall clock is exceeded', () => {
    it('fails as failed_timeout and kills the agent', async () => {
      const r = setup();
      const marker = `wallclock-${Date.now()}`;
      const res = await exec(r, writeAgent(r.root, 'agent', 'echo started\nsleep 600'), ['--timeout', '1s'], { [CONFORMANCE_MARKER_ENV]: marker });
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_timeout', error: { code: 'AG_ERR_RUN_TIMEOUT' } });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions).toEqual(['queued→leased', 'leased→building', 'building→failed']);
    });
  });

  describe('when the agent goes silent', () => {
    it('the idle watchdog kills it: failed_build with agent_timeout, no process left', async () => {
      const r = setup();
      const marker = `idle-${Date.now()}`;
      const res = await exec(r, writeAgent(r.root, 'agent', 'echo thinking\nsleep 600'), ['--idle-timeout', '1s'], { [CONFORMANCE_MARKER_ENV]: marker });
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_build', error: { code: 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT' } });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions.at(-1)).toBe('building→failed');
    });
  });

  describe('when canceled with Ctrl-C', () => {
    it('during a long agent command: exits 130, state canceled, no process of the run left', async () => {
      const r = setup();
      const marker = `cancel-agent-${Date.now()}`;
      const res = await exec(r, writeAgent(r.root, 'agent', 'echo agent-is-running\nsleep 600 & sleep 600'), ['--verbose'], { [CONFORMANCE_MARKER_ENV]: marker }, {
        interruptWhen: 'agent-is-running',
      });
      expect(res.code).toBe(130);
      expect(res.json).toMatchObject({ state: 'canceled', result: 'canceled' });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      const view = await readRun(r.home, String(res.json?.['runId']));
      expect(view.transitions.at(-1)).toBe('building→canceled');
      expect(view.events.at(-1)?.type).toBe('run_canceled');
    });

    it('a second Ctrl-C kills an agent that ignores SIGTERM at once; the run still ends canceled', async () => {
      const r = setup();
      const marker = `cancel-twice-${Date.now()}`;
      const agent = writeAgent(r.root, 'agent', "trap '' TERM\necho agent-is-running\nwhile true; do sleep 1; done");
      const res = await exec(r, agent, ['--verbose'], { [CONFORMANCE_MARKER_ENV]: marker }, {
        interruptWhen: 'agent-is-running',
        interruptAgainWhen: 'canceling run',
      });
      expect(res.stderr).toMatch(/killing \d+ process group\(s\)/);
      expect(res.code).toBe(130);
      expect(res.json).toMatchObject({ state: 'canceled', result: 'canceled' });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      expect(existsSync(join(r.home, 'worktrees', String(res.json?.['runId'])))).toBe(false);
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions.at(-1)).toBe('building→canceled');
    });

    it('during a long gate command: exits 130, state canceled, no gate process left', async () => {
      const marker = `cancel-gate-${Date.now()}`;
      const r = setup();
      const started = join(r.root, 'signals', 'gate-started');
      mkdirSync(join(r.root, 'signals'));
      // The gate plan comes from the base commit: commit the slow gate into the repository.
      writeFileSync(join(r.repo, 'verify.yaml'), `version: "1"\ntests:\n  - name: slow\n    command: echo gate-is-running; touch ${started}; sleep 600 & sleep 600\n    timeout: 900\n`);
      git(r.repo, 'commit', '-qam', 'slow gate');
      // Unsandboxed on purpose: the gate signals through a file outside its workspace, and this covers the
      // fallback (process-group kill) path; test/sandbox covers cancel inside bubblewrap.
      const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.correct), ['--sandbox', 'none'], { [CONFORMANCE_MARKER_ENV]: marker }, { interruptWhenFile: started });
      expect(res.code).toBe(130);
      expect(res.json).toMatchObject({ state: 'canceled', result: 'canceled' });
      const runId = String(res.json?.['runId']);
      // The gate really ran (and was stopped): its log has its first line.
      expect(readFileSync(join(r.home, 'runs', runId, 'iteration-1-gate-slow.log'), 'utf8')).toContain('gate-is-running');
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      expect((await readRun(r.home, runId)).transitions.at(-1)).toBe('verifying→canceled');
    });
  });

  describe('when the agent edits a protected test', () => {
    it('fails the gate with a tamper message', async () => {
      const r = setup();
      const agent = writeAgent(r.root, 'agent', `${AGENTS.correct}\necho "// weakened" >> test/math.test.js`);
      const res = await exec(r, agent, ['--max-iterations', '1']);
      expect(res.code).toBe(1);
      expect(res.json).toMatchObject({ state: 'failed', result: 'failed_verification' });
      expect(res.stderr).toMatch(/tamper.*test\/math\.test\.js/);
      const view = await readRun(r.home, String(res.json?.['runId']));
      const gates = view.events.filter((e) => e.type === 'gate_checked' && e.data['passed'] === false);
      const messages = gates.map((g) => String(g.data['message']));
      expect(messages.length).toBeGreaterThan(1);
      expect(messages[0]).toMatch(/tamper.*test\/math\.test\.js/);
      // Later gates are reported as not run: a tampered tree proves nothing.
      expect(messages.slice(1).every((m) => m.startsWith('not run'))).toBe(true);
    });
  });

  describe('invalid input', () => {
    it('an invalid verify.yaml exits 2 naming the file, line and reason, before the agent runs', async () => {
      const r = setup({ 'verify.yaml': 'version: "1"\ntests:\n  - name: unit\n    command: node --test\n    timeout: soon\n' });
      const res = await exec(r, writeAgent(r.root, 'agent', 'echo the-agent-ran'));
      expect(res.code).toBe(2);
      expect(res.json).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_VERIFY_CONFIG_INVALID' } });
      expect(String((res.json?.['error'] as { message: string }).message)).toMatch(/verify\.yaml:5: tests\[0\]\.timeout: expected a positive number of seconds .*got "soon"/);
      const view = await readRun(r.home, String(res.json?.['runId']));
      expect(view.transitions).toEqual(['queued→leased', 'leased→failed']);
      // The agent never ran: no iteration began and nothing it could print was recorded.
      expect(view.events.some((e) => e.type === 'iteration_started' || e.type === 'agent_output')).toBe(false);
    });

    it.each([
      [['exec', '--path', '.', '--prompt', 'x', '--bogus'], /unknown option/],
      [['exec', '--prompt', 'x'], /one of --path <repo>, --git <url>, --github <owner\/name> or --gitlab <group\/project> is required/],
      [['exec', '--path', '.', '--prompt', 'x', '--max-iterations', 'zero'], /--max-iterations: expected a positive integer/],
      [['exec', '--path', '.', '--prompt', 'x', '--strategy', 'yolo'], /argument 'yolo' is invalid/],
      [['exec', '--path', '.', '--prompt', 'x', '--agent', 'command'], /agent\.command/],
      [['exec', '--path', '.', '--prompt', 'x', '--agent-command', 'true', '--agent', 'command', '--timeout', 'forever'], /maxWallClock/],
      [['frobnicate'], /unknown command/],
      [['exec', '--path', '.', '--prompt', 'x', '--agent-command', 'true', '--agent', 'command', '--timeout', '30d'], /too long/],
    ])('%j exits 2 with a clear message', async (args, message) => {
      const r = setup();
      const res = await runCli(args as string[], { env: { AGENTGATE_HOME: r.home }, cwd: r.repo });
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(message);
    });

    it('a bad environment variable exits 2 naming the variable', async () => {
      const r = setup();
      const res = await exec(r, writeAgent(r.root, 'agent', AGENTS.correct), [], { AGENTGATE_MAX_CONCURRENT: 'lots' });
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('AGENTGATE_MAX_CONCURRENT');
    });
  });

  describe('with a git remote (--git)', () => {
    it('works in a cached bare clone and keeps the run branch there', async () => {
      const r = setup();
      const remote = join(r.root, 'remote.git');
      git(r.root, 'clone', '-q', '--bare', r.repo, remote);
      const res = await runCli(
        ['exec', '--git', `file://${remote}`, '--prompt', 'Implement math', '--agent', 'command', '--agent-command', `sh ${writeAgent(r.root, 'agent', AGENTS.correct)}`, '--json'],
        { env: { AGENTGATE_HOME: r.home } },
      );
      expect(res.code).toBe(0);
      expect(res.json).toMatchObject({ state: 'succeeded', iterations: 1 });
      const { readdirSync } = await import('node:fs');
      const caches = readdirSync(join(r.home, 'repos'));
      expect(caches).toHaveLength(1);
      const cache = join(r.home, 'repos', caches[0] ?? '');
      expect(git(cache, 'show', `${String(res.json?.['branch'])}:src/math.js`)).toContain('a * b');
      // The remote itself is untouched: local delivery does not push.
      expect(git(remote, 'branch', '--list', 'agentgate/*')).toBe('');
      expect((await readRun(r.home, String(res.json?.['runId']))).transitions).toEqual(passingPath(1));
    });
  });

  describe('on a SHA-256 repository', () => {
    it('runs fail-then-pass and then a run from the worktree pool, and the branches are whole in the repository', async () => {
      const r = makeRepo({}, { objectFormat: 'sha256' });
      repos.push(r);
      expect(git(r.repo, 'rev-parse', '--show-object-format')).toBe('sha256');
      const first = await exec(r, writeAgent(r.root, 'agent', AGENTS.failThenPass));
      expect(first.code).toBe(0);
      expect(first.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 2 });
      // The second run may take the first one's worktree from the pool (the sandbox decides): both paths work.
      const second = await exec(r, writeAgent(r.root, 'agent-2', AGENTS.correct));
      expect(second.code).toBe(0);
      expect(second.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
      for (const res of [first, second]) {
        const branch = String(res.json?.['branch']);
        expect(git(r.repo, 'rev-parse', branch)).toMatch(/^[0-9a-f]{64}$/);
        expect(git(r.repo, 'show', `${branch}:src/math.js`)).toContain('return a * b');
      }
      expect(git(r.repo, 'log', '--format=%s', String(first.json?.['branch']))).toBe('agentgate: iteration 2\nagentgate: iteration 1\ninitial');
      expect(git(r.repo, 'fsck', '--strict', '--no-dangling')).toBe('');
    });
  });

  describe('two runs at once on the same repository', () => {
    it('each gets its own worktree and branch, and both succeed', async () => {
      const r = setup();
      // Each agent waits (bounded) until both have started: the two runs provably overlap.
      const agent = writeAgent(
        r.root,
        'agent',
        `echo "$PWD" > "${r.root}/wt-$AGENTGATE_RUN_ID"\ntouch "${r.root}/started-$AGENTGATE_RUN_ID"\nn=0; while [ "$(ls ${r.root} | grep -c '^started-')" -lt 2 ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done\n[ "$(ls ${r.root} | grep -c '^started-')" -ge 2 ] || { echo "the other run never started" >&2; exit 1; }\n${AGENTS.correct}`,
      );
      // Unsandboxed on purpose: the two agents meet through a directory outside their workspaces.
      const [a, b] = await Promise.all([exec(r, agent, ['--sandbox', 'none']), exec(r, agent, ['--sandbox', 'none'])]);
      expect(a?.code).toBe(0);
      expect(b?.code).toBe(0);
      const ids = [String(a?.json?.['runId']), String(b?.json?.['runId'])];
      expect(new Set(ids).size).toBe(2);
      const worktrees = ids.map((id) => readFileSync(join(r.root, `wt-${id}`), 'utf8').trim());
      expect(worktrees[0]).not.toBe(worktrees[1]);
      for (const id of ids) {
        expect(git(r.repo, 'rev-parse', '--verify', `agentgate/${id}`)).toMatch(/^[0-9a-f]{40}$/);
        expect((await readRun(r.home, id)).transitions).toEqual(passingPath(1));
      }
    });
  });
});

describe('agentgate task run', () => {
  it('runs a TaskSpec file with a relative workspace path', async () => {
    const r = setup();
    const agent = writeAgent(r.root, 'agent', AGENTS.correct);
    const specPath = join(r.root, 'task.yaml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      specPath,
      [
        'apiVersion: agentgate.io/v1',
        'kind: TaskSpec',
        'metadata: { name: calc }',
        'spec:',
        '  goal: { prompt: "Implement math" }',
        '  convergence: { limits: { maxIterations: 2 } }',
        '  execution:',
        '    workspace: { source: local, path: ./repo }',
        `    agent: { driver: command, command: "sh ${agent}" }`,
        '',
      ].join('\n'),
    );
    const res = await runCli(['task', 'run', specPath, '--json'], { env: { AGENTGATE_HOME: r.home } });
    expect(res.code).toBe(0);
    expect(res.json).toMatchObject({ state: 'succeeded', iterations: 1 });
    expect((await readRun(r.home, String(res.json?.['runId']))).transitions).toEqual(passingPath(1));
  });

  it('an invalid TaskSpec exits 2 naming the line', async () => {
    const r = setup();
    const specPath = join(r.root, 'task.yaml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(specPath, 'apiVersion: agentgate.io/v1\nkind: TaskSpec\nmetadata: { name: x }\nspec:\n  goal: { prompt: "" }\n');
    const res = await runCli(['task', 'run', specPath], { env: { AGENTGATE_HOME: r.home } });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/task\.yaml:\d+/);
  });
});
