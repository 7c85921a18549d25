/**
 * The contract between {@link ProcessAgentDriver} (which owns the process, the watchdog, the deadline,
 * cancellation, the transcript, output bounding, events and the result) and one CLI's protocol (which
 * knows its arguments, its output and what its exit means). A protocol does no process I/O; its
 * accumulator is pure and fed lines, so it is tested on captured output.
 */
import type { AgentGateError } from '../../errors.js';
import type { ProgressEvents } from '../../observability/events.js';
import type { ProcessResult } from '../../util/process.js';
import type { AgentRequest, AgentSummary } from '../types.js';
import type { AgentClassification } from './classification.js';

/** An event an accumulator asks the driver to emit, as data (accumulators do no I/O). */
export type AgentStreamEvent =
  | { type: 'agent_output'; data: ProgressEvents['agent_output'] }
  | { type: 'agent_tool_call'; data: ProgressEvents['agent_tool_call'] }
  | { type: 'agent_tool_result'; data: ProgressEvents['agent_tool_result'] };

/** Folds one invocation's stdout lines into events; what it learns is read by the protocol afterwards. */
export interface StreamAccumulator {
  /** One stdout line, already redacted → the events to emit. Must not throw on unexpected input. */
  push(line: string): AgentStreamEvent[];
}

/**
 * How stdout lines are stored: `text` lines are written as `[stdout] …` and blank lines are kept;
 * `json-lines` lines are redacted string by string and written as they are, blank lines skipped (on
 * stderr too).
 */
export type StdoutFormat = 'text' | 'json-lines';

/** One process to start. */
export interface ProcessLaunch {
  /** The executable; a shell command run as `sh -c` when `args` is absent. */
  command: string;
  args?: readonly string[];
  /** Variables added to the request's environment (which is passed through `agentEnv()` again). */
  env: Record<string, string>;
  /** Written to stdin, which is then closed; empty by default. */
  stdin?: string;
  /** Appended to the transcript's `=== iteration n started <time>` marker. */
  transcriptLabel: string;
}

/** What one invocation left behind, for the protocol to judge. */
export interface InvocationEnd<A extends StreamAccumulator> {
  process: ProcessResult;
  accumulator: A;
  /** The session this invocation resumed, if any. */
  resumeSessionId: string | undefined;
  /** The last non-empty stderr line, redacted ('' when none). */
  lastStderrLine: string;
  /** Agent processes still alive after SIGKILL (group members or tagged processes). */
  survivors: number[];
}

/** The summary fields a protocol reports; the base adds `durationMs` and `transcriptPath`. */
export type ProtocolSummary = Omit<AgentSummary, 'durationMs' | 'transcriptPath'>;

/** Per-run state of a protocol, created once the artifacts directory and the transcript exist. */
export interface ProtocolRun<A extends StreamAccumulator> {
  launch(resumeSessionId: string | undefined): ProcessLaunch;
  accumulator(): A;
  /**
   * After an invocation that tried to resume a session: a note (for the transcript and a stderr event)
   * when the session could not be found, so the base starts over in a new session. Undefined otherwise.
   */
  resumeFailed(end: InvocationEnd<A>): string | undefined;
  /** `extraDetails` (e.g. an isolated listener error) belong in any failure's details. */
  classify(end: InvocationEnd<A>, extraDetails: Record<string, unknown>): AgentClassification;
  summary(end: InvocationEnd<A>): ProtocolSummary;
  /** Work before the transcript closes (it may still write notes). */
  finish?(end: InvocationEnd<A>): Promise<void>;
}

export interface RunIo {
  /** Redacts the run's secrets. */
  clean(text: string): string;
  /** Writes a line into the transcript. */
  note(line: string): void;
}

export interface AgentProtocol<A extends StreamAccumulator> {
  /** Registry name (`command`, `claude-code`, `codex`). */
  readonly agentName: string;
  /** Subject of messages: `The agent`, `Claude Code`, `codex`. */
  readonly displayName: string;
  readonly stdoutFormat: StdoutFormat;
  /**
   * Tag every process with {@link AGENT_PROCESS_TAG_ENV} and kill tagged survivors: for CLIs that run
   * tools in process groups or sessions of their own.
   */
  readonly tagProcesses: boolean;
  /** Fail-fast check of the request's options. @throws AgentGateError `AG_ERR_CONFIG_INVALID`. */
  validate(request: AgentRequest): void;
  /** The executable (or shell command) to run, or why there is none; nothing is written before. */
  locate(request: AgentRequest): Promise<string | AgentGateError>;
  open(request: AgentRequest, io: RunIo, executable: string): Promise<ProtocolRun<A>>;
}
