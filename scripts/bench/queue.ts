/**
 * Benchmark (SPEC 15): 50 queued runs at concurrency 8 against the ideal schedule.
 *
 * A run is a no-op agent (`true`) and a `true` gate on a small repository, without a sandbox. First the
 * duration of one run alone is measured (submit → final status through the queue; median of `samples`),
 * then `runs` work orders are submitted at once to a queue of concurrency `concurrency`. The ideal
 * schedule is ceil(runs / concurrency) × the single-run duration: perfect packing with no contention.
 * A second pass at concurrency 1 isolates the queue's own overhead (no CPU contention between runs).
 *
 * With `agentSeconds` > 0 the agent is `sleep <agentSeconds>` instead of `true`: a run that mostly waits,
 * as one with a real agent waits for its model, so the schedule is not bounded by the host's cores.
 *
 *   pnpm exec tsx scripts/bench/queue.ts [runs=50] [concurrency=8] [samples=5] [agentSeconds=0]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../../packages/server/src/observability/logger.js';
import { createRuntime } from '../../packages/server/src/runtime.js';
import { loadConfig } from '../../packages/server/src/schemas/config.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../packages/server/src/schemas/resolve.js';
import type { StoredWorkOrder } from '../../packages/server/src/store/types.js';

const runs = Number(process.argv[2] ?? 50);
const concurrency = Number(process.argv[3] ?? 8);
const samples = Number(process.argv[4] ?? 5);
const agentSeconds = Number(process.argv[5] ?? 0);

const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-queue-'));
const repo = join(root, 'repo');
mkdirSync(join(repo, 'src'), { recursive: true });
for (let i = 0; i < 50; i += 1) writeFileSync(join(repo, 'src', `f${i}.txt`), `file ${i}\n`);
writeFileSync(join(repo, 'verify.yaml'), 'version: "1"\ntests:\n  - { name: noop, command: "true" }\n');
const git = (...args: string[]): string => execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd: repo, encoding: 'utf8' });
git('init', '-q', '-b', 'main');
git('add', '-A');
git('commit', '-q', '-m', 'base');

const spec: ResolvedTaskSpec = resolveTaskSpec({
  apiVersion: 'agentgate.io/v1',
  kind: 'TaskSpec',
  metadata: { name: 'bench-queue' },
  spec: {
    goal: { prompt: 'nothing' },
    convergence: { limits: { maxIterations: 1 } },
    execution: { workspace: { source: 'local', path: repo }, agent: { driver: 'command', command: agentSeconds > 0 ? `sleep ${agentSeconds}` : 'true' }, sandbox: { mode: 'none' } },
  },
});

const FINAL = new Set(['succeeded', 'failed', 'canceled']);

interface Batch {
  ms: number;
  maxRunning: number;
  statuses: string[];
  /** Mean time from `run_started` to the closing event of one run. */
  meanRunMs: number;
  /** Σ run time / (slots × makespan): how full the queue kept its slots. */
  utilization: number;
}

async function batch(home: string, maxConcurrent: number, count: number): Promise<Batch> {
  const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: home }), logger: silentLogger(), baseEnv: { ...process.env }, maxConcurrent });
  try {
    let running = 0;
    let maxRunning = 0;
    const startedAt = new Map<string, number>();
    let runMs = 0;
    runtime.hub.on((event) => {
      if (event.type === 'run_started') {
        maxRunning = Math.max(maxRunning, ++running);
        startedAt.set(event.runId, performance.now());
      } else if (event.type === 'run_completed' || event.type === 'run_failed' || event.type === 'run_canceled') {
        running -= 1;
        runMs += performance.now() - (startedAt.get(event.runId) ?? performance.now());
      }
    });
    runtime.queue.start();
    const t0 = performance.now();
    const submitted: StoredWorkOrder[] = [];
    const finals = new Map<string, string>();
    // Listening before submitting: the first run may end before the last submission returns.
    const finished = new Promise<void>((resolve) => {
      const off = runtime.hub.onWorkOrder((event) => {
        const status = event.data['status'];
        if (typeof status === 'string' && FINAL.has(status)) finals.set(event.workOrderId, status);
        if (finals.size === count) {
          off();
          resolve();
        }
      });
    });
    for (const result of await Promise.all(Array.from({ length: count }, () => runtime.queue.submit({ spec, source: 'task_spec', request: null })))) submitted.push(result);
    await finished;
    const ms = performance.now() - t0;
    return {
      ms,
      maxRunning,
      statuses: submitted.map((w) => finals.get(w.id) ?? 'missing'),
      meanRunMs: runMs / count,
      utilization: runMs / (Math.min(maxConcurrent, count) * ms),
    };
  } finally {
    await runtime.close();
  }
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

try {
  const home = join(root, 'home');
  // Warm-up (module loading, git caches), then single runs one at a time.
  await batch(home, 1, 2);
  const singles: number[] = [];
  const singleRuns: number[] = [];
  for (let i = 0; i < samples; i += 1) {
    const one = await batch(home, 1, 1);
    singles.push(one.ms);
    singleRuns.push(one.meanRunMs);
  }
  const single = median(singles);
  const ideal = Math.ceil(runs / concurrency) * single;
  const parallel = await batch(home, concurrency, runs);
  const serial = await batch(home, 1, runs);
  const failed = [...parallel.statuses, ...serial.statuses].filter((s) => s !== 'succeeded').length;
  const report = {
    agent: agentSeconds > 0 ? `sleep ${agentSeconds}` : 'true',
    cores: availableParallelism(),
    runs,
    concurrency,
    singleRunMs: Math.round(single),
    idealMs: Math.round(ideal),
    actualMs: Math.round(parallel.ms),
    ratio: Number((parallel.ms / ideal).toFixed(2)),
    maxRunning: parallel.maxRunning,
    meanRunMsAlone: Math.round(median(singleRuns)),
    meanRunMsAtConcurrency: Math.round(parallel.meanRunMs),
    slotUtilization: Number(parallel.utilization.toFixed(2)),
    serialMs: Math.round(serial.ms),
    serialRatio: Number((serial.ms / (runs * single)).toFixed(2)),
    notSucceeded: failed,
  };
  console.log(JSON.stringify(report, null, 2));
  console.log(`queue: ${runs} runs at concurrency ${concurrency}: ${report.actualMs} ms vs ideal ${report.idealMs} ms (ceil(${runs}/${concurrency}) × ${report.singleRunMs} ms) → ratio ${report.ratio} (target ≤ 1.2)`);
  console.log(
    `one run takes ${report.meanRunMsAlone} ms alone and ${report.meanRunMsAtConcurrency} ms with ${concurrency} at once (contention); the queue kept its slots ${Math.round(report.slotUtilization * 100)} % busy`,
  );
  console.log(`queue overhead alone (concurrency 1): ${report.serialMs} ms vs ${runs} × ${report.singleRunMs} ms → ratio ${report.serialRatio}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
