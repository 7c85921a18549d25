/**
 * The `command` agent driver (SPEC 7): runs any command-line agent as `sh -c "<command>"` in the run's
 * workspace. It is the escape hatch for agents AgentGate has no dedicated driver for, and the driver the
 * engine's own tests use, so its contract is deliberately small and fully specified:
 *
 * - environment: `request.env` plus `AGENTGATE_PROMPT`, `AGENTGATE_PROMPT_FILE`, `AGENTGATE_FEEDBACK`,
 *   `AGENTGATE_FEEDBACK_FILE`, `AGENTGATE_ITERATION`, `AGENTGATE_RUN_ID`, `AGENTGATE_WORK_ORDER_ID`;
 * - stdin: the prompt, then (from iteration 2 on) the feedback under a heading;
 * - output lines become `agent_output` events (coalesced and rate-limited by the base) and lines of
 *   `agent-transcript.log` (head and tail kept);
 * - exit 0 is success; anything else is a classified build failure.
 *
 * The process, watchdog, deadline, cancel and transcript are {@link ProcessAgentDriver}'s; this file is
 * the protocol: the environment, plain-text output, and what an exit code means.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { composeAgentInput } from './agent-input.js';
import { classifyProcessStop, failWith, type AgentClassification } from './process-driver/classification.js';
import { ProcessAgentDriver, type ProcessDriverConfig } from './process-driver/process-agent-driver.js';
import type { AgentProtocol, AgentStreamEvent, InvocationEnd, ProtocolRun, RunIo, StreamAccumulator } from './process-driver/protocol.js';
import { MAX_EVENT_LINE_CHARS, outputTail, truncateText } from './process-driver/text.js';
import type { AgentOptions, AgentRequest } from './types.js';

export { FEEDBACK_HEADING, composeAgentInput } from './agent-input.js';
export { MAX_EVENT_LINE_CHARS, OUTPUT_SUMMARY_CHARS } from './process-driver/text.js';
export { TRANSCRIPT_FILE } from './process-driver/transcript.js';

/** Name under which the driver is registered and which TaskSpecs / WorkOrders (`agentType`) use. */
export const COMMAND_AGENT_NAME = 'command';

export type CommandAgentDriverConfig = ProcessDriverConfig;

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

/** Every stdout line is offered as an `agent_output` event; the base coalesces and rate-limits them. */
export class CommandOutputAccumulator implements StreamAccumulator {
  constructor(private readonly iteration: number) {}

  push(line: string): AgentStreamEvent[] {
    return [{ type: 'agent_output', data: { iteration: this.iteration, stream: 'stdout', text: truncateText(line, MAX_EVENT_LINE_CHARS) } }];
  }
}

/**
 * Maps how the process ended to SPEC 4's classifications. A clean non-zero exit is the agent saying it
 * could not do the task (`agent_task_failure`, not retryable as is); a missing command (126/127), a death
 * by signal (including a shell's 128+n) or a failed spawn is a crash (`agent_crash`, retryable);
 * the idle watchdog and the run deadline are `agent_timeout`.
 */
export function classifyCommandRun(end: Pick<InvocationEnd<StreamAccumulator>, 'process' | 'lastStderrLine'>, request: Pick<AgentRequest, 'iteration' | 'idleTimeoutMs'>, extraDetails: Record<string, unknown> = {}): AgentClassification {
  const { process: result, lastStderrLine } = end;
  const tail = lastStderrLine === '' ? '' : `: ${lastStderrLine}`;
  const fail = failWith({ iteration: request.iteration, exitCode: result.exitCode, signal: result.signal, outcome: result.outcome, lastStderrLine, ...extraDetails });
  const stopped = classifyProcessStop(result, { agent: 'The agent', idleTimeoutMs: request.idleTimeoutMs, lastStderrLine, fail });
  if (stopped !== undefined) return stopped;
  const code = result.exitCode;
  if (code === 0) return 'ok';
  if (code === null) return fail('agent_crash', `The agent was killed by signal ${result.signal ?? 'unknown'}${tail}`);
  if (code === 126 || code === 127) return fail('agent_crash', `The agent command could not be run (exit code ${code})${tail}`);
  if (code > 128 && code <= 128 + 64) return fail('agent_crash', `The agent was killed by signal ${code - 128} (exit code ${code})${tail}`);
  return fail('agent_task_failure', `The agent exited with code ${code}${tail}`);
}

/** The command driver's protocol: a shell command, the task in variables, files and stdin, plain output. */
export const commandProtocol: AgentProtocol<CommandOutputAccumulator> = {
  agentName: COMMAND_AGENT_NAME,
  displayName: 'The agent',
  stdoutFormat: 'text',
  tagProcesses: false,
  validate: (request) => validateCommandOptions(request.options),
  locate: (request) => Promise.resolve(request.options.command ?? ''),
  async open(request: AgentRequest, io: RunIo, command: string): Promise<ProtocolRun<CommandOutputAccumulator>> {
    const promptFile = path.join(request.artifactsDir, `iteration-${request.iteration}-prompt.md`);
    const feedbackFile = path.join(request.artifactsDir, `iteration-${request.iteration}-feedback.md`);
    await writeFile(promptFile, request.prompt, 'utf8');
    await writeFile(feedbackFile, request.feedback, 'utf8');
    const env = {
      AGENTGATE_PROMPT: request.prompt,
      AGENTGATE_PROMPT_FILE: promptFile,
      AGENTGATE_FEEDBACK: request.feedback,
      AGENTGATE_FEEDBACK_FILE: feedbackFile,
      AGENTGATE_ITERATION: String(request.iteration),
      AGENTGATE_RUN_ID: request.runId,
      AGENTGATE_WORK_ORDER_ID: request.workOrderId,
    };
    return {
      launch: () => ({ command, env, stdin: composeAgentInput(request.prompt, request.feedback), transcriptLabel: '' }),
      accumulator: () => new CommandOutputAccumulator(request.iteration),
      // A shell command has no sessions.
      resumeFailed: () => undefined,
      classify: (end, extra) => classifyCommandRun(end, request, extra),
      summary: (end) => ({ exitCode: end.process.exitCode, output: outputTail(io.clean(end.process.stdout)), toolCalls: 0 }),
    };
  },
};

/**
 * Runs a shell-command agent. Stateless apart from its configuration; one instance serves every run.
 * `run()` never throws and, whatever the outcome, the agent's whole process group is gone when it resolves.
 */
export class CommandAgentDriver extends ProcessAgentDriver<CommandOutputAccumulator> {
  constructor(config: CommandAgentDriverConfig = {}) {
    super(commandProtocol, config);
  }
}

/** The registry's factory for the built-in driver. */
export function createCommandAgentDriver(config: CommandAgentDriverConfig = {}): CommandAgentDriver {
  return new CommandAgentDriver(config);
}
