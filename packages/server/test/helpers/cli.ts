/** Runs the real `agentgate` CLI as a child process (through tsx, from source). */
import { spawn } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './git-repo.js';

const MAIN = join(REPO_ROOT, 'packages', 'server', 'src', 'cli', 'main.ts');
/** tsx's loader by absolute URL, so the CLI can run from any working directory. */
const TSX_LOADER = pathToFileURL(join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Parsed last stdout line when it is JSON. */
  json: Record<string, unknown> | undefined;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Sends SIGINT once stderr contains this text (event-driven cancel). */
  interruptWhen?: string | RegExp;
  /** Sends SIGINT once this file exists (for processes whose output the CLI does not show, e.g. gates). */
  interruptWhenFile?: string;
  /** After the first SIGINT, sends a second one once stderr contains this text. */
  interruptAgainWhen?: string | RegExp;
  onSpawn?: (pid: number) => void;
  /** A command the CLI is run under (e.g. `unshare -m …`); the CLI's argv is appended to it. */
  wrap?: string[];
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const argv = [process.execPath, '--import', TSX_LOADER, MAIN, ...args];
    const [command = process.execPath, ...rest] = options.wrap === undefined ? argv : [...options.wrap, ...argv];
    const child = spawn(command, rest, {
      cwd: options.cwd ?? REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    let interruptedAgain = false;
    const matches = (pattern: string | RegExp, text: string): boolean => (typeof pattern === 'string' ? text.includes(pattern) : pattern.test(text));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const trigger = options.interruptWhen;
      if (!interrupted && trigger !== undefined && matches(trigger, stderr)) {
        interrupted = true;
        child.kill('SIGINT');
      } else if (interrupted && !interruptedAgain && options.interruptAgainWhen !== undefined && matches(options.interruptAgainWhen, stderr)) {
        interruptedAgain = true;
        child.kill('SIGINT');
      }
    });
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    const file = options.interruptWhenFile;
    const watcher = file === undefined ? undefined : watch(dirname(file), () => {
      if (!interrupted && existsSync(file)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      watcher?.close();
      const last = stdout.trim().split('\n').pop() ?? '';
      let json: Record<string, unknown> | undefined;
      if (last.startsWith('{')) json = JSON.parse(last) as Record<string, unknown>;
      resolve({ code, signal, stdout, stderr, json });
    });
  });
}
