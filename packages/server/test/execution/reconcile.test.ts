import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyTransition, createRun } from '../../src/orchestrator/state-machine.js';
import { runLeaseKey } from '../../src/execution/reconcile.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { SqliteRunStore } from '../../src/store/run-store.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function seed(home: string): void {
  const store = SqliteRunStore.open({ home, clock: () => new Date(T0) });
  store.createWorkOrder({ id: 'wo', source: 'task_spec', spec: {} });
  const at = new Date(T0).toISOString();
  const building = (id: string) => {
    let run = createRun({ id, workOrderId: 'wo', maxIterations: 3, createdAt: at });
    run = applyTransition(applyTransition(run, 'workspace_acquired', { at }), 'build_started', { at });
    store.insertRun(run);
  };
  building('dead');
  building('leased');
  store.acquireLease({ key: '/repo#agentgate/leased', owner: 'other-process', runId: 'leased', ttlMs: 600_000, now: new Date(T0) });
  store.insertRun(createRun({ id: 'done', workOrderId: 'wo', maxIterations: 1, createdAt: at }));
  // Still acquiring its workspace (slow clone) in a live process: its run lease vouches for it.
  store.insertRun(createRun({ id: 'acquiring', workOrderId: 'wo', maxIterations: 1, createdAt: at }));
  store.acquireLease({ key: runLeaseKey('acquiring'), owner: 'other-process', runId: 'acquiring', ttlMs: 600_000, now: new Date(T0) });
  store.close();
}

describe('start-up reconciliation', () => {
  it('fails runs whose owner died, and leaves live and fresh runs alone', () => {
    const home = mkdtempSync(join(tmpdir(), 'agentgate-reconcile-'));
    dirs.push(home);
    seed(home);
    // 3 minutes later: 'dead' and 'done' (queued, never leased) are stale; 'leased' has a live lease.
    const runtime = createRuntime({ config: loadConfig({ AGENTGATE_HOME: home }), logger: silentLogger(), clock: { now: () => T0 + 180_000 } });
    try {
      const dead = runtime.store.getRun('dead');
      expect(dead).toMatchObject({ state: 'failed', result: 'failed_error', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
      expect(dead?.error?.message).toContain('while it was building');
      expect(runtime.store.getRun('leased')?.state).toBe('building');
      expect(runtime.store.getRun('done')?.state).toBe('failed');
      const [changed, failed] = runtime.store.listEvents('dead').slice(-2);
      expect(changed).toMatchObject({ type: 'run_state_changed', data: { from: 'building', event: 'system_error', to: 'failed' } });
      // Followers waiting for the run's last event get one.
      expect(failed).toMatchObject({ type: 'run_failed', data: { result: 'failed_error', error: { code: 'AG_ERR_RUN_INTERRUPTED' } } });
      expect(runtime.store.getRun('acquiring')?.state).toBe('queued');
      expect(runtime.store.getWorkOrder('wo')?.status).toBe('failed');
    } finally {
      runtime.close();
    }
  });

  it('does not touch a run updated within the grace period', () => {
    const home = mkdtempSync(join(tmpdir(), 'agentgate-reconcile-'));
    dirs.push(home);
    seed(home);
    const runtime = createRuntime({ config: loadConfig({ AGENTGATE_HOME: home }), logger: silentLogger(), clock: { now: () => T0 + 5_000 } });
    try {
      expect(runtime.store.getRun('dead')?.state).toBe('building');
      expect(runtime.store.getRun('done')?.state).toBe('queued');
    } finally {
      runtime.close();
    }
  });
});
