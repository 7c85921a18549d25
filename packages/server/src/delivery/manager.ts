/**
 * The delivery seam (SPEC 9): what happens to a run's branch after its snapshots, behind one interface
 * so the engine never knows whether the result stays in a local repository, goes to a named remote, or
 * becomes a GitHub pull request or GitLab merge request watched through CI.
 *
 * Call order the engine follows for one run:
 * 1. `prepare(ctx)` once, right after the workspace is acquired and before the first build: it checks
 *    the target (remote, forge project) while the repository holds only what the user configured, and
 *    returns the {@link DeliveryTarget} every later call receives.
 * 2. per delivered iteration: `pushIteration` → `openChange` (idempotent: reuses the change already open
 *    for the branch) → `waitForCI`.
 * 3. `finalize(ctx, outcome)` once at the end (for example draft → ready), in a cleanup scope.
 *
 * Managers are stateless and shared by every run (per-run state is the target); every method returns a
 * {@link DeliveryResult} and never throws, and a method stopped by its signal reports *cancelled* with
 * the signal's reason, never *failed*.
 */
import type { Logger } from 'pino';
import { toAgentGateError, type AgentGateError, type ErrorCode } from '../errors.js';
import type { EmitFn } from '../observability/events.js';
import type { RunResult } from '../orchestrator/state-machine.js';
import type { DeliveryKind, ResolvedTaskSpec, ResolvedWorkspace } from '../schemas/resolve.js';
import { abortError } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import type { Workspace } from '../workspace/types.js';

/** The workspace sources a manager may declare support for (`spec.workspace.source`). */
export type WorkspaceSource = ResolvedWorkspace['source'];

/**
 * What a manager can do, as data, so submission can reject a task before anything runs
 * ({@link DeliveryRegistry.validate}) and the conformance suite can check `canHandle` against it.
 */
export interface DeliveryCapabilities {
  /** Workspace sources whose run branch this manager can deliver (without pushing). */
  readonly workspaces: readonly WorkspaceSource[];
  /** Workspace sources from which it can push the run branch; empty when it cannot push at all. */
  readonly pushFrom: readonly WorkspaceSource[];
  /**
   * `named_remote`: pushes to a remote of the source repository named by `spec.delivery.remote`, which
   * is then required. `forge`: pushes to the forge's repository, so a remote name means nothing.
   */
  readonly pushTarget: 'named_remote' | 'forge' | 'none';
  /** Opens pull/merge requests (`spec.delivery.pr.create` and the `pr.*` settings). */
  readonly changeRequests: boolean;
  /** Waits for CI on the pushed branch (`spec.delivery.ci.wait`). */
  readonly ciWait: boolean;
}

/** One thing a spec asks for that a manager cannot do; `path` is the TaskSpec document path. */
export interface DeliveryIssue {
  readonly path: string;
  /** Which capability is missing; the registry turns it into the message. */
  readonly requirement: DeliveryRequirement;
  readonly message: string;
}

export type DeliveryRequirement = 'kind' | 'workspace' | 'push' | 'push_remote' | 'remote_unused' | 'change_request' | 'pr_setting_unused' | 'ci_wait';

/** `canHandle`'s answer: support, or every reason against it. */
export type DeliverySupport = { readonly ok: true } | { readonly ok: false; readonly issues: readonly DeliveryIssue[] };

/**
 * The per-run state `prepare` establishes and every later call receives. A union over the delivery
 * kinds; forge managers (issue 10) add their members.
 */
export type DeliveryTarget = LocalDeliveryTarget | GitHubDeliveryTarget | GitLabDeliveryTarget;

/** What the forge managers share: the forge repository the run branch is pushed to. */
export interface ForgeDeliveryTarget {
  /** The repository that holds the run branch locally (AgentGate's cached clone). */
  readonly repoPath: string;
  readonly branch: string;
  /** The forge's clone URL from its API (`clone_url`, `http_url_to_repo`); pushes go there. No credentials. */
  readonly cloneUrl: string;
  /** The branch pull/merge requests target: the repository's default branch. */
  readonly defaultBranch: string;
}

export interface GitHubDeliveryTarget extends ForgeDeliveryTarget {
  readonly kind: 'github';
  readonly owner: string;
  readonly repo: string;
}

export interface GitLabDeliveryTarget extends ForgeDeliveryTarget {
  readonly kind: 'gitlab';
  readonly projectId: number;
  readonly projectPath: string;
}

export interface LocalDeliveryTarget {
  readonly kind: 'local';
  /** The repository that holds the run branch. */
  readonly repoPath: string;
  readonly branch: string;
  /** Present when the task pushes the run branch. */
  readonly push?: LocalPushTarget;
}

export interface LocalPushTarget {
  /** Remote name in the source repository. */
  readonly remote: string;
  /** Its push URL as configured when the run started, credentials stripped: for logs and events. */
  readonly url: string;
  /**
   * sha256 of every configuration entry that can influence a push, taken before the agent ran. A push
   * whose configuration differs is refused (the agent can write the shared repository configuration).
   */
  readonly configFingerprint: string;
}

/** The run-level context (prepare, finalize). Narrow on purpose: never the engine. */
export interface DeliveryContext {
  readonly runId: string;
  readonly workOrderId: string;
  readonly spec: ResolvedTaskSpec;
  readonly workspace: Workspace;
  /** The run branch (`workspace.branch`). */
  readonly branch: string;
  /** The run's signal; waiting for CI takes its own, narrower, signal. */
  readonly signal: AbortSignal;
  readonly clock: TimerClock;
  readonly logger: Logger;
  /** Managers emit `ci_status` while polling; `delivery_started`/`delivery_completed` belong to the caller. */
  readonly emit: EmitFn;
}

/** Context of the calls made after `prepare`: the target it returned. */
export interface PreparedDeliveryContext extends DeliveryContext {
  readonly target: DeliveryTarget;
}

/** Context of one delivered iteration: which snapshot commit is delivered. */
export interface IterationDeliveryContext extends PreparedDeliveryContext {
  readonly iteration: number;
  /** The snapshot commit of `iteration`; what is pushed and what CI runs on. */
  readonly snapshotSha: string;
  /** What the pull/merge request body reports; absent when the caller has nothing to report. */
  readonly report?: DeliveryReport;
}

/** The run so far, as a change request describes it (redacted by the manager before it leaves). */
export interface DeliveryReport {
  readonly iterations: number;
  readonly gates: readonly { readonly name: string; readonly passed: boolean }[];
  readonly costUsd: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/**
 * Every manager method's result: never thrown. `cancelled` is true when the method stopped because its
 * signal fired; `error` is then the signal's reason when that is an AgentGateError (a run timeout stays
 * a timeout), AG_ERR_RUN_CANCELED otherwise.
 */
export type DeliveryResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: AgentGateError; readonly cancelled: boolean };

export type PushOutcome =
  | { readonly status: 'pushed'; readonly remote: string; readonly url: string; readonly ref: string; readonly sha: string }
  | { readonly status: 'not_pushed'; readonly reason: 'push_disabled' };

/** A pull/merge request as the forge reports it. */
export interface ChangeRequest {
  readonly number: number;
  readonly url: string;
  readonly draft: boolean;
}

export type ChangeOutcome =
  | { readonly status: 'none' }
  | { readonly status: 'opened'; readonly change: ChangeRequest }
  | { readonly status: 'reused'; readonly change: ChangeRequest };

/** SPEC 9: `passed | failed(feedback) | timeout | none` (none: no CI configured or not waited for). */
export type CiOutcome =
  | { readonly status: 'passed' }
  | { readonly status: 'failed'; readonly feedback: string }
  | { readonly status: 'timeout'; readonly waitedMs: number }
  | { readonly status: 'none' };

/** How the run ended, as `finalize` needs it. */
export interface DeliveryOutcome {
  readonly result: RunResult;
  /** The last iteration delivered, if any. */
  readonly lastIteration?: { readonly iteration: number; readonly snapshotSha: string };
  /** The change `openChange` reported, if any. */
  readonly change?: ChangeRequest;
}

export type FinalizeOutcome = { readonly status: 'unchanged' } | { readonly status: 'updated'; readonly change: ChangeRequest };

export interface DeliveryManager {
  readonly name: DeliveryKind;
  readonly capabilities: DeliveryCapabilities;
  /** Pure: whether this manager can deliver `spec`, and if not, every reason (see {@link checkCapabilities}). */
  canHandle(spec: ResolvedTaskSpec): DeliverySupport;
  /** Checks and records the target before the first build. */
  prepare(ctx: DeliveryContext): Promise<DeliveryResult<DeliveryTarget>>;
  /** Delivers the iteration's snapshot commit to the run branch of the target (idempotent). */
  pushIteration(ctx: IterationDeliveryContext): Promise<DeliveryResult<PushOutcome>>;
  /** Opens the pull/merge request for the run branch, or reuses the one already open. */
  openChange(ctx: IterationDeliveryContext): Promise<DeliveryResult<ChangeOutcome>>;
  /**
   * Waits for CI on `ctx.snapshotSha`, polling with `ctx.clock`, until it finishes, `spec.delivery.ci.timeoutMs`
   * passes (`timeout`) or `signal` aborts (cancelled). `none` when the task does not wait for CI.
   */
  waitForCI(ctx: IterationDeliveryContext, signal: AbortSignal): Promise<DeliveryResult<CiOutcome>>;
  /** Last step of the run; called in a cleanup scope whatever the result. */
  finalize(ctx: PreparedDeliveryContext, outcome: DeliveryOutcome): Promise<DeliveryResult<FinalizeOutcome>>;
}

const PR_SETTINGS = ['draft', 'title', 'labels', 'reviewers'] as const;

/**
 * The one interpretation of {@link DeliveryCapabilities}: every field of `spec.delivery` the
 * capabilities cannot honour, with its TaskSpec path. Managers implement `canHandle` with it and the
 * registry validates with it, so the two cannot disagree. Messages here are about the manager; the
 * registry adds what the build as a whole offers.
 */
export function checkCapabilities(name: DeliveryKind, capabilities: DeliveryCapabilities, spec: ResolvedTaskSpec): DeliveryIssue[] {
  const { delivery, workspace } = spec;
  const issues: DeliveryIssue[] = [];
  const add = (path: string, requirement: DeliveryRequirement, message: string): void => {
    issues.push({ path, requirement, message });
  };
  if (delivery.kind !== name) {
    add('spec.delivery.kind', 'kind', `the task resolved to ${delivery.kind} delivery, not ${name}`);
  }
  if (!capabilities.workspaces.includes(workspace.source)) {
    add('spec.execution.workspace.source', 'workspace', `${name} delivery cannot deliver the branch of a ${workspace.source} workspace`);
  }
  if (delivery.push) {
    if (capabilities.pushTarget === 'none' || !capabilities.pushFrom.includes(workspace.source)) {
      add('spec.delivery.git.push', 'push', `${name} delivery cannot push the run branch of a ${workspace.source} workspace`);
    } else if (capabilities.pushTarget === 'named_remote' && delivery.remote === undefined) {
      add('spec.delivery.git.remote', 'push_remote', `pushing with ${name} delivery needs the name of a remote of the repository; set spec.delivery.git.remote`);
    }
  }
  if (delivery.remote !== undefined) {
    if (!delivery.push) {
      add('spec.delivery.git.remote', 'remote_unused', `names remote "${delivery.remote}" but spec.delivery.git.push is false, so nothing would be pushed there`);
    } else if (capabilities.pushTarget === 'forge') {
      add('spec.delivery.git.remote', 'remote_unused', `${name} delivery pushes to the forge's repository, not to a named remote`);
    }
  }
  if (delivery.pr.create) {
    if (!capabilities.changeRequests) add('spec.delivery.pr.create', 'change_request', `${name} delivery does not open pull or merge requests`);
  } else {
    for (const setting of PR_SETTINGS) {
      if (prSettingGiven(spec, setting)) {
        add(`spec.delivery.pr.${setting}`, 'pr_setting_unused', 'has no effect because spec.delivery.pr.create is false');
      }
    }
  }
  if (delivery.ci.wait && !capabilities.ciWait) add('spec.delivery.ci.wait', 'ci_wait', `${name} delivery does not wait for CI`);
  return issues;
}

function prSettingGiven(spec: ResolvedTaskSpec, setting: (typeof PR_SETTINGS)[number]): boolean {
  const { pr } = spec.delivery;
  switch (setting) {
    case 'draft':
      return pr.draft;
    case 'title':
      return pr.title !== undefined;
    case 'labels':
      return pr.labels.length > 0;
    case 'reviewers':
      return pr.reviewers.length > 0;
    default: {
      const unreachable: never = setting;
      return unreachable;
    }
  }
}

/** `canHandle` from {@link checkCapabilities}. */
export function supportFromCapabilities(name: DeliveryKind, capabilities: DeliveryCapabilities, spec: ResolvedTaskSpec): DeliverySupport {
  const issues = checkCapabilities(name, capabilities, spec);
  return issues.length === 0 ? { ok: true } : { ok: false, issues };
}

/**
 * Runs one manager step as a {@link DeliveryResult}: cancelled with the signal's reason when the signal
 * fired (before or during the step), failed with the thrown error otherwise — unclassified throws get
 * `failAs`. Lets implementations throw internally and still never throw outward.
 */
export async function deliveryStep<T>(signal: AbortSignal, what: string, failAs: ErrorCode, step: () => Promise<T>): Promise<DeliveryResult<T>> {
  if (signal.aborted) return { ok: false, error: abortError(signal, what), cancelled: true };
  try {
    return { ok: true, value: await step() };
  } catch (error) {
    if (signal.aborted) return { ok: false, error: abortError(signal, what), cancelled: true };
    return { ok: false, error: toAgentGateError(error, failAs), cancelled: false };
  }
}
