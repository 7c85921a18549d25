/**
 * The codex protocol for {@link ProcessAgentDriver}: where the binary is, the `codex exec` command line,
 * the `--json` accumulator, per-iteration usage of a resumed thread, the classification and the
 * new-thread fallback. The process, watchdog, deadline, cancel, transcript and events are the base's.
 */
import path from 'node:path';
import { nonEmpty, resolveExecutable } from '../process-driver/preflight.js';
import { ProcessAgentDriver } from '../process-driver/process-agent-driver.js';
import type { AgentProtocol, InvocationEnd, ProtocolRun, RunIo } from '../process-driver/protocol.js';
import { summaryTail } from '../process-driver/text.js';
import type { AgentRequest } from '../types.js';
import { CodexEventAccumulator } from './accumulator.js';
import { buildCodexArgs } from './args.js';
import { classifyCodexRun, codexNotInstalled, codexThreadNotFound } from './classification.js';
import { CODEX_AGENT_NAME, CODEX_BIN_ENV, codexMaxRetries, validateCodexOptions, type CodexDriverConfig } from './options.js';
import { CODEX_THREAD_USAGE_FILE, perIterationUsage, readThreadUsage, writeThreadUsage } from './usage.js';

/** The codex protocol; `config.binary` overrides where the binary is looked up. */
export function codexProtocol(config: Pick<CodexDriverConfig, 'binary'> = {}): AgentProtocol<CodexEventAccumulator> {
  const wantedBinary = (request: AgentRequest): string => config.binary ?? nonEmpty(request.env[CODEX_BIN_ENV]) ?? 'codex';
  return {
    agentName: CODEX_AGENT_NAME,
    displayName: 'codex',
    stdoutFormat: 'json-lines',
    // codex runs each shell command in a session of its own (one PTY per command), which the
    // process-group kill does not reach.
    tagProcesses: true,
    validate(request) {
      validateCodexOptions(request.options);
      codexMaxRetries(request.env);
    },
    async locate(request) {
      const wanted = wantedBinary(request);
      return (await resolveExecutable(wanted, request.env['PATH'] ?? '')) ?? codexNotInstalled(wanted);
    },
    open: (request, io, executable) => codexRun(request, io, executable, wantedBinary(request)),
  };
}

async function codexRun(request: AgentRequest, io: RunIo, executable: string, binary: string): Promise<ProtocolRun<CodexEventAccumulator>> {
  const usageFile = path.join(request.artifactsDir, CODEX_THREAD_USAGE_FILE);
  const usageByThread = await readThreadUsage(usageFile, io.note);
  const baselineOfResumedThread = request.sessionId === undefined ? undefined : usageByThread[request.sessionId];
  const outcome = ({ process, accumulator, lastStderrLine }: InvocationEnd<CodexEventAccumulator>, extraDetails: Record<string, unknown> = {}) => ({
    process,
    stream: accumulator.summary(),
    lastStderrLine,
    binary,
    extraDetails,
  });
  return {
    launch: (resumeThreadId) => ({
      command: executable,
      args: buildCodexArgs(request, resumeThreadId),
      env: {},
      stdin: '',
      transcriptLabel: `: codex exec${resumeThreadId === undefined ? '' : ` resume ${resumeThreadId}`}`,
    }),
    accumulator: () => new CodexEventAccumulator(request.iteration, io.clean),
    // The thread is gone (another CODEX_HOME, a cleaned-up session): rather than failing every later
    // iteration on the same missing thread, the base starts a new one with the task and the feedback.
    resumeFailed: (end) => (codexThreadNotFound(outcome(end)) ? `codex has no thread ${request.sessionId ?? ''}; starting a new thread` : undefined),
    classify: (end, extraDetails) => classifyCodexRun(outcome(end, extraDetails), request, io.clean),
    async finish({ accumulator }) {
      const stream = accumulator.summary();
      if (stream.threadId === undefined || stream.usage === undefined) return;
      usageByThread[stream.threadId] = stream.usage;
      try {
        await writeThreadUsage(usageFile, usageByThread);
      } catch (error) {
        // Only the next resumed iteration's usage suffers (it is reported cumulatively); say so where the
        // run's agent record points.
        io.note(`=== could not record the thread's usage in ${CODEX_THREAD_USAGE_FILE}: ${error instanceof Error ? error.message : String(error)} ===`);
      }
    },
    summary: ({ process, accumulator }) => {
      const stream = accumulator.summary();
      // Only an invocation that really continued the requested thread has its earlier usage to subtract.
      const baseline = stream.threadId !== undefined && stream.threadId === request.sessionId ? baselineOfResumedThread : undefined;
      return {
        exitCode: process.exitCode,
        ...(stream.threadId === undefined ? {} : { sessionId: stream.threadId }),
        ...(request.options.model === undefined ? {} : { model: request.options.model }),
        ...(stream.usage === undefined ? {} : { usage: perIterationUsage(stream.usage, baseline) }),
        turns: stream.turnsCompleted,
        toolCalls: stream.toolCalls,
        output: summaryTail(stream.lastMessage ?? ''),
      };
    },
  };
}

/**
 * Runs the codex CLI for one iteration. Stateless apart from its configuration; `run()` never throws and,
 * whatever the outcome, no process codex started is alive when it resolves.
 */
export class CodexDriver extends ProcessAgentDriver<CodexEventAccumulator> {
  constructor(config: CodexDriverConfig = {}) {
    super(codexProtocol(config), {
      ...(config.secretEnv === undefined ? {} : { secretEnv: config.secretEnv }),
      ...(config.killGraceMs === undefined ? {} : { killGraceMs: config.killGraceMs }),
      ...(config.reapTimeoutMs === undefined ? {} : { reapTimeoutMs: config.reapTimeoutMs }),
    });
  }
}

/** The registry's factory. */
export function createCodexDriver(config: CodexDriverConfig = {}): CodexDriver {
  return new CodexDriver(config);
}
