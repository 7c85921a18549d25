/**
 * Wires the production services of one AgentGate process: store, logger, event bus, agent drivers,
 * workspaces, snapshotter, verifier and the engine. The CLI and the HTTP server both start here, so
 * there is one way to build an engine.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { destination, type DestinationStream, type Logger } from 'pino';
import { createAgentDriverRegistry, type AgentDriverRegistry } from './agents/registry.js';
import { ExecutionEngine, type EngineServices } from './execution/engine.js';
import { reconcileInterruptedRuns, runLeaseKey } from './execution/reconcile.js';
import { Verifier } from './gates/verifier.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { ProgressEmitter } from './observability/progress-emitter.js';
import type { AgentGateConfig } from './schemas/config.js';
import { SqliteRunStore } from './store/run-store.js';
import { systemClock, type Clock } from './util/clock.js';
import { WorkspaceManager } from './workspace/manager.js';
import { Snapshotter } from './workspace/snapshotter.js';

export interface RuntimeOptions {
  config: AgentGateConfig;
  logger?: Logger;
  clock?: Clock;
  /** Environment agents and gates start from; defaults to this process's environment. */
  baseEnv?: Record<string, string | undefined>;
  agents?: AgentDriverRegistry;
  strategies?: EngineServices['strategies'];
  /** Fail runs a dead process left open (default true; see execution/reconcile.ts). */
  reconcile?: boolean;
  /** Collect Node.js process metrics too (the server does; tests and the CLI do not). */
  processMetrics?: boolean;
}

export interface Runtime {
  config: AgentGateConfig;
  store: SqliteRunStore;
  emitter: ProgressEmitter;
  engine: ExecutionEngine;
  logger: Logger;
  agents: AgentDriverRegistry;
  /** Prometheus counters fed by the emitter (served by GET /metrics). */
  metrics: Metrics;
  /**
   * Removes worktrees a dead process left behind (runs without a live lease); returns their run ids.
   * Called by the CLI before it starts a run and by the server at start-up.
   */
  reapStaleWorkspaces(): Promise<string[]>;
  /** Idempotent. */
  close(): void;
}

export function createRuntime(options: RuntimeOptions): Runtime {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  mkdirSync(config.home, { recursive: true });
  const logger =
    options.logger ??
    createLogger({ level: config.logLevel, destination: pinoFile(join(config.home, 'logs', 'agentgate.log')) });
  const store = SqliteRunStore.open({ home: config.home, clock: () => new Date(clock.now()) });
  const emitter = new ProgressEmitter({ log: store, logger });
  const metrics = new Metrics(options.processMetrics === undefined ? {} : { processMetrics: options.processMetrics });
  metrics.attach(emitter);
  if (options.reconcile !== false) reconcileInterruptedRuns({ store, emitter, clock, logger });
  const agents = options.agents ?? createAgentDriverRegistry();
  const workspaces = new WorkspaceManager({ home: config.home, leases: store, clock });
  const engine = new ExecutionEngine({
    store,
    emitter,
    agents,
    clock,
    logger,
    home: config.home,
    baseEnv: options.baseEnv ?? process.env,
    workspaces,
    snapshotter: new Snapshotter(),
    verifier: new Verifier(),
    ...(options.strategies !== undefined && { strategies: options.strategies }),
  });
  let closed = false;
  return {
    config,
    store,
    emitter,
    engine,
    logger,
    agents,
    metrics,
    reapStaleWorkspaces: () =>
      workspaces.reapStale({
        isLive: (runId) => {
          const lease = store.getLease(runLeaseKey(runId));
          return lease !== null && Date.parse(lease.expiresAt) > clock.now();
        },
        signal: new AbortController().signal,
      }),
    close() {
      if (closed) return;
      closed = true;
      store.close();
    },
  };
}

/** Synchronous file destination: a CLI run that exits right after finishing loses no log line. */
function pinoFile(path: string): DestinationStream {
  return destination({ dest: path, sync: true, mkdir: true });
}
