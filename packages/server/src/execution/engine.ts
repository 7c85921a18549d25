/**
 * ExecutionEngine: the registry of the runs this process executes (SPEC 4) — start, cancel, status,
 * drain. The work of a run lives in its {@link RunActor} (snapshot, abort scope, the one commit point)
 * driven through the step table by {@link executeRun}; the engine only admits runs and keeps track of
 * them.
 *
 * `start()` rejects bad input before anything is stored (unknown agent, missing agent command, a
 * delivery this build cannot do), then writes the work order (when new), the run and the run's lease
 * in one transaction, so no instant exists in which the run is unowned.
 */
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import type { AgentDriverRegistry } from '../agents/registry.js';
import { AgentGateError } from '../errors.js';
import type { DeliveryRegistry } from '../delivery/registry.js';
import type { Verifier } from '../gates/verifier.js';
import { createRun } from '../orchestrator/state-machine.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { StoredRun, WorkOrderSource } from '../store/types.js';
import type { IterationRepository } from '../store/repositories.js';
import { runCanceled } from '../util/abort.js';
import { leaseNow } from '../util/clock.js';
import { runInRunScope } from '../util/run-scope.js';
import { assertSandboxAvailable, runWithSandboxPolicy } from '../util/sandbox.js';
import { secretValues } from '../util/secrets.js';
import { DEFAULT_LEASE_TTL_MS, defaultLeaseOwner } from '../workspace/lease.js';
import type { PreparedSource, WorkspaceManager } from '../workspace/manager.js';
import type { Snapshotter } from '../workspace/snapshotter.js';
import { agentOptionsOf } from './agent-options.js';
import { IterationTracker } from './iteration-tracker.js';
import { PhaseOrchestrator, type PhaseHandlers } from './phase-orchestrator.js';
import { runLeaseKey } from './reconcile.js';
import { RunActor, type RunActorServices } from './run-actor.js';
import { executeRun, newProgress, type RunExecutionServices, type RunOutcome } from './run-execution.js';

export type { RunOutcome } from './run-execution.js';

/** Default time limit of a run's cleanup (worktree removal, delivery finalize, lease release). */
export const DEFAULT_CLEANUP_TIMEOUT_MS = 60_000;

export interface EngineServices extends Omit<RunActorServices, 'secrets'> {
  agents: AgentDriverRegistry;
  snapshotter: Snapshotter;
  verifier: Verifier;
  workspaces: WorkspaceManager;
  delivery: DeliveryRegistry;
  /** `$AGENTGATE_HOME`. */
  home: string;
  /** The environment agents and gates start from (before secrets are removed). */
  baseEnv: Record<string, string | undefined>;
  strategies?: RunExecutionServices['strategies'];
  /** Owner id of this engine's run leases; default one per engine instance. */
  leaseOwner?: string;
  leaseTtlMs?: number;
  cleanupTimeoutMs?: number;
  /**
   * Whether `local` workspaces are accepted (`AGENTGATE_LOCAL_WORKSPACES`, default `allow`): a deployment
   * whose workers run on other machines sets `deny`, since they cannot reach a path on the accepting node.
   */
  localWorkspaces?: 'allow' | 'deny';
}

export interface StartOptions {
  /** Attach the run to an existing work order; otherwise one is created for it. */
  workOrderId?: string;
  runId?: string;
  source?: WorkOrderSource;
  /** The request as the client sent it (stored with a new work order). */
  request?: object;
  /** Aborting it cancels the run. */
  signal?: AbortSignal;
  /**
   * Claim the stored work order `workOrderId` (the queue's start): it must still be `queued`, and it
   * becomes `running` in the transaction that creates the run. Rejects with `AG_ERR_WORK_ORDER_CLAIMED`
   * (another worker was first; nothing written) — see `CreateRunInput.claim`.
   */
  claim?: boolean;
  /**
   * The spec's workspace as the caller already resolved it with the same resolution the engine uses
   * (`WorkspaceManager.resolveSource`, `inspectLocalRepository`): the run starts from it instead of resolving
   * the source again. `agentgate exec` resolves a local repository to show its gate plan before the run, so
   * the run starts from the commit whose plan was shown, for one `git rev-parse` instead of two.
   */
  workspaceSource?: PreparedSource;
  /**
   * At most one unfinished run per key across every process sharing the store (execution/exclusive-key.ts);
   * rejects with the retryable `AG_ERR_RUN_EXCLUSIVE_BUSY` and writes nothing while the key is held.
   */
  exclusiveKey?: string;
}

export interface StartedRun {
  runId: string;
  workOrderId: string;
  done: Promise<RunOutcome>;
}

interface ActiveRun {
  actor: RunActor;
  done: Promise<RunOutcome>;
}

export class ExecutionEngine {
  /** Owner id of this engine's run leases (one per engine instance). */
  readonly owner: string;
  private readonly active = new Map<string, ActiveRun>();
  private readonly execution: RunExecutionServices;

  constructor(
    private readonly services: EngineServices,
    handlers?: PhaseHandlers,
  ) {
    this.owner = services.leaseOwner ?? defaultLeaseOwner();
    this.execution = {
      ...services,
      secrets: secretValues(services.baseEnv),
      orchestrator: new PhaseOrchestrator(services, handlers),
      leaseOwner: this.owner,
      leaseTtlMs: services.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
      cleanupTimeoutMs: services.cleanupTimeoutMs ?? DEFAULT_CLEANUP_TIMEOUT_MS,
    };
  }

  /** Runs a task to a terminal state. Rejects only for bad input; run failures are in the outcome. */
  async run(spec: ResolvedTaskSpec, options: StartOptions = {}): Promise<RunOutcome> {
    return (await this.start(spec, options)).done;
  }

  /**
   * Checks everything {@link start} checks before it stores anything — agent options, the delivery, and
   * that the sandbox the spec asks for works on this host — so the queue (execution/work-order-queue.ts)
   * can refuse a bad submission before storing it, not when its turn comes.
   * @throws AgentGateError (a 400-class code naming the field)
   */
  admit(spec: ResolvedTaskSpec): void {
    this.services.agents.validate(spec.agent.driver, agentOptionsOf(spec.agent));
    admitLocalWorkspace(spec, this.services.localWorkspaces ?? 'allow');
    this.services.delivery.validate(spec);
    assertSandboxAvailable(spec.sandbox, this.services.baseEnv);
  }

  /** Stores the run (work order, run, lease in one transaction) and starts executing it. */
  async start(spec: ResolvedTaskSpec, options: StartOptions = {}): Promise<StartedRun> {
    const { repos, clock } = this.services;
    this.admit(spec);
    const delivery = this.services.delivery.get(spec.delivery.kind);
    const runId = options.runId ?? randomUUID();
    const workOrderId = options.workOrderId ?? randomUUID();
    const now = clock.now();
    const createdAt = new Date(now).toISOString();
    const fence = { leaseKey: runLeaseKey(runId), owner: this.owner };
    const created = await repos.runs.create({
      workOrder: { id: workOrderId, source: options.source ?? spec.source, spec: storableSpec(spec), request: options.request ?? null, createdAt },
      run: createRun({ id: runId, workOrderId, maxIterations: spec.convergence.limits.maxIterations, createdAt }),
      // The branch is named now and exists once the first snapshot commit reaches the repository (run-branch.ts).
      meta: { branch: `${spec.delivery.branchPrefix}${runId}`, data: { branchPublished: false } },
      lease: { key: fence.leaseKey, owner: fence.owner, ttlMs: this.execution.leaseTtlMs, ...leaseNow(clock) },
      ...(options.claim === true && { claim: true }),
      ...(options.exclusiveKey !== undefined && { exclusiveKey: options.exclusiveKey }),
    });
    this.services.workOrders.runCreated(created, { claimed: options.claim === true });

    const progress = newProgress();
    // The tracker emits through the actor and the actor's closing event counts the tracker's iterations.
    // Iteration records ride out a briefly unreachable store like the actor's own writes (util/store-retry.ts).
    const iterations: IterationRepository = { save: (input, by) => actor.retried(() => repos.iterations.save(input, by)), list: (id) => repos.iterations.list(id) };
    const tracker: IterationTracker = new IterationTracker(runId, iterations, fence, (type, data) => actor.emit(type, data), clock);
    const actor = new RunActor(this.execution, created.run, fence, () => ({ usage: progress.usage, unverified: progress.unverified, iterations: tracker.count }), { startedAt: now });
    const external = options.signal;
    const onExternalAbort = (): void => actor.abort(runCanceled('canceled by caller'));
    if (external?.aborted) onExternalAbort();
    external?.addEventListener('abort', onExternalAbort, { once: true });
    // Every agent and gate process of the run starts under the run's sandbox policy (util/sandbox.ts).
    // and carries the run's tag, by which the run's end and reconciliation find what escaped its group.
    const done = runInRunScope(runId, () => runWithSandboxPolicy(spec.sandbox, () => executeRun(actor, spec, delivery, this.execution, progress, tracker, options.workspaceSource))).finally(() => {
      external?.removeEventListener('abort', onExternalAbort);
      this.active.delete(runId);
      this.services.workOrders.forget(runId);
    });
    this.active.set(runId, { actor, done });
    return { runId, workOrderId, done };
  }

  /** Requests cancellation; the run reaches `canceled` once its current process group is killed. */
  cancel(runId: string, reason = 'canceled by user'): boolean {
    const active = this.active.get(runId);
    if (!active) return false;
    active.actor.abort(runCanceled(reason));
    return true;
  }

  status(runId: string): Promise<StoredRun | null> {
    return this.services.repos.runs.get(runId);
  }

  activeCount(): number {
    return this.active.size;
  }

  /** Whether this engine is executing the run now (its events reach this process's hub directly). */
  isActive(runId: string): boolean {
    return this.active.has(runId);
  }

  /** Ids of the runs this engine is executing now (never touched by reconciliation). */
  activeRunIds(): ReadonlySet<string> {
    return new Set(this.active.keys());
  }

  /** Waits until every active run has ended; with `cancel`, cancels them first (shutdown). */
  async drain(options: { cancel?: string } = {}): Promise<RunOutcome[]> {
    const runs = [...this.active.values()];
    if (options.cancel !== undefined) for (const run of runs) run.actor.abort(runCanceled(options.cancel));
    return Promise.all(runs.map((run) => run.done));
  }
}

/** What a value of `agent.env` is replaced with in the store. */
export const REDACTED_ENV_VALUE = '[REDACTED]';

/**
 * The spec as persisted: values of `agent.env` (typically model credentials) are not written to the
 * store; a run that needs them again gets them from its submitter (the queue keeps them in memory for
 * the runs it starts in this process; a run started from the store alone has none).
 */
export function storableSpec(spec: ResolvedTaskSpec): ResolvedTaskSpec {
  const env = Object.fromEntries(Object.keys(spec.agent.env).map((key) => [key, REDACTED_ENV_VALUE]));
  return { ...spec, agent: { ...spec.agent, env } };
}

/**
 * A `local` workspace names a path on the machine that executes the run. It is refused at admission when
 * this deployment does not take local workspaces, or when the path is not a directory here (on a worker:
 * a path it cannot reach; on a node that accepts submissions: a typo) — a clear error instead of a run
 * that fails later on some worker. Whether the directory is a git repository is the workspace's concern.
 * @throws AG_ERR_WORKSPACE_LOCAL_REFUSED, AG_ERR_WORKSPACE_NOT_A_REPO
 */
function admitLocalWorkspace(spec: ResolvedTaskSpec, policy: 'allow' | 'deny'): void {
  if (spec.workspace.source !== 'local') return;
  const { path } = spec.workspace;
  if (policy === 'deny') {
    throw new AgentGateError(
      'AG_ERR_WORKSPACE_LOCAL_REFUSED',
      `This deployment does not accept local workspaces (AGENTGATE_LOCAL_WORKSPACES=deny): its workers run on other machines and cannot reach ${path}; use a git, github or gitlab source`,
      { details: { field: 'workspace.path', path } },
    );
  }
  let directory = false;
  try {
    directory = statSync(path).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new AgentGateError('AG_ERR_WORKSPACE_NOT_A_REPO', `Cannot read the workspace path ${path} on ${hostname()}: ${String(code)}`, { details: { field: 'workspace.path', path }, cause: error });
  }
  if (!directory) {
    throw new AgentGateError('AG_ERR_WORKSPACE_NOT_A_REPO', `The workspace path ${path} is not a directory on ${hostname()}`, { details: { field: 'workspace.path', path } });
  }
}
