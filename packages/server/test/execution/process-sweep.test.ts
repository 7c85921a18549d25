/**
 * The unsandboxed fallback: processes that leave their process group (`setsid`, ignoring SIGTERM and
 * SIGHUP) are still found by the run tag every process of a run carries — at the end of the run, and by
 * reconciliation when the process that owned the run died. Real processes, checked through /proc.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { runLeaseKey } from '../../src/execution/reconcile.js';
import { createRun } from '../../src/orchestrator/state-machine.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { openSqliteRepositories } from '../../src/store/sqlite/index.js';
import { ManualClock } from '../../src/util/clock.js';
import { RUN_PROCESS_TAG_ENV } from '../../src/util/run-scope.js';
import { CONFORMANCE_MARKER_ENV, liveProcessesWithMarker } from '../agents/conformance.js';
import { AGENTS, makeRepo, writeAgent } from '../helpers/git-repo.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** Polls /proc until no process with the marker is left, up to 5 s; returns what is left. */
async function survivorsAfter(marker: string): Promise<Array<{ pid: number; args: string }>> {
  for (let waited = 0; ; waited += 100) {
    const left = await liveProcessesWithMarker(marker);
    if (left.length === 0 || waited >= 5_000) return left;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const ESCAPE = `setsid sh -c 'trap "" TERM HUP; exec sleep 1000' < /dev/null > /dev/null 2>&1 &`;

describe('without a sandbox', () => {
  it('an agent and a gate that escape their process group leave no process after the run', async () => {
    const marker = `sweep-${Date.now()}`;
    const repo = makeRepo({ 'verify.yaml': `version: "1"\ntests:\n  - name: escaping-gate\n    command: "${ESCAPE.replaceAll('"', '\\"')} true"\n` });
    cleanups.push(repo.cleanup);
    const runtime = await createRuntime({
      config: loadConfig({ AGENTGATE_HOME: repo.home }),
      logger: silentLogger(),
      baseEnv: { ...process.env, [CONFORMANCE_MARKER_ENV]: marker },
    });
    cleanups.push(() => runtime.close());
    const spec = resolveTaskSpec({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'escape' },
      spec: {
        goal: { prompt: 'Implement add and multiply' },
        execution: {
          workspace: { source: 'local', path: repo.repo },
          agent: { driver: 'command', command: `sh ${writeAgent(repo.root, 'a', `${ESCAPE}\n${AGENTS.correct}`)}` },
          sandbox: { mode: 'none' },
        },
      },
    } as TaskSpecInput);
    const outcome = await runtime.engine.run(spec);
    expect(outcome.state).toBe('succeeded');
    expect(await survivorsAfter(marker)).toEqual([]);
  });

  it('reconciliation kills what a dead owner left running for the run', async () => {
    const marker = `orphan-${Date.now()}`;
    const repo = makeRepo();
    cleanups.push(repo.cleanup);
    const t0 = Date.now();
    const repos = openSqliteRepositories({ home: repo.home, clock: () => new Date(t0) });
    const at = new Date(t0).toISOString();
    await repos.runs.create({
      workOrder: { id: 'wo', source: 'task_spec', spec: {}, createdAt: at },
      run: createRun({ id: 'orphaned', workOrderId: 'wo', maxIterations: 1, createdAt: at }),
      lease: { key: runLeaseKey('orphaned'), owner: 'dead-process', ttlMs: 60_000, now: new Date(t0) },
    });
    await repos.close();
    // What the dead process's agent left: a daemon with the run's tag.
    const daemon = spawn('setsid', ['sh', '-c', 'trap "" TERM HUP; exec sleep 1000'], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, [RUN_PROCESS_TAG_ENV]: 'orphaned', [CONFORMANCE_MARKER_ENV]: marker },
    });
    daemon.unref();
    // If the test fails, it must not leave the daemon behind either.
    cleanups.push(async () => {
      for (const { pid } of await liveProcessesWithMarker(marker)) process.kill(pid, 'SIGKILL');
    });
    while ((await liveProcessesWithMarker(marker)).length === 0) await new Promise((resolve) => setTimeout(resolve, 20));

    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), clock: new ManualClock(t0 + 180_000) });
    cleanups.push(() => runtime.close());
    expect((await runtime.repos.runs.get('orphaned'))?.error?.code).toBe('AG_ERR_RUN_INTERRUPTED');
    expect(await survivorsAfter(marker)).toEqual([]);
  });
});
