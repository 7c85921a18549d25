#!/usr/bin/env node
// AgentGate's main job on the embedded defaults: copies the bundled example repository to a temporary
// git repository and runs a real work order on it with the scripted command agent (first attempt fails
// a test, second passes). Shows the loop, the feedback and the resulting branch.
import { execFileSync, spawnSync } from 'node:child_process';
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
process.exit(run.status ?? 1);
