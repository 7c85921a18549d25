/**
 * Benchmark (SPEC 15, issue 12): start-up of the built CLI against bare Node. Target: `agentgate
 * --version` within 0.15 s of `node -e 0`.
 *
 * Interleaved rounds of: `node -e 0`; the built bin (`packages/server/bin/agentgate.js`, which runs
 * the bundle `dist/cli/agentgate.cjs`) with `--version` and with `--help`; and, for comparison, the source through tsx
 * (`node --import tsx src/cli/main.ts --version`). Each is a fresh process, timed from spawn to exit.
 * Medians, each CLI's difference to bare Node and their ratio are printed.
 *
 *   pnpm build && pnpm bench:startup          (AGENTGATE_BENCH_RUNS=n rounds, default 10)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_BIN as BIN, median, ms, REPO_ROOT as ROOT, repetitions, requireBuiltCli, timed } from './measure.js';

const SOURCE = join(ROOT, 'packages', 'server', 'src', 'cli', 'main.ts');
requireBuiltCli();

const rounds = repetitions(10);
const node = process.execPath;
const series: Array<{ name: string; args: string[] }> = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'agentgate --version (built)', args: [BIN, '--version'] },
  { name: 'agentgate --help (built)', args: [BIN, '--help'] },
  { name: 'agentgate --version (source, tsx)', args: ['--import', 'tsx', SOURCE, '--version'] },
];
const times = series.map(() => [] as number[]);
// The bin keeps its code cache in the AgentGate home: a scratch one, not the user's ~/.agentgate.
const home = mkdtempSync(join(tmpdir(), 'agentgate-bench-startup-'));
const options = { cwd: ROOT, env: { ...process.env, AGENTGATE_HOME: home } };

try {
  // One unmeasured round: file system caches, and the code cache written.
  for (const { args } of series) timed(node, args, options);
  for (let round = 0; round < rounds; round += 1) {
    series.forEach(({ args }, i) => times[i]?.push(timed(node, args, options).ms));
  }
} finally {
  rmSync(home, { recursive: true, force: true });
}

const bare = median(times[0] ?? []);
process.stdout.write(`startup: ${rounds} interleaved rounds, medians (node ${process.version})\n`);
series.forEach(({ name }, i) => {
  const m = median(times[i] ?? []);
  const vsNode = i === 0 ? '' : `  +${ms(m - bare)} over node, ratio ${(m / bare).toFixed(2)}`;
  process.stdout.write(`  ${name.padEnd(36)} ${ms(m).padStart(9)}${vsNode}\n`);
});
const version = median(times[1] ?? []) - bare;
process.stdout.write(`  target: built --version within 150 ms of node -e 0 — ${version <= 150 ? 'met' : 'NOT met'} (+${ms(version)})\n`);
