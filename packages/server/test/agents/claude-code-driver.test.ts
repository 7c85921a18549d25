import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CLAUDE_CODE_BIN_ENV,
  CLAUDE_CODE_FEEDBACK_LEAD,
  CLAUDE_CODE_SYSTEM_NOTE,
  ClaudeCodeDriver,
  createClaudeCodeDriver,
  type ClaudeCodeDriverConfig,
} from '../../src/agents/claude-code/index.js';
import { FEEDBACK_HEADING } from '../../src/agents/agent-input.js';
import type { AgentRequest, AgentResult } from '../../src/agents/types.js';
import { systemClock } from '../../src/util/clock.js';
import { agentEnv } from '../../src/util/secrets.js';
import { git } from '../helpers/git-repo.js';
import {
  bashToolUse,
  startScriptedAnthropicServer,
  writeToolUse,
  type MessagesRequestBody,
  type ScriptedAnthropicServer,
} from '../fixtures/anthropic-scripted-server.js';
import { CONFORMANCE_MARKER_ENV, describeAgentDriverConformance, liveProcessesWithMarker, recordingEmit, type RecordedEvent } from './conformance.js';

// Every real claude run takes about a second of CPU on a shared 2-core machine.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 30_000 });

/** The pinned CLI (devDependency @anthropic-ai/claude-code@2.1.330). */
const CLAUDE_BIN = fileURLToPath(new URL('../../node_modules/.bin/claude', import.meta.url));
const TEST_API_KEY = `agentgate-test-anthropic-key-${randomUUID()}`;
/** A tool command that runs until it is killed (claude refuses a bare `sleep`). */
const LONG_COMMAND = 'echo started > tool-started.txt && node -e "setTimeout(() => {}, 120000)"';

/**
 * Environment that points the real claude at `server` only, keeps all its state under `root` (never
 * /root) and turns its API retries off so failures are quick.
 */
function claudeEnv(root: string, server: ScriptedAnthropicServer): Record<string, string> {
  const home = path.join(root, 'claude-home');
  const tmp = path.join(root, 'claude-tmp');
  mkdirSync(path.join(home, '.claude'), { recursive: true });
  mkdirSync(tmp, { recursive: true });
  return {
    HOME: home,
    CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    // claude keeps per-project scratch dirs and sockets under the temp dir: keep them in the test's root.
    TMPDIR: tmp,
    ANTHROPIC_BASE_URL: server.url,
    ANTHROPIC_API_KEY: TEST_API_KEY,
    CLAUDE_CODE_MAX_RETRIES: '0',
  };
}

describe('AgentDriver conformance with the real claude CLI', () => {
  describeAgentDriverConformance('claude-code', async () => {
    const server = await startScriptedAnthropicServer();
    const envFor = (workspacePath: string): Record<string, string> => claudeEnv(path.dirname(workspacePath), server);
    return {
      driver: new ClaudeCodeDriver({ binary: CLAUDE_BIN }),
      succeedsAndEditsFile: ({ workspacePath }) => {
        server.enqueue({ text: 'I will create the file.', toolUses: [writeToolUse('result.txt', 'hello from claude\n')] }, { text: 'Done: result.txt is written.' });
        return {
          request: { env: envFor(workspacePath) },
          editedFile: { path: 'result.txt', content: 'hello from claude\n' },
          outputInOrder: ['I will create the file.', 'Done: result.txt is written.'],
        };
      },
      failsTheTask: ({ workspacePath }) => {
        // One turn allowed, but the scripted model needs a second one after its tool call.
        server.enqueue({ text: 'Writing a first part.', toolUses: [writeToolUse('part.txt', 'part\n')] });
        return { request: { env: envFor(workspacePath), options: { maxTurns: 1 } }, expectedFailure: 'agent_task_failure' };
      },
      hangsSilently: ({ workspacePath }) => {
        server.enqueue({ hangAfterHeaders: true });
        return { request: { env: envFor(workspacePath), idleTimeoutMs: 1500 } };
      },
      runsLong: ({ workspacePath }) => {
        server.enqueue({ text: 'Working on it.', toolUses: [bashToolUse(LONG_COMMAND)] });
        return { request: { env: envFor(workspacePath) } };
      },
      dispose: () => server.close(),
    };
  });
});

describe('ClaudeCodeDriver with the real claude CLI', () => {
  let root: string;
  let workspacePath: string;
  let artifactsDir: string;
  let marker: string;
  let server: ScriptedAnthropicServer;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'agentgate-claude-'));
    workspacePath = path.join(root, 'workspace');
    artifactsDir = path.join(root, 'artifacts');
    await mkdir(workspacePath);
    await writeFile(path.join(workspacePath, 'README.md'), 'base\n');
    git(workspacePath, 'init', '-q', '-b', 'main');
    git(workspacePath, 'add', '-A');
    git(workspacePath, 'commit', '-q', '-m', 'initial');
    marker = randomUUID();
    server = await startScriptedAnthropicServer();
  });

  afterEach(async () => {
    vi.unstubAllEnvs();
    await server.close();
    await rm(root, { recursive: true, force: true });
  });

  const request = (overrides: Partial<AgentRequest> = {}): AgentRequest => ({
    runId: 'run-1',
    workOrderId: 'wo-1',
    iteration: 1,
    prompt: 'Create hello.txt with a greeting.',
    feedback: '',
    workspacePath,
    artifactsDir,
    idleTimeoutMs: 60_000,
    env: { ...agentEnv(process.env), ...claudeEnv(root, server), [CONFORMANCE_MARKER_ENV]: marker },
    options: {},
    ...overrides,
  });

  const run = async (req: AgentRequest, config: ClaudeCodeDriverConfig = {}): Promise<{ result: AgentResult; events: RecordedEvent[] }> => {
    const { emit, events } = recordingEmit();
    const result = await new ClaudeCodeDriver({ binary: CLAUDE_BIN, ...config }).run(req, { signal: new AbortController().signal, emit, clock: systemClock });
    return { result, events };
  };

  const lastUserText = (body: MessagesRequestBody | undefined): string => {
    const last = body?.messages?.filter((m) => m.role === 'user').at(-1);
    if (last === undefined) return '';
    return typeof last.content === 'string' ? last.content : last.content.map((part) => (typeof part['text'] === 'string' ? part['text'] : '')).join('\n');
  };

  describe('when the scripted model writes a file and runs a command', () => {
    it('edits the workspace, streams the tool calls and results in order and summarises the session', async () => {
      server.enqueue(
        { text: 'I will create the file.', toolUses: [writeToolUse('hello.txt', 'hello from claude\n')], usage: { inputTokens: 100, outputTokens: 20, cacheReadTokens: 1000, cacheCreationTokens: 500 } },
        { toolUses: [bashToolUse('cat hello.txt && git status --short')] },
        { text: 'Done. hello.txt is in place.' },
      );

      const { result, events } = await run(request({ options: { model: 'claude-scripted-test' }, gateSummary: 'Gates: the unit tests must pass.' }));

      expect(result).toMatchObject({ ok: true, exitCode: 0, model: 'claude-scripted-test', turns: 3, toolCalls: 2, output: 'Done. hello.txt is in place.' });
      expect(await readFile(path.join(workspacePath, 'hello.txt'), 'utf8')).toBe('hello from claude\n');
      expect(result.sessionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(result.usage).toMatchObject({ inputTokens: 300, outputTokens: 60, cacheReadTokens: 1000, cacheCreationTokens: 500 });
      expect(result.usage?.costUsd).toBeGreaterThan(0);

      const toolEvents = events.filter((e): e is Extract<RecordedEvent, { type: 'agent_tool_call' | 'agent_tool_result' }> => e.type === 'agent_tool_call' || e.type === 'agent_tool_result');
      expect(toolEvents.map((e) => (e.type === 'agent_tool_call' ? `call ${e.data.tool}` : `result ${e.data.isError ? 'error' : 'ok'}`))).toEqual(['call Write', 'result ok', 'call Bash', 'result ok']);
      expect(toolEvents[0]?.data).toMatchObject({ iteration: 1, input: { file_path: 'hello.txt', content: 'hello from claude\n' } });
      expect(toolEvents[1]?.data.id).toBe(toolEvents[0]?.data.id);
      expect(toolEvents[3]?.data.id).toBe(toolEvents[2]?.data.id);
      expect(toolEvents[3]?.type === 'agent_tool_result' && toolEvents[3].data.output).toContain('?? hello.txt');
      const texts = events.flatMap((e) => (e.type === 'agent_output' && e.data.stream === 'text' ? [e.data.text] : []));
      expect(texts).toEqual(['I will create the file.', 'Done. hello.txt is in place.']);
    });

    it('sends the model, the gate summary and the prompt to the API and makes no other request', async () => {
      server.enqueue({ text: 'Nothing to change.' });

      const { result } = await run(request({ options: { model: 'claude-scripted-test' }, gateSummary: 'Gates: the unit tests must pass.' }));

      expect(result.ok).toBe(true);
      expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['POST /v1/messages']);
      const body = server.modelRequests()[0]?.body;
      expect(body?.model).toBe('claude-scripted-test');
      expect(JSON.stringify(body?.system)).toContain('Gates: the unit tests must pass.');
      expect(JSON.stringify(body?.system)).toContain(CLAUDE_CODE_SYSTEM_NOTE);
      expect(lastUserText(body)).toContain('Create hello.txt with a greeting.');
      expect(body?.tools?.map((t) => t.name)).toEqual(expect.arrayContaining(['Bash', 'Edit', 'Write', 'Read']));
    });

    it('prefers options.baseUrl over ANTHROPIC_BASE_URL from the environment', async () => {
      server.enqueue({ text: 'Reached through baseUrl.' });
      const req = request({ options: { baseUrl: server.url } });
      req.env['ANTHROPIC_BASE_URL'] = 'http://127.0.0.1:9';

      const { result } = await run(req);

      expect(result).toMatchObject({ ok: true, output: 'Reached through baseUrl.' });
    });
  });

  describe('on the next iteration', () => {
    it('resumes the session with only the feedback, keeps the session id and reports each invocation its own cost', async () => {
      server.enqueue({ text: 'Creating it.', toolUses: [writeToolUse('hello.txt', 'hello\n')] }, { text: 'First pass done.' });
      const first = await run(request());
      expect(first.result.ok).toBe(true);
      const firstCall = first.events.find((e) => e.type === 'agent_tool_call');
      const firstToolId = firstCall?.type === 'agent_tool_call' ? firstCall.data.id : undefined;
      server.enqueue({ text: 'Fixed as asked.' });

      const second = await run(request({ iteration: 2, sessionId: first.result.sessionId, feedback: 'Gate "unit" failed: expected "hello, world".' }));

      expect(second.result).toMatchObject({ ok: true, sessionId: first.result.sessionId, turns: 1, output: 'Fixed as asked.' });
      const resumed = server.modelRequests().at(-1)?.body;
      const history = JSON.stringify(resumed?.messages);
      expect(firstToolId).toMatch(/^toolu_/);
      expect(history).toContain(firstToolId);
      expect(history).toContain('Create hello.txt with a greeting.');
      expect(lastUserText(resumed)).toContain(CLAUDE_CODE_FEEDBACK_LEAD);
      expect(lastUserText(resumed)).toContain('Gate "unit" failed: expected "hello, world".');
      expect(lastUserText(resumed)).not.toContain('Create hello.txt with a greeting.');

      // total_cost_usd is cumulative over the session; the iterations' own costs must add up to it.
      const transcript = await readFile(path.join(artifactsDir, 'agent-transcript.log'), 'utf8');
      const results = transcript.split('\n').filter((l) => l.startsWith('{"')).map((l) => JSON.parse(l) as { type: string; total_cost_usd?: number }).filter((l) => l.type === 'result');
      const sessionTotal = results.at(-1)?.total_cost_usd ?? Number.NaN;
      const firstCost = first.result.usage?.costUsd ?? Number.NaN;
      const secondCost = second.result.usage?.costUsd ?? Number.NaN;
      expect(secondCost).toBeGreaterThan(0);
      expect(secondCost).toBeLessThan(sessionTotal);
      expect(firstCost + secondCost).toBeCloseTo(sessionTotal, 10);
      expect(transcript).toMatch(/=== iteration 2 started .* \(claude-code, resuming session [0-9a-f-]{36}\) ===/);
    });

    it('starts a new session with the task and the feedback when the previous session cannot be found', async () => {
      server.enqueue({ text: 'Started over.' });
      const lostSession = randomUUID();

      const { result, events } = await run(request({ iteration: 2, sessionId: lostSession, feedback: 'Gate "lint" failed.' }));

      expect(result).toMatchObject({ ok: true, output: 'Started over.' });
      expect(result.sessionId).not.toBe(lostSession);
      const sent = lastUserText(server.modelRequests()[0]?.body);
      expect(sent).toContain('Create hello.txt with a greeting.');
      expect(sent).toContain(FEEDBACK_HEADING);
      expect(sent).toContain('Gate "lint" failed.');
      expect(events.some((e) => e.type === 'agent_output' && e.data.stream === 'stderr' && e.data.text.includes(`session ${lostSession} could not be resumed`))).toBe(true);
    });
  });

  describe('when claude reports is_error because it ran out of turns', () => {
    it('fails the build as agent_task_failure naming error_max_turns, keeping the session for the next iteration', async () => {
      server.enqueue({ text: 'Writing a first part.', toolUses: [writeToolUse('part.txt', 'part\n')] });

      const { result } = await run(request({ options: { maxTurns: 1 } }));

      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result).toMatchObject({ failure: 'agent_task_failure', aborted: false, toolCalls: 1 });
      expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE');
      expect(result.error.message).toContain('error_max_turns');
      expect(result.error.details).toMatchObject({ subtype: 'error_max_turns', terminalReason: 'max_turns' });
      expect(result.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  describe('when the model API answers HTTP 500', () => {
    it('fails quickly as agent_crash naming the status, after a single request', async () => {
      server.enqueue({ http: 500, message: 'scripted internal error' });
      const started = performance.now();

      const { result } = await run(request());

      expect(performance.now() - started).toBeLessThan(15_000);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result).toMatchObject({ failure: 'agent_crash', aborted: false });
      expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_CRASH');
      expect(result.error.message).toContain('HTTP 500');
      expect(result.error.retryable).toBe(true);
      expect(server.modelRequests()).toHaveLength(1);
    });
  });

  describe('when claude goes silent while its Bash tool runs and has no time to clean up', () => {
    it('is stopped as agent_timeout and leaves neither claude nor the tool process behind', async () => {
      server.enqueue({ text: 'Running the long command.', toolUses: [bashToolUse(LONG_COMMAND)] });

      // killGraceMs 0: SIGKILL follows SIGTERM at once, so claude cannot stop the tool's own process group.
      const { result } = await run(request({ idleTimeoutMs: 1500 }), { killGraceMs: 0 });

      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.failure).toBe('agent_timeout');
      expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_TIMEOUT');
      expect(await readFile(path.join(workspacePath, 'tool-started.txt'), 'utf8')).toBe('started\n');
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });
  });

  describe('secrets', () => {
    it('never writes the API key or the server token into the transcript, the events or the result', async () => {
      const serverToken = `fake-github-token-${randomUUID()}`;
      vi.stubEnv('AGENTGATE_GITHUB_TOKEN', serverToken);
      server.enqueue(
        { text: `Echoing ${TEST_API_KEY} and ${serverToken}.`, toolUses: [bashToolUse('echo "key=$ANTHROPIC_API_KEY token=${AGENTGATE_GITHUB_TOKEN:-absent}"')] },
        { text: `Done with ${TEST_API_KEY}.` },
      );
      const req = request();
      req.env['AGENTGATE_GITHUB_TOKEN'] = serverToken;

      const { result, events } = await run(req);

      expect(result.ok).toBe(true);
      const transcript = await readFile(path.join(artifactsDir, 'agent-transcript.log'), 'utf8');
      for (const text of [transcript, JSON.stringify(events), JSON.stringify(result)]) {
        expect(text).not.toContain(TEST_API_KEY);
        expect(text).not.toContain(serverToken);
      }
      expect(transcript).toContain('[REDACTED]');
      const toolOutput = events.flatMap((e) => (e.type === 'agent_tool_result' ? [e.data.output] : [])).join('\n');
      // The key reached the agent (it needs it) but is redacted; the server's token never reached it.
      expect(toolOutput).toContain('key=[REDACTED] token=absent');
    });
  });

  describe('when the claude binary is missing', () => {
    it('fails as agent_crash with AG_ERR_AGENT_NOT_INSTALLED and an install hint, for a path and for a name not on PATH', async () => {
      for (const config of [{ binary: path.join(root, 'missing', 'claude') }, { binary: 'claude-not-installed-anywhere' }, { env: { [CLAUDE_CODE_BIN_ENV]: path.join(root, 'nope') } }]) {
        const { emit } = recordingEmit();
        const result = await createClaudeCodeDriver(config).run(request(), { signal: new AbortController().signal, emit, clock: systemClock });

        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result).toMatchObject({ failure: 'agent_crash', aborted: false });
        expect(result.error.code).toBe('AG_ERR_AGENT_NOT_INSTALLED');
        expect(result.error.message).toContain('npm install -g @anthropic-ai/claude-code');
        expect(result.error.message).toContain(CLAUDE_CODE_BIN_ENV);
      }
      expect(server.requests).toEqual([]);
    });
  });
});
