/**
 * L2 gates: black-box checks of the program's behaviour (SPEC 6). A command gets a fixed stdin (inline
 * `stdin`, or `stdinFile` relative to the worktree) and its result is checked by assertions:
 * - `exitCode: n` — the exit code. Without an exitCode assertion the command must exit 0: a program that
 *   crashes after printing the expected text has not passed.
 * - `contains: text` — stdout contains the text.
 * - `matches: regex` — stdout matches the regular expression, in RE2 syntax and run by RE2 in time linear
 *   in the output (schemas/verify-config `compileMatchPattern`): the output is the agent's, so a
 *   backtracking engine would let it stall the server with a pathological input.
 * - `jsonEquals: value` — stdout, parsed as JSON, deeply equals the value (key order does not matter).
 *
 * All assertions are evaluated, so the feedback names every expectation that failed.
 */
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { AgentGateError } from '../errors.js';
import { compileMatchPattern, type BlackboxAssertion, type BlackboxGate } from '../schemas/verify-config.js';
import type { CommandEnvironment } from './command-gate.js';
import { executeCommand } from './command-gate.js';
import { resolveInside } from './contracts.js';
import type { Diagnostic, GateResult } from './types.js';

/** stdout kept verbatim for assertions; larger output fails jsonEquals rather than being parsed half. */
const STDOUT_BYTES = 1024 * 1024;

/** Expected and actual values in messages are cut to this length. */
const SHOWN_CHARS = 200;

function show(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS)}…` : text;
}

/** Checks one assertion; returns the reason it failed, or undefined when it holds. */
export function checkAssertion(assertion: BlackboxAssertion, actual: { exitCode: number | null; stdout: string; stdoutTruncated: boolean }): string | undefined {
  if ('exitCode' in assertion) {
    return actual.exitCode === assertion.exitCode ? undefined : `expected exit code ${assertion.exitCode}, got ${String(actual.exitCode)}`;
  }
  if ('contains' in assertion) {
    return actual.stdout.includes(assertion.contains) ? undefined : `expected stdout to contain ${show(assertion.contains)}`;
  }
  if ('matches' in assertion) {
    return compileMatchPattern(assertion.matches).test(actual.stdout) ? undefined : `expected stdout to match /${assertion.matches}/`;
  }
  if (actual.stdoutTruncated) return `stdout is larger than ${STDOUT_BYTES} bytes; cannot compare it as JSON`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(actual.stdout);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    return `expected stdout to be JSON equal to ${show(assertion.jsonEquals)}, but it is not valid JSON (${error.message})`;
  }
  return isDeepStrictEqual(parsed, assertion.jsonEquals) ? undefined : `expected stdout JSON to equal ${show(assertion.jsonEquals)}, got ${show(parsed)}`;
}

/** Reads the stdin fixture; a fixture that is missing or a symlink leading out of the worktree fails the gate. */
async function readStdinFile(worktreePath: string, relative: string): Promise<{ ok: true; text: string } | { ok: false; message: string }> {
  const resolved = resolveInside(worktreePath, relative);
  let real: string;
  try {
    real = await realpath(resolved);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { ok: false, message: `stdin file ${relative} does not exist` };
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `cannot read stdin file ${relative}`, { cause: error });
  }
  const root = await realpath(worktreePath);
  const back = path.relative(root, real);
  if (back.startsWith('..') || path.isAbsolute(back)) return { ok: false, message: `stdin file ${relative} resolves outside the worktree` };
  try {
    return { ok: true, text: await readFile(real, 'utf8') };
  } catch (error) {
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `cannot read stdin file ${relative}`, { cause: error });
  }
}

/**
 * Runs one black-box gate.
 *
 * @throws AgentGateError `AG_ERR_WORKSPACE_PATH_ESCAPE` when `stdinFile` names a path outside the worktree
 *   (a configuration error), `AG_ERR_PHASE_VERIFY` when the command cannot start.
 */
export async function runBlackboxGate(gate: BlackboxGate, logFile: string, env: CommandEnvironment): Promise<{ cancelled: true } | { cancelled: false; result: GateResult }> {
  const started = env.clock.now();
  let stdin = gate.stdin;
  if (gate.stdinFile !== undefined) {
    const fixture = await readStdinFile(env.worktreePath, gate.stdinFile);
    if (!fixture.ok) {
      const diagnostics: Diagnostic[] = [{ tool: 'generic', file: gate.stdinFile, test: gate.name, message: fixture.message }];
      return { cancelled: false, result: { name: gate.name, level: 'L2', passed: false, durationMs: env.clock.now() - started, command: gate.command, message: fixture.message, diagnostics } };
    }
    stdin = fixture.text;
  }

  const outcome = await executeCommand(
    {
      name: gate.name,
      level: 'L2',
      command: gate.command,
      timeoutSeconds: gate.timeout,
      expectedExit: 0,
      logFile,
      stdoutBytes: STDOUT_BYTES,
      ...(stdin === undefined ? {} : { stdin }),
    },
    env,
  );
  if (outcome.cancelled) return outcome;
  const { execution } = outcome;
  const base: GateResult = {
    name: gate.name,
    level: 'L2',
    passed: false,
    durationMs: execution.process.durationMs,
    command: gate.command,
    exitCode: execution.process.exitCode,
    outputTail: execution.outputTail,
    diagnostics: [],
    logPath: execution.logPath,
  };
  if (execution.timedOut) return { cancelled: false, result: { ...base, timedOut: true, message: execution.stopMessage ?? 'timed out' } };

  const assertions: BlackboxAssertion[] = gate.assertions.some((a) => 'exitCode' in a) ? gate.assertions : [{ exitCode: 0 }, ...gate.assertions];
  const actual = { exitCode: execution.process.exitCode, stdout: execution.process.stdout, stdoutTruncated: execution.process.stdout.length >= STDOUT_BYTES };
  const failures = assertions.flatMap((assertion) => {
    const reason = checkAssertion(assertion, actual);
    return reason === undefined ? [] : [reason];
  });
  if (failures.length === 0) return { cancelled: false, result: { ...base, passed: true } };
  const more = failures.length > 1 ? ` (and ${failures.length - 1} more)` : '';
  return {
    cancelled: false,
    result: { ...base, message: `${failures[0] ?? 'assertion failed'}${more}`, diagnostics: failures.map((message) => ({ tool: 'generic', test: gate.name, message })) },
  };
}
