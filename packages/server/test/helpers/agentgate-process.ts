/** Real `agentgate` processes (through tsx, from source) for the multi-process tests under test/scale. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './git-repo.js';

const MAIN = join(REPO_ROOT, 'packages', 'server', 'src', 'cli', 'main.ts');
const TSX_LOADER = pathToFileURL(join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

export interface AgentGateProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** The first group of the `ready` match (an API node's `http://127.0.0.1:<port>`), else ''. */
  readonly url: string;
  stderr(): string;
  /** Exit code, or the signal's name when killed by one. */
  readonly exited: Promise<number | string | null>;
}

/**
 * Starts `agentgate <args>` with `env` over this process's environment (a value of `undefined` removes
 * the variable) and resolves once its stderr matches `ready`; rejects when it exits first, or after
 * `timeoutMs`.
 */
export function startAgentGate(name: string, args: readonly string[], env: Record<string, string | undefined>, ready: RegExp, timeoutMs = 120_000): Promise<AgentGateProcess> {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs / 1000} s:\n${stderr}`)), timeoutMs);
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = ready.exec(stderr);
      if (match !== null) {
        clearTimeout(timer);
        resolve({ name, child, url: match[1] ?? '', stderr: () => stderr, exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${String(code)} before it was ready:\n${stderr}`));
    });
  });
}

/** One call of the HTTP API of the node at `node.url`: its status and the envelope's `data`. */
export async function api(node: { readonly url: string }, method: string, path: string, body?: unknown): Promise<{ status: number; data: Record<string, unknown> }> {
  const response = await fetch(`${node.url}${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const envelope = (await response.json()) as { data?: Record<string, unknown> };
  return { status: response.status, data: envelope.data ?? {} };
}
