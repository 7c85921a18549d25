/**
 * Set-up of the scale-out tests: several AgentGate "processes" (runtimes) in one test process, sharing
 * one store — one SQLite file (one `$AGENTGATE_HOME`), or one PostgreSQL database with a home per node.
 * A node is an API node (`queue.start({ execute: false })`, its hub following the store) or a worker
 * (`queue.start({ pollEveryMs })`), as `agentgate serve --no-worker` and `agentgate worker` start them.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { systemClock } from '../../src/util/clock.js';

/** One store shared by the nodes of a test. */
export interface SharedStore {
  /** `$AGENTGATE_HOME` and (PostgreSQL) database URL of node `name`. */
  node(name: string): { readonly home: string; readonly databaseUrl?: string };
  cleanup(): Promise<void>;
}

/** Makes a fresh, empty shared store for one test (the suite runs once per backend). */
export type MakeSharedStore = (root: string) => Promise<SharedStore>;

/** SQLite: every node uses the same home, hence the same `agentgate.db` (WAL, one connection per node). */
export const sqliteSharedStore: MakeSharedStore = async (root) => {
  const home = join(root, 'home');
  mkdirSync(home, { recursive: true });
  return { node: () => ({ home }), cleanup: async () => undefined };
};

/** Poll period of the tests' nodes: short, since the tests wait for outcomes, never for a time. */
export const TEST_POLL_MS = 50;

export interface NodeOptions {
  readonly role: 'api' | 'worker';
  readonly maxConcurrent?: number;
  /** Start the queue now (default true); a test may start a worker later with {@link startWorker}. */
  readonly start?: boolean;
}

/** Creates a node on the shared store; closed by `cleanups`. */
export async function startNode(store: SharedStore, name: string, options: NodeOptions, cleanups: Array<() => unknown>): Promise<Runtime> {
  const { home, databaseUrl } = store.node(name);
  const env = { AGENTGATE_HOME: home, ...(databaseUrl !== undefined && { AGENTGATE_DATABASE_URL: databaseUrl }) };
  const runtime = await createRuntime({
    config: loadConfig(env),
    logger: silentLogger(),
    baseEnv: { ...process.env },
    ...(options.maxConcurrent !== undefined && { maxConcurrent: options.maxConcurrent }),
  });
  cleanups.push(() => runtime.close());
  const { engine } = runtime;
  runtime.hub.followStore({ clock: systemClock, pollEveryMs: TEST_POLL_MS, isLocalRun: (runId) => engine.isActive(runId) });
  if (options.start !== false) startWorker(runtime, options.role);
  return runtime;
}

export function startWorker(runtime: Runtime, role: 'api' | 'worker' = 'worker'): void {
  runtime.queue.start(role === 'api' ? { execute: false } : { pollEveryMs: TEST_POLL_MS });
}

/** Waits on every node's hub: every status change in these tests is made by one of them (queue/helpers.ts). */
export { waitForWorkOrders } from '../queue/helpers.js';

/** Resolves with the id of the first run whose agent printed `agent-started` on this node. */
export function agentStarted(node: Runtime): Promise<string> {
  return new Promise((resolve) => {
    const off = node.hub.on((event) => {
      if (event.type !== 'agent_output' || !JSON.stringify(event.data).includes('agent-started')) return;
      off();
      resolve(event.runId);
    });
  });
}
