/**
 * The one driver for every CLI agent run as a child process (command, claude-code, codex). It owns what
 * all of them share — starting the process in its own group (util/process), the idle watchdog, the run
 * deadline, cancellation, the transcript, redaction and bounding of output, event emission, the resume
 * fallback, making sure no process survives, and assembling the result — and asks an
 * {@link AgentProtocol} for what differs: arguments, how output is read, and what the end means.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError, toAgentGateError } from '../../errors.js';
import type { ProgressEvents } from '../../observability/events.js';
import { assertNever } from '../../util/abort.js';
import { isoNow } from '../../util/clock.js';
import { runProcess, type ProcessLine } from '../../util/process.js';
import { sandboxOption } from '../../util/sandbox.js';
import { OutputEventLimiter, DEFAULT_OUTPUT_EVENT_LIMITS, type OutputEventLimits } from '../../util/output-events.js';
import type { LineRenderer } from '../../util/output-log.js';
import { agentEnv, redact, secretValues, type Env } from '../../util/secrets.js';
import type { AgentDriver, AgentFailureKind, AgentRequest, AgentResult, AgentRunContext } from '../types.js';
import { cancellationOf, describeProcessEnd } from './classification.js';
import { redactJsonLine } from './json-lines.js';
import { startBlocker } from './preflight.js';
import type { AgentProtocol, AgentStreamEvent, InvocationEnd, ProtocolRun, ProtocolSummary, RunIo, StreamAccumulator } from './protocol.js';
import { AGENT_PROCESS_TAG_ENV, killTaggedProcesses, waitForProcessGroupExit } from '../../util/reap.js';
import { lastLine, MAX_EVENT_LINE_CHARS, truncateText } from './text.js';
import { AgentTranscript, TRANSCRIPT_FILE } from './transcript.js';

export interface ProcessDriverConfig {
  /**
   * Environment whose secret values (server tokens, model keys) are redacted from events, the transcript
   * and the summary, in addition to those of `request.env`. Default `process.env`.
   */
  secretEnv?: Env;
  /** Time between SIGTERM and SIGKILL when the agent is stopped. Default 2 s (util/process). */
  killGraceMs?: number;
  /** How long to wait for stopped agent processes to be gone before reporting survivors. Default 3 s. */
  reapTimeoutMs?: number;
  /** Bounds on `agent_output` events per run (util/output-events). Default {@link DEFAULT_OUTPUT_EVENT_LIMITS}. */
  outputEvents?: OutputEventLimits;
}

/** Default of {@link ProcessDriverConfig.reapTimeoutMs}. */
export const DEFAULT_REAP_TIMEOUT_MS = 3000;

type Summary = ProtocolSummary & { transcriptPath?: string };

const EMPTY_SUMMARY: Summary = { exitCode: null, output: '', toolCalls: 0 };

/** What one run shares between its invocations. */
interface RunScope<A extends StreamAccumulator> {
  request: AgentRequest;
  ctx: AgentRunContext;
  run: ProtocolRun<A>;
  transcript: AgentTranscript;
  clean: (text: string) => string;
  /** Output events go through the limiter (coalesced, rate-limited); tool events pass, in order. */
  output: OutputEventLimiter<OutputStream>;
  emit: (event: AgentStreamEvent) => void;
}

type OutputStream = ProgressEvents['agent_output']['stream'];

/**
 * Stateless apart from its protocol and configuration; one instance serves every run. `run()` never
 * throws, and when it resolves no process the agent started is alive.
 */
export class ProcessAgentDriver<A extends StreamAccumulator> implements AgentDriver {
  readonly name: string;

  constructor(
    private readonly protocol: AgentProtocol<A>,
    private readonly config: ProcessDriverConfig = {},
  ) {
    this.name = protocol.agentName;
  }

  async run(request: AgentRequest, ctx: AgentRunContext): Promise<AgentResult> {
    const started = ctx.clock.now();
    const failed = (summary: Summary, failure: AgentFailureKind, aborted: boolean, error: AgentGateError): AgentResult => ({
      ok: false,
      failure,
      aborted,
      error,
      ...summary,
      durationMs: ctx.clock.now() - started,
    });
    const canceled = (summary: Summary): AgentResult => {
      const { failure, error } = cancellationOf(ctx.signal, this.protocol.displayName);
      return failed(summary, failure, true, error);
    };
    try {
      const outcome = await this.runChecked(request, ctx);
      switch (outcome.kind) {
        case 'ok':
          return { ok: true, ...outcome.summary, durationMs: ctx.clock.now() - started };
        case 'aborted':
          return canceled(outcome.summary);
        case 'failed':
          return failed(outcome.summary, outcome.failure, outcome.aborted, outcome.error);
        default:
          return assertNever(outcome);
      }
    } catch (error) {
      // Only unexpected failures (file system, a bug) get here: classify them, never let them escape.
      return failed(EMPTY_SUMMARY, 'agent_crash', false, toAgentGateError(error, 'AG_ERR_PHASE_BUILD_AGENT_CRASH'));
    }
  }

  private async runChecked(request: AgentRequest, ctx: AgentRunContext): Promise<RunOutcome> {
    const { protocol } = this;
    try {
      protocol.validate(request);
    } catch (error) {
      return failure(EMPTY_SUMMARY, 'agent_crash', toAgentGateError(error, 'AG_ERR_CONFIG_INVALID'));
    }
    if (ctx.signal.aborted) return { kind: 'aborted', summary: EMPTY_SUMMARY };
    const blocker = await startBlocker(request, ctx.clock, protocol.displayName);
    if (blocker !== undefined) return failure(EMPTY_SUMMARY, blocker.failure, blocker.error);
    const executable = await protocol.locate(request);
    if (executable instanceof AgentGateError) return failure(EMPTY_SUMMARY, 'agent_crash', executable);

    const secrets = [...new Set([...secretValues(this.config.secretEnv ?? process.env), ...secretValues(request.env)])];
    const clean = (text: string): string => redact(text, secrets);
    await mkdir(request.artifactsDir, { recursive: true });
    const transcriptPath = path.join(request.artifactsDir, TRANSCRIPT_FILE);
    const transcript = await AgentTranscript.open(transcriptPath);
    let emitError: unknown;
    const emit = (event: AgentStreamEvent): void => {
      try {
        emitEvent(ctx, event);
      } catch (error) {
        // Keep the agent running and the transcript complete; the failure is reported in the result.
        emitError ??= error;
      }
    };
    const output = new OutputEventLimiter<OutputStream>(
      (stream, text) => emit({ type: 'agent_output', data: { iteration: request.iteration, stream, text } }),
      ctx.clock,
      this.config.outputEvents ?? DEFAULT_OUTPUT_EVENT_LIMITS,
    );
    const io: RunIo = { clean, note: (line) => transcript.write(line) };
    const run = await protocol.open(request, io, executable);
    const scope: RunScope<A> = { request, ctx, run, transcript, clean, output, emit };

    let end = await this.invoke(scope, request.sessionId);
    const resumeNote = request.sessionId === undefined || ctx.signal.aborted ? undefined : run.resumeFailed(end);
    if (resumeNote !== undefined) {
      // The session store is gone (another HOME, a wiped config dir): start over with task + feedback
      // rather than failing the iteration on something the agent did not do.
      transcript.write(`=== ${resumeNote} ===`);
      output.flush();
      emit({ type: 'agent_output', data: { iteration: request.iteration, stream: 'stderr', text: resumeNote } });
      end = await this.invoke(scope, undefined);
    }
    await run.finish?.(end);
    output.close();
    const transcriptError = await transcript.close();
    const summary: Summary = { ...run.summary(end), ...(transcriptError === undefined ? { transcriptPath } : {}) };

    // A listener error is isolated while the agent runs (it keeps working, the transcript stays complete)
    // but never dropped: it fails an otherwise successful build and is named in any other failure.
    const listenerError = emitError ?? (end.process.outcome === 'spawn_error' ? undefined : end.process.error);
    const extra = listenerError === undefined ? {} : { eventError: listenerError instanceof Error ? listenerError.message : String(listenerError) };
    const classified = run.classify(end, extra);
    const aborted = classified === 'aborted';
    if (end.survivors.length > 0) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `${protocol.displayName} processes survived SIGKILL: ${end.survivors.join(', ')}.`, {
        details: { pids: end.survivors, ...extra },
      });
      return { kind: 'failed', summary, failure: 'agent_crash', aborted, error };
    }
    if (aborted) return { kind: 'aborted', summary };
    if (classified !== 'ok') return failure(summary, classified.failure, classified.error);
    if (listenerError !== undefined) return failure(summary, 'agent_crash', toAgentGateError(listenerError, 'AG_ERR_INTERNAL'));
    if (transcriptError !== undefined) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `The agent transcript could not be written: ${transcriptError.message}`, {
        cause: transcriptError,
        details: { transcriptPath },
      });
      return failure(summary, 'agent_crash', error);
    }
    return { kind: 'ok', summary };
  }

  /** Runs one process to its end and makes sure nothing it started is left. */
  private async invoke(scope: RunScope<A>, resumeSessionId: string | undefined): Promise<InvocationEnd<A>> {
    const { request, ctx, run, transcript, clean, output, emit } = scope;
    const launch = run.launch(resumeSessionId);
    const tag = this.protocol.tagProcesses ? randomUUID() : undefined;
    // agentEnv() again: the caller already removed AgentGate's own secrets, but a mistake there must not
    // hand a forge token to the agent.
    const env = agentEnv(request.env, { ...launch.env, ...(tag === undefined ? {} : { [AGENT_PROCESS_TAG_ENV]: tag }) });
    const accumulator = run.accumulator();
    const json = this.protocol.stdoutFormat === 'json-lines';
    transcript.write(`=== iteration ${request.iteration} started ${isoNow(ctx.clock)}${launch.transcriptLabel} ===`);

    // Lines are redacted when they are kept (the transcript's head and tail, admitted events), so a flood
    // that is only counted costs no redaction; the transcript, every event and the summary are built from
    // redacted text.
    const stderrLine: LineRenderer = (raw) => `[stderr] ${clean(raw)}`;
    const stdoutLine: LineRenderer = (raw) => `[stdout] ${clean(raw)}`;
    const eventText = (raw: string): string => truncateText(clean(raw), MAX_EVENT_LINE_CHARS);
    const forward = (event: AgentStreamEvent): void => {
      if (event.type === 'agent_output') {
        output.push(event.data.stream, event.data.text);
        return;
      }
      output.flush();
      emit(event);
    };
    const onLine = ({ stream, line }: ProcessLine): void => {
      if (json && line.trim() === '') return;
      if (stream === 'stderr') {
        transcript.write(line, stderrLine);
        output.push('stderr', line, eventText);
        return;
      }
      if (json) {
        // Every JSON line reaches the accumulator: it learns the session, usage and result from them.
        const safe = redactJsonLine(line, clean);
        transcript.write(safe);
        for (const event of accumulator.push(safe)) forward(event);
        return;
      }
      transcript.write(line, stdoutLine);
      // A text accumulator only turns lines into events: a line the limiter would drop is just counted.
      if (!output.accepting('stdout')) {
        output.omit('stdout', line, eventText);
        return;
      }
      for (const event of accumulator.push(clean(line))) forward(event);
    };

    const timeoutMs = request.deadline === undefined ? undefined : Math.max(1, request.deadline - ctx.clock.now());
    const result = await runProcess({
      command: launch.command,
      ...(launch.args === undefined ? {} : { args: launch.args }),
      cwd: request.workspacePath,
      env,
      stdin: launch.stdin ?? '',
      signal: ctx.signal,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      idleTimeoutMs: request.idleTimeoutMs,
      onLine,
      ...(this.config.killGraceMs === undefined ? {} : { killGraceMs: this.config.killGraceMs }),
      clock: ctx.clock,
      // Inside bubblewrap when the run's policy asks for it (util/sandbox.ts): workspace and a per-run home writable.
      ...sandboxOption({ role: 'agent', workspacePath: request.workspacePath, artifactsDir: request.artifactsDir, env }),
    });
    const reapMs = this.config.reapTimeoutMs ?? DEFAULT_REAP_TIMEOUT_MS;
    const groupSurvivors = result.pid === undefined ? [] : await waitForProcessGroupExit(result.pid, reapMs);
    const taggedSurvivors = tag === undefined ? [] : await killTaggedProcesses(tag, reapMs);
    transcript.write(`=== iteration ${request.iteration} finished: ${describeProcessEnd(result)} after ${result.durationMs} ms ===`);
    return {
      process: result,
      accumulator,
      resumeSessionId,
      lastStderrLine: lastLine(clean(result.stderr)),
      survivors: [...new Set([...groupSurvivors, ...taggedSurvivors])],
    };
  }
}

type RunOutcome =
  | { kind: 'ok'; summary: Summary }
  | { kind: 'aborted'; summary: Summary }
  | { kind: 'failed'; summary: Summary; failure: AgentFailureKind; aborted: boolean; error: AgentGateError };

function failure(summary: Summary, kind: AgentFailureKind, error: AgentGateError): RunOutcome {
  return { kind: 'failed', summary, failure: kind, aborted: false, error };
}

function emitEvent(ctx: AgentRunContext, event: AgentStreamEvent): void {
  switch (event.type) {
    case 'agent_output':
      ctx.emit('agent_output', event.data);
      return;
    case 'agent_tool_call':
      ctx.emit('agent_tool_call', event.data);
      return;
    case 'agent_tool_result':
      ctx.emit('agent_tool_result', event.data);
      return;
    default:
      assertNever(event);
  }
}
