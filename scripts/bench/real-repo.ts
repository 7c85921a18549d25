/**
 * Benchmark (issue 11): a whole 2-iteration run on a real repository with a warm environment cache,
 * against its floor — running the repository's test suite twice by hand in a checkout whose
 * dependencies are already installed.
 *
 *   tsx scripts/bench/real-repo.ts <repository> <file> <search> <replace> <test command> [runs=3]
 *
 * A bug is injected into a clone of <repository> (the first <search> in <file> becomes <replace>) and
 * committed as the base. The agent is a script: iteration 1 changes nothing the tests look at (a line
 * appended to a scratch file), iteration 2 restores <file>. AgentGate runs through the built CLI
 * (`packages/server/bin/agentgate.js`; run `pnpm build` first) with the plan it detects; one warm-up run
 * fills the environment cache, then AgentGate runs and the hand floor (the test command twice, failing
 * then passing, in a prepared checkout) alternate `runs` times. Prints the medians and their ratio.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const [source, file, search, replace, testCommand, runsArg] = process.argv.slice(2);
if (source === undefined || file === undefined || search === undefined || replace === undefined || testCommand === undefined) {
  console.error('usage: tsx scripts/bench/real-repo.ts <repository> <file> <search> <replace> <test command> [runs=3]');
  process.exit(2);
}
const runs = Number(runsArg ?? 3);
const cli = resolve('packages/server/bin/agentgate.js');
if (!existsSync(resolve('packages/server/dist/cli/main.js'))) {
  console.error('packages/server/dist is missing: run `pnpm build` first');
  process.exit(2);
}

/** The environment without what `pnpm bench:…` adds for AgentGate's own package (a user's shell has none of it). */
const env: Record<string, string> = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !/^(npm_|PNPM_|INIT_CWD$)/i.test(e[0])),
);
const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-real-'));
const git = (cwd: string, ...args: string[]): string => execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd, encoding: 'utf8', env });

const base = join(root, 'base');
git(root, 'clone', '-q', resolve(source), base);
const original = join(root, 'original');
copyFileSync(join(base, file), original);
const text = readFileSync(join(base, file), 'utf8');
if (!text.includes(search)) {
  console.error(`${file} does not contain ${JSON.stringify(search)}`);
  process.exit(2);
}
writeFileSync(join(base, file), text.replace(search, replace));
git(base, 'commit', '-qam', 'inject a bug');

const agent = join(root, 'agent.sh');
writeFileSync(
  agent,
  `#!/bin/sh\nset -eu\nif [ "$AGENTGATE_ITERATION" = 1 ]; then echo "looked at it" >> NOTES.agent; else cp ${JSON.stringify(original)} ${JSON.stringify(file)}; fi\n`,
  { mode: 0o755 },
);
const home = join(root, 'home');

function timed(command: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): { ms: number; status: number | null; stdout: string; output: string } {
  const started = performance.now();
  const result = spawnSync(command, args, { cwd, env: { ...env, ...extraEnv }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { ms: performance.now() - started, status: result.status, stdout: result.stdout, output: `${result.stdout}${result.stderr}` };
}

function agentGateRun(): number {
  const run = timed(process.execPath, [cli, 'exec', '--path', base, '--prompt', 'Fix the failing test', '--agent', 'command', '--agent-command', `sh ${agent}`, '--strategy', 'fixed', '--max-iterations', '3', '--json'], root, { AGENTGATE_HOME: home });
  // --json: the outcome is the last line of stdout.
  const last = run.stdout.trim().split('\n').at(-1) ?? '';
  if (run.status !== 0 || !last.includes('"iterations":2')) {
    console.error(run.output.slice(-4000));
    throw new Error(`the AgentGate run did not pass in 2 iterations (exit ${String(run.status)})`);
  }
  return run.ms;
}

// The floor's checkout: the base with its dependencies installed once, untimed, the way a developer's is.
const hand = join(root, 'hand');
git(root, 'clone', '-q', base, hand);
const install = spawnSync('sh', ['-c', 'corepack pnpm install --frozen-lockfile || npm ci'], { cwd: hand, env: { ...env, CI: 'true' }, stdio: 'ignore' });
if (install.status !== 0) throw new Error('installing the floor checkout failed');

function handRun(): number {
  git(hand, 'checkout', '-q', '--', file);
  const failing = timed('sh', ['-c', testCommand], hand, { CI: 'true' });
  if (failing.status === 0) throw new Error('the test command passed on the injected bug: choose another bug');
  copyFileSync(original, join(hand, file));
  const passing = timed('sh', ['-c', testCommand], hand, { CI: 'true' });
  if (passing.status !== 0) throw new Error(`the test command failed on the original file:\n${passing.output.slice(-2000)}`);
  return failing.ms + passing.ms;
}

const median = (xs: number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 0 ? ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2 : (sorted[mid] ?? 0);
};

try {
  const warm = agentGateRun();
  console.log(`warm-up run (fills the environment cache): ${(warm / 1000).toFixed(2)} s`);
  const ours: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    ours.push(agentGateRun());
    floor.push(handRun());
    console.log(`run ${i + 1}: agentgate ${(ours[i]! / 1000).toFixed(2)} s, test suite twice by hand ${(floor[i]! / 1000).toFixed(2)} s`);
  }
  const ratio = median(ours) / median(floor);
  console.log(`median: agentgate ${(median(ours) / 1000).toFixed(2)} s, by hand ${(median(floor) / 1000).toFixed(2)} s, ratio ${ratio.toFixed(2)} (goal ≤ 1.3)`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
