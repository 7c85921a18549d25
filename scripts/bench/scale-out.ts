/**
 * Benchmark (issue 14): 60 work orders whose agent sleeps 2 s, executed by 1, 2 and 4 `agentgate worker`
 * processes (each `--max-concurrent 2`) sharing one PostgreSQL, submitted through one
 * `agentgate serve --no-worker` API node. For each worker count it prints the time from the first
 * submission until every work order finished (drain), the throughput, the ratio to the ideal schedule
 * (ceil(60 / slots) × 2 s) and the claim latency: for the work orders submitted while a slot was free (the
 * first `slots`), the time from submission to the run's creation, both at the database's clock.
 *
 *   pnpm build && tsx scripts/bench/scale-out.ts [workOrders=60] [sleepSeconds=2]
 *
 * Needs PostgreSQL's server binaries (started in a temporary directory, as in the tests).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { openPostgresRepositories } from '../../packages/server/src/store/postgres/index.js';
import { startPostgres } from '../../packages/server/test/helpers/postgres.js';

const total = Number(process.argv[2] ?? 60);
const sleepSeconds = Number(process.argv[3] ?? 2);
const CAPACITY = 2;
const cli = resolve('packages/server/bin/agentgate.js');
const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-scale-'));
const repo = join(root, 'repo');
cpSync(resolve('examples/calculator'), repo, { recursive: true });
const git = (...args: string[]): void => void execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd: repo });
git('init', '-q', '-b', 'main');
git('add', '-A');
git('commit', '-q', '-m', 'base');
const agent = join(root, 'agent.sh');
writeFileSync(agent, `#!/bin/sh\nsleep ${sleepSeconds}\ncat > src/math.js <<'EOF'\nexport function add(a, b) { return a + b; }\nexport function multiply(a, b) { return a * b; }\nEOF\n`, { mode: 0o755 });

const children: ChildProcess[] = [];
function start(name: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<string> {
  const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, AGENTGATE_HOME: join(root, name), AGENTGATE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  return new Promise((resolveReady, reject) => {
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = ready.exec(stderr);
      if (match !== null) resolveReady(match[1] ?? '');
    });
    child.on('exit', (code) => reject(new Error(`${name} exited ${String(code)}: ${stderr}`)));
  });
}

async function stopChildren(): Promise<void> {
  await Promise.all(
    children.splice(0).map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once('exit', () => done());
          child.kill('SIGKILL');
        }),
    ),
  );
}

const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
};

const pg = await startPostgres();
try {
  for (const workers of [1, 2, 4]) {
    const url = await pg.createDatabase();
    const env = { AGENTGATE_DATABASE_URL: url };
    const api = await start(`api-${workers}`, ['serve', '--no-worker', '--port', '0', '--poll-interval', '250ms'], env, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
    await Promise.all(Array.from({ length: workers }, (_, i) => start(`w${workers}-${i}`, ['worker', '--max-concurrent', String(CAPACITY), '--poll-interval', '250ms'], env, /AgentGate worker \S+: up to/)));
    const spec = {
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'bench' },
      spec: { goal: { prompt: 'Implement add and multiply' }, convergence: { limits: { maxIterations: 1 } }, execution: { workspace: { source: 'local', path: repo }, agent: { driver: 'command', command: `sh ${agent}` } } },
    };
    const started = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < total; i += 1) {
      const response = await fetch(`${api}/api/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
      const body = (await response.json()) as { data?: { id?: string } };
      if (response.status !== 201 || body.data?.id === undefined) throw new Error(`submission failed: ${response.status}`);
      ids.push(body.data.id);
    }
    const repos = await openPostgresRepositories({ url });
    try {
      for (;;) {
        const statuses = await Promise.all(ids.map(async (id) => (await repos.workOrders.get(id))?.status));
        if (statuses.every((s) => s === 'succeeded' || s === 'failed' || s === 'canceled')) {
          const failed = statuses.filter((s) => s !== 'succeeded').length;
          if (failed > 0) throw new Error(`${failed} work orders did not succeed`);
          break;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      const drainMs = Date.now() - started;
      const slots = workers * CAPACITY;
      const ideal = Math.ceil(total / slots) * sleepSeconds * 1000;
      const claims: number[] = [];
      for (const id of ids.slice(0, slots)) {
        const workOrder = await repos.workOrders.get(id);
        const run = (await repos.runs.list({ workOrderId: id, limit: 1, offset: 0 })).items[0];
        if (workOrder !== null && run !== undefined) claims.push(Date.parse(run.createdAt) - Date.parse(workOrder.createdAt));
      }
      console.log(
        `${workers} worker(s), ${slots} slots: drain ${(drainMs / 1000).toFixed(1)} s (ideal ${(ideal / 1000).toFixed(0)} s, ratio ${(drainMs / ideal).toFixed(2)}), ` +
          `${((total / drainMs) * 60_000).toFixed(0)} work orders/min, claim latency median ${median(claims)} ms (max ${Math.max(...claims)} ms)`,
      );
    } finally {
      await repos.close();
      await stopChildren();
    }
  }
} finally {
  await stopChildren();
  await pg.stop();
  rmSync(root, { recursive: true, force: true });
}
