/**
 * The AgentDriver contract (SPEC 7). Every driver — command, claude-code, codex — implements it and
 * passes the shared conformance suite in `test/agents/conformance.ts`.
 */
import type { AgentGateError } from '../errors.js';
import type { EmitFn } from '../observability/events.js';
import type { Clock } from '../util/clock.js';

export interface AgentUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens?: number;
  cacheCreationTokens?: number;
  costUsd: number;
}

export interface AgentRequest {
  runId: string;
  workOrderId: string;
  /** 1-based. */
  iteration: number;
  /** The task prompt (unchanged across iterations). */
  prompt: string;
  /** Feedback from the previous iteration's failed verification or CI; empty on iteration 1. */
  feedback: string;
  /** The previous iteration's agent session id, for drivers that can resume a conversation. */
  sessionId?: string;
  /** The workspace (worktree) the agent works in. */
  workspacePath: string;
  /** Where the driver writes prompt files and its transcript. */
  artifactsDir: string;
  /** Absolute epoch ms by which the agent must be done (the run's wall clock). */
  deadline?: number;
  /** Kill the agent when it produces no output for this long. */
  idleTimeoutMs: number;
  /** Environment for the agent: already free of AgentGate's own secrets; model credentials kept. */
  env: Record<string, string>;
  /** Driver options from the TaskSpec (command, model, maxTurns, allowedTools, baseUrl …). */
  options: AgentOptions;
  /** Text that tells the agent about the gates it must pass (drivers with a system prompt use it). */
  gateSummary?: string;
}

export interface AgentOptions {
  command?: string;
  model?: string;
  maxTurns?: number;
  allowedTools?: string[];
  baseUrl?: string;
}

export interface AgentRunContext {
  signal: AbortSignal;
  /** Streams agent_output / agent_tool_call / agent_tool_result events for this run. */
  emit: EmitFn;
  clock: Clock;
}

export type AgentFailureKind = 'agent_crash' | 'agent_timeout' | 'agent_task_failure';

export interface AgentSummary {
  exitCode: number | null;
  durationMs: number;
  sessionId?: string;
  model?: string;
  usage?: AgentUsage;
  turns?: number;
  toolCalls: number;
  /** Final text or the tail of stdout: used by convergence (ralph) and shown in the run record. */
  output: string;
  transcriptPath?: string;
}

export type AgentResult =
  | ({ ok: true } & AgentSummary)
  | ({ ok: false; failure: AgentFailureKind; aborted: boolean; error: AgentGateError } & AgentSummary);

export interface AgentDriver {
  readonly name: string;
  /** Never throws: every failure comes back as `{ ok: false }` with a classification. */
  run(request: AgentRequest, ctx: AgentRunContext): Promise<AgentResult>;
}
