/**
 * Wires the production services of one AgentGate process: repositories, logger, event hub,
 * work-order service, agent drivers, delivery managers, workspaces, snapshotter, verifier and the
 * engine. The CLI and the HTTP server both start here, so there is one way to build an engine.
 *
 * Start-up: what a process may not use is imported only when it does (docs/performance.md, issue 12).
 * The forge clients (`@octokit/rest`, `@gitbeaker/rest`) load only when a forge token is configured, the
 * store backend only once chosen (`store/open.ts`), and `prom-client` only for a runtime with metrics —
 * every runtime but the CLI's (`metrics: false`), whose process ends with its run.
 */
import { accessSync, closeSync, constants, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { AgentGateError, isDiskFull, toAgentGateError } from './errors.js';
import { dirname, join } from 'node:path';
import type { DestinationStream, Logger } from 'pino';
import { createAgentDriverRegistry, type AgentDriverRegistry } from './agents/registry.js';
import type { ForgeDelivery } from './delivery/forges.js';
import { createDeliveryRegistry, type DeliveryRegistry } from './delivery/registry.js';
import { ExecutionEngine, type EngineServices } from './execution/engine.js';
import type { PhaseHandlers } from './execution/phase-orchestrator.js';
import { reconcileInterruptedRuns, runLeaseKey } from './execution/reconcile.js';
import { WorkOrderService } from './execution/work-order-service.js';
import { DEFAULT_RECONCILE_EVERY_MS, DurableWorkOrderQueue } from './execution/work-order-queue.js';
import { Verifier } from './gates/verifier.js';
import { EventHub } from './observability/event-hub.js';
import { createLogger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import type { AgentGateConfig } from './schemas/config.js';
import { openRepositories, type OpenedRepositories } from './store/open.js';
import { systemClock, type TimerClock } from './util/clock.js';
import { secretValues } from './util/secrets.js';
import { WorkspaceManager } from './workspace/manager.js';
import { Snapshotter } from './workspace/snapshotter.js';

export interface RuntimeOptions {
  config: AgentGateConfig;
  logger?: Logger;
  clock?: TimerClock;
  /** Environment agents and gates start from; defaults to this process's environment. */
  baseEnv?: Record<string, string | undefined>;
  agents?: AgentDriverRegistry;
  delivery?: DeliveryRegistry;
  strategies?: EngineServices['strategies'];
  /** Fail runs a dead process left open (default true; see execution/reconcile.ts). */
  reconcile?: boolean;
  /**
   * Keep Prometheus metrics fed by the hub (default true: the server serves them at `GET /metrics`).
   * `false` (the CLI's `exec` and `task run`) builds no registry and never loads `prom-client`; the
   * runtime then has no `metrics` ({@link LocalRuntime}).
   */
  metrics?: boolean;
  /** Collect Node.js process metrics too (the server does; tests and the CLI do not). */
  processMetrics?: boolean;
  /** Run lease TTL (default 60 s). */
  leaseTtlMs?: number;
  /** Phase handlers replacing the default ones (tests inject failing handlers). */
  handlers?: PhaseHandlers;
  /** Runs the queue keeps in flight at most (default `config.maxConcurrent`). */
  maxConcurrent?: number;
  /**
   * Re-queue the work order of a run whose process died instead of leaving it failed (default
   * `config.requeueInterrupted`, else false). The interrupted run itself always ends failed.
   */
  requeueInterrupted?: boolean;
  /** Period of reconciliation once `queue.start()` was called (default `config.reconcileIntervalMs`, else 30 s; 0: off). */
  reconcileEveryMs?: number;
}

/** A runtime without metrics (`createRuntime({ metrics: false })`): what the CLI runs a task on. */
export interface LocalRuntime {
  config: AgentGateConfig;
  /** PostgreSQL when `config.databaseUrl` is set, else SQLite in `config.home` (store/open.ts). */
  repos: OpenedRepositories;
  hub: EventHub;
  workOrders: WorkOrderService;
  engine: ExecutionEngine;
  logger: Logger;
  agents: AgentDriverRegistry;
  delivery: DeliveryRegistry;
  /**
   * The durable work-order queue. Not scheduling until `queue.start()` (the server calls it; the CLI
   * never does, so `exec` cannot take a server's queued work). `close()` closes it first.
   */
  queue: DurableWorkOrderQueue;
  /** Closes runs whose owner died (lease expired); returns their ids. Also run at start-up. */
  reconcile(): Promise<string[]>;
  /**
   * Removes worktrees a dead process left behind (runs without a live lease); returns their run ids.
   * Called by the CLI before it starts a run and by the server at start-up.
   */
  reapStaleWorkspaces(): Promise<string[]>;
  /** Idempotent. */
  close(): Promise<void>;
}

/** The runtime of a server or a worker, and the default: with metrics. */
export interface Runtime extends LocalRuntime {
  /** Prometheus counters fed by the hub (served by GET /metrics). */
  metrics: Metrics;
}

/** Without metrics: `prom-client` is never loaded. */
export function createRuntime(options: RuntimeOptions & { metrics: false }): Promise<LocalRuntime>;
export function createRuntime(options: RuntimeOptions & { metrics?: true }): Promise<Runtime>;
export function createRuntime(options: RuntimeOptions): Promise<LocalRuntime | Runtime>;
export async function createRuntime(options: RuntimeOptions): Promise<LocalRuntime | Runtime> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  ensureHome(config.home);
  const logFile = options.logger === undefined ? pinoFile(join(config.home, 'logs', 'agentgate.log')) : undefined;
  const logger = options.logger ?? createLogger({ level: config.logLevel, ...(logFile !== undefined && { destination: logFile.stream }) });
  // SQLite always uses the runtime clock; PostgreSQL only an injected one (tests), else the database's
  // clock, which every process sharing the database agrees on.
  const storeClock = options.clock === undefined && config.databaseUrl !== undefined ? undefined : () => new Date(clock.now());
  const repos = await openRepositories({
    home: config.home,
    ...(config.databaseUrl !== undefined && { databaseUrl: config.databaseUrl }),
    ...(storeClock !== undefined && { clock: storeClock }),
    onConnectionError: (error) => logger.warn({ code: error.code, err: error }, 'store connection lost; the pool reconnects on the next call'),
  });
  const hub = new EventHub({ runs: repos.runs, workOrders: repos.workOrders, logger });
  const workOrders = new WorkOrderService({ workOrders: repos.workOrders, hub, clock, logger });
  const metrics = options.metrics === false ? undefined : await createMetrics(options.processMetrics);
  metrics?.attach(hub);
  const agents = options.agents ?? createAgentDriverRegistry();
  // GitHub / GitLab delivery and clone access exist only when their token is configured.
  const forges = await loadForgeDelivery(config, clock);
  const delivery = options.delivery ?? createDeliveryRegistry({ managers: forges.managers });
  const baseEnv = options.baseEnv ?? process.env;
  const workspaces = new WorkspaceManager({ home: config.home, leases: repos.leases, clock, logger, ...(config.worktreePool === false && { pool: false }), ...forges.clone });
  const engine = new ExecutionEngine({
    repos,
    hub,
    workOrders,
    agents,
    delivery,
    clock,
    logger,
    home: config.home,
    baseEnv,
    workspaces,
    snapshotter: new Snapshotter(),
    verifier: new Verifier(),
    ...(options.strategies !== undefined && { strategies: options.strategies }),
    ...((options.leaseTtlMs ?? config.leaseTtlMs) !== undefined && { leaseTtlMs: options.leaseTtlMs ?? config.leaseTtlMs }),
    ...(config.localWorkspaces !== undefined && { localWorkspaces: config.localWorkspaces }),
  }, options.handlers);
  const reconcile = async (): Promise<string[]> => {
    const closed = await reconcileInterruptedRuns({
      repos,
      hub,
      workOrders,
      clock,
      logger,
      secrets: secretValues(baseEnv),
      owner: engine.owner,
      activeRunIds: engine.activeRunIds(),
      requeue: options.requeueInterrupted ?? config.requeueInterrupted ?? false,
    });
    return closed.map((run) => run.id);
  };
  if (options.reconcile !== false) await reconcile();
  const queue = new DurableWorkOrderQueue(
    { repos, engine, workOrders, clock, logger, reconcile },
    {
      maxConcurrent: options.maxConcurrent ?? config.maxConcurrent,
      reconcileEveryMs: options.reconcileEveryMs ?? config.reconcileIntervalMs ?? DEFAULT_RECONCILE_EVERY_MS,
    },
  );
  let closing: Promise<void> | undefined;
  const runtime: LocalRuntime = {
    config,
    repos,
    hub,
    workOrders,
    engine,
    logger,
    agents,
    delivery,
    queue,
    reconcile,
    reapStaleWorkspaces: () =>
      workspaces.reapStale({
        isLive: async (runId) => {
          const lease = await repos.leases.get(runLeaseKey(runId));
          return lease !== null && Date.parse(lease.expiresAt) > clock.now();
        },
        signal: new AbortController().signal,
      }),
    close() {
      closing ??= (async () => {
        // Without a drain deadline: the server drains with queue.close({ drainMs }) before this.
        await queue.close();
        hub.close();
        await repos.close();
        logFile?.close();
      })();
      return closing;
    },
  };
  return metrics === undefined ? runtime : { ...runtime, metrics };
}

async function createMetrics(processMetrics: boolean | undefined): Promise<Metrics> {
  const { Metrics } = await import('./observability/metrics.js');
  return new Metrics(processMetrics === undefined ? {} : { processMetrics });
}

/**
 * The configured forges (`delivery/forges.ts`). Without a GitHub or GitLab token there are none, and the
 * forge clients (`@octokit/rest` ~50 ms, `@gitbeaker/rest` ~125 ms of start-up) are not loaded at all.
 */
async function loadForgeDelivery(config: AgentGateConfig, clock: TimerClock): Promise<ForgeDelivery> {
  const configured = (token: string | undefined): boolean => token !== undefined && token !== '';
  if (!configured(config.githubToken) && !configured(config.gitlabToken)) return { managers: [], clone: {} };
  const { createForgeDelivery } = await import('./delivery/forges.js');
  return createForgeDelivery(config, { clock });
}

/**
 * `$AGENTGATE_HOME` must be a writable directory (created when missing). Anything else is a
 * configuration error naming the path — exit 2, not an internal error.
 */
function ensureHome(home: string): void {
  try {
    mkdirSync(home, { recursive: true });
    if (!statSync(home).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    accessSync(home, constants.W_OK | constants.X_OK);
  } catch (error) {
    if (isDiskFull(error)) throw toAgentGateError(error);
    const reason = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : String(error);
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `AGENTGATE_HOME ${home} is not a writable directory (${reason})`, { cause: error, details: { path: home } });
  }
}

/**
 * Synchronous file destination: a CLI run that exits right after finishing loses no log line. A log
 * write that fails (a full disk) never fails the run: the line is lost, and the first loss is reported
 * once on stderr with its reason, so the loss is visible rather than silent.
 */
function pinoFile(path: string): { stream: DestinationStream; close(): void } {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'a');
  let lost = 0;
  let closed = false;
  const stream = {
    write(line: string): void {
      if (closed) return;
      try {
        writeSync(fd, line);
      } catch (error) {
        lost += 1;
        if (lost === 1) {
          const reason = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : String(error);
          process.stderr.write(`warning: cannot write the log file ${path} (${reason}); log lines are being dropped\n`);
        }
      }
    },
  };
  return {
    stream,
    close() {
      if (closed) return;
      closed = true;
      closeSync(fd);
    },
  };
}
