/**
 * Benchmark (SPEC 15): engine overhead per iteration with a no-op agent (`true`) and a `true` gate,
 * against a shell script running the raw git commands one iteration needs (worktree add, add, commit,
 * patch, worktree remove) plus the two no-op processes. Prints both means and their ratio.
 *
 *   pnpm bench:engine [runs=20] [files=200]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd, encoding: 'utf8' });
git(repo, 'init', '-q', '-b', 'main');
git(repo, 'add', '-A');
git(repo, 'commit', '-q', '-m', 'base');

const raw = join(root, 'raw.sh');
writeFileSync(
  raw,
  `#!/bin/sh
set -e
cd "$1"; wt="$2"; br="$3"; art="$4"
base=$(git rev-parse HEAD)
git worktree add -q -b "$br" "$wt" "$base"
(cd "$wt" && sh -c true && git add -A && git -c user.name=B -c user.email=b@e commit -q --allow-empty -m "agentgate: iteration 1" && git diff "$base" HEAD > "$art/patch" && sh -c true)
git worktree remove --force "$wt"
`,
);

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

async function main(): Promise<void> {
  const runtime = createRuntime({ config: loadConfig({ AGENTGATE_HOME: join(root, 'home') }), logger: silentLogger() });
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
  runtime.close();
  rmSync(root, { recursive: true, force: true });
  const e = mean(engineTimes);
  const r = mean(rawTimes);
  process.stdout.write(
    `engine-overhead: ${runs} runs, ${files} files\n` +
      `  engine (1 iteration, no-op agent, true gate): ${e.toFixed(1)} ms/iteration\n` +
      `  raw git script (same git work + 2 no-op processes): ${r.toFixed(1)} ms/iteration\n` +
      `  ratio: ${(e / r).toFixed(2)} (target <= 1.3)\n`,
  );
}

await main();
