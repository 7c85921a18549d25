/** Real git repositories in unique temp directories for the gate tests. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { systemClock } from '../../src/util/clock.js';
import type { GateContext } from '../../src/gates/verifier.js';

const IDENTITY = {
  GIT_AUTHOR_NAME: 'Gate Test',
  GIT_AUTHOR_EMAIL: 'gates@example.test',
  GIT_COMMITTER_NAME: 'Gate Test',
  GIT_COMMITTER_EMAIL: 'gates@example.test',
};

export function git(dir: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd: dir, env: { ...process.env, ...IDENTITY }, encoding: 'utf8' }).trim();
}

export function writeFile(dir: string, relative: string, content: string): void {
  const file = path.join(dir, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

export function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

export interface TempRepo {
  /** Temp root; removed by cleanup(). */
  root: string;
  /** The repository (worktree) itself. */
  dir: string;
  /** Where gate logs go: outside the repository so they never show up as untracked files. */
  artifactsDir: string;
  baseSha: string;
  cleanup(): void;
}

/** A repository with `files` committed as its base commit. */
export function createRepo(files: Record<string, string>, options: { objectFormat?: 'sha256' } = {}): TempRepo {
  const root = mkdtempSync(path.join(os.tmpdir(), 'agentgate-gates-'));
  const dir = path.join(root, 'repo');
  mkdirSync(dir);
  git(dir, 'init', '-q', '-b', 'main', ...(options.objectFormat === undefined ? [] : [`--object-format=${options.objectFormat}`]));
  for (const [name, content] of Object.entries(files)) writeFile(dir, name, content);
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '--allow-empty', '-m', 'base');
  return { root, dir, artifactsDir: path.join(root, 'artifacts'), baseSha: git(dir, 'rev-parse', 'HEAD'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Commits everything in the worktree, as the snapshot phase does after each iteration. */
export function snapshot(repo: TempRepo, message = 'agentgate: iteration 1'): string {
  git(repo.dir, 'add', '-A');
  git(repo.dir, 'commit', '-q', '--allow-empty', '-m', message);
  return git(repo.dir, 'rev-parse', 'HEAD');
}

export function gateContext(repo: TempRepo, overrides: Partial<GateContext> = {}): GateContext {
  return {
    worktreePath: repo.dir,
    baseSha: repo.baseSha,
    iteration: 1,
    artifactsDir: repo.artifactsDir,
    signal: new AbortController().signal,
    clock: systemClock,
    ...overrides,
  };
}

/** Whether a process is still running (a zombie waiting for its reaper does not count). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
