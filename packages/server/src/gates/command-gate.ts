/**
 * L1 gates (and environment.setup steps): the team's own commands, run in the worktree (SPEC 6).
 *
 * Each command runs as `sh -c <command>` in its own process group (util/process.ts), so a timeout or a
 * cancel kills the whole tree — test runners love to leave watchers and workers behind. The environment
 * is the server's minus every secret (`gateEnv`: no AgentGate tokens, no model keys) plus `CI=true`, which
 * makes test runners non-interactive and non-watching. The output goes to a log file under the run's
 * artifacts directory — its first and last {@link GATE_LOG_LIMITS} bytes when it is larger; the result
 * keeps a bounded tail and parsed diagnostics.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { CappedOutputLog, verbatim, type OutputLogLimits } from '../util/output-log.js';
import { runProcess } from '../util/process.js';
import { sandboxOption } from '../util/sandbox.js';
import type { ProcessResult } from '../util/process.js';
import { gateEnv, redact, secretValues } from '../util/secrets.js';
import type { Env } from '../util/secrets.js';
import { MAX_DIAGNOSTICS, parseDiagnostics } from './diagnostics.js';
import type { GateLevel, GateResult } from './types.js';

/** The output tail kept in a GateResult: enough for the last error and summary of any test runner. */
export const OUTPUT_TAIL_BYTES = 8 * 1024;

/**
 * A gate's log keeps its first 2 MiB and last 2 MiB (with a marker saying what was dropped between), so a
 * test suite gone wild cannot fill the disk; lines are cut at 256 KiB characters.
 */
export const GATE_LOG_LIMITS: OutputLogLimits = { headBytes: 2 * 1024 * 1024, tailBytes: 2 * 1024 * 1024, maxLineChars: 256 * 1024 };

/** Output kept for the diagnostics parsers: the start (compiler errors come first) and the end (summaries). */
const PARSE_HEAD_CHARS = 256 * 1024;
const PARSE_TAIL_CHARS = 256 * 1024;

/** Everything a gate command needs from its verification. */
export interface CommandEnvironment {
  worktreePath: string;
  /** Directory the full logs are written to (created when missing). */
  artifactsDir: string;
  signal: AbortSignal;
  clock: Clock;
  /** The environment gates start from, before secrets are removed. */
  baseEnv: Env;
  /** Absolute epoch ms at which policy.maxRuntimeSeconds ends the verification, if set. */
  deadline?: number;
  /** The policy limit, for the message of a gate it stopped. */
  maxRuntimeSeconds?: number;
  /** Time between SIGTERM and SIGKILL when a gate is stopped (default: runProcess's 2 s). */
  killGraceMs?: number;
  maxDiagnostics?: number;
}

export interface CommandSpec {
  name: string;
  level: GateLevel;
  command: string;
  timeoutSeconds: number;
  expectedExit: number;
  /** File name of the full log inside artifactsDir (chosen unique by the verifier). */
  logFile: string;
  /** Written to stdin (black-box gates). */
  stdin?: string;
  /** Keep this much of stdout verbatim in the execution (black-box assertions read it). */
  stdoutBytes?: number;
}

/** A finished command: the process result plus what the gate reports. */
export interface CommandExecution {
  process: ProcessResult;
  /** Whether the gate's own timeout or the verification's time limit stopped it. */
  timedOut: boolean;
  /** One-line reason when the command did not finish normally or exited unexpectedly. */
  stopMessage: string | undefined;
  outputTail: string;
  /** Head and tail of the combined output, for the diagnostics parsers. */
  parseText: string;
  logPath: string;
}

export type CommandOutcome = { cancelled: false; execution: CommandExecution } | { cancelled: true };

/** Builds the environment of a gate: secrets removed, `CI=true`, colours off unless forced. */
export function buildGateEnv(base: Env): Record<string, string> {
  const env: Record<string, string> = { ...gateEnv(base), CI: 'true' };
  // NO_COLOR next to FORCE_COLOR makes Node print a warning into every test run; respect FORCE_COLOR.
  if (env.FORCE_COLOR === undefined) env.NO_COLOR = '1';
  return env;
}

/**
 * Keeps the start and the end of a stream of lines within fixed bounds. Lines are kept raw and the text
 * is redacted when it is read, so lines that are dropped cost no redaction.
 */
class OutputCollector {
  private head = '';
  /** Tail lines from `tailStart` on (an index, not `shift()`: shifting a large array per line is quadratic). */
  private tail: string[] = [];
  private tailStart = 0;
  private tailChars = 0;
  private droppedLines = 0;

  constructor(private readonly clean: (text: string) => string) {}

  push(line: string): void {
    if (this.head.length < PARSE_HEAD_CHARS) {
      this.head += `${line}\n`;
      return;
    }
    this.tail.push(line);
    this.tailChars += line.length + 1;
    while (this.tailChars > PARSE_TAIL_CHARS && this.tail.length - this.tailStart > 1) {
      this.tailChars -= (this.tail[this.tailStart]?.length ?? 0) + 1;
      this.tailStart += 1;
      this.droppedLines += 1;
    }
    if (this.tailStart > 4096 && this.tailStart * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailStart);
      this.tailStart = 0;
    }
  }

  text(): string {
    const gap = this.droppedLines > 0 ? `… ${this.droppedLines} lines omitted …\n` : '';
    return this.clean(`${this.head}${gap}${this.tail.slice(this.tailStart).join('\n')}`);
  }

  /** The last `max` characters, starting at a line boundary when possible. */
  tailText(max: number): string {
    const all = this.text().replace(/\n+$/, '');
    if (all.length <= max) return all;
    const cut = all.slice(-max);
    const newline = cut.indexOf('\n');
    return newline === -1 || newline > max / 2 ? `…${cut}` : `…${cut.slice(newline)}`;
  }
}

/** A name usable in a file name: letters, digits, dot, dash and underscore only. */
export function safeFileName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+|-+$/g, '');
  return (cleaned === '' ? 'gate' : cleaned).slice(0, 80);
}

function describeLimit(seconds: number): string {
  return `${seconds}s`;
}

/**
 * Runs one command and writes its log. Returns `{ cancelled: true }` when `signal` aborted it; a timeout,
 * a non-zero exit or a crash is a normal execution for the caller to judge.
 *
 * @throws AgentGateError `AG_ERR_PHASE_VERIFY` when the command could not be started or its log written.
 */
export async function executeCommand(spec: CommandSpec, env: CommandEnvironment): Promise<CommandOutcome> {
  if (env.signal.aborted) return { cancelled: true };
  const secrets = secretValues(env.baseEnv);
  const logPath = path.join(env.artifactsDir, spec.logFile);
  try {
    mkdirSync(env.artifactsDir, { recursive: true });
  } catch (error) {
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `cannot create the artifacts directory ${env.artifactsDir}`, { cause: error });
  }
  const clean = (text: string): string => redact(text, secrets);
  const log = CappedOutputLog.create(logPath, GATE_LOG_LIMITS);
  const collector = new OutputCollector(clean);
  log.write(`$ ${clean(spec.command)}`, verbatim);

  const gateTimeoutMs = spec.timeoutSeconds * 1000;
  const remaining = env.deadline === undefined ? Number.POSITIVE_INFINITY : Math.max(0, env.deadline - env.clock.now());
  const limitedByPolicy = remaining < gateTimeoutMs;
  const result = await runProcess({
    command: spec.command,
    cwd: env.worktreePath,
    env: buildGateEnv(env.baseEnv),
    signal: env.signal,
    timeoutMs: Math.min(gateTimeoutMs, remaining),
    tailBytes: spec.stdoutBytes ?? OUTPUT_TAIL_BYTES,
    clock: env.clock,
    ...(spec.stdin === undefined ? {} : { stdin: spec.stdin }),
    ...(env.killGraceMs === undefined ? {} : { killGraceMs: env.killGraceMs }),
    // Inside bubblewrap when the run's policy asks for it (util/sandbox.ts): only the workspace and a per-run home writable.
    ...sandboxOption({ role: 'gate', workspacePath: env.worktreePath, artifactsDir: env.artifactsDir, env: {} }),
    onLine: ({ line }) => {
      collector.push(line);
      log.write(line, clean);
    },
  });

  const footer =
    result.outcome === 'exited'
      ? `[exit code ${String(result.exitCode)}${result.signal === null ? '' : `, signal ${result.signal}`} after ${result.durationMs} ms]`
      : `[${result.outcome} after ${result.durationMs} ms]`;
  log.write(footer, verbatim);
  const logError = await log.close();

  if (result.outcome === 'aborted') return { cancelled: true };
  if (result.outcome === 'spawn_error') {
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `gate ${spec.name} could not start: ${result.error?.message ?? 'unknown error'}`, { cause: result.error });
  }
  if (logError !== undefined) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `cannot write the log of gate ${spec.name} to ${logPath}: ${logError.message}`, { cause: logError });

  let stopMessage: string | undefined;
  const timedOut = result.outcome === 'timeout' || result.outcome === 'idle_timeout';
  if (timedOut) {
    stopMessage =
      limitedByPolicy && env.maxRuntimeSeconds !== undefined
        ? `stopped: the verification reached policy.maxRuntimeSeconds (${describeLimit(env.maxRuntimeSeconds)})`
        : `timed out after ${describeLimit(spec.timeoutSeconds)}`;
  } else if (result.exitCode === null) {
    stopMessage = `killed by ${result.signal ?? 'a signal'}`;
  } else if (result.exitCode !== spec.expectedExit) {
    stopMessage = `exit code ${result.exitCode} (expected ${spec.expectedExit})`;
  }
  return {
    cancelled: false,
    execution: { process: result, timedOut, stopMessage, outputTail: collector.tailText(OUTPUT_TAIL_BYTES), parseText: collector.text(), logPath },
  };
}

/** An L1 test gate or a setup step, as configured. */
export interface CommandGateConfig {
  name: string;
  command: string;
  /** Seconds. */
  timeout: number;
  expectedExit?: number;
}

/**
 * Runs an L1 gate (or a setup step, with `level: 'setup'`) and turns the execution into a GateResult:
 * passed when it exited with `expectedExit` (default 0) in time, with diagnostics parsed on failure.
 */
export async function runCommandGate(
  gate: CommandGateConfig,
  level: Extract<GateLevel, 'L1' | 'setup'>,
  logFile: string,
  env: CommandEnvironment,
): Promise<{ cancelled: true } | { cancelled: false; result: GateResult }> {
  const outcome = await executeCommand(
    { name: gate.name, level, command: gate.command, timeoutSeconds: gate.timeout, expectedExit: gate.expectedExit ?? 0, logFile },
    env,
  );
  if (outcome.cancelled) return outcome;
  const { execution } = outcome;
  const passed = execution.stopMessage === undefined;
  const result: GateResult = {
    name: gate.name,
    level,
    passed,
    durationMs: execution.process.durationMs,
    command: gate.command,
    exitCode: execution.process.exitCode,
    outputTail: execution.outputTail,
    diagnostics: passed ? [] : parseDiagnostics(execution.parseText, { cwd: env.worktreePath, max: env.maxDiagnostics ?? MAX_DIAGNOSTICS }),
    logPath: execution.logPath,
  };
  if (execution.stopMessage !== undefined) result.message = execution.stopMessage;
  if (execution.timedOut) result.timedOut = true;
  return { cancelled: false, result };
}
