/**
 * From documents to the one shape the engine runs (SPEC section 2: "both resolve to one ResolvedTaskSpec").
 *
 * A TaskSpec and a legacy WorkOrder differ in spelling, not in meaning. `workOrderToTaskSpec()` translates
 * the legacy body into a TaskSpec, and `resolveTaskSpec()` turns any TaskSpec into a {@link ResolvedTaskSpec}:
 * flat, every default applied, every duration in milliseconds, every derived value (delivery kind, push,
 * fixed iterations) decided. The engine, strategies and delivery managers read only this type, so they
 * never re-implement a default or care where a task came from.
 */

import { parseDuration } from './duration.js';
import { MAX_ITERATIONS_CAP, TASK_SPEC_API_VERSION, TASK_SPEC_KIND, hasControlCharacter, parseTaskSpec } from './task-spec.js';
import type { AgentDriverName, TaskSpec, TaskSpecInput } from './task-spec.js';
import type { VerifyConfig } from './verify-config.js';
import type { WorkOrderBody, WorkOrderWorkspaceSource } from './work-order.js';
import { assertSandboxAvailable, DEFAULT_SANDBOX_POLICY, type SandboxMode, type SandboxPolicy } from '../util/sandbox.js';

/** Where a resolved task came from; recorded on the run for audit and shown by `agentgate status`. */
export type TaskSource = 'task_spec' | 'work_order';

/** The repository a run works on: the TaskSpec's `workspace`, with a GitHub repo also split into owner and name. */
export type ResolvedWorkspace =
  | { source: 'local'; path: string; ref?: string }
  | { source: 'git'; url: string; ref?: string }
  | { source: 'github'; repo: string; owner: string; name: string; ref?: string }
  | { source: 'gitlab'; project: string; ref?: string };

export interface ResolvedAgent {
  driver: AgentDriverName;
  command?: string;
  model?: string;
  maxTurns?: number;
  allowedTools?: string[];
  /** Extra environment for the agent; empty when none was given. */
  env: Record<string, string>;
  baseUrl?: string;
  /** No output for this long kills the agent (classification agent_timeout). */
  idleTimeoutMs: number;
}

export interface ResolvedLimits {
  maxIterations: number;
  maxWallClockMs: number;
  maxTokens?: number;
  maxCostUsd?: number;
}

/** Strategy and its parameters with defaults; a union so each strategy reads only its own config. */
export type ResolvedConvergence =
  | { strategy: 'fixed'; config: { iterations: number }; limits: ResolvedLimits }
  | { strategy: 'hybrid'; config: { baseIterations: number; bonusIterations: number; progressThreshold: number }; limits: ResolvedLimits }
  | { strategy: 'ralph'; config: { windowSize: number; similarityThreshold: number; minIterations: number }; limits: ResolvedLimits }
  | { strategy: 'manual'; config: Record<string, never>; limits: ResolvedLimits };

export type DeliveryKind = 'local' | 'github' | 'gitlab';

export interface ResolvedDelivery {
  /** Which DeliveryManager handles the run: a forge only when a PR/MR is requested on a forge workspace. */
  kind: DeliveryKind;
  branchPrefix: string;
  /** Push the run branch; true by default for github/gitlab delivery, false for local. */
  push: boolean;
  remote?: string;
  pr: { create: boolean; draft: boolean; title?: string; labels: string[]; reviewers: string[] };
  ci: { wait: boolean; timeoutMs: number; pollIntervalMs: number; retryOnFailure: boolean };
}

/** The only task shape the engine consumes. */
export interface ResolvedTaskSpec {
  source: TaskSource;
  name: string;
  prompt: string;
  /** Extra background for the agent (TaskSpec `goal.context`). */
  context?: string;
  workspace: ResolvedWorkspace;
  agent: ResolvedAgent;
  /** Where agents and gates run: bubblewrap (`auto` when available, `bwrap` required) or not (`none`). */
  sandbox: SandboxPolicy;
  convergence: ResolvedConvergence;
  delivery: ResolvedDelivery;
  /** Inline gates; when absent the gates read the repository's verify.yaml (or detect commands). */
  verify?: VerifyConfig;
  labels: Record<string, string>;
}

export interface ResolveOptions {
  /** Defaults to `task_spec`; `resolveWorkOrder()` passes `work_order`. */
  source?: TaskSource;
  /** The sandbox mode when the spec names none (the configuration's `AGENTGATE_SANDBOX`); default `auto`. */
  sandboxMode?: SandboxMode;
  /**
   * Checks that the resolved sandbox can be honoured on this host (default: {@link assertSandboxAvailable},
   * which probes bubblewrap once per process, only when `bwrap` is required). Tests inject a probe.
   */
  checkSandbox?: (policy: SandboxPolicy) => void;
}

/** The TaskSpec's sandbox with defaults: `mode` from the spec, else `defaultMode`, else `auto`; network on. */
export function resolveSandboxPolicy(sandbox: TaskSpec['spec']['execution']['sandbox'], defaultMode?: SandboxMode): SandboxPolicy {
  return {
    mode: sandbox?.mode ?? defaultMode ?? DEFAULT_SANDBOX_POLICY.mode,
    network: sandbox?.network ?? DEFAULT_SANDBOX_POLICY.network,
  };
}

function resolveWorkspace(workspace: TaskSpec['spec']['execution']['workspace']): ResolvedWorkspace {
  const ref = workspace.ref === undefined ? {} : { ref: workspace.ref };
  switch (workspace.source) {
    case 'local':
      return { source: 'local', path: workspace.path, ...ref };
    case 'git':
      return { source: 'git', url: workspace.url, ...ref };
    case 'github': {
      const [owner = '', name = ''] = workspace.repo.split('/');
      return { source: 'github', repo: workspace.repo, owner, name, ...ref };
    }
    case 'gitlab':
      return { source: 'gitlab', project: workspace.project, ...ref };
    default: {
      const unreachable: never = workspace;
      return unreachable;
    }
  }
}

function resolveConvergence(convergence: TaskSpec['spec']['convergence']): ResolvedConvergence {
  const { limits } = convergence;
  const resolvedLimits: ResolvedLimits = {
    maxIterations: limits.maxIterations,
    maxWallClockMs: parseDuration(limits.maxWallClock, 'AG_ERR_SCHEMA_INVALID'),
    ...(limits.maxTokens === undefined ? {} : { maxTokens: limits.maxTokens }),
    ...(limits.maxCostUsd === undefined ? {} : { maxCostUsd: limits.maxCostUsd }),
  };
  switch (convergence.strategy) {
    case 'fixed':
      return { strategy: 'fixed', config: { iterations: convergence.config.iterations ?? limits.maxIterations }, limits: resolvedLimits };
    case 'hybrid':
      return { strategy: 'hybrid', config: { ...convergence.config }, limits: resolvedLimits };
    case 'ralph':
      return { strategy: 'ralph', config: { ...convergence.config }, limits: resolvedLimits };
    case 'manual':
      return { strategy: 'manual', config: {}, limits: resolvedLimits };
    default: {
      const unreachable: never = convergence;
      return unreachable;
    }
  }
}

function deliveryKind(spec: TaskSpec['spec']): DeliveryKind {
  if (!spec.delivery.pr.create) return 'local';
  const source = spec.execution.workspace.source;
  // The schema rejects pr.create on local/git workspaces, so only the forge sources reach here.
  return source === 'github' || source === 'gitlab' ? source : 'local';
}

/**
 * Validates a TaskSpec (again, if it was already parsed: parsing is idempotent) and resolves it into the
 * engine's shape. Accepts the input form too, so callers that build a spec in code need not spell out
 * every default. Throws AG_ERR_SCHEMA_INVALID for an invalid spec, AG_ERR_CONFIG_INVALID when the
 * sandbox it requires (`bwrap`) is unavailable here.
 */
export function resolveTaskSpec(spec: TaskSpecInput, options: ResolveOptions = {}): ResolvedTaskSpec {
  const parsed = parseTaskSpec(spec);
  const { goal, execution, delivery, verify } = parsed.spec;
  const { agent } = execution;
  const kind = deliveryKind(parsed.spec);

  const resolved: ResolvedTaskSpec = {
    source: options.source ?? 'task_spec',
    name: parsed.metadata.name,
    prompt: goal.prompt,
    workspace: resolveWorkspace(execution.workspace),
    agent: {
      driver: agent.driver,
      env: { ...(agent.env ?? {}) },
      idleTimeoutMs: parseDuration(parsed.spec.convergence.limits.idleTimeout, 'AG_ERR_SCHEMA_INVALID'),
      ...(agent.command === undefined ? {} : { command: agent.command }),
      ...(agent.model === undefined ? {} : { model: agent.model }),
      ...(agent.maxTurns === undefined ? {} : { maxTurns: agent.maxTurns }),
      ...(agent.allowedTools === undefined ? {} : { allowedTools: [...agent.allowedTools] }),
      ...(agent.baseUrl === undefined ? {} : { baseUrl: agent.baseUrl }),
    },
    sandbox: resolveSandboxPolicy(execution.sandbox, options.sandboxMode),
    convergence: resolveConvergence(parsed.spec.convergence),
    delivery: {
      kind,
      branchPrefix: delivery.git.branchPrefix,
      push: delivery.git.push ?? kind !== 'local',
      ...(delivery.git.remote === undefined ? {} : { remote: delivery.git.remote }),
      pr: {
        create: delivery.pr.create,
        draft: delivery.pr.draft ?? false,
        ...(delivery.pr.title === undefined ? {} : { title: delivery.pr.title }),
        labels: [...(delivery.pr.labels ?? [])],
        reviewers: [...(delivery.pr.reviewers ?? [])],
      },
      ci: {
        wait: delivery.ci.wait,
        timeoutMs: parseDuration(delivery.ci.timeout, 'AG_ERR_SCHEMA_INVALID'),
        pollIntervalMs: parseDuration(delivery.ci.pollInterval, 'AG_ERR_SCHEMA_INVALID'),
        retryOnFailure: delivery.ci.retryOnFailure,
      },
    },
    labels: { ...(parsed.metadata.labels ?? {}) },
  };
  if (goal.context !== undefined) resolved.context = goal.context;
  if (verify !== undefined) resolved.verify = verify;
  // `bwrap` required on a host where it does not work is a configuration error at submission (exit 2 / 400).
  (options.checkSandbox ?? ((policy: SandboxPolicy) => assertSandboxAvailable(policy)))(resolved.sandbox);
  return resolved;
}

/** Label put on TaskSpecs translated from work orders, so they stay recognisable in lists and logs. */
export const WORK_ORDER_SOURCE_LABEL = 'agentgate.io/source';
/** Label carrying the legacy `harness.profile` name, kept for audit only. */
export const HARNESS_PROFILE_LABEL = 'agentgate.io/harness-profile';

/** A readable name from the prompt's first line; the run id, not the name, identifies the run. */
function nameFromPrompt(prompt: string): string {
  const firstLine = (prompt.split('\n').find((line) => line.trim() !== '') ?? '').replace(/\s+/g, ' ').trim();
  const clean = [...firstLine].filter((char) => !hasControlCharacter(char)).join('');
  if (clean === '') return 'work-order';
  return clean.length > 80 ? `${clean.slice(0, 79)}…` : clean;
}

function workspaceFromSource(source: WorkOrderWorkspaceSource): TaskSpecInput['spec']['execution']['workspace'] {
  const ref = source.ref === undefined ? {} : { ref: source.ref };
  switch (source.type) {
    case 'local':
      return { source: 'local', path: source.path, ...ref };
    case 'git':
      return { source: 'git', url: source.url, ...ref };
    case 'github':
      return { source: 'github', repo: source.repo, ...ref };
    case 'gitlab':
      return { source: 'gitlab', project: source.project, ...ref };
    default: {
      const unreachable: never = source;
      return unreachable;
    }
  }
}

/** Copies only the entries that are set, so absent legacy parameters fall back to TaskSpec defaults. */
function defined<T extends Record<string, unknown>>(values: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(values) as (keyof T)[]) {
    if (values[key] !== undefined) out[key] = values[key];
  }
  return out;
}

function convergenceFromWorkOrder(body: WorkOrderBody): TaskSpecInput['spec']['convergence'] {
  const loop = body.harness?.loopStrategy;
  const limits = {
    // The harness is the more specific setting; top-level fields are the legacy fallback.
    maxIterations: Math.min(loop?.maxIterations ?? body.maxIterations, MAX_ITERATIONS_CAP),
    ...defined({ maxWallClock: body.harness?.executionLimits?.maxWallClockSeconds ?? body.maxTime }),
  };
  if (loop === undefined) return { strategy: 'fixed', limits };
  switch (loop.mode) {
    case 'fixed':
      return { strategy: 'fixed', config: defined({ iterations: loop.iterations }), limits };
    case 'hybrid':
      return {
        strategy: 'hybrid',
        config: defined({
          baseIterations: loop.baseIterations,
          bonusIterations: loop.bonusIterations ?? loop.maxBonusIterations,
          progressThreshold: loop.progressThreshold,
        }),
        limits,
      };
    case 'ralph':
      return {
        strategy: 'ralph',
        config: defined({ windowSize: loop.windowSize, similarityThreshold: loop.similarityThreshold, minIterations: loop.minIterations }),
        limits,
      };
    case 'manual':
      return { strategy: 'manual', limits };
    default: {
      const unreachable: never = loop.mode;
      return unreachable;
    }
  }
}

function deliveryFromWorkOrder(body: WorkOrderBody): TaskSpecInput['spec']['delivery'] {
  const mode = body.harness?.gitOps?.mode ?? 'local';
  const wait = body.waitForCI || body.harness?.verification?.waitForCI === true;
  const ci = { wait };
  switch (mode) {
    case 'local':
      return { ci };
    case 'push_only':
      return { git: { push: true }, ci };
    case 'github_pr':
    case 'gitlab_mr':
      return { git: { push: true }, pr: { create: true }, ci };
    default: {
      const unreachable: never = mode;
      return unreachable;
    }
  }
}

/**
 * Translates a validated legacy WorkOrder body into a TaskSpec (validated, defaults applied), so a work
 * order runs through exactly the same resolution and engine as a TaskSpec.
 *
 * Mapping: taskPrompt → goal.prompt; workspaceSource → execution.workspace; agentType/agentCommand →
 * execution.agent; maxIterations → limits.maxIterations; maxTime (s) → limits.maxWallClock;
 * waitForCI → delivery.ci.wait; harness.loopStrategy → convergence; harness.gitOps.mode → delivery
 * (push_only: push, github_pr/gitlab_mr: push + PR/MR); harness.executionLimits.maxWallClockSeconds →
 * limits.maxWallClock. Harness values win over the top-level fields because they are more specific.
 */
export function workOrderToTaskSpec(body: WorkOrderBody): TaskSpec {
  const labels: Record<string, string> = { [WORK_ORDER_SOURCE_LABEL]: 'work-order' };
  if (body.harness?.profile !== undefined) labels[HARNESS_PROFILE_LABEL] = body.harness.profile;

  const input: TaskSpecInput = {
    apiVersion: TASK_SPEC_API_VERSION,
    kind: TASK_SPEC_KIND,
    metadata: { name: nameFromPrompt(body.taskPrompt), labels },
    spec: {
      goal: { prompt: body.taskPrompt },
      convergence: convergenceFromWorkOrder(body),
      execution: {
        workspace: workspaceFromSource(body.workspaceSource),
        agent: {
          driver: body.agentType,
          ...(body.agentType === 'command' && body.agentCommand !== undefined ? { command: body.agentCommand } : {}),
        },
      },
      delivery: deliveryFromWorkOrder(body),
    },
  };
  return parseTaskSpec(input);
}

/** `resolveTaskSpec(workOrderToTaskSpec(body))`, marked as coming from a work order. */
export function resolveWorkOrder(body: WorkOrderBody): ResolvedTaskSpec {
  return resolveTaskSpec(workOrderToTaskSpec(body), { source: 'work_order' });
}
