/**
 * The real `claude` and `codex` CLIs driven through `agentgate exec` against loopback scripted model
 * servers: fail-then-pass with a resumed session, failure classification, and secret hygiene.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONFORMANCE_MARKER_ENV, liveProcessesWithMarker } from '../agents/conformance.js';
import { bashToolUse, startScriptedAnthropicServer, readToolUse, writeToolUse, type ScriptedAnthropicServer, type ScriptStep } from '../fixtures/anthropic-scripted-server.js';
import { inputItemText, startScriptedOpenAIServer, type ScriptedOpenAIServer } from '../fixtures/openai-scripted-server.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { git, makeRepo, type TempRepo } from '../helpers/git-repo.js';
import { passingPath, readRun } from '../helpers/store-checks.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import { openSqliteRepositories } from '../../src/store/sqlite/index.js';
import type { IterationRecord } from '../../src/store/records.js';

const BIN = new URL('../../node_modules/.bin/', import.meta.url).pathname;
const API_KEY = 'sk-ant-sentinel-api-key-0123456789abcdef';
const OPENAI_KEY = 'sk-sentinel-openai-key-0123456789abcdefgh';
const FORGE_TOKEN = 'ghp_sentinelforgetoken0123456789abcdefABCD';

const WRONG = 'export function add(a, b) { return a + b; }\nexport function multiply(a, b) { return a + b; }\n';
const RIGHT = 'export function add(a, b) { return a + b; }\nexport function multiply(a, b) { return a * b; }\n';

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

interface Setup {
  repo: TempRepo;
  env: Record<string, string>;
}

function setup(extraEnv: Record<string, string>): Setup {
  const repo = makeRepo();
  cleanups.push(repo.cleanup);
  const home = join(repo.root, 'user-home');
  const tmp = join(repo.root, 'tmp');
  mkdirSync(join(home, '.codex'), { recursive: true });
  mkdirSync(tmp);
  return {
    repo,
    env: {
      AGENTGATE_HOME: repo.home,
      HOME: home,
      TMPDIR: tmp,
      CLAUDE_CONFIG_DIR: join(home, '.claude'),
      CODEX_HOME: join(home, '.codex'),
      AGENTGATE_GITHUB_TOKEN: FORGE_TOKEN,
      ...extraEnv,
    },
  };
}

async function claudeServer(script: ScriptStep[]): Promise<ScriptedAnthropicServer> {
  const server = await startScriptedAnthropicServer({ script });
  cleanups.push(() => server.close());
  return server;
}

function claudeEnv(server: ScriptedAnthropicServer): Record<string, string> {
  return {
    AGENTGATE_CLAUDE_BIN: join(BIN, 'claude'),
    ANTHROPIC_BASE_URL: server.url,
    ANTHROPIC_API_KEY: API_KEY,
    CLAUDE_CODE_MAX_RETRIES: '0',
  };
}

function exec(s: Setup, agent: 'claude-code' | 'codex', extra: string[] = []): Promise<CliResult> {
  return runCli(['exec', '--path', s.repo.repo, '--prompt', 'Implement add and multiply in src/math.js', '--agent', agent, '--json', ...extra], { env: s.env });
}

/** The agent summary of an iteration record, with the usage the real CLIs always report. */
function agentOf(record: IterationRecord): { sessionId: string; usage: { inputTokens: number; outputTokens: number; costUsd: number }; turns: number } {
  const agent = record.agent;
  if (agent === undefined || agent.usage === undefined) throw new Error('iteration record without agent usage');
  return { sessionId: agent.sessionId ?? '', usage: agent.usage, turns: agent.turns ?? 0 };
}

/** Every file AgentGate wrote (store, logs, artifacts) must be free of the sentinel secrets. */
async function expectNoSecrets(home: string, runId: string, ...shown: string[]): Promise<void> {
  const repos = openSqliteRepositories({ home });
  const stored = JSON.stringify([await repos.runs.listEvents(runId, { limit: 100_000 }), await repos.iterations.list(runId), await repos.runs.get(runId)]);
  await repos.close();
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk(join(home, 'runs'));
  if (existsSync(join(home, 'logs'))) walk(join(home, 'logs'));
  expect(files.some((f) => f.endsWith('agent-transcript.log'))).toBe(true);
  for (const text of [stored, ...shown, ...files.map((f) => readFileSync(f, 'utf8'))]) {
    for (const secret of [API_KEY, OPENAI_KEY, FORGE_TOKEN]) expect(text).not.toContain(secret);
  }
}

/** The model writes a wrong multiply in iteration 1 and fixes it in iteration 2 (the resumed session). */
function failThenPassScript(): ScriptStep[] {
  return [
    { text: 'Implementing.', toolUses: [writeToolUse('src/math.js', WRONG)] },
    { text: 'Attempt 1 done.' },
    { text: 'Looking at the failure.', toolUses: [readToolUse('src/math.js')] },
    { toolUses: [writeToolUse('src/math.js', RIGHT)] },
    { text: 'Fixed multiply.' },
  ];
}

function messageText(content: unknown): string {
  return typeof content === 'string' ? content : JSON.stringify(content);
}

describe('agentgate exec --agent claude-code (real claude CLI)', () => {
  it('fails, resumes the same session with the feedback, passes; usage of both iterations is recorded', async () => {
    const server = await claudeServer(failThenPassScript());
    const s = setup({});
    Object.assign(s.env, claudeEnv(server));
    const res = await exec(s, 'claude-code');
    expect(res.code, res.stderr).toBe(0);
    expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 2 });
    const runId = String(res.json?.['runId']);

    // Iteration 2 resumed the session: the server saw iteration 1's conversation and the feedback.
    const turns = server.modelRequests();
    expect(turns).toHaveLength(5);
    const resumed = JSON.stringify(turns[2]?.body?.messages ?? []);
    expect(resumed).toContain('Implement add and multiply');
    expect(resumed).toContain('Attempt 1 done.');
    expect(resumed).toContain('multiply multiplies two numbers');
    expect(messageText(turns[0]?.body?.messages?.at(-1)?.content)).not.toContain('multiply multiplies two numbers');

    const view = await readRun(s.repo.home, runId);
    const repos = openSqliteRepositories({ home: s.repo.home });
    const iterations = (await repos.iterations.list(runId)).map((i) => agentOf(i.record));
    const meta = (await repos.runs.get(runId))?.meta;
    await repos.close();
    expect(iterations).toHaveLength(2);
    expect(iterations[0]?.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(iterations[1]?.sessionId).toBe(iterations[0]?.sessionId);
    for (const agent of iterations) {
      expect(agent.usage.inputTokens).toBeGreaterThan(0);
      expect(agent.usage.outputTokens).toBeGreaterThan(0);
      expect(agent.usage.costUsd).toBeGreaterThan(0);
      expect(agent.turns).toBeGreaterThan(0);
    }
    expect(meta?.usage?.costUsd).toBeCloseTo((iterations[0]?.usage.costUsd ?? 0) + (iterations[1]?.usage.costUsd ?? 0), 10);
    expect(res.json?.['usage']).toMatchObject({ inputTokens: meta?.usage?.inputTokens, outputTokens: meta?.usage?.outputTokens });
    expect(view.events.some((e) => e.type === 'agent_tool_call' && e.data['tool'] === 'Write')).toBe(true);
    expect(view.events.some((e) => e.type === 'agent_tool_result')).toBe(true);
    // The real CLI wrote iteration 1's (wrong) implementation itself.
    expect(git(s.repo.repo, 'show', `${String(res.json?.['branch'])}~1:src/math.js`)).toBe(WRONG.trimEnd());
    expect(view.transitions).toEqual(passingPath(2));
    await expectNoSecrets(s.repo.home, runId, res.stdout, res.stderr);
  });

  it('an is_error result (max turns) fails the build as agent_task_failure', async () => {
    const server = await claudeServer([{ text: 'Step one.', toolUses: [readToolUse('README.md')] }, { text: 'Step two.', toolUses: [readToolUse('package.json')] }]);
    const marker = `claude-is-error-${Date.now()}`;
    const s = setup({ [CONFORMANCE_MARKER_ENV]: marker });
    Object.assign(s.env, claudeEnv(server));
    const spec = join(s.repo.root, 'task.yaml');
    writeFileSync(
      spec,
      `apiVersion: agentgate.io/v1\nkind: TaskSpec\nmetadata: { name: max-turns }\nspec:\n  goal: { prompt: "Implement math" }\n  execution:\n    workspace: { source: local, path: ./repo }\n    agent: { driver: claude-code, maxTurns: 1 }\n`,
    );
    const res = await runCli(['task', 'run', spec, '--json'], { env: s.env });
    expect(res.code).toBe(1);
    expect(res.json).toMatchObject({ state: 'failed', result: 'failed_build', error: { code: 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE' } });
    expect(await liveProcessesWithMarker(marker)).toEqual([]);
  });

  it("passes the model credentials to the agent but never AgentGate's own token", async () => {
    const server = await claudeServer([{ toolUses: [bashToolUse('env')] }, { text: 'Printed the environment.' }]);
    const s = setup({});
    Object.assign(s.env, claudeEnv(server));
    const res = await exec(s, 'claude-code', ['--max-iterations', '1']);
    // The tool result (the agent's real environment) went back to the model in the second request.
    const seen = JSON.stringify(server.modelRequests()[1]?.body?.messages ?? []);
    expect(seen).toContain(`ANTHROPIC_BASE_URL=${server.url}`);
    expect(seen).toContain(`ANTHROPIC_API_KEY=${API_KEY}`);
    expect(seen).not.toContain('AGENTGATE_GITHUB_TOKEN');
    expect(seen).not.toContain(FORGE_TOKEN);
    // …and AgentGate stored and showed it redacted.
    await expectNoSecrets(s.repo.home, String(res.json?.['runId']), res.stdout, res.stderr);
  });

  it('a model endpoint answering HTTP 500 fails the build as agent_crash naming the status', async () => {
    const server = await claudeServer([{ http: 500 }]);
    const marker = `claude-500-${Date.now()}`;
    const s = setup({ [CONFORMANCE_MARKER_ENV]: marker });
    Object.assign(s.env, claudeEnv(server));
    const res = await exec(s, 'claude-code');
    expect(res.code).toBe(1);
    expect(res.json).toMatchObject({ state: 'failed', result: 'failed_build', error: { code: 'AG_ERR_PHASE_BUILD_AGENT_CRASH' } });
    expect(String((res.json?.['error'] as { message: string }).message)).toContain('500');
    expect(await liveProcessesWithMarker(marker)).toEqual([]);
    expect((await readRun(s.repo.home, String(res.json?.['runId']))).transitions.at(-1)).toBe('building→failed');
  });

  it('a CLI that hangs past the idle watchdog is killed: agent_timeout, no process left', async () => {
    const server = await claudeServer([{ hangAfterHeaders: true }]);
    const marker = `claude-hang-${Date.now()}`;
    const s = setup({ [CONFORMANCE_MARKER_ENV]: marker });
    Object.assign(s.env, claudeEnv(server));
    const res = await exec(s, 'claude-code', ['--idle-timeout', '2s']);
    expect(res.code).toBe(1);
    expect(res.json).toMatchObject({ state: 'failed', result: 'failed_build', error: { code: 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT' } });
    expect(await liveProcessesWithMarker(marker)).toEqual([]);
    expect((await readRun(s.repo.home, String(res.json?.['runId']))).transitions.at(-1)).toBe('building→failed');
  });

  it('feeds tokens, cost and turns of every iteration into the /metrics counters (engine in-process)', async () => {
    const server = await claudeServer(failThenPassScript());
    const s = setup({});
    Object.assign(s.env, claudeEnv(server));
    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: s.repo.home }), logger: silentLogger(), baseEnv: { ...process.env, ...s.env } });
    cleanups.push(() => runtime.close());
    const spec = resolveTaskSpec({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'metrics' },
      spec: {
        goal: { prompt: 'Implement math' },
        execution: { workspace: { source: 'local', path: s.repo.repo }, agent: { driver: 'claude-code' } },
      },
    });
    const previousBin = process.env['AGENTGATE_CLAUDE_BIN'];
    process.env['AGENTGATE_CLAUDE_BIN'] = s.env['AGENTGATE_CLAUDE_BIN'];
    cleanups.push(() => {
      if (previousBin === undefined) delete process.env['AGENTGATE_CLAUDE_BIN'];
      else process.env['AGENTGATE_CLAUDE_BIN'] = previousBin;
    });
    const outcome = await runtime.engine.run(spec);
    expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
    const agents = (await runtime.repos.iterations.list(outcome.runId)).map((i) => agentOf(i.record));
    expect(agents).toHaveLength(2);
    const sum = (pick: (a: (typeof agents)[number]) => number): number => agents.reduce((total, a) => total + pick(a), 0);
    expect(agents.every((a) => a.usage.costUsd > 0 && a.turns > 0)).toBe(true);
    const text = await runtime.metrics.render();
    const value = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? Number.NaN);
    expect(value(/^agentgate_agent_tokens_total\{direction="input"\} (\S+)$/m)).toBe(sum((a) => a.usage.inputTokens));
    expect(value(/^agentgate_agent_tokens_total\{direction="output"\} (\S+)$/m)).toBe(sum((a) => a.usage.outputTokens));
    expect(value(/^agentgate_agent_cost_usd_total (\S+)$/m)).toBeCloseTo(sum((a) => a.usage.costUsd), 10);
    expect(value(/^agentgate_agent_turns_total (\S+)$/m)).toBe(sum((a) => a.turns));
    expect(value(/^agentgate_iterations_total (\S+)$/m)).toBe(2);
    expect(outcome.usage.costUsd).toBeCloseTo(sum((a) => a.usage.costUsd), 10);
  });
});

describe('agentgate exec --agent codex (real codex CLI)', () => {
  async function codexServer(): Promise<ScriptedOpenAIServer> {
    const server = await startScriptedOpenAIServer({
      script: [
        { shellCommands: [`cat > src/math.js <<'JS'\n${WRONG}JS`] },
        { text: 'Attempt 1 done.' },
        { shellCommands: ["sed -i 's/export function multiply(a, b) { return a + b; }/export function multiply(a, b) { return a * b; }/' src/math.js"] },
        { text: 'Fixed multiply.' },
      ],
    });
    cleanups.push(() => server.close());
    return server;
  }

  it('fails, resumes the same thread with the feedback, passes', async () => {
    const server = await codexServer();
    const s = setup({
      AGENTGATE_CODEX_BIN: join(BIN, 'codex'),
      OPENAI_BASE_URL: server.baseUrl,
      OPENAI_API_KEY: OPENAI_KEY,
      AGENTGATE_CODEX_MAX_RETRIES: '0',
    });
    const res = await exec(s, 'codex', ['--model', 'gpt-5.5']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 2 });
    const runId = String(res.json?.['runId']);
    const requests = server.responseRequests();
    expect(requests).toHaveLength(4);
    const resumed = (requests[2]?.body?.input ?? []).map(inputItemText).join('\n');
    expect(resumed).toContain('Implement add and multiply');
    expect(resumed).toContain('Attempt 1 done.');
    expect(resumed).toContain('multiply multiplies two numbers');
    const repos = openSqliteRepositories({ home: s.repo.home });
    const agents = (await repos.iterations.list(runId)).map((i) => agentOf(i.record));
    await repos.close();
    expect(agents).toHaveLength(2);
    expect(agents[0]?.sessionId).toMatch(/\S/);
    expect(agents[1]?.sessionId).toBe(agents[0]?.sessionId);
    expect(git(s.repo.repo, 'show', `${String(res.json?.['branch'])}~1:src/math.js`)).toBe(WRONG.trimEnd());
    expect((await readRun(s.repo.home, runId)).transitions).toEqual(passingPath(2));
    for (const agent of agents) {
      expect(agent.usage.inputTokens).toBeGreaterThan(0);
      expect(agent.usage.outputTokens).toBeGreaterThan(0);
      expect(agent.turns).toBe(1);
    }
    await expectNoSecrets(s.repo.home, runId, res.stdout, res.stderr);
  });
});
