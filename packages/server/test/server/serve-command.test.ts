/** `agentgate serve` as a real child process: configuration, listening, auth, and graceful shutdown. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENTS, REPO_ROOT, makeRepo, writeAgent } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';
import { runCli } from '../helpers/cli.js';

const MAIN = join(REPO_ROOT, 'packages', 'server', 'src', 'cli', 'main.ts');
const TSX_LOADER = pathToFileURL(join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0).reverse()) fn();
});

interface Served {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts `agentgate serve` and resolves once it printed where it listens and where the docs are. */
function serve(args: string[], env: Record<string, string>): Promise<Served> {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, MAIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => child.kill('SIGKILL'));
  let stderr = '';
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stdout?.resume();
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      const match = /listening on (http:\/\/\S+)\n[^\n]*\/docs\n/.exec(stderr);
      if (match?.[1] !== undefined) resolve({ child, url: match[1], stderr: () => stderr, exit });
    });
    void exit.then((code) => reject(new Error(`serve exited ${String(code)}: ${stderr}`)));
  });
}

function tempHome(): string {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-serve-'));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  return join(root, 'home');
}

describe('agentgate serve', () => {
  it('listens, requires the key from the environment, prints the docs URL, and exits 0 on SIGTERM', async () => {
    const served = await serve(['--port', '0', '--max-concurrent', '3'], { AGENTGATE_HOME: tempHome(), AGENTGATE_API_KEY: 'env-key' });
    expect(served.stderr()).toContain(`API docs (OpenAPI) at ${served.url}/docs`);
    expect((await fetch(`${served.url}/health`)).status).toBe(200);
    expect((await fetch(`${served.url}/api/v1/queue`)).status).toBe(401);
    const queue = await fetch(`${served.url}/api/v1/queue`, { headers: { authorization: 'Bearer env-key' } });
    expect(queue.status).toBe(200);
    expect(((await queue.json()) as { data: { maxConcurrent: number } }).data.maxConcurrent).toBe(3);
    served.child.kill('SIGTERM');
    expect(await served.exit).toBe(0);
    expect(served.stderr()).toContain('stopped');
  });

  it('takes --api-key over AGENTGATE_API_KEY and shuts down on SIGINT', async () => {
    const served = await serve(['--port', '0', '--api-key', 'flag-key'], { AGENTGATE_HOME: tempHome(), AGENTGATE_API_KEY: 'env-key' });
    expect((await fetch(`${served.url}/api/v1/queue`, { headers: { authorization: 'Bearer env-key' } })).status).toBe(401);
    expect((await fetch(`${served.url}/api/v1/queue`, { headers: { authorization: 'Bearer flag-key' } })).status).toBe(200);
    served.child.kill('SIGINT');
    expect(await served.exit).toBe(0);
  });

  it('exits 2 naming a bad flag or variable, before starting anything', async () => {
    const home = tempHome();
    const flag = await runCli(['serve', '--max-concurrent', 'two'], { env: { AGENTGATE_HOME: home } });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--max-concurrent: expected a positive integer');
    const variable = await runCli(['serve', '--port', '0'], { env: { AGENTGATE_HOME: home, AGENTGATE_MAX_CONCURRENT: '0' } });
    expect(variable.code).toBe(2);
    expect(variable.stderr).toContain('AGENTGATE_MAX_CONCURRENT');
  });

  it('survives kill -9 mid-run: after a restart the run is closed with the reconciliation event, queued work orders run, the store is intact', async () => {
    const repo = makeRepo();
    cleanups.push(repo.cleanup);
    // The first agent holds its run until the server is gone; the others succeed at once.
    const holder = writeAgent(repo.root, 'holder', 'touch started\nwhile true; do sleep 0.1; done');
    const quick = writeAgent(repo.root, 'quick', AGENTS.correct);
    const submit = async (url: string, agent: string): Promise<string> => {
      const reply = await fetch(`${url}/api/v1/work-orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ taskPrompt: 'Implement add and multiply', workspaceSource: { type: 'local', path: repo.repo }, agentType: 'command', agentCommand: `sh ${agent}`, maxIterations: 1 }),
      });
      expect(reply.status).toBe(201);
      return ((await reply.json()) as { data: { id: string } }).data.id;
    };
    const detail = async (url: string, id: string): Promise<{ status: string; runs: Array<{ id: string; state: string; error: { code: string } | null }> }> =>
      ((await (await fetch(`${url}/api/v1/work-orders/${id}`)).json()) as { data: { status: string; runs: Array<{ id: string; state: string; error: { code: string } | null }> } }).data;

    const first = await serve(['--port', '0', '--max-concurrent', '1'], { AGENTGATE_HOME: repo.home });
    const held = await submit(first.url, holder);
    const queued = [await submit(first.url, quick), await submit(first.url, quick)];
    let runId: string | undefined;
    while (runId === undefined || !existsSync(join(repo.home, 'worktrees', runId, 'started'))) {
      runId = (await detail(first.url, held)).runs[0]?.id;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    first.child.kill('SIGKILL');
    await first.exit;

    const second = await serve(['--port', '0', '--max-concurrent', '1'], { AGENTGATE_HOME: repo.home });
    const settled = async (id: string): Promise<Awaited<ReturnType<typeof detail>>> => {
      for (;;) {
        const current = await detail(second.url, id);
        if (['succeeded', 'failed', 'canceled'].includes(current.status)) return current;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const interrupted = await settled(held);
    expect(interrupted.status).toBe('failed');
    expect(interrupted.runs[0]).toMatchObject({ id: runId, state: 'failed', error: { code: 'AG_ERR_RUN_INTERRUPTED' } });
    for (const id of queued) expect((await settled(id)).status).toBe('succeeded');
    const view = await readRun(repo.home, runId);
    expect(view.events.at(-1)).toMatchObject({ type: 'run_failed', data: { error: { code: 'AG_ERR_RUN_INTERRUPTED' } } });
    second.child.kill('SIGTERM');
    expect(await second.exit).toBe(0);
    const db = new Database(join(repo.home, 'agentgate.db'), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.close();
    }
  }, 120_000);
});
