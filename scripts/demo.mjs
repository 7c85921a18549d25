#!/usr/bin/env node
// AgentGate's main job on the embedded defaults: copies the bundled example repository to a temporary
// git repository and runs a real work order on it with the scripted command agent (first attempt fails
// a test, second passes). Shows the loop, the feedback and the resulting branch. Then the same work
// order through the server: `agentgate serve` on a free loopback port, the legacy WorkOrder API, the
// run followed live with `agentgate events --follow`, the API docs and metrics, and a clean shutdown.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'agentgate-demo-'));
const repo = join(work, 'calculator');
// The embedded default home (~/.agentgate) unless AGENTGATE_HOME says otherwise.
const home = process.env.AGENTGATE_HOME || join(homedir(), '.agentgate');
cpSync(join(root, 'examples', 'calculator'), repo, { recursive: true });
const git = (...args) => execFileSync('git', ['-c', 'user.name=AgentGate Demo', '-c', 'user.email=demo@agentgate.local', ...args], { cwd: repo, encoding: 'utf8' });
git('init', '-q', '-b', 'main');
git('add', '-A');
git('commit', '-q', '-m', 'calculator: initial');

console.log(`example repository: ${repo}\nAGENTGATE_HOME: ${home}\n`);
const agent = join(root, 'examples', 'agents', 'scripted-agent.sh');
const cli = join(root, 'packages', 'server', 'bin', 'agentgate.js');
const run = spawnSync(
  process.execPath,
  [cli, 'exec', '--path', repo, '--prompt', 'Implement add and multiply in src/math.js so that the tests pass.', '--agent', 'command', '--agent-command', `sh ${agent}`, '--max-iterations', '3', '--verbose', '--json'],
  { stdio: ['inherit', 'pipe', 'inherit'], env: { ...process.env, AGENTGATE_HOME: home }, encoding: 'utf8' },
);
const last = run.stdout.trim().split('\n').pop() ?? '{}';
const outcome = JSON.parse(last);
console.log(`\nresult: ${JSON.stringify(outcome, null, 2)}`);
if (outcome.runId) {
  const feedback = join(home, 'runs', outcome.runId, 'iteration-2-feedback.md');
  try {
    console.log(`\nfeedback given to iteration 2 (${feedback}):\n${readFileSync(feedback, 'utf8').split('\n').slice(0, 25).join('\n')}`);
  } catch {
    console.log('\n(no feedback file: the first iteration passed)');
  }
  console.log(`\nbranch ${outcome.branch}:\n${git('log', '--oneline', 'main..' + outcome.branch)}`);
  console.log(git('diff', 'main', outcome.branch, '--stat'));
  console.log(`your working tree is untouched:\n${git('status', '--short') || '(clean)'}`);
}
if (run.status !== 0) process.exit(run.status ?? 1);

// --- The same work order through the HTTP server -------------------------------------------------------
const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port: free } = probe.address();
    probe.close(() => resolve(free));
  });
});
const url = `http://127.0.0.1:${port}`;
const env = { ...process.env, AGENTGATE_HOME: home, AGENTGATE_LOG_LEVEL: 'warn' };
console.log(`\n=== the server: agentgate serve --port ${port} ===`);
const server = spawn(process.execPath, [cli, 'serve', '--port', String(port), '--max-concurrent', '2'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
server.stderr.setEncoding('utf8');
await new Promise((resolve, reject) => {
  let seen = '';
  server.stderr.on('data', (chunk) => {
    seen += chunk;
    process.stderr.write(chunk);
    if (seen.includes('listening on')) resolve();
  });
  server.on('exit', (code) => reject(new Error(`agentgate serve exited with ${code}`)));
});
try {
  const body = {
    taskPrompt: 'Implement add and multiply in src/math.js so that the tests pass.',
    workspaceSource: { type: 'local', path: repo },
    agentType: 'command',
    agentCommand: `sh ${agent}`,
    maxIterations: 3,
  };
  console.log(`POST ${url}/api/v1/work-orders (the legacy WorkOrder API)`);
  const created = await (await fetch(`${url}/api/v1/work-orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json();
  const workOrderId = created.data.id;
  console.log(`work order ${workOrderId}: ${created.data.status}`);
  let runId;
  for (let i = 0; i < 200 && runId === undefined; i += 1) {
    const detail = await (await fetch(`${url}/api/v1/work-orders/${workOrderId}`)).json();
    runId = detail.data.runs?.[0]?.id;
    if (runId === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  console.log(`run ${runId} — following it live: agentgate events ${runId} --follow --server ${url}\n`);
  spawnSync(process.execPath, [cli, 'events', runId, '--follow', '--server', url], { env, stdio: 'inherit' });
  const queue = await (await fetch(`${url}/api/v1/queue`)).json();
  console.log(`\nGET /api/v1/queue → ${JSON.stringify(queue.data)}`);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  console.log(`GET /metrics →\n${metrics.split('\n').filter((line) => /^agentgate_(runs_started_total|runs_completed_total|iterations_total)/.test(line)).join('\n')}`);
  console.log(`\nDashboard: ${url}/ · API docs: ${url}/docs · WebSocket: ws://127.0.0.1:${port}/ws · SSE: ${url}/api/v1/runs/${runId}/stream`);
} finally {
  server.kill('SIGTERM');
  await new Promise((resolve) => server.on('exit', resolve));
}
process.exit(0);
