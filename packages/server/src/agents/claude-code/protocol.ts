/**
 * The claude-code protocol for {@link ProcessAgentDriver}: where the binary is, the command line and
 * environment of an invocation, the stream-json accumulator, the classification and the resume
 * fallback. The process, watchdog, deadline, cancel, transcript and events are the base's.
 */
import { AgentGateError } from '../../errors.js';
import { nonEmpty, resolveExecutable } from '../process-driver/preflight.js';
import { ProcessAgentDriver } from '../process-driver/process-agent-driver.js';
import type { AgentProtocol, ProtocolRun } from '../process-driver/protocol.js';
import type { AgentRequest } from '../types.js';
import { ClaudeStreamAccumulator } from './accumulator.js';
import { buildClaudeCodeInvocation } from './args.js';
import { CLAUDE_CODE_INSTALL_HINT, claudeSessionNotFound, classifyClaudeRun } from './classification.js';
import { CLAUDE_CODE_AGENT_NAME, CLAUDE_CODE_BIN_ENV, CLAUDE_CODE_FIXED_ENV, validateClaudeCodeOptions, type ClaudeCodeDriverConfig } from './options.js';

/** The claude-code protocol; `config` says where the binary is and which server secrets to redact. */
export function claudeCodeProtocol(config: ClaudeCodeDriverConfig = {}): AgentProtocol<ClaudeStreamAccumulator> {
  const hostEnv = config.env ?? process.env;
  return {
    agentName: CLAUDE_CODE_AGENT_NAME,
    displayName: 'Claude Code',
    stdoutFormat: 'json-lines',
    // claude runs its Bash tool in a process group of its own: when claude is SIGKILLed before it can
    // stop that group, only the tag finds what is left.
    tagProcesses: true,
    validate: (request) => validateClaudeCodeOptions(request.options),
    async locate(request) {
      const wanted = config.binary ?? nonEmpty(hostEnv[CLAUDE_CODE_BIN_ENV]) ?? 'claude';
      const binary = await resolveExecutable(wanted, request.env['PATH'] ?? hostEnv['PATH']);
      return (
        binary ??
        new AgentGateError('AG_ERR_AGENT_NOT_INSTALLED', `Claude Code binary "${wanted}" was not found or is not executable. ${CLAUDE_CODE_INSTALL_HINT}`, {
          details: { agent: CLAUDE_CODE_AGENT_NAME, binary: wanted },
        })
      );
    },
    open: (request, _io, binary) => Promise.resolve(claudeRun(request, binary)),
  };
}

function claudeRun(request: AgentRequest, binary: string): ProtocolRun<ClaudeStreamAccumulator> {
  // request.env's ANTHROPIC_* pass through; options.baseUrl wins.
  const env = { ...CLAUDE_CODE_FIXED_ENV, ...(request.options.baseUrl === undefined ? {} : { ANTHROPIC_BASE_URL: request.options.baseUrl }) };
  return {
    launch: (resumeSessionId) => ({
      command: binary,
      args: buildClaudeCodeInvocation(request, resumeSessionId).args,
      env,
      // Empty and closed at once: an open stdin makes claude wait 3 s for piped input.
      stdin: '',
      transcriptLabel: ` (claude-code, ${resumeSessionId === undefined ? 'new session' : `resuming session ${resumeSessionId}`})`,
    }),
    accumulator: () => new ClaudeStreamAccumulator(request.iteration),
    resumeFailed: ({ process, accumulator }) =>
      claudeSessionNotFound({ process, sawInit: accumulator.sawInit, result: accumulator.result })
        ? `claude: session ${request.sessionId ?? ''} could not be resumed; starting a new session with the task and the feedback`
        : undefined,
    classify: ({ process, accumulator, lastStderrLine }, extraDetails) =>
      classifyClaudeRun({
        process,
        result: accumulator.result,
        ...(accumulator.sessionId === undefined ? {} : { sessionId: accumulator.sessionId }),
        lastStderrLine,
        idleTimeoutMs: request.idleTimeoutMs,
        iteration: request.iteration,
        extraDetails,
      }),
    summary: ({ process, accumulator: stream }) => {
      const usage = stream.usage();
      return {
        exitCode: process.exitCode,
        output: stream.output(),
        toolCalls: stream.toolCalls,
        ...(stream.sessionId === undefined ? {} : { sessionId: stream.sessionId }),
        ...(stream.model === undefined ? {} : { model: stream.model }),
        ...(usage === undefined ? {} : { usage }),
        ...(stream.result?.numTurns === undefined ? {} : { turns: stream.result.numTurns }),
      };
    },
  };
}

/**
 * Runs Claude Code. Stateless apart from its configuration; one instance serves every run. `run()` never
 * throws, and when it resolves no process claude started is alive (its group is killed and processes
 * that left the group are found by their tag).
 */
export class ClaudeCodeDriver extends ProcessAgentDriver<ClaudeStreamAccumulator> {
  constructor(config: ClaudeCodeDriverConfig = {}) {
    super(claudeCodeProtocol(config), {
      ...(config.env === undefined ? {} : { secretEnv: config.env }),
      ...(config.killGraceMs === undefined ? {} : { killGraceMs: config.killGraceMs }),
      ...(config.reapTimeoutMs === undefined ? {} : { reapTimeoutMs: config.reapTimeoutMs }),
    });
  }
}

/** The registry's factory. */
export function createClaudeCodeDriver(config: ClaudeCodeDriverConfig = {}): ClaudeCodeDriver {
  return new ClaudeCodeDriver(config);
}
