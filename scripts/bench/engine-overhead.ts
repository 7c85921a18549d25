/**
 * Benchmark (SPEC 15): engine overhead per iteration with a no-op agent (`true`) and a `true` gate,
 * against a shell script running the raw git commands one iteration needs for its features (see the
 * script below: base, dirty check, worktree, snapshot commit, stats, patch, tamper listing, removal)
 * plus the two no-op processes. Prints both means and their ratio.
 *
 *   pnpm bench:engine [runs=20] [files=200]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../../packages/server/src/observability/logger.js';
import { createRuntime } from '../../packages/server/src/runtime.js';
import { loadConfig } from '../../packages/server/src/schemas/config.js';
import { resolveTaskSpec } from '../../packages/server/src/schemas/resolve.js';

const runs = Number(process.argv[2] ?? 20);
const files = Number(process.argv[3] ?? 200);
const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-'));
const repo = join(root, 'repo');
mkdirSync(join(repo, 'src'), { recursive: true });
for (let i = 0; i < files; i += 1) writeFileSync(join(repo, 'src', `f${i}.txt`), `file ${i}\n`);
writeFileSync(join(repo, 'verify.yaml'), 'version: "1"\ntests:\n  - { name: noop, command: "true" }\n');
// Files older than the index, as in a real checkout: otherwise every status re-hashes "racily clean" files.
const past = new Date(Date.now() - 3_600_000);
for (const name of readdirSync(join(repo, 'src'))) utimesSync(join(repo, 'src', name), past, past);
utimesSync(join(repo, 'verify.yaml'), past, past);
const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd, encoding: 'utf8' });
git(repo, 'init', '-q', '-b', 'main');
git(repo, 'add', '-A');
git(repo, 'commit', '-q', '-m', 'base');

// The git work one iteration needs for its features, run by hand: resolve the base and check the user's
// tree for uncommitted changes (warning), create the worktree, [agent], stage and commit the snapshot,
// read its sha/tree, iteration stats and the patch, list changed and untracked files (tamper detection
// of protected paths), [gate], remove the worktree.
const raw = join(root, 'raw.sh');
writeFileSync(
  raw,
  `#!/bin/sh
set -e
cd "$1"; wt="$2"; br="$3"; art="$4"
base=$(git rev-parse HEAD)
git status --porcelain > /dev/null
git worktree add -q -b "$br" "$wt" "$base"
(cd "$wt" && sh -c true && git add -A && git -c user.name=B -c user.email=b@e commit -q --allow-empty -m "agentgate: iteration 1" \\
  && git rev-parse HEAD HEAD^{tree} > /dev/null && git diff --numstat "$base" HEAD > /dev/null && git diff "$base" HEAD > "$art/patch" \\
  && git diff --name-status "$base" > /dev/null && git ls-files --others --exclude-standard > /dev/null && sh -c true)
git worktree remove --force "$wt"
`,
);

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: join(root, 'home') }), logger: silentLogger() });
  const spec = resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'bench' },
    spec: {
      goal: { prompt: 'noop' },
      convergence: { limits: { maxIterations: 1 } },
      execution: { workspace: { source: 'local', path: repo }, agent: { driver: 'command', command: 'true' } },
    },
  });
  // Warm-up of both paths (module loading, git caches).
  await runtime.engine.run(spec);
  execFileSync('sh', [raw, repo, join(root, 'wt-warm'), 'raw/warm', root]);

  const engineTimes: number[] = [];
  const rawTimes: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    // Interleaved so both see the same machine load.
    let t = performance.now();
    const outcome = await runtime.engine.run(spec);
    engineTimes.push(performance.now() - t);
    if (outcome.state !== 'succeeded') throw new Error(`bench run ended ${outcome.state}: ${JSON.stringify(outcome.error)}`);
    t = performance.now();
    execFileSync('sh', [raw, repo, join(root, `wt-${i}`), `raw/${i}`, root]);
    rawTimes.push(performance.now() - t);
  }
  await runtime.close();
  rmSync(root, { recursive: true, force: true });
  const e = mean(engineTimes);
  const r = mean(rawTimes);
  process.stdout.write(
    `engine-overhead: ${runs} runs, ${files} files\n` +
      `  engine (1 iteration, no-op agent, true gate): ${e.toFixed(1)} ms/iteration\n` +
      `  raw git script (the same git work + 2 no-op processes): ${r.toFixed(1)} ms/iteration\n` +
      `  ratio: ${(e / r).toFixed(2)} (target <= 1.3)\n` +
      // worktree creation varies from 30 to 180 ms between runs on the same disk; medians resist that
      `  median engine ${median(engineTimes).toFixed(1)} ms, median raw ${median(rawTimes).toFixed(1)} ms, median ratio ${(median(engineTimes) / median(rawTimes)).toFixed(2)}\n`,
  );
}

await main();
