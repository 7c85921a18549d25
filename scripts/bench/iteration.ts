/**
 * Benchmark (SPEC 15, issue 12): whole iterations through the built CLI against their physical floor.
 *
 * For generated repositories of 50, 5,000 and 20,000 files (about 2 KB each, 100 per directory, older
 * than the index as in a real checkout), two runs of `agentgate exec` with a command agent and no sandbox:
 *
 * - no-op: the agent is `true`, the gate (`sh check.sh`) passes: one iteration;
 * - fail-then-pass: the agent writes `attempt` into src/state.txt, which the gate rejects, then `fixed`:
 *   two iterations with feedback between them.
 *
 * The floor of each is a shell script doing the same raw git work by hand — `git worktree add`, then per
 * iteration the agent command, `git add -A`, `git commit` and the gate, then `git worktree remove` —
 * plus one bare `node -e 0` (the CLI is a Node process). Rounds are interleaved (CLI no-op, floor no-op,
 * CLI fail-then-pass, floor fail-then-pass) so both see the same machine load; medians and their ratios
 * are printed. SPEC 15 targets: no-op ≤ 1.5 × floor on 50 files, ≤ 1.3 × on 5,000 and 20,000;
 * fail-then-pass ≤ 1.5 ×.
 *
 *   pnpm build && pnpm bench:iteration
 *   AGENTGATE_BENCH_RUNS=n (rounds, default 3)  AGENTGATE_BENCH_SIZES=50,5000,20000
 *   AGENTGATE_BENCH_SANDBOX=none|auto|bwrap (the CLI's --sandbox, default none: the floor has no sandbox)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_BIN as BIN, median, ms, repetitions, requireBuiltCli, timed, writeGeneratedTree } from './measure.js';

requireBuiltCli();
const rounds = repetitions(3);
const sizes = (process.env['AGENTGATE_BENCH_SIZES'] ?? '50,5000,20000').split(',').map((s) => Number(s.trim()));
if (sizes.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error(`AGENTGATE_BENCH_SIZES must list positive integers, got ${JSON.stringify(process.env['AGENTGATE_BENCH_SIZES'])}`);
const sandbox = process.env['AGENTGATE_BENCH_SANDBOX'] ?? 'none';

const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-iteration-'));
const home = join(root, 'home');

const FAIL_THEN_PASS = join(root, 'fail-then-pass.sh');
writeFileSync(FAIL_THEN_PASS, '#!/bin/sh\nif grep -qx attempt src/state.txt; then echo fixed > src/state.txt; else echo attempt > src/state.txt; fi\n');
const AGENTS = { noop: { command: 'true', iterations: 1 }, failThenPass: { command: `sh ${FAIL_THEN_PASS}`, iterations: 2 } } as const;
type Mode = keyof typeof AGENTS;

const FLOOR = join(root, 'floor.sh');
writeFileSync(
  FLOOR,
  `#!/bin/sh
# The raw git work of a run, by hand: $1 repository, $2 worktree, $3 agent command, $4 iterations at most.
set -e
repo="$1"; wt="$2"; agent="$3"; max="$4"
cd "$repo"
git worktree add -q --detach "$wt" HEAD
cd "$wt"
i=0
while [ "$i" -lt "$max" ]; do
  i=$((i + 1))
  sh -c "$agent"
  git add -A
  git -c user.name=Bench -c user.email=bench@example.com commit -q --allow-empty -m "iteration $i"
  if sh check.sh; then break; fi
done
cd "$repo"
git worktree remove --force "$wt"
node -e 0
`,
);

/** A repository of `files` files with the gate script, committed, files older than the index. */
function makeRepo(files: number): string {
  const repo = join(root, `repo-${files}`);
  writeGeneratedTree(repo, files, 'iteration');
  mkdirSync(join(repo, 'src'), { recursive: true });
  writeFileSync(join(repo, 'src', 'state.txt'), 'broken\n');
  writeFileSync(join(repo, 'check.sh'), '#!/bin/sh\n! grep -qx attempt src/state.txt\n');
  writeFileSync(join(repo, 'verify.yaml'), 'version: "1"\ntests:\n  - { name: state, command: "sh check.sh" }\n');
  const git = (...args: string[]): void => {
    execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd: repo, stdio: 'ignore' });
  };
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'base');
  return repo;
}

let floorRuns = 0;

function runCli(repo: string, mode: Mode): number {
  const { command, iterations } = AGENTS[mode];
  const args = [BIN, 'exec', '--path', repo, '--prompt', 'benchmark', '--agent', 'command', '--agent-command', command, '--max-iterations', '3', '--sandbox', sandbox, '--json'];
  const run = timed(process.execPath, args, { cwd: root, env: { ...process.env, AGENTGATE_HOME: home } });
  const outcome = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}') as { state?: string; iterations?: number };
  if (outcome.state !== 'succeeded' || outcome.iterations !== iterations) throw new Error(`${mode} run on ${repo} ended ${JSON.stringify(outcome)}`);
  return run.ms;
}

function runFloor(repo: string, mode: Mode): number {
  const { command, iterations } = AGENTS[mode];
  floorRuns += 1;
  return timed('sh', [FLOOR, repo, join(root, `floor-${floorRuns}`), command, String(iterations)], { cwd: root }).ms;
}

interface Row {
  files: number;
  mode: Mode;
  cli: number[];
  floor: number[];
}

const rows: Row[] = [];
try {
  for (const files of sizes) {
    const repo = makeRepo(files);
    const noop: Row = { files, mode: 'noop', cli: [], floor: [] };
    const ftp: Row = { files, mode: 'failThenPass', cli: [], floor: [] };
    // One unmeasured round of each: caches, the store's creation.
    runCli(repo, 'noop');
    runFloor(repo, 'noop');
    for (let round = 0; round < rounds; round += 1) {
      noop.cli.push(runCli(repo, 'noop'));
      noop.floor.push(runFloor(repo, 'noop'));
      ftp.cli.push(runCli(repo, 'failThenPass'));
      ftp.floor.push(runFloor(repo, 'failThenPass'));
    }
    rows.push(noop, ftp);
    process.stderr.write(`  ${files} files done\n`);
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

const target = (row: Row): number => (row.mode === 'noop' && row.files > 50 ? 1.3 : 1.5);
process.stdout.write(`iteration: built CLI (agentgate exec, command agent, --sandbox ${sandbox}) vs raw floor, ${rounds} interleaved rounds, medians [min–max]\n`);
for (const row of rows) {
  const cli = median(row.cli);
  const floor = median(row.floor);
  const ratio = cli / floor;
  const range = (xs: number[]): string => `[${ms(Math.min(...xs))}–${ms(Math.max(...xs))}]`;
  process.stdout.write(
    `  ${String(row.files).padStart(6)} files ${row.mode === 'noop' ? 'no-op         ' : 'fail-then-pass'}  cli ${ms(cli).padStart(9)} ${range(row.cli)}  floor ${ms(floor).padStart(9)} ${range(row.floor)}  ratio ${ratio.toFixed(2)} (target ≤ ${target(row)}: ${ratio <= target(row) ? 'met' : 'NOT met'})\n`,
  );
}
