/**
 * Issue 12: a local `agentgate exec` loads only what it uses (docs/performance.md). The forge clients
 * load only when a forge token is configured, the PostgreSQL backend only with AGENTGATE_DATABASE_URL,
 * prom-client only for a runtime with metrics (the server's and the worker's, never the CLI's), and the
 * claude-code / codex drivers only when they run. The CLI runs as a child process with a
 * module-resolution hook that records every module it loads; timing is measured in
 * scripts/bench/iteration.ts, not here.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { lazyDriver } from '../../src/agents/registry.js';
import type { AgentDriver, AgentRequest, AgentRunContext } from '../../src/agents/types.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { systemClock } from '../../src/util/clock.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { AGENTS, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

function setup(): TempRepo {
  const r = makeRepo();
  repos.push(r);
  return r;
}

/** Packages a local exec never uses. */
const UNUSED_PACKAGES = ['@octokit/rest', '@gitbeaker/rest', 'pg', 'prom-client', 'fastify'].map((name) => `/node_modules/${name}/`);
/** Sources a local exec with the command agent never uses. */
const UNUSED_SOURCES = ['/src/delivery/github.ts', '/src/delivery/gitlab.ts', '/src/store/postgres/', '/src/observability/metrics.ts', '/src/agents/claude-code/protocol.ts', '/src/agents/codex/protocol.ts', '/src/server/'];

const NO_FORGE_NO_DATABASE = { AGENTGATE_GITHUB_TOKEN: '', AGENTGATE_GITLAB_TOKEN: '', AGENTGATE_DATABASE_URL: undefined };

/** Runs `exec` with the command agent on `r`, recording the URL of every module the CLI loads. */
async function execRecorded(r: TempRepo, env: Record<string, string | undefined>): Promise<CliResult & { loaded: string[] }> {
  const record = path.join(r.root, 'loaded.txt');
  const hooks = path.join(r.root, 'hooks.mjs');
  const register = path.join(r.root, 'record.mjs');
  writeFileSync(record, '');
  writeFileSync(hooks, ["import { appendFileSync } from 'node:fs';", 'export async function resolve(specifier, context, next) {', '  const resolved = await next(specifier, context);', `  appendFileSync(${JSON.stringify(record)}, resolved.url + '\\n');`, '  return resolved;', '}', ''].join('\n'));
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  const agent = writeAgent(r.root, 'agent', AGENTS.correct);
  const result = await runCli(['exec', '--path', r.repo, '--prompt', 'Implement add and multiply in src/math.js', '--agent', 'command', '--agent-command', `sh ${agent}`, '--sandbox', 'none', '--json'], {
    env: { NODE_OPTIONS: `--import=${pathToFileURL(register).href}`, AGENTGATE_HOME: r.home, ...env },
  });
  return { ...result, loaded: readFileSync(record, 'utf8').split('\n').filter((line) => line.length > 0) };
}

const matching = (loaded: readonly string[], parts: readonly string[]): string[] => loaded.filter((url) => parts.some((part) => url.includes(part)));

describe('agentgate exec start-up', () => {
  describe('on a local repository without forge tokens or a database URL', () => {
    it('runs the task without loading the forge clients, pg, prom-client, fastify or the other agent drivers', async () => {
      const r = setup();
      const result = await execRecorded(r, NO_FORGE_NO_DATABASE);
      expect(result.code, result.stderr).toBe(0);
      expect(result.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
      expect(result.stderr).toMatch(/^gate plan: /m);
      // The recorder saw the run path: the SQLite store and the command driver.
      for (const used of ['/node_modules/better-sqlite3/', '/src/store/sqlite/index.ts', '/src/agents/command.ts']) expect(matching(result.loaded, [used])).not.toEqual([]);
      expect(matching(result.loaded, [...UNUSED_PACKAGES, ...UNUSED_SOURCES])).toEqual([]);
    }, 60_000);
  });

  describe('with GitHub and GitLab tokens configured', () => {
    it('still runs a local task, with the forge delivery loaded but never called', async () => {
      const r = setup();
      const result = await execRecorded(r, {
        ...NO_FORGE_NO_DATABASE,
        AGENTGATE_GITHUB_TOKEN: 'ghp_lazyLoadingTestToken0123456789abcdefgh',
        // Nothing listens there: a local run must not reach the forges.
        AGENTGATE_GITHUB_API_URL: 'http://127.0.0.1:9',
        AGENTGATE_GITLAB_TOKEN: 'glpat-lazyLoadingTestToken0123',
        AGENTGATE_GITLAB_URL: 'http://127.0.0.1:9',
      });
      expect(result.code, result.stderr).toBe(0);
      expect(result.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
      expect(new Set(matching(result.loaded, ['/src/delivery/github.ts', '/src/delivery/gitlab.ts'])).size).toBe(2);
      expect(matching(result.loaded, ['/node_modules/pg/', '/node_modules/prom-client/', '/src/store/postgres/'])).toEqual([]);
    }, 60_000);
  });
});

describe('createRuntime', () => {
  describe('forge delivery', () => {
    it('registers github and gitlab delivery exactly when their tokens are configured', async () => {
      const r = setup();
      const without = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: r.home }), logger: silentLogger(), metrics: false });
      try {
        expect(without.delivery.kinds()).toEqual(['local']);
      } finally {
        await without.close();
      }
      const withTokens = await createRuntime({
        config: loadConfig({ AGENTGATE_HOME: r.home, AGENTGATE_GITHUB_TOKEN: 'ghp_lazyLoadingTestToken0123456789abcdefgh', AGENTGATE_GITLAB_TOKEN: 'glpat-lazyLoadingTestToken0123' }),
        logger: silentLogger(),
        metrics: false,
      });
      try {
        expect(withTokens.delivery.kinds()).toEqual(['github', 'gitlab', 'local']);
      } finally {
        await withTokens.close();
      }
    });
  });

  describe('metrics', () => {
    it('are built by default and fed by the hub', async () => {
      const r = setup();
      const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: r.home }), logger: silentLogger() });
      try {
        expect(await runtime.metrics.render()).toContain('agentgate_runs_started_total 0');
      } finally {
        await runtime.close();
      }
    });

    it('do not exist with metrics: false (the CLI)', async () => {
      const r = setup();
      const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: r.home }), logger: silentLogger(), metrics: false });
      try {
        expect('metrics' in runtime).toBe(false);
      } finally {
        await runtime.close();
      }
    });
  });
});

describe('lazyDriver', () => {
  const request: AgentRequest = {
    runId: 'r',
    workOrderId: 'w',
    iteration: 1,
    prompt: 'p',
    feedback: '',
    workspacePath: '/nonexistent',
    artifactsDir: '/nonexistent/.artifacts',
    idleTimeoutMs: 60_000,
    env: {},
    options: {},
  };
  const ctx: AgentRunContext = { signal: new AbortController().signal, emit: () => undefined, clock: systemClock };
  const working: AgentDriver = { name: 'later', run: () => Promise.resolve({ ok: true, exitCode: 0, durationMs: 1, toolCalls: 0, output: 'done' }) };

  it('loads the driver on its first run only, then reuses it', async () => {
    let loads = 0;
    const driver = lazyDriver('later', () => {
      loads += 1;
      return Promise.resolve(working);
    });
    expect(driver.name).toBe('later');
    expect(loads).toBe(0);
    expect(await driver.run(request, ctx)).toMatchObject({ ok: true, output: 'done' });
    expect(await driver.run(request, ctx)).toMatchObject({ ok: true });
    expect(loads).toBe(1);
  });

  it('fails the run with AG_ERR_INTERNAL naming the driver when its module cannot be loaded, and retries on the next run', async () => {
    let loads = 0;
    const driver = lazyDriver('later', () => {
      loads += 1;
      return loads === 1 ? Promise.reject(new Error('Cannot find module protocol.js')) : Promise.resolve(working);
    });
    const failed = await driver.run(request, ctx);
    expect(failed).toMatchObject({ ok: false, failure: 'agent_crash', aborted: false });
    expect(failed.ok ? undefined : failed.error).toMatchObject({ code: 'AG_ERR_INTERNAL', message: expect.stringContaining('later agent driver could not be loaded: Cannot find module protocol.js') });
    expect(await driver.run(request, ctx)).toMatchObject({ ok: true });
    expect(loads).toBe(2);
  });
});
