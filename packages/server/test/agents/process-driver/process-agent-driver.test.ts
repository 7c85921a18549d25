/**
 * ProcessAgentDriver against a fake protocol whose "CLI" is a real `node -e` child process: the base's
 * own duties (watchdog, deadline, cancel, transcript, redaction, resume fallback, reaping, result
 * assembly) tested without any real agent CLI.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../../src/errors.js';
import { classifyProcessStop, failWith, type AgentClassification } from '../../../src/agents/process-driver/classification.js';
import { ProcessAgentDriver, type ProcessDriverConfig } from '../../../src/agents/process-driver/process-agent-driver.js';
import type { AgentProtocol, AgentStreamEvent, StreamAccumulator } from '../../../src/agents/process-driver/protocol.js';
import { TRANSCRIPT_FILE } from '../../../src/agents/process-driver/transcript.js';
import type { AgentRequest, AgentResult } from '../../../src/agents/types.js';
import type { EmitFn } from '../../../src/observability/events.js';
import { systemClock } from '../../../src/util/clock.js';
import { agentEnv } from '../../../src/util/secrets.js';
import { CONFORMANCE_MARKER_ENV, agentOutputs, liveProcessesWithMarker, recordingEmit } from '../conformance.js';

/** Keeps every stdout line it is fed and turns each into a text event. */
class LineAccumulator implements StreamAccumulator {
  readonly lines: string[] = [];
  constructor(private readonly iteration: number) {}

  push(line: string): AgentStreamEvent[] {
    this.lines.push(line);
    return [{ type: 'agent_output', data: { iteration: this.iteration, stream: 'text', text: line } }];
  }
}

interface FakeOptions {
  /** The child's program, given the session it resumes. */
  script: (resumeSessionId: string | undefined) => string;
  tagProcesses?: boolean;
  stdoutFormat?: 'text' | 'json-lines';
  validate?: (request: AgentRequest) => void;
  locate?: () => Promise<string | AgentGateError>;
}

/** A protocol whose CLI is `node -e <script>`: exit 0 = ok, anything else = task failure; "NO_SESSION" = resume failed. */
function fakeProtocol(options: FakeOptions, launches: Array<string | undefined> = []): AgentProtocol<LineAccumulator> {
  return {
    agentName: 'fake',
    displayName: 'The fake agent',
    stdoutFormat: options.stdoutFormat ?? 'json-lines',
    tagProcesses: options.tagProcesses ?? false,
    validate: options.validate ?? (() => undefined),
    locate: options.locate ?? (() => Promise.resolve(process.execPath)),
    open: (request, _io, executable) =>
      Promise.resolve({
        launch: (resume) => {
          launches.push(resume);
          return { command: executable, args: ['-e', options.script(resume)], env: { FAKE_RESUME: resume ?? '' }, transcriptLabel: ' (fake)' };
        },
        accumulator: () => new LineAccumulator(request.iteration),
        resumeFailed: ({ accumulator }) => (accumulator.lines.includes('NO_SESSION') ? 'fake: session not found; starting over' : undefined),
        classify: ({ process, lastStderrLine }, extra): AgentClassification => {
          const fail = failWith({ exitCode: process.exitCode, lastStderrLine, ...extra });
          const stopped = classifyProcessStop(process, { agent: 'The fake agent', idleTimeoutMs: request.idleTimeoutMs, lastStderrLine, fail });
          if (stopped !== undefined) return stopped;
          return process.exitCode === 0 ? 'ok' : fail('agent_task_failure', `The fake agent exited with code ${String(process.exitCode)}`);
        },
        summary: ({ process, accumulator }) => ({ exitCode: process.exitCode, output: accumulator.lines.at(-1) ?? '', toolCalls: accumulator.lines.length }),
      }),
  };
}

/** A node program that prints `lines`, then runs `then`. */
const prints = (lines: readonly string[], then = ''): string => `${lines.map((l) => `console.log(${JSON.stringify(l)});`).join('')}${then}`;

describe('ProcessAgentDriver', () => {
  let root: string;
  let workspacePath: string;
  let artifactsDir: string;
  let marker: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'agentgate-process-driver-'));
    workspacePath = path.join(root, 'workspace');
    artifactsDir = path.join(root, 'artifacts');
    await mkdir(workspacePath);
    marker = randomUUID();
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const request = (overrides: Partial<AgentRequest> = {}): AgentRequest => ({
    runId: 'run-1',
    workOrderId: 'wo-1',
    iteration: 1,
    prompt: 'Do the task.',
    feedback: '',
    workspacePath,
    artifactsDir,
    idleTimeoutMs: 30_000,
    env: { ...agentEnv(process.env), [CONFORMANCE_MARKER_ENV]: marker },
    options: {},
    ...overrides,
  });

  const run = (protocol: AgentProtocol<LineAccumulator>, req: AgentRequest, opts: { signal?: AbortSignal; emit?: EmitFn; config?: ProcessDriverConfig } = {}): Promise<AgentResult> =>
    new ProcessAgentDriver(protocol, { killGraceMs: 200, ...opts.config }).run(req, { signal: opts.signal ?? new AbortController().signal, emit: opts.emit ?? recordingEmit().emit, clock: systemClock });

  const transcript = (): Promise<string> => readFile(path.join(artifactsDir, TRANSCRIPT_FILE), 'utf8');

  describe('when the agent succeeds', () => {
    it('streams the accumulator events in order and assembles the result with the transcript path', async () => {
      const { emit, events } = recordingEmit();

      const result = await run(fakeProtocol({ script: () => prints(['{"step":1}', '', '{"step":2}'], 'console.error("a warning");') }), request(), { emit });

      expect(result).toMatchObject({ ok: true, exitCode: 0, output: '{"step":2}', toolCalls: 2, transcriptPath: path.join(artifactsDir, TRANSCRIPT_FILE) });
      // Lines read together may be coalesced into one event per stream (util/output-events).
      const outputs = agentOutputs(events);
      expect(outputs.every((o) => o.iteration === 1)).toBe(true);
      expect(outputs.filter((o) => o.stream === 'text').map((o) => o.text).join('\n')).toBe('{"step":1}\n{"step":2}');
      expect(outputs.filter((o) => o.stream !== 'text')).toEqual([{ iteration: 1, stream: 'stderr', text: 'a warning' }]);
      expect((await transcript()).trimEnd().split('\n')).toEqual([
        expect.stringMatching(/^=== iteration 1 started \d{4}-.*Z \(fake\) ===$/),
        '{"step":1}',
        '{"step":2}',
        '[stderr] a warning',
        expect.stringMatching(/^=== iteration 1 finished: exit 0 after \d+ ms ===$/),
      ]);
    });

    it('redacts a secret hidden by JSON escaping before the transcript, the accumulator and the events see it', async () => {
      const secret = 'model-key-0123456789';
      const { emit, events } = recordingEmit();
      const script = `const k = process.env.ANTHROPIC_API_KEY; console.log(JSON.stringify({ text: "line\\n" + k })); console.error("stderr " + k);`;

      const result = await run(fakeProtocol({ script: () => script }), request({ env: { ...request().env, ANTHROPIC_API_KEY: secret } }), { emit });

      expect(result.ok).toBe(true);
      expect(JSON.stringify(events)).not.toContain(secret);
      expect(await transcript()).not.toContain(secret);
      expect(result.output).toBe(JSON.stringify({ text: 'line\n[REDACTED]' }));
    });

    it('writes text output as [stdout] lines and keeps blank lines in text format', async () => {
      await run(fakeProtocol({ stdoutFormat: 'text', script: () => prints(['one', '', 'two']) }), request());

      expect((await transcript()).split('\n').slice(1, 4)).toEqual(['[stdout] one', '[stdout] ', '[stdout] two']);
    });
  });

  describe('classification', () => {
    it("returns the protocol's failure with the last stderr line", async () => {
      const result = await run(fakeProtocol({ script: () => 'console.error("tests still failing"); process.exit(3);' }), request());

      expect(result).toMatchObject({ ok: false, failure: 'agent_task_failure', aborted: false, exitCode: 3 });
      if (result.ok) return;
      expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE');
      expect(result.error.details).toMatchObject({ lastStderrLine: 'tests still failing' });
    });

    it('rejects invalid options as AG_ERR_CONFIG_INVALID and a missing executable as agent_crash, without starting anything', async () => {
      const launches: Array<string | undefined> = [];
      const invalid = fakeProtocol(
        {
          script: () => '',
          validate: () => {
            throw new AgentGateError('AG_ERR_CONFIG_INVALID', 'bad option');
          },
        },
        launches,
      );
      const missing = fakeProtocol({ script: () => '', locate: () => Promise.resolve(new AgentGateError('AG_ERR_AGENT_NOT_INSTALLED', 'no such binary')) }, launches);

      const results = [await run(invalid, request()), await run(missing, request())];

      expect(results.map((r) => (r.ok ? 'ok' : [r.failure, r.error.code]))).toEqual([
        ['agent_crash', 'AG_ERR_CONFIG_INVALID'],
        ['agent_crash', 'AG_ERR_AGENT_NOT_INSTALLED'],
      ]);
      expect(launches).toEqual([]);
    });

    it('fails an otherwise successful run when a listener throws, after the agent ran to its end', async () => {
      const emit: EmitFn = () => {
        throw new Error('event store unavailable');
      };

      const result = await run(fakeProtocol({ script: () => prints(['first', 'last']) }), request(), { emit });

      expect(result).toMatchObject({ ok: false, failure: 'agent_crash', output: 'last' });
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_INTERNAL');
    });
  });

  describe('the idle watchdog', () => {
    it('stops a silent agent as agent_timeout and leaves no process behind', async () => {
      const script = prints(['started'], 'require("node:child_process").spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" }); setInterval(() => {}, 1000);');

      const result = await run(fakeProtocol({ script: () => script }), request({ idleTimeoutMs: 300 }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_timeout', aborted: false });
      if (!result.ok) expect(result.error.message).toContain('produced no output for 300 ms');
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });
  });

  describe('the run deadline', () => {
    it('stops an agent that keeps printing at the deadline as agent_timeout', async () => {
      const script = 'setInterval(() => console.log("tick"), 20);';

      const result = await run(fakeProtocol({ script: () => script }), request({ deadline: Date.now() + 400 }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_timeout' });
      if (!result.ok) expect(result.error.message).toContain('run deadline');
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });

    it('does not start the agent when the deadline has passed', async () => {
      const launches: Array<string | undefined> = [];

      const result = await run(fakeProtocol({ script: () => '' }, launches), request({ deadline: Date.now() - 1 }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_timeout' });
      expect(launches).toEqual([]);
    });
  });

  describe('cancellation', () => {
    it('stops an agent that ignores SIGTERM and reports it canceled, not failed', async () => {
      const controller = new AbortController();
      const { emit } = recordingEmit(() => controller.abort());
      const script = prints(['working'], 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000);');

      const result = await run(fakeProtocol({ script: () => script }), request(), { signal: controller.signal, emit });

      expect(result).toMatchObject({ ok: false, aborted: true, failure: 'agent_crash' });
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_RUN_CANCELED');
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });

    it('keeps a typed abort reason: a run timeout is agent_timeout', async () => {
      const controller = new AbortController();
      controller.abort(new AgentGateError('AG_ERR_RUN_TIMEOUT', 'wall clock'));

      const result = await run(fakeProtocol({ script: () => '' }), request(), { signal: controller.signal });

      expect(result).toMatchObject({ ok: false, aborted: true, failure: 'agent_timeout' });
      if (!result.ok) expect(result.error.code).toBe('AG_ERR_RUN_TIMEOUT');
    });
  });

  describe('processes that leave the process group', () => {
    it('are found by their tag and killed before run() returns', async () => {
      const escape = 'require("node:child_process").spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore", detached: true }).unref();';

      const result = await run(fakeProtocol({ tagProcesses: true, script: () => prints(['spawned'], escape) }), request());

      expect(result.ok).toBe(true);
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });
  });

  describe('resume', () => {
    it('starts over in a new session when the protocol says the session was not found', async () => {
      const launches: Array<string | undefined> = [];
      const { emit, events } = recordingEmit();
      const script = (resume: string | undefined): string => (resume === undefined ? prints(['fresh start']) : prints(['NO_SESSION'], 'process.exit(1);'));

      const result = await run(fakeProtocol({ script }, launches), request({ iteration: 2, sessionId: 'lost-session' }), { emit });

      expect(result).toMatchObject({ ok: true, output: 'fresh start' });
      expect(launches).toEqual(['lost-session', undefined]);
      expect(agentOutputs(events)).toContainEqual({ iteration: 2, stream: 'stderr', text: 'fake: session not found; starting over' });
      expect(await transcript()).toContain('=== fake: session not found; starting over ===');
    });

    it('keeps the failure of a resumed session the protocol does not call lost', async () => {
      const launches: Array<string | undefined> = [];

      const result = await run(fakeProtocol({ script: () => 'process.exit(2);' }, launches), request({ sessionId: 'kept-session' }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_task_failure' });
      expect(launches).toEqual(['kept-session']);
    });
  });
});
