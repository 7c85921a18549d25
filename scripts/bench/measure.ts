/**
 * Shared helpers of the benchmarks (startup.ts, iteration.ts, protected-paths.ts, snapshot.ts): the CLI and
 * a check that it is built, running a command to completion and timing it, medians, the repetition count
 * (`AGENTGATE_BENCH_RUNS`), and the generated source tree of the repository benchmarks.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERVER = join(REPO_ROOT, 'packages', 'server');
/** The built CLI as users run it: the package's bin, which runs the bundle `dist/cli/agentgate.cjs`. */
export const CLI_BIN = join(SERVER, 'bin', 'agentgate.js');

/**
 * Refuses to measure an unbuilt CLI (the bin would fall back to tsx) and warns when source files are
 * newer than the build: the figures are then those of the older build.
 */
export function requireBuiltCli(): void {
  const built = join(SERVER, 'dist', 'cli', 'agentgate.cjs');
  if (!existsSync(built)) throw new Error(`${built} is missing: run \`pnpm build\` first`);
  const builtAt = statSync(built).mtimeMs;
  const newer = readdirSync(join(SERVER, 'src'), { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts') && statSync(join(SERVER, 'src', file)).mtimeMs > builtAt);
  if (newer.length > 0) process.stderr.write(`warning: ${newer.length} source file(s) changed after the last build (${newer.slice(0, 3).join(', ')}…): run \`pnpm build\` to measure them\n`);
}

/** Repetitions per measured series: `AGENTGATE_BENCH_RUNS`, else `fallback` (kept small: runs stay short). */
export function repetitions(fallback: number): number {
  const raw = process.env['AGENTGATE_BENCH_RUNS'];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`AGENTGATE_BENCH_RUNS must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

export interface Timed {
  ms: number;
  stdout: string;
}

/** Runs `command args` to completion; throws (with its stderr) unless it exits with one of `okCodes`. */
export function timed(command: string, args: readonly string[], options: SpawnSyncOptions = {}, okCodes: readonly number[] = [0]): Timed {
  const started = performance.now();
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  const ms = performance.now() - started;
  if (result.error !== undefined) throw result.error;
  if (result.status === null || !okCodes.includes(result.status)) {
    throw new Error(`${command} ${args.join(' ')} exited ${String(result.status ?? result.signal)}: ${String(result.stderr).slice(-2000)}`);
  }
  return { ms, stdout: String(result.stdout) };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export function ms(value: number): string {
  return `${value.toFixed(0).replace(/\B(?=(\d{3})+(?!\d))/g, ',')} ms`;
}

/**
 * Writes `files` generated source files of ~2 KB into `repo` (`src/m<k>/d<j>/f<i>.js`, 100 per directory),
 * dated an hour back, so that they are older than the index git writes, as in a real checkout.
 */
export function writeGeneratedTree(repo: string, files: number, what: string): void {
  const body = `// generated source line for the ${what} benchmark, forty-odd characters\n`.repeat(26);
  const past = new Date(Date.now() - 3_600_000);
  for (let i = 0; i < files; i += 1) {
    const dir = join(repo, 'src', `m${Math.floor(i / 1000)}`, `d${Math.floor(i / 100) % 10}`);
    if (i % 100 === 0) mkdirSync(dir, { recursive: true });
    const file = join(dir, `f${i}.js`);
    writeFileSync(file, `// file ${i}\n${body}`);
    utimesSync(file, past, past);
  }
}
