/** Shared set-up of the queue tests: a tiny repository with a `true` gate, command agents, a runtime. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/observability/logger.js';
import type { RunEventEnvelope } from '../../src/observability/events.js';
import { createRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import type { StoredWorkOrder, WorkOrderStatus } from '../../src/store/types.js';
import { git } from '../helpers/git-repo.js';

export interface QueueFixture {
  root: string;
  repo: string;
  home: string;
  /** Writes an executable agent script outside the repository; returns its path. */
  agent(name: string, body: string): string;
}

/** Agents: each writes a file (so the snapshot has a change) and exits. */
export const QUEUE_AGENTS = {
  pass: 'echo "$AGENTGATE_ITERATION" > out.txt\necho done',
  fail: 'echo "broken" >&2\nexit 1',
} as const;

export function queueFixture(cleanups: Array<() => unknown>): QueueFixture {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-queue-'));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const repo = join(root, 'repo');
  mkdirSync(repo);
  writeFileSync(join(repo, 'verify.yaml'), 'version: "1"\ntests:\n  - { name: noop, command: "true" }\n');
  writeFileSync(join(repo, 'README.md'), 'queue test\n');
  git(repo, 'init', '-q', '-b', 'main');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'initial');
  return {
    root,
    repo,
    home: join(root, 'home'),
    agent(name, body) {
      const path = join(root, `${name}.sh`);
      writeFileSync(path, `#!/bin/sh\nset -eu\n${body}\n`, { mode: 0o755 });
      return path;
    },
  };
}

/** One iteration, no sandbox (fast and independent of bubblewrap on the test host). */
export function queueSpec(fixture: QueueFixture, agentPath: string, name = 'queue-test'): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name },
    spec: {
      goal: { prompt: 'Write out.txt' },
      convergence: { limits: { maxIterations: 1 } },
      execution: { workspace: { source: 'local', path: fixture.repo }, agent: { driver: 'command', command: `sh ${agentPath}` }, sandbox: { mode: 'none' } },
    },
  } as TaskSpecInput);
}

export async function queueRuntime(fixture: QueueFixture, cleanups: Array<() => unknown>, options: Partial<Omit<RuntimeOptions, 'metrics'>> = {}): Promise<Runtime> {
  const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: fixture.home }), logger: silentLogger(), baseEnv: { ...process.env }, ...options });
  cleanups.push(() => runtime.close());
  return runtime;
}

export function submit(runtime: Runtime, spec: ResolvedTaskSpec): Promise<StoredWorkOrder> {
  return runtime.queue.submit({ spec, source: 'task_spec', request: null });
}

const FINAL: readonly WorkOrderStatus[] = ['succeeded', 'failed', 'canceled'];

/**
 * Resolves once every work order in `ids` has a status in `statuses` (default: a final one): checked
 * against the store on every work-order event the hub of `runtime` delivers — or of any of several
 * runtimes sharing one store, when every status change is made by one of them — no polling, no sleeps.
 */
export function waitForWorkOrders(runtime: Runtime | readonly Runtime[], ids: readonly string[], statuses: readonly WorkOrderStatus[] = FINAL): Promise<StoredWorkOrder[]> {
  const nodes: readonly Runtime[] = Array.isArray(runtime) ? runtime : [runtime as Runtime];
  const [first] = nodes;
  if (first === undefined) return Promise.reject(new Error('no runtime to wait on'));
  return new Promise((resolve, reject) => {
    let checking = false;
    let again = false;
    const offs: Array<() => void> = [];
    const off = (): void => {
      for (const fn of offs.splice(0)) fn();
    };
    const check = async (): Promise<void> => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      try {
        do {
          again = false;
          const all = await Promise.all(ids.map((id) => first.repos.workOrders.get(id)));
          if (all.every((w) => w !== null && statuses.includes(w.status))) {
            off();
            resolve(all.filter((w): w is StoredWorkOrder => w !== null));
            return;
          }
        } while (again);
      } catch (error) {
        off();
        reject(error instanceof Error ? error : new Error(String(error)));
      } finally {
        checking = false;
      }
    };
    for (const node of nodes) offs.push(node.hub.onWorkOrder(() => void check()));
    void check();
  });
}

/** Resolves with the first run event matching `predicate`. */
export function nextRunEvent(runtime: Runtime, predicate: (event: RunEventEnvelope) => boolean): Promise<RunEventEnvelope> {
  return new Promise((resolve) => {
    const off = runtime.hub.on((event) => {
      if (!predicate(event)) return;
      off();
      resolve(event);
    });
  });
}

export const CLOSING_TYPES: readonly string[] = ['run_completed', 'run_failed', 'run_canceled'];
