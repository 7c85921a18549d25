/**
 * Shared fixtures of the SQLite store tests: a unique temp directory per test, a controllable clock, and
 * repositories opened on files in those directories.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRun, type Run } from '../../../src/orchestrator/state-machine.js';
import { openSqliteRepositories, type SqliteRepositories } from '../../../src/store/sqlite/index.js';
import type { StoredRun } from '../../../src/store/types.js';

/** A clock that only moves when told to. */
export interface ManualClock {
  readonly now: () => Date;
  advance(ms: number): void;
  set(iso: string): void;
}

export function manualClock(start = '2025-01-01T00:00:00.000Z'): ManualClock {
  let current = Date.parse(start);
  return {
    now: () => new Date(current),
    advance(ms) {
      current += ms;
    },
    set(iso) {
      current = Date.parse(iso);
    },
  };
}

/** Creates temp directories and closes/removes everything in `cleanup()` (call it from afterEach). */
export class TempStores {
  private readonly dirs: string[] = [];
  private readonly opened: SqliteRepositories[] = [];

  async dir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'agentgate-store-'));
    this.dirs.push(dir);
    return dir;
  }

  /** A fresh database file path in a new temp directory. */
  async dbPath(): Promise<string> {
    return join(await this.dir(), 'agentgate.db');
  }

  open(path: string, clock: ManualClock = manualClock(), busyTimeoutMs?: number): SqliteRepositories {
    const repos = openSqliteRepositories({ path, clock: clock.now, ...(busyTimeoutMs === undefined ? {} : { busyTimeoutMs }) });
    this.opened.push(repos);
    return repos;
  }

  async cleanup(): Promise<void> {
    for (const repos of this.opened.splice(0)) await repos.close();
    for (const dir of this.dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  }
}

export function newRun(id: string, workOrderId = 'wo-1', createdAt = '2025-01-01T00:00:00.000Z'): Run {
  return createRun({ id, workOrderId, maxIterations: 3, createdAt });
}

/** Creates run `id` (and work order `wo-1` when absent), holding the lease `run:<id>` as `owner-a`. */
export async function seedRun(repos: SqliteRepositories, id = 'run-1', workOrderId = 'wo-1'): Promise<StoredRun> {
  const { run } = await repos.runs.create({
    workOrder: { id: workOrderId, source: 'task_spec', spec: { prompt: 'fix the failing test' } },
    run: newRun(id, workOrderId),
    meta: { branch: `agentgate/${id}` },
    lease: { key: `run:${id}`, owner: 'owner-a', ttlMs: 60_000 },
  });
  return run;
}
