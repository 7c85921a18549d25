/**
 * Shared fixtures of the store tests: a unique temp directory per test, a controllable clock, and
 * builders for a work order and a run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRun, type Run } from '../../../src/orchestrator/state-machine.js';
import { SqliteRunStore } from '../../../src/store/run-store.js';
import type { StoredRun, StoredWorkOrder } from '../../../src/store/types.js';

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
  private readonly stores: SqliteRunStore[] = [];

  async dir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'agentgate-store-'));
    this.dirs.push(dir);
    return dir;
  }

  /** A fresh database file path in a new temp directory. */
  async dbPath(): Promise<string> {
    return join(await this.dir(), 'agentgate.db');
  }

  open(path: string, clock: ManualClock = manualClock()): SqliteRunStore {
    const store = SqliteRunStore.open({ path, clock: clock.now });
    this.stores.push(store);
    return store;
  }

  async cleanup(): Promise<void> {
    for (const store of this.stores.splice(0)) store.close();
    for (const dir of this.dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  }
}

export function seedWorkOrder(store: SqliteRunStore, id = 'wo-1'): StoredWorkOrder {
  return store.createWorkOrder({
    id,
    source: 'task_spec',
    spec: { prompt: 'fix the failing test', maxIterations: 3 },
    request: { taskPrompt: 'fix the failing test' },
  });
}

export function newRun(id: string, workOrderId = 'wo-1', createdAt = '2025-01-01T00:00:00.000Z'): Run {
  return createRun({ id, workOrderId, maxIterations: 3, createdAt });
}

export function seedRun(store: SqliteRunStore, id = 'run-1', workOrderId = 'wo-1', createdAt?: string): StoredRun {
  return store.insertRun(newRun(id, workOrderId, createdAt), { branch: `agentgate/${id}` });
}
