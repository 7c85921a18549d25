import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CommandAgentDriver, FEEDBACK_HEADING, MAX_EVENT_LINE_CHARS, OUTPUT_SUMMARY_CHARS, TRANSCRIPT_FILE, composeAgentInput } from '../../src/agents/command.js';
import type { AgentDriver, AgentRequest, AgentResult } from '../../src/agents/types.js';
import { AgentGateError } from '../../src/errors.js';
import type { EmitFn } from '../../src/observability/events.js';
import { systemClock } from '../../src/util/clock.js';
import { SERVER_SECRET_ENV, agentEnv } from '../../src/util/secrets.js';
import { CONFORMANCE_MARKER_ENV, agentOutputs, describeAgentDriverConformance, liveProcessesWithMarker, recordingEmit } from './conformance.js';

const execFileAsync = promisify(execFile);

describeAgentDriverConformance('command', () => ({
  driver: new CommandAgentDriver(),
  succeedsAndEditsFile: () => ({
    request: { options: { command: `echo "step 1"; printf 'hello\\n' > result.txt; echo "step 2" >&2; echo "step 3"; echo done` } },
    editedFile: { path: 'result.txt', content: 'hello\n' },
    outputInOrder: ['step 1', 'step 3', 'done'],
  }),
  failsTheTask: () => ({
    request: { options: { command: 'echo "trying"; echo "cannot do it" >&2; exit 3' } },
    expectedFailure: 'agent_task_failure',
  }),
  hangsSilently: () => ({ request: { options: { command: 'sleep 1000 & wait' } } }),
  runsLong: () => ({ request: { options: { command: 'sleep 1000 & echo working; wait' } } }),
}));

/** Writes what the agent process saw (environment, stdin, working directory) to a JSON file. */
const DUMP_SCRIPT = `
import { readFileSync, writeFileSync } from 'node:fs';
const stdin = readFileSync(0, 'utf8');
writeFileSync(process.argv[2], JSON.stringify({ env: process.env, stdin, cwd: process.cwd() }));
`;

interface Dump {
  env: Record<string, string>;
  stdin: string;
  cwd: string;
}

describe('CommandAgentDriver', () => {
  let root: string;
  let workspacePath: string;
  let artifactsDir: string;
  let dumpCommand: string;
  let marker: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'agentgate-command-'));
    workspacePath = path.join(root, 'workspace');
    artifactsDir = path.join(root, 'artifacts');
    await mkdir(workspacePath);
    await writeFile(path.join(root, 'dump.mjs'), DUMP_SCRIPT);
    dumpCommand = `'${process.execPath}' '${path.join(root, 'dump.mjs')}' dump.json`;
    marker = randomUUID();
  });

  afterEach(async () => {
    vi.unstubAllEnvs();
    await rm(root, { recursive: true, force: true });
  });

  const request = (command: string | undefined, overrides: Partial<AgentRequest> = {}): AgentRequest => ({
    runId: 'run-1',
    workOrderId: 'wo-1',
    iteration: 1,
    prompt: 'Add a greeting to README.md.',
    feedback: '',
    workspacePath,
    artifactsDir,
    idleTimeoutMs: 60_000,
    env: { ...agentEnv(process.env), [CONFORMANCE_MARKER_ENV]: marker },
    options: command === undefined ? {} : { command },
    ...overrides,
  });

  const run = (req: AgentRequest, opts: { signal?: AbortSignal; emit?: EmitFn; driver?: AgentDriver } = {}): Promise<AgentResult> =>
    (opts.driver ?? new CommandAgentDriver()).run(req, { signal: opts.signal ?? new AbortController().signal, emit: opts.emit ?? recordingEmit().emit, clock: systemClock });

  const readDump = async (): Promise<Dump> => JSON.parse(await readFile(path.join(workspacePath, 'dump.json'), 'utf8')) as Dump;

  describe('on the first iteration', () => {
    it('exposes the prompt, ids and iteration as AGENTGATE_* variables, with empty feedback', async () => {
      const result = await run(request(dumpCommand));

      expect(result.ok).toBe(true);
      const { env } = await readDump();
      expect(env).toMatchObject({
        AGENTGATE_PROMPT: 'Add a greeting to README.md.',
        AGENTGATE_FEEDBACK: '',
        AGENTGATE_ITERATION: '1',
        AGENTGATE_RUN_ID: 'run-1',
        AGENTGATE_WORK_ORDER_ID: 'wo-1',
        AGENTGATE_PROMPT_FILE: path.join(artifactsDir, 'iteration-1-prompt.md'),
        AGENTGATE_FEEDBACK_FILE: path.join(artifactsDir, 'iteration-1-feedback.md'),
      });
      expect(await readFile(env.AGENTGATE_PROMPT_FILE ?? '', 'utf8')).toBe('Add a greeting to README.md.');
      expect(await readFile(env.AGENTGATE_FEEDBACK_FILE ?? '', 'utf8')).toBe('');
    });

    it('writes the prompt alone to stdin and runs in the workspace', async () => {
      await run(request(dumpCommand));

      const dump = await readDump();
      expect(dump.stdin).toBe('Add a greeting to README.md.\n');
      expect(dump.cwd).toBe(await realpath(workspacePath));
    });
  });

  describe('on a later iteration', () => {
    it('passes the feedback in AGENTGATE_FEEDBACK, its file and stdin after the prompt', async () => {
      const feedback = 'Gate "test" failed:\nexpected 2, got 3';

      await run(request(dumpCommand, { iteration: 2, feedback }));

      const dump = await readDump();
      expect(dump.env.AGENTGATE_ITERATION).toBe('2');
      expect(dump.env.AGENTGATE_FEEDBACK).toBe(feedback);
      expect(await readFile(path.join(artifactsDir, 'iteration-2-feedback.md'), 'utf8')).toBe(feedback);
      expect(dump.stdin).toBe(`Add a greeting to README.md.\n\n${FEEDBACK_HEADING}\n\n${feedback}\n`);
    });
  });

  describe('composeAgentInput', () => {
    it('adds the feedback heading only when there is feedback', () => {
      expect(composeAgentInput('Do it.\n', '  \n')).toBe('Do it.\n');
      expect(composeAgentInput('Do it.', 'Fix it.')).toBe(`Do it.\n\n${FEEDBACK_HEADING}\n\nFix it.\n`);
    });
  });

  describe('secrets', () => {
    it("adds nothing but the AGENTGATE_* task variables and never passes AgentGate's own tokens", async () => {
      vi.stubEnv('AGENTGATE_GITHUB_TOKEN', 'ghp_parentTokenThatMustNotLeak0001');
      const req = request(dumpCommand, { env: agentEnv(process.env) });

      await run(req);

      const { env } = await readDump();
      const added = Object.keys(env).filter((k) => !(k in req.env));
      const shellVariables = ['PWD', 'OLDPWD', 'SHLVL', '_'];
      expect(added.filter((k) => !shellVariables.includes(k)).sort()).toEqual(
        ['AGENTGATE_FEEDBACK', 'AGENTGATE_FEEDBACK_FILE', 'AGENTGATE_ITERATION', 'AGENTGATE_PROMPT', 'AGENTGATE_PROMPT_FILE', 'AGENTGATE_RUN_ID', 'AGENTGATE_WORK_ORDER_ID'].sort(),
      );
      expect(Object.values(env)).not.toContain('ghp_parentTokenThatMustNotLeak0001');
    });

    it('strips server tokens even when the caller forgot to build the environment with agentEnv()', async () => {
      const leaky = Object.fromEntries(SERVER_SECRET_ENV.map((name) => [name, `leaked-${name}`]));

      await run(request(dumpCommand, { env: { ...agentEnv(process.env), ...leaky } }));

      const { env } = await readDump();
      for (const name of SERVER_SECRET_ENV) expect(env[name]).toBeUndefined();
    });

    it('redacts model keys and server secrets from events, the transcript and the output summary', async () => {
      const driver = new CommandAgentDriver({ secretEnv: { AGENTGATE_API_KEY: 'server-key-abcdef' } });
      const { emit, events } = recordingEmit();
      const req = request('echo "key=$ANTHROPIC_API_KEY"; echo "found server-key-abcdef" >&2', {
        env: { ...agentEnv(process.env), ANTHROPIC_API_KEY: 'model-key-0123456789' },
      });

      const result = await run(req, { driver, emit });

      const texts = agentOutputs(events).map((o) => o.text);
      expect(texts).toEqual(expect.arrayContaining(['key=[REDACTED]', 'found [REDACTED]']));
      const transcript = await readFile(path.join(artifactsDir, TRANSCRIPT_FILE), 'utf8');
      expect(transcript).not.toContain('model-key-0123456789');
      expect(transcript).not.toContain('server-key-abcdef');
      expect(result.output).toBe('key=[REDACTED]');
    });
  });

  describe('output', () => {
    it('streams stdout and stderr lines as agent_output events of their stream', async () => {
      const { emit, events } = recordingEmit();

      await run(request('echo to-out; echo to-err >&2'), { emit });

      expect(agentOutputs(events)).toEqual(
        expect.arrayContaining([
          { iteration: 1, stream: 'stdout', text: 'to-out' },
          { iteration: 1, stream: 'stderr', text: 'to-err' },
        ]),
      );
    });

    it('summarises the last 4 KB of stdout, starting at a whole line', async () => {
      const result = await run(request('i=0; while [ $i -lt 2000 ]; do echo "line-$i"; i=$((i+1)); done'));

      expect(result.output.length).toBeLessThanOrEqual(OUTPUT_SUMMARY_CHARS);
      expect(result.output.startsWith('line-')).toBe(true);
      expect(result.output.endsWith('line-1999')).toBe(true);
      expect(result.toolCalls).toBe(0);
    });

    it('truncates a huge line in its event but keeps it whole in the transcript', async () => {
      const { emit, events } = recordingEmit();

      await run(request(`'${process.execPath}' -e "console.log('x'.repeat(20000))"`), { emit });

      const [line] = agentOutputs(events);
      expect(line?.text.startsWith('x'.repeat(MAX_EVENT_LINE_CHARS))).toBe(true);
      expect(line?.text.length).toBeLessThan(MAX_EVENT_LINE_CHARS + 100);
      expect(await readFile(path.join(artifactsDir, TRANSCRIPT_FILE), 'utf8')).toContain('x'.repeat(20000));
    });

    it('appends every iteration to one transcript with markers and returns its path', async () => {
      const first = await run(request('echo first-run; echo oops >&2'));
      const second = await run(request('echo second-run; exit 4', { iteration: 2, feedback: 'again' }));

      expect(first.transcriptPath).toBe(path.join(artifactsDir, TRANSCRIPT_FILE));
      expect(second.transcriptPath).toBe(first.transcriptPath);
      const lines = (await readFile(first.transcriptPath ?? '', 'utf8')).trimEnd().split('\n');
      expect(lines).toEqual([
        expect.stringMatching(/^=== iteration 1 started \d{4}-\d\d-\d\dT.*Z ===$/),
        '[stdout] first-run',
        '[stderr] oops',
        expect.stringMatching(/^=== iteration 1 finished: exit 0 after \d+ ms ===$/),
        expect.stringMatching(/^=== iteration 2 started /),
        '[stdout] second-run',
        expect.stringMatching(/^=== iteration 2 finished: exit 4 after \d+ ms ===$/),
      ]);
    });

    it('reports a listener that throws as a failure without stopping the agent', async () => {
      const emit: EmitFn = () => {
        throw new Error('event store unavailable');
      };

      const result = await run(request('echo one; echo two; echo finished > done.txt'), { emit });

      expect(existsSync(path.join(workspacePath, 'done.txt'))).toBe(true);
      expect(result).toMatchObject({ ok: false, failure: 'agent_crash', aborted: false, exitCode: 0 });
      if (!result.ok) expect(result.error.message).toBe('event store unavailable');
      expect(await readFile(path.join(artifactsDir, TRANSCRIPT_FILE), 'utf8')).toContain('[stdout] two');
    });
  });

  describe('failure classification', () => {
    it('classifies a clean non-zero exit as agent_task_failure, naming the exit code and last stderr line', async () => {
      const result = await run(request('echo "first problem" >&2; echo "tests still failing" >&2; exit 3'));

      expect(result).toMatchObject({ ok: false, failure: 'agent_task_failure', aborted: false, exitCode: 3 });
      if (result.ok) return;
      expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE');
      expect(result.error.message).toBe('The agent exited with code 3: tests still failing');
      expect(result.error.details).toMatchObject({ exitCode: 3, lastStderrLine: 'tests still failing' });
    });

    it('classifies a command that is not found as agent_crash', async () => {
      const result = await run(request('definitely-not-an-installed-agent --go'));

      expect(result).toMatchObject({ ok: false, failure: 'agent_crash', exitCode: 127 });
      if (!result.ok) expect(result.error.message).toMatch(/exit code 127.*not found/);
    });

    it('classifies death by a signal as agent_crash', async () => {
      const result = await run(request('echo about to die; kill -KILL $$'));

      expect(result).toMatchObject({ ok: false, failure: 'agent_crash', exitCode: null });
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_CRASH');
    });

    it('reports a missing command as a configuration error without starting anything', async () => {
      const result = await run(request(undefined));

      expect(result).toMatchObject({ ok: false, failure: 'agent_crash', aborted: false });
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_CONFIG_INVALID');
      expect(existsSync(artifactsDir)).toBe(false);
    });
  });

  describe('the run deadline', () => {
    it('stops the agent at the deadline as agent_timeout and leaves no process behind', async () => {
      const result = await run(request('echo started; sleep 1000 & wait', { deadline: Date.now() + 300 }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_timeout', aborted: false });
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_TIMEOUT');
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });

    it('does not start the agent when the deadline has already passed', async () => {
      const result = await run(request('touch started.txt', { deadline: Date.now() - 1 }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_timeout' });
      expect(existsSync(path.join(workspacePath, 'started.txt'))).toBe(false);
    });
  });

  describe('cancellation', () => {
    it('stops an agent that ignores SIGTERM within 5 s', async () => {
      const controller = new AbortController();
      let abortedAt = 0;
      const { emit } = recordingEmit(() => {
        if (controller.signal.aborted) return;
        abortedAt = performance.now();
        controller.abort();
      });

      const result = await run(request(`trap '' TERM; echo ready; sleep 1000`), { signal: controller.signal, emit });

      expect(performance.now() - abortedAt).toBeLessThan(5000);
      expect(result).toMatchObject({ ok: false, aborted: true });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });

    it('keeps a typed abort reason, reporting a run timeout as agent_timeout', async () => {
      const controller = new AbortController();
      const reason = new AgentGateError('AG_ERR_RUN_TIMEOUT', 'The run exceeded its wall clock.');
      const { emit } = recordingEmit(() => controller.abort(reason));

      const result = await run(request('echo working; sleep 1000'), { signal: controller.signal, emit });

      expect(result).toMatchObject({ ok: false, aborted: true, failure: 'agent_timeout' });
      if (!result.ok) expect(result.error).toBe(reason);
    });
  });
});

// Keeps the helper honest: the marker scan must see a process that carries the marker.
describe('liveProcessesWithMarker', () => {
  it('finds a running process by the marker in its environment and ignores it once it is gone', async () => {
    const marker = randomUUID();
    const child = execFileAsync('sh', ['-c', 'echo ready; exec sleep 1000'], { env: { ...process.env, [CONFORMANCE_MARKER_ENV]: marker } });
    await new Promise<void>((resolve) => child.child.stdout?.once('data', () => resolve()));

    const found = await liveProcessesWithMarker(marker);
    expect(found.map((p) => p.pid)).toContain(child.child.pid);

    child.child.kill('SIGKILL');
    await child.catch((error: unknown) => expect(error).toMatchObject({ signal: 'SIGKILL' }));
    expect((await liveProcessesWithMarker(marker)).map((p) => p.pid)).not.toContain(child.child.pid);
  });
});
