/**
 * The `command` agent driver (SPEC 7): runs any command-line agent as `sh -c "<command>"` in the run's
 * workspace. It is the escape hatch for agents AgentGate has no dedicated driver for, and the driver the
 * engine's own tests use, so its contract is deliberately small and fully specified:
 *
 * - environment: `request.env` plus `AGENTGATE_PROMPT`, `AGENTGATE_PROMPT_FILE`, `AGENTGATE_FEEDBACK`,
 *   `AGENTGATE_FEEDBACK_FILE`, `AGENTGATE_ITERATION`, `AGENTGATE_RUN_ID`, `AGENTGATE_WORK_ORDER_ID`;
 * - stdin: the prompt, then (from iteration 2 on) the feedback under a heading;
 * - every output line becomes an `agent_output` event and a line of `agent-transcript.log`;
 * - exit 0 is success; anything else is a classified build failure.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError, toAgentGateError, type ErrorCode } from '../errors.js';
import { isoNow } from '../util/clock.js';
import { processGroupAlive, runProcess, type ProcessLine, type ProcessResult } from '../util/process.js';
import { agentEnv, redact, secretValues, type Env } from '../util/secrets.js';
import { cancellationOf, describeProcessEnd, lastLine, startBlocker } from './driver-support.js';
import { AgentTranscript } from './stream-json.js';
import type { AgentDriver, AgentFailureKind, AgentOptions, AgentRequest, AgentResult, AgentRunContext, AgentSummary } from './types.js';

/** Name under which the driver is registered and which TaskSpecs / WorkOrders (`agentType`) use. */
export const COMMAND_AGENT_NAME = 'command';

/** File name of the per-run transcript inside `request.artifactsDir`; iterations append to it. */
export const TRANSCRIPT_FILE = 'agent-transcript.log';

/** Heading that separates the prompt from the feedback on stdin (only present when there is feedback). */
export const FEEDBACK_HEADING = '## Feedback from the previous iteration';

/** How much of the end of stdout is kept as the iteration's `output` (read by ralph and the run record). */
export const OUTPUT_SUMMARY_CHARS = 4096;

/**
 * Longest line text put into one `agent_output` event. An agent that prints a minified bundle on one line
 * must not produce a multi-megabyte event; the transcript keeps the full line.
 */
export const MAX_EVENT_LINE_CHARS = 8192;

/** The failure classification → error code mapping every driver follows (SPEC 4, Build). */
export const AGENT_FAILURE_CODES = {
  agent_crash: 'AG_ERR_PHASE_BUILD_AGENT_CRASH',
  agent_timeout: 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT',
  agent_task_failure: 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE',
} as const satisfies Record<AgentFailureKind, ErrorCode>;

export interface CommandAgentDriverConfig {
  /**
   * Environment whose secret values (server tokens, model keys) are redacted from events, the transcript
   * and the output summary, in addition to those of `request.env`. Defaults to `process.env`.
   */
  secretEnv?: Env;
  /** Time between SIGTERM and SIGKILL when the agent is stopped. Default 2 s (util/process). */
  killGraceMs?: number;
  /**
   * How long to wait, after the agent's process group was sent SIGKILL, for its members to be gone before
   * reporting a process that survived. Default 3 s.
   */
  reapTimeoutMs?: number;
}

/**
 * Checks the TaskSpec's agent options for the command driver, so a missing command is rejected when the
 * task is submitted (exit 2 / HTTP 400) rather than failing the first build.
 *
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` when `command` is missing or blank.
 */
export function validateCommandOptions(options: AgentOptions): void {
  if (typeof options.command !== 'string' || options.command.trim() === '') {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', 'The command agent needs a non-empty "command" option (agentCommand / --agent-command).', {
      details: { agent: COMMAND_AGENT_NAME, option: 'command' },
    });
  }
}

/**
 * What the agent reads on stdin: the prompt, then — only when there is feedback — a blank line, the
 * {@link FEEDBACK_HEADING} and the feedback. Always ends with a newline so `read`-style agents see a
 * complete last line.
 */
export function composeAgentInput(prompt: string, feedback: string): string {
  const withNewline = (text: string): string => (text.endsWith('\n') ? text : `${text}\n`);
  const head = withNewline(prompt);
  return feedback.trim() === '' ? head : `${head}\n${FEEDBACK_HEADING}\n\n${withNewline(feedback)}`;
}

/**
 * Runs a shell-command agent. Stateless apart from its configuration; one instance serves every run.
 * `run()` never throws and, whatever the outcome, the agent's whole process group is gone when it resolves.
 */
export class CommandAgentDriver implements AgentDriver {
  readonly name = COMMAND_AGENT_NAME;

  constructor(private readonly config: CommandAgentDriverConfig = {}) {}

  async run(request: AgentRequest, ctx: AgentRunContext): Promise<AgentResult> {
    const started = ctx.clock.now();
    try {
      return await this.runChecked(request, ctx, started);
    } catch (error) {
      // Only unexpected failures (file system, a bug) get here: classify them, never let them escape.
      return failed(ctx, started, { exitCode: null, output: '' }, 'agent_crash', false, toAgentGateError(error, 'AG_ERR_PHASE_BUILD_AGENT_CRASH'));
    }
  }

  private async runChecked(request: AgentRequest, ctx: AgentRunContext, started: number): Promise<AgentResult> {
    const empty = { exitCode: null, output: '' };
    try {
      validateCommandOptions(request.options);
    } catch (error) {
      return failed(ctx, started, empty, 'agent_crash', false, toAgentGateError(error, 'AG_ERR_CONFIG_INVALID'));
    }
    const command = request.options.command ?? '';
    if (ctx.signal.aborted) return abortedResult(ctx, started, empty);

    const blocker = await startBlocker(request, ctx, 'The agent');
    if (blocker !== undefined) return failed(ctx, started, empty, blocker.failure, false, blocker.error);
    const timeoutMs = request.deadline === undefined ? undefined : request.deadline - ctx.clock.now();

    const secrets = [...new Set([...secretValues(this.config.secretEnv ?? process.env), ...secretValues(request.env)])];
    const clean = (text: string): string => redact(text, secrets);

    await mkdir(request.artifactsDir, { recursive: true });
    const promptFile = path.join(request.artifactsDir, `iteration-${request.iteration}-prompt.md`);
    const feedbackFile = path.join(request.artifactsDir, `iteration-${request.iteration}-feedback.md`);
    await writeFile(promptFile, request.prompt, 'utf8');
    await writeFile(feedbackFile, request.feedback, 'utf8');

    // agentEnv() again: the caller already removed AgentGate's own secrets, but a mistake there must not
    // hand a forge token to the agent.
    const env = agentEnv(request.env, {
      AGENTGATE_PROMPT: request.prompt,
      AGENTGATE_PROMPT_FILE: promptFile,
      AGENTGATE_FEEDBACK: request.feedback,
      AGENTGATE_FEEDBACK_FILE: feedbackFile,
      AGENTGATE_ITERATION: String(request.iteration),
      AGENTGATE_RUN_ID: request.runId,
      AGENTGATE_WORK_ORDER_ID: request.workOrderId,
    });

    const transcriptPath = path.join(request.artifactsDir, TRANSCRIPT_FILE);
    const transcript = new AgentTranscript(transcriptPath);
    transcript.write(`=== iteration ${request.iteration} started ${isoNow(ctx.clock)} ===`);

    let emitError: unknown;
    const onLine = ({ stream, line }: ProcessLine): void => {
      const text = clean(line);
      transcript.write(`[${stream}] ${text}`);
      try {
        ctx.emit('agent_output', { iteration: request.iteration, stream, text: truncateLine(text) });
      } catch (error) {
        // Keep the agent running and the transcript complete; the failure is reported in the result.
        emitError ??= error;
      }
    };

    const result = await runProcess({
      command,
      cwd: request.workspacePath,
      env,
      stdin: composeAgentInput(request.prompt, request.feedback),
      signal: ctx.signal,
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      idleTimeoutMs: request.idleTimeoutMs,
      onLine,
      ...(this.config.killGraceMs === undefined ? {} : { killGraceMs: this.config.killGraceMs }),
      clock: ctx.clock,
    });
    const survivors = result.pid === undefined ? [] : await waitForProcessGroupExit(result.pid, this.config.reapTimeoutMs ?? 3000);

    transcript.write(`=== iteration ${request.iteration} finished: ${describeProcessEnd(result)} after ${result.durationMs} ms ===`);
    const transcriptError = await transcript.close();

    const summary = {
      exitCode: result.exitCode,
      output: summarise(clean(result.stdout)),
      ...(transcriptError === undefined ? { transcriptPath } : {}),
    };
    // A listener error is isolated while the agent runs (it keeps working, the transcript stays complete)
    // but never dropped: it fails an otherwise successful build and is named in any other failure.
    const listenerError = emitError ?? (result.outcome === 'spawn_error' ? undefined : result.error);
    const extra = listenerError === undefined ? {} : { eventError: listenerError instanceof Error ? listenerError.message : String(listenerError) };
    const outcome = classify(result, request, clean, extra);
    const aborted = outcome === 'aborted';
    if (survivors.length > 0) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `Agent processes survived SIGKILL of their process group: ${survivors.join(', ')}.`, {
        details: { pids: survivors, ...extra },
      });
      return failed(ctx, started, summary, 'agent_crash', aborted, error);
    }
    if (aborted) return abortedResult(ctx, started, summary);
    if (outcome !== 'ok') return failed(ctx, started, summary, outcome.failure, false, outcome.error);
    if (listenerError !== undefined) {
      return failed(ctx, started, summary, 'agent_crash', false, toAgentGateError(listenerError, 'AG_ERR_INTERNAL'));
    }
    if (transcriptError !== undefined) {
      const error = new AgentGateError('AG_ERR_PHASE_BUILD_AGENT_CRASH', `The agent transcript could not be written: ${transcriptError.message}`, {
        cause: transcriptError,
        details: { transcriptPath },
      });
      return failed(ctx, started, summary, 'agent_crash', false, error);
    }
    return { ok: true, ...summary, durationMs: ctx.clock.now() - started, toolCalls: 0 };
  }
}

/** The registry's factory for the built-in driver. */
export function createCommandAgentDriver(config: CommandAgentDriverConfig = {}): CommandAgentDriver {
  return new CommandAgentDriver(config);
}

type Classified = 'ok' | 'aborted' | { failure: AgentFailureKind; error: AgentGateError };

/**
 * Maps how the process ended to SPEC 4's classifications. A clean non-zero exit is the agent saying it
 * could not do the task (`agent_task_failure`, not retryable as is); a missing command (126/127), a death
 * by signal (including a shell's 128+n) or a failed spawn is a crash (`agent_crash`, retryable);
 * the idle watchdog and the run deadline are `agent_timeout`.
 */
function classify(result: ProcessResult, request: AgentRequest, clean: (text: string) => string, extra: Record<string, unknown>): Classified {
  const lastStderr = lastLine(clean(result.stderr));
  const tail = lastStderr === '' ? '' : `: ${lastStderr}`;
  const details = { iteration: request.iteration, exitCode: result.exitCode, signal: result.signal, outcome: result.outcome, lastStderrLine: lastStderr, ...extra };
  const fail = (failure: AgentFailureKind, message: string, cause?: unknown): Classified => ({
    failure,
    error: new AgentGateError(AGENT_FAILURE_CODES[failure], message, cause === undefined ? { details } : { details, cause }),
  });

  switch (result.outcome) {
    case 'aborted':
      return 'aborted';
    case 'spawn_error':
      return fail('agent_crash', `The agent command could not be started: ${result.error?.message ?? 'unknown error'}`, result.error);
    case 'idle_timeout':
      return fail('agent_timeout', `The agent produced no output for ${request.idleTimeoutMs} ms and was stopped${tail}`);
    case 'timeout':
      return fail('agent_timeout', `The agent was stopped at the run deadline after ${result.durationMs} ms${tail}`);
    case 'exited': {
      const code = result.exitCode;
      if (code === 0) return 'ok';
      if (code === null) return fail('agent_crash', `The agent was killed by signal ${result.signal ?? 'unknown'}${tail}`);
      if (code === 126 || code === 127) return fail('agent_crash', `The agent command could not be run (exit code ${code})${tail}`);
      if (code > 128 && code <= 128 + 64) return fail('agent_crash', `The agent was killed by signal ${code - 128} (exit code ${code})${tail}`);
      return fail('agent_task_failure', `The agent exited with code ${code}${tail}`);
    }
    default:
      return assertNever(result.outcome);
  }
}

function assertNever(value: never): never {
  throw new AgentGateError('AG_ERR_INTERNAL', `Unhandled process outcome: ${String(value)}`);
}

function failed(ctx: AgentRunContext, started: number, summary: Pick<AgentSummary, 'exitCode' | 'output' | 'transcriptPath'>, failure: AgentFailureKind, aborted: boolean, error: AgentGateError): AgentResult {
  return { ok: false, failure, aborted, error, ...summary, durationMs: ctx.clock.now() - started, toolCalls: 0 };
}

/**
 * A canceled agent reports *canceled*, not failed. When the signal was aborted with an AgentGateError as
 * its typed reason (e.g. the run's wall clock), that error is kept so the engine can tell why.
 */
function abortedResult(ctx: AgentRunContext, started: number, summary: Pick<AgentSummary, 'exitCode' | 'output' | 'transcriptPath'>): AgentResult {
  const { error, failure } = cancellationOf(ctx.signal, 'The agent');
  return failed(ctx, started, summary, failure, true, error);
}



/** The last {@link OUTPUT_SUMMARY_CHARS} of stdout, starting at a line boundary when one is available. */
function summarise(stdout: string): string {
  const trimmed = stdout.trimEnd();
  if (trimmed.length <= OUTPUT_SUMMARY_CHARS) return trimmed;
  const tail = trimmed.slice(-OUTPUT_SUMMARY_CHARS);
  const newline = tail.indexOf('\n');
  return newline >= 0 && newline < tail.length - 1 ? tail.slice(newline + 1) : tail;
}

function truncateLine(text: string): string {
  return text.length <= MAX_EVENT_LINE_CHARS ? text : `${text.slice(0, MAX_EVENT_LINE_CHARS)}… [${text.length - MAX_EVENT_LINE_CHARS} more characters in the transcript]`;
}


/**
 * Waits until no live (non-zombie) process remains in the process group `pgid`, polling at short
 * intervals up to `timeoutMs`. Returns the pids still alive at the end (empty when the group is gone).
 *
 * Why: runProcess sends SIGKILL to the group when the agent ends, but delivery is asynchronous and a
 * killed grandchild can still be running for a moment; the driver contract promises that no agent process
 * survives `run()`. Zombies waiting for init to reap them are dead and do not count — some container
 * inits reap orphans only every second or so. Without `/proc` (not Linux) any group member counts.
 */
export async function waitForProcessGroupExit(pgid: number, timeoutMs: number): Promise<number[]> {
  let waited = 0;
  let delay = 5;
  for (;;) {
    const alive = processGroupAlive(pgid) ? await liveGroupMembers(pgid) : [];
    if (alive.length === 0 || waited >= timeoutMs) return alive;
    await new Promise((resolve) => setTimeout(resolve, delay));
    waited += delay;
    delay = Math.min(delay * 2, 100);
  }
}

async function liveGroupMembers(pgid: number): Promise<number[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [pgid];
    throw error;
  }
  const pids = entries.filter((e) => /^\d+$/.test(e));
  const stats = await Promise.all(
    pids.map(async (pid) => {
      try {
        return { pid: Number(pid), stat: await readFile(`/proc/${pid}/stat`, 'utf8') };
      } catch (error) {
        // The process exited between readdir and readFile: it is not alive.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
        throw error;
      }
    }),
  );
  const alive: number[] = [];
  for (const entry of stats) {
    if (entry === undefined) continue;
    // Format: pid (comm) state ppid pgrp …; comm may contain spaces and parentheses.
    const fields = entry.stat.slice(entry.stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (Number(fields[2]) === pgid && state !== 'Z' && state !== 'X') alive.push(entry.pid);
  }
  return alive;
}
