/**
 * Benchmark (SPEC 15: "snapshot of a 20,000-file repository ≤ 1.3 × `git add -A && git commit` alone").
 *
 * A generated repository of `files` files (~2 KB each, 100 per directory, older than the index, as in a real
 * checkout). Each round, in turn:
 * - AgentGate: a run workspace (`WorkspaceManager`, no pool), the agent's edits, then one timed
 *   `Snapshotter.snapshot` as the snapshot phase takes it (`background`): status, staging and commit and the
 *   iteration's diff, until it returns and verification could start ("path"); the patch file and publishing
 *   the run branch into the repository go on, and are timed until `settled` ("whole");
 * - the floor: a plain `git worktree add` of the same commit, the same edits, then timed `git add -A` and
 *   `git commit`, each a process started from this Node process like AgentGate's.
 * Two kinds of edits: `edits` changes 100 tracked files; `edits+new` changes 90 and adds 10 new files. Setup
 * and removal are not timed. Medians of interleaved rounds and their ratio are printed.
 *
 *   pnpm bench:snapshot [files=20000]      (AGENTGATE_BENCH_RUNS=n rounds, default 5)
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WorkspaceManager } from '../../packages/server/src/workspace/manager.js';
import { Snapshotter } from '../../packages/server/src/workspace/snapshotter.js';
import { median, repetitions, timed, writeGeneratedTree } from './measure.js';

const files = Number(process.argv[2] ?? 20_000);
const rounds = repetitions(5);
const root = mkdtempSync(join(tmpdir(), 'agentgate-bench-snapshot-'));
const signal = new AbortController().signal;

/** The repository: `files` files of ~2 KB, 100 per directory, older than the index. */
function makeRepo(): string {
  const repo = join(root, 'repo');
  writeGeneratedTree(repo, files, 'snapshot');
  execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo });
  execFileSync('git', ['add', '-A'], { cwd: repo });
  execFileSync('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', 'commit', '-q', '-m', 'base'], { cwd: repo });
  return repo;
}

type Kind = 'edits' | 'edits+new';

/**
 * The agent's work: `changed` tracked files spread over the tree get a line more, and `added` new files.
 * `who` makes the content differ between AgentGate's turn and the floor's, so both write new objects (the
 * repository gets AgentGate's when the run branch is published, and `git add` does not write an object
 * that exists).
 */
function edit(tree: string, kind: Kind, round: number, who: string): void {
  const [changed, added] = kind === 'edits' ? [100, 0] : [90, 10];
  const step = Math.max(1, Math.floor(files / changed));
  for (let k = 0; k < changed; k += 1) {
    const i = (k * step + round) % files;
    appendFileSync(join(tree, 'src', `m${Math.floor(i / 1000)}`, `d${Math.floor(i / 100) % 10}`, `f${i}.js`), `// edited in round ${round} by ${who}\n`);
  }
  for (let k = 0; k < added; k += 1) writeFileSync(join(tree, 'src', `new-${round}-${k}.js`), `// new file ${k} of round ${round} by ${who}\n`);
}

const repo = makeRepo();
const manager = new WorkspaceManager({ home: join(root, 'home'), pool: false });
const snapshotter = new Snapshotter();
let runs = 0;

async function agentGate(kind: Kind, round: number): Promise<{ path: number; whole: number }> {
  runs += 1;
  const workspace = await manager.acquire({ source: 'local', path: repo }, { runId: `snap-${runs}`, signal });
  try {
    edit(workspace.path, kind, round, 'agentgate');
    const started = performance.now();
    const outcome = await snapshotter.snapshot({ workspace, iteration: 1, artifactsDir: join(root, 'artifacts', String(runs)), signal, background: true });
    const path = performance.now() - started;
    if (!outcome.ok) throw outcome.error;
    const failed = await outcome.settled;
    const whole = performance.now() - started;
    if (failed !== undefined) throw failed;
    if (outcome.snapshot.filesChanged !== 100) throw new Error(`expected 100 changed files, got ${outcome.snapshot.filesChanged}`);
    return { path, whole };
  } finally {
    await manager.release(workspace, { signal });
  }
}

function floor(kind: Kind, round: number): number {
  runs += 1;
  const tree = join(root, `floor-${runs}`);
  execFileSync('git', ['worktree', 'add', '-q', '--detach', tree, 'HEAD'], { cwd: repo });
  try {
    edit(tree, kind, round, 'floor');
    const add = timed('git', ['add', '-A'], { cwd: tree });
    const commit = timed('git', ['-c', 'user.name=Bench', '-c', 'user.email=bench@example.com', 'commit', '-q', '-m', 'snapshot'], { cwd: tree });
    return add.ms + commit.ms;
  } finally {
    execFileSync('git', ['worktree', 'remove', '--force', tree], { cwd: repo });
  }
}

const kinds: Kind[] = ['edits', 'edits+new'];
const results = new Map<Kind, { path: number[]; whole: number[]; floor: number[] }>(kinds.map((kind) => [kind, { path: [], whole: [], floor: [] }]));
try {
  // One unmeasured round of each: the page cache and git's first runs.
  for (const kind of kinds) {
    await agentGate(kind, 0);
    floor(kind, 0);
  }
  for (let round = 1; round <= rounds; round += 1) {
    for (const kind of kinds) {
      const result = results.get(kind);
      const { path, whole } = await agentGate(kind, round);
      result?.path.push(path);
      result?.whole.push(whole);
      result?.floor.push(floor(kind, round));
    }
  }
  const ms = (x: number): string => `${x.toFixed(0)} ms`;
  process.stdout.write(
    `snapshot of a ${files}-file repository: Snapshotter.snapshot (path: until verification can start; whole: until the patch and the publication settled) vs git add -A && git commit, ${rounds} interleaved rounds, medians [min–max]\n`,
  );
  const range = (xs: number[]): string => `${ms(median(xs)).padStart(8)} [${ms(Math.min(...xs))}–${ms(Math.max(...xs))}]`;
  for (const [kind, { path: p, whole: w, floor: f }] of results) {
    const ratio = median(p) / median(f);
    process.stdout.write(
      `  ${kind.padEnd(9)}  path ${range(p)}  whole ${range(w)}  add+commit ${range(f)}  ratio path ${ratio.toFixed(2)} (target ≤ 1.3: ${ratio <= 1.3 ? 'met' : 'NOT met'}), whole ${(median(w) / median(f)).toFixed(2)}\n`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
