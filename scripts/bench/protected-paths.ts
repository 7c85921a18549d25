/**
 * Benchmark (issue 12, item 1): the protected-paths check (L0 tamper detection) of one verification, by
 * the three ways `gates/contracts.ts` can answer it, on a run workspace of a generated repository:
 *
 * - tree to tree: the snapshot commit given, as the verify phase passes it (`git diff-tree` base..snapshot,
 *   the work tree only below the protected patterns);
 * - run index: no snapshot given; the work tree against the base through the run's own index, whose stat
 *   data comes from the last snapshot;
 * - scratch index: a directory that is not a run workspace (the user's checkout): the base read into a
 *   scratch index without stat data, so git reads every file. This is what the issue traced at 0.98 s.
 *
 * Interleaved rounds, medians. Files are about 2 KB each, 100 per directory.
 *
 *   pnpm bench:protected-paths      (AGENTGATE_BENCH_RUNS=n, default 5;
 *                                   AGENTGATE_BENCH_SIZES=5000,20000)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkContracts, type ContractsInput, type SnapshotRef } from '../../packages/server/src/gates/contracts.js';
import { parseVerifyConfig } from '../../packages/server/src/schemas/verify-config.js';
import { systemClock } from '../../packages/server/src/util/clock.js';
import { WorkspaceManager } from '../../packages/server/src/workspace/manager.js';
import { Snapshotter } from '../../packages/server/src/workspace/snapshotter.js';
import { median, ms, repetitions, writeGeneratedTree } from './measure.js';

const rounds = repetitions(5);
const sizes = (process.env['AGENTGATE_BENCH_SIZES'] ?? '5000,20000').split(',').map((s) => Number(s.trim()));
const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-protected-'));
const signal = new AbortController().signal;

function makeRepo(files: number): string {
  const repo = join(root, `repo-${files}`);
  writeGeneratedTree(repo, files, 'protected-paths');
  mkdirSync(join(repo, 'test'), { recursive: true });
  writeFileSync(join(repo, 'test', 'app.test.js'), 'assert(true);\n');
  writeFileSync(join(repo, 'verify.yaml'), 'version: "1"\n');
  const git = (...args: string[]): void => {
    execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', ...args], { cwd: repo, stdio: 'ignore' });
  };
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'base');
  return repo;
}

async function time(input: ContractsInput): Promise<number> {
  const started = performance.now();
  const results = await checkContracts(input);
  const elapsed = performance.now() - started;
  if (results.find((r) => r.name === 'protected-paths')?.passed !== true) throw new Error('the benchmark tree should pass the tamper check');
  return elapsed;
}

try {
  process.stdout.write(`protected-paths: one check, ${rounds} interleaved rounds, medians\n`);
  for (const files of sizes) {
    const repo = makeRepo(files);
    const manager = new WorkspaceManager({ home: join(root, `home-${files}`) });
    const ws = await manager.acquire({ source: 'local', path: repo }, { runId: `bench-${files}`, signal });
    // An iteration that changed one unprotected file.
    writeFileSync(join(ws.path, 'src', 'm0', 'd0', 'f0.js'), '// changed\n');
    const snap = await new Snapshotter().snapshot({ workspace: ws, iteration: 1, artifactsDir: join(root, `artifacts-${files}`), signal });
    if (!snap.ok) throw snap.error;
    const base: Omit<ContractsInput, 'worktreePath' | 'baseSha'> = {
      contracts: parseVerifyConfig({ contracts: { protectedPaths: ['test/**'] } }).contracts,
      alwaysProtected: [{ path: 'verify.yaml', reason: 'the gate plan is always protected' }],
      signal,
      clock: systemClock,
    };
    const snapshot: SnapshotRef = { commit: 'HEAD', git: { gitDir: ws.gitDir, indexFile: ws.indexFile, workTree: ws.path } };
    const ways: Array<{ name: string; input: ContractsInput }> = [
      { name: 'tree to tree (snapshot given)', input: { ...base, worktreePath: ws.path, baseSha: ws.baseSha, snapshot } },
      { name: 'work tree via the run index', input: { ...base, worktreePath: ws.path, baseSha: ws.baseSha } },
      { name: 'work tree via a scratch index', input: { ...base, worktreePath: repo, baseSha: ws.baseSha } },
    ];
    const times = ways.map(() => [] as number[]);
    for (const way of ways) await time(way.input);
    for (let round = 0; round < rounds; round += 1) {
      for (const [i, way] of ways.entries()) times[i]?.push(await time(way.input));
    }
    for (const [i, way] of ways.entries()) process.stdout.write(`  ${String(files).padStart(6)} files  ${way.name.padEnd(32)} ${ms(median(times[i] ?? [])).padStart(9)}\n`);
    await manager.release(ws, { signal });
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
