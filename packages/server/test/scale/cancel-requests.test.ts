/** Cancel requests (execution/cancel-requests.ts): recorded once, read by the executor, never a sign of life. */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { CANCEL_REQUEST_TTL_MS, CancelRequests, cancelRequestKey } from '../../src/execution/cancel-requests.js';
import { storableSpec } from '../../src/execution/engine.js';
import { runLeaseKey } from '../../src/execution/reconcile.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import { ManualClock } from '../../src/util/clock.js';
import { queueFixture, queueRuntime, queueSpec } from '../queue/helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** An owner id of this host whose process has exited: provably gone. */
function deadOwner(): string {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return `${hostname()}:${Number(child.stdout)}:${randomUUID()}`;
}

describe('CancelRequests', () => {
  it('keeps the first request, finds it until it is cleared or expires', async () => {
    const fixture = queueFixture(cleanups);
    const clock = new ManualClock(Date.now());
    const runtime = await queueRuntime(fixture, cleanups, { clock });
    const requests = new CancelRequests(runtime.repos.leases, clock);
    await requests.request('run-1', 'api-a');
    await requests.request('run-1', 'api-b');
    expect(await requests.pending('run-1')).toMatchObject({ key: cancelRequestKey('run-1'), owner: 'api-a', runId: 'run-1' });
    expect(await requests.pending('run-2')).toBeNull();

    const seen: string[] = [];
    await requests.actOn([{ runId: 'run-1' }, { runId: undefined }, { runId: 'run-2' }], (run, request) => seen.push(`${run.runId ?? ''}:${request.owner}`));
    expect(seen).toEqual(['run-1:api-a']);
    expect(await requests.pending('run-1')).toBeNull();

    await requests.request('run-3', 'api-a');
    await clock.advance(CANCEL_REQUEST_TTL_MS);
    expect(await requests.pending('run-3')).toBeNull();
  });

  it('does not keep the run of a dead process open: reconciliation closes it at once', async () => {
    const fixture = queueFixture(cleanups);
    const runtime = await queueRuntime(fixture, cleanups);
    const owner = deadOwner();
    const workOrderId = randomUUID();
    const runId = randomUUID();
    const fence = { leaseKey: runLeaseKey(runId), owner };
    await runtime.repos.runs.create({
      workOrder: { id: workOrderId, source: 'task_spec', spec: storableSpec(queueSpec(fixture, 'true')) },
      run: createRun({ id: runId, workOrderId, maxIterations: 1 }),
      lease: { key: fence.leaseKey, owner, ttlMs: 3_600_000 },
    });
    await runtime.repos.runs.commit(runId, { event: 'workspace_acquired', fence });
    // An API node asked for the cancel just before the worker died.
    await new CancelRequests(runtime.repos.leases, { now: () => Date.now() }).request(runId, 'api-node-a');

    expect(await runtime.reconcile()).toEqual([runId]);
    expect(await runtime.repos.runs.get(runId)).toMatchObject({ state: 'failed', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
  });
});
