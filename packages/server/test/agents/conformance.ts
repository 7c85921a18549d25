/**
 * The AgentDriver conformance suite (SPEC 7; STYLE lesson 10): one contract, one set of tests, run
 * against every driver. A driver's test file calls {@link describeAgentDriverConformance} with a fixture
 * that knows how to make *its* agent behave in four scripted ways — the command driver with shell
 * scripts, claude-code and codex with their real CLIs talking to a loopback scripted model server.
 *
 * What every driver must do:
 * - success → `ok: true`, the agent's file edit is in the workspace, its output streamed as
 *   `agent_output` events in order (tagged with the iteration), `durationMs ≥ 0`;
 * - a failed task → `ok: false`, not aborted, with the fixture's classification and its error code;
 * - silence for `idleTimeoutMs` → `agent_timeout`, and no agent process is left;
 * - cancel mid-run → `aborted: true` with `AG_ERR_RUN_CANCELED` within 5 s, and no process is left;
 * - `run()` never throws (a missing workspace is a failed result).
 *
 * "No process is left" is checked by a marker: the suite puts {@link CONFORMANCE_MARKER_ENV} into
 * `request.env`, every process the agent starts inherits it, and after `run()` resolves no live process
 * may carry it (zombies waiting for init are dead and do not count). Fixtures must therefore pass
 * `request.env` on to everything they start.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentDriver, AgentFailureKind, AgentRequest, AgentResult } from '../../src/agents/types.js';
import { AgentGateError } from '../../src/errors.js';
import type { EmitFn, ProgressEventType, ProgressEvents } from '../../src/observability/events.js';
import { systemClock } from '../../src/util/clock.js';
import { agentEnv } from '../../src/util/secrets.js';

const execFileAsync = promisify(execFile);

/** Environment variable whose unique value marks every process of one scenario. */
export const CONFORMANCE_MARKER_ENV = 'AGENTGATE_CONFORMANCE_MARKER';

/** Where a scenario runs; handed to the fixture so its scripts can write into the workspace. */
export interface ConformanceEnvironment {
  /** A fresh git repository the agent works in. */
  workspacePath: string;
  artifactsDir: string;
  /** Unique per scenario; also present in `request.env` as {@link CONFORMANCE_MARKER_ENV}. */
  marker: string;
}

/** Request fields a scenario controls; the suite fills in the rest (ids, paths, env, signal). */
export type ScenarioRequest = Partial<Pick<AgentRequest, 'prompt' | 'feedback' | 'options' | 'env' | 'sessionId' | 'gateSummary' | 'idleTimeoutMs'>>;

export interface ConformanceScenario {
  request?: ScenarioRequest;
}

export interface SucceedsScenario extends ConformanceScenario {
  /** The file the agent creates or edits, relative to the workspace, and its content afterwards. */
  editedFile: { path: string; content: string };
  /** Texts that must appear, in this order, among the `agent_output` events (other events may interleave). */
  outputInOrder: readonly string[];
}

export interface FailsScenario extends ConformanceScenario {
  expectedFailure: AgentFailureKind;
}

export interface AgentDriverFixture {
  driver: AgentDriver;
  /** The agent edits a file, prints the lines of `outputInOrder` and finishes successfully. */
  succeedsAndEditsFile(env: ConformanceEnvironment): SucceedsScenario | Promise<SucceedsScenario>;
  /** The agent ends unsuccessfully (non-zero exit, `is_error` …). */
  failsTheTask(env: ConformanceEnvironment): FailsScenario | Promise<FailsScenario>;
  /** The agent starts (ideally with a child process) and then never prints anything again. */
  hangsSilently(env: ConformanceEnvironment): ConformanceScenario | Promise<ConformanceScenario>;
  /** The agent prints at least one line early and then keeps running for far longer than any test. */
  runsLong(env: ConformanceEnvironment): ConformanceScenario | Promise<ConformanceScenario>;
  /** Stops whatever the fixture started (model servers …). */
  dispose?(): void | Promise<void>;
}

export type AgentDriverFixtureFactory = () => AgentDriverFixture | Promise<AgentDriverFixture>;

export type RecordedEvent = { [K in ProgressEventType]: { type: K; data: ProgressEvents[K] } }[ProgressEventType];

/** An EmitFn that records what it receives, for assertions. */
export function recordingEmit(onEvent?: (event: RecordedEvent) => void): { emit: EmitFn; events: RecordedEvent[] } {
  const events: RecordedEvent[] = [];
  const emit: EmitFn = (type, data) => {
    const event = { type, data } as RecordedEvent;
    events.push(event);
    onEvent?.(event);
  };
  return { emit, events };
}

export function agentOutputs(events: readonly RecordedEvent[]): Array<ProgressEvents['agent_output']> {
  return events.flatMap((e) => (e.type === 'agent_output' ? [e.data] : []));
}

/**
 * Live processes whose environment carries `marker` (Linux: `/proc/<pid>/environ`; elsewhere `ps e`).
 * Zombies are excluded: they are dead and only wait for their parent or init to reap them.
 */
export async function liveProcessesWithMarker(marker: string): Promise<Array<{ pid: number; args: string }>> {
  const needle = `${CONFORMANCE_MARKER_ENV}=${marker}`;
  if (!existsSync('/proc/self/environ')) {
    const { stdout } = await execFileAsync('ps', ['eww', '-A', '-o', 'pid=,stat=,args=']);
    return stdout
      .split('\n')
      .map((line) => /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line))
      .flatMap((m) => (m?.[1] !== undefined && m[2] !== undefined && m[3] !== undefined && !m[2].startsWith('Z') && m[3].includes(needle) ? [{ pid: Number(m[1]), args: m[3] }] : []));
  }
  const found: Array<{ pid: number; args: string }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const read = async (file: string): Promise<string | undefined> => {
      try {
        return await readFile(`/proc/${entry}/${file}`, 'utf8');
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // Gone since readdir, or a kernel thread / other user's process we may not read: not ours.
        if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return undefined;
        throw error;
      }
    };
    const environ = await read('environ');
    if (environ === undefined || !environ.split('\0').includes(needle)) continue;
    const stat = (await read('stat')) ?? '';
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X' || stat === '') continue;
    found.push({ pid: Number(entry), args: ((await read('cmdline')) ?? '').split('\0').join(' ').trim() });
  }
  return found;
}

/** The error code each classification must carry (SPEC 4, Build). */
const FAILURE_CODES: Record<AgentFailureKind, string> = {
  agent_crash: 'AG_ERR_PHASE_BUILD_AGENT_CRASH',
  agent_timeout: 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT',
  agent_task_failure: 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE',
};

/** Idle timeout the "hangs silently" scenario runs with unless it sets its own. */
export const CONFORMANCE_IDLE_TIMEOUT_MS = 300;

/** SPEC 14: cancel reaches a terminal state within 5 s with no surviving child process. */
const CANCEL_BOUND_MS = 5000;

/** Registers the shared AgentDriver tests for one driver. */
export function describeAgentDriverConformance(name: string, makeFixture: AgentDriverFixtureFactory): void {
  describe(`AgentDriver conformance: ${name}`, () => {
    let fixture: AgentDriverFixture;
    let root: string;
    let env: ConformanceEnvironment;

    beforeEach(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), 'agentgate-conformance-'));
      const workspacePath = path.join(root, 'workspace');
      const artifactsDir = path.join(root, 'artifacts');
      await mkdir(workspacePath);
      await mkdir(artifactsDir);
      await execFileAsync('git', ['init', '-q', workspacePath]);
      env = { workspacePath, artifactsDir, marker: randomUUID() };
      fixture = await makeFixture();
    });

    afterEach(async () => {
      await fixture.dispose?.();
      await rm(root, { recursive: true, force: true });
    });

    const requestFor = (scenario: ConformanceScenario, overrides: Partial<AgentRequest> = {}): AgentRequest => {
      const { env: extraEnv, ...rest } = scenario.request ?? {};
      return {
        runId: `run-${env.marker}`,
        workOrderId: `wo-${env.marker}`,
        iteration: 1,
        prompt: 'Complete the conformance task.',
        feedback: '',
        workspacePath: env.workspacePath,
        artifactsDir: env.artifactsDir,
        idleTimeoutMs: 60_000,
        options: {},
        ...rest,
        env: { ...agentEnv(process.env), ...extraEnv, [CONFORMANCE_MARKER_ENV]: env.marker },
        ...overrides,
      };
    };

    const run = (request: AgentRequest, signal: AbortSignal, emit: EmitFn): Promise<AgentResult> =>
      fixture.driver.run(request, { signal, emit, clock: systemClock });

    describe('when the agent succeeds and edits a file', () => {
      it('returns ok with a non-negative duration and the edit in the workspace', async () => {
        const scenario = await fixture.succeedsAndEditsFile(env);
        const { emit } = recordingEmit();

        const result = await run(requestFor(scenario), new AbortController().signal, emit);

        expect(result).toMatchObject({ ok: true });
        expect(result.durationMs).toBeGreaterThanOrEqual(0);
        expect(await readFile(path.join(env.workspacePath, scenario.editedFile.path), 'utf8')).toBe(scenario.editedFile.content);
      });

      it('streams its output as agent_output events in order, tagged with the iteration', async () => {
        const scenario = await fixture.succeedsAndEditsFile(env);
        const { emit, events } = recordingEmit();

        await run(requestFor(scenario, { iteration: 2, feedback: 'Fix the failing gate.' }), new AbortController().signal, emit);

        const outputs = agentOutputs(events);
        expect(outputs.every((o) => o.iteration === 2)).toBe(true);
        // Lines that arrive together may share one event (coalesced output): check the order in the text.
        const text = outputs.map((o) => o.text).join('\n');
        let from = 0;
        for (const expected of scenario.outputInOrder) {
          const at = text.indexOf(expected, from);
          expect(at, `"${expected}" in order among ${JSON.stringify(outputs.map((o) => o.text))}`).toBeGreaterThanOrEqual(from);
          from = at + expected.length;
        }
        expect(events.every((e) => e.type === 'agent_output' || e.type === 'agent_tool_call' || e.type === 'agent_tool_result')).toBe(true);
      });

      it('keeps a transcript inside the artifacts directory when it reports one', async () => {
        const scenario = await fixture.succeedsAndEditsFile(env);

        const result = await run(requestFor(scenario), new AbortController().signal, recordingEmit().emit);

        if (result.transcriptPath !== undefined) {
          expect(path.relative(env.artifactsDir, result.transcriptPath).startsWith('..')).toBe(false);
          expect(existsSync(result.transcriptPath)).toBe(true);
        }
        expect(await liveProcessesWithMarker(env.marker)).toEqual([]);
      });
    });

    describe('when the agent fails the task', () => {
      it('returns a failure with the expected classification and its error code, not aborted', async () => {
        const scenario = await fixture.failsTheTask(env);

        const result = await run(requestFor(scenario), new AbortController().signal, recordingEmit().emit);

        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.failure).toBe(scenario.expectedFailure);
        expect(result.aborted).toBe(false);
        expect(result.error).toBeInstanceOf(AgentGateError);
        expect(result.error.code).toBe(FAILURE_CODES[scenario.expectedFailure]);
        expect(result.durationMs).toBeGreaterThanOrEqual(0);
      });
    });

    describe('when the agent goes silent', () => {
      it('is stopped by the idle watchdog as agent_timeout and leaves no process behind', async () => {
        const scenario = await fixture.hangsSilently(env);
        const request = requestFor(scenario, { idleTimeoutMs: scenario.request?.idleTimeoutMs ?? CONFORMANCE_IDLE_TIMEOUT_MS });

        const result = await run(request, new AbortController().signal, recordingEmit().emit);

        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.failure).toBe('agent_timeout');
        expect(result.aborted).toBe(false);
        expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_TIMEOUT');
        expect(await liveProcessesWithMarker(env.marker)).toEqual([]);
      });
    });

    describe('when the run is canceled while the agent works', () => {
      it('resolves as aborted within 5 s and leaves no process behind', async () => {
        const scenario = await fixture.runsLong(env);
        const controller = new AbortController();
        let abortedAt = 0;
        const { emit } = recordingEmit((event) => {
          if (event.type === 'agent_output' && !controller.signal.aborted) {
            abortedAt = performance.now();
            controller.abort();
          }
        });

        const result = await run(requestFor(scenario), controller.signal, emit);
        const stoppedWithin = performance.now() - abortedAt;

        expect(controller.signal.aborted).toBe(true);
        expect(stoppedWithin).toBeLessThan(CANCEL_BOUND_MS);
        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.aborted).toBe(true);
        expect(result.error.code).toBe('AG_ERR_RUN_CANCELED');
        expect(await liveProcessesWithMarker(env.marker)).toEqual([]);
      });
    });

    describe('when the signal is aborted before the agent starts', () => {
      it('reports aborted without running the agent', async () => {
        const scenario = await fixture.runsLong(env);
        const controller = new AbortController();
        controller.abort();
        const { emit, events } = recordingEmit();

        const result = await run(requestFor(scenario), controller.signal, emit);

        expect(result).toMatchObject({ ok: false, aborted: true });
        expect(agentOutputs(events)).toEqual([]);
        expect(await liveProcessesWithMarker(env.marker)).toEqual([]);
      });
    });

    describe('when the workspace does not exist', () => {
      it('returns a failure instead of throwing', async () => {
        const scenario = await fixture.succeedsAndEditsFile(env);
        const request = requestFor(scenario, { workspacePath: path.join(root, 'missing') });

        const result = await run(request, new AbortController().signal, recordingEmit().emit);

        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.aborted).toBe(false);
        expect(result.error).toBeInstanceOf(AgentGateError);
      });
    });
  });
}
