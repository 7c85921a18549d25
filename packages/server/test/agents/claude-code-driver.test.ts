import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CLAUDE_CODE_BIN_ENV,
  CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS,
  CLAUDE_CODE_FEEDBACK_LEAD,
  CLAUDE_CODE_SYSTEM_NOTE,
  ClaudeCodeDriver,
  ClaudeStreamAccumulator,
  MAX_TOOL_OUTPUT_CHARS,
  buildClaudeCodeInvocation,
  classifyClaudeRun,
  createClaudeCodeDriver,
  parseClaudeStreamLine,
  validateClaudeCodeOptions,
  type AgentStreamEvent,
  type ClaudeCodeDriverConfig,
  type ClaudeResult,
  type ClaudeRunOutcome,
} from '../../src/agents/claude-code/index.js';
import { FEEDBACK_HEADING } from '../../src/agents/agent-input.js';
import type { AgentOptions, AgentRequest, AgentResult } from '../../src/agents/types.js';
import { AgentGateError } from '../../src/errors.js';
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
const STREAM_FIXTURES = fileURLToPath(new URL('../fixtures/claude-stream/', import.meta.url));
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

describe('validateClaudeCodeOptions', () => {
  it.each<[string, AgentOptions]>([
    ['no options', {}],
    ['a model, max turns and tools', { model: 'claude-sonnet-4-5', maxTurns: 30, allowedTools: ['Bash', 'Edit', 'Bash(npm test:*)'] }],
    ['a base URL', { baseUrl: 'https://gateway.example.com/anthropic' }],
  ])('accepts %s', (_name, options) => {
    expect(() => validateClaudeCodeOptions(options)).not.toThrow();
  });

  it.each<[string, AgentOptions, string]>([
    ['maxTurns 0', { maxTurns: 0 }, 'maxTurns'],
    ['a fractional maxTurns', { maxTurns: 2.5 }, 'maxTurns'],
    ['an empty tool list', { allowedTools: [] }, 'allowedTools'],
    ['a blank tool name', { allowedTools: ['Bash', ' '] }, 'allowedTools'],
    ['a blank model', { model: '' }, 'model'],
    ['a base URL that is not http(s)', { baseUrl: 'ftp://example.com' }, 'baseUrl'],
  ])('rejects %s with AG_ERR_CONFIG_INVALID naming the option', (_name, options, option) => {
    let thrown: unknown;
    try {
      validateClaudeCodeOptions(options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(AgentGateError);
    expect(thrown).toMatchObject({ code: 'AG_ERR_CONFIG_INVALID', details: { option } });
  });
});

describe('buildClaudeCodeInvocation', () => {
  const base = { prompt: 'Add a greeting.', feedback: '', options: {} };

  it('runs print mode with stream-json, acceptEdits, the default tools and the prompt after --', () => {
    const { args, prompt } = buildClaudeCodeInvocation({ ...base, gateSummary: 'Gates: npm test.' }, undefined);

    expect(prompt).toBe('Add a greeting.');
    expect(args).toEqual([
      '-p',
      '--output-format',
      'stream-json',
      '--verbose',
      '--permission-mode',
      'acceptEdits',
      '--allowedTools',
      CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS.join(','),
      '--append-system-prompt',
      `Gates: npm test.\n\n${CLAUDE_CODE_SYSTEM_NOTE}`,
      '--',
      'Add a greeting.',
    ]);
  });

  it('passes model, max turns, the task tool list and the session to resume', () => {
    const { args } = buildClaudeCodeInvocation({ ...base, feedback: 'fix it', options: { model: 'm1', maxTurns: 5, allowedTools: ['Read', 'Edit'] } }, 'sess-1');

    expect(args.slice(6, 14)).toEqual(['--allowedTools', 'Read,Edit', '--model', 'm1', '--max-turns', '5', '--resume', 'sess-1']);
  });

  it('sends only the feedback under a short lead when it resumes a session', () => {
    expect(buildClaudeCodeInvocation({ ...base, feedback: 'Gate unit failed.\n' }, 'sess-1').prompt).toBe(`${CLAUDE_CODE_FEEDBACK_LEAD}\n\nGate unit failed.\n`);
  });

  it('sends the task and the feedback together when there is no session to resume', () => {
    expect(buildClaudeCodeInvocation({ ...base, feedback: 'Gate unit failed.' }, undefined).prompt).toBe(`Add a greeting.\n\n${FEEDBACK_HEADING}\n\nGate unit failed.\n`);
  });

  it('keeps a prompt that starts with a dash a prompt', () => {
    const { args } = buildClaudeCodeInvocation({ ...base, prompt: '--help me' }, undefined);

    expect(args.slice(-2)).toEqual(['--', '--help me']);
  });
});

describe('parseClaudeStreamLine and ClaudeStreamAccumulator on captured claude 2.1.330 output', () => {
  const load = async (name: string): Promise<string[]> => (await readFile(path.join(STREAM_FIXTURES, name), 'utf8')).split('\n').filter((l) => l.trim() !== '');
  const feed = (lines: readonly string[], iteration = 1): { acc: ClaudeStreamAccumulator; events: AgentStreamEvent[] } => {
    const acc = new ClaudeStreamAccumulator(iteration);
    return { acc, events: lines.flatMap((line) => acc.push(line)) };
  };

  it('turns a Write and Bash session into text, tool call and tool result events and a summary', async () => {
    const { acc, events } = feed(await load('write-bash.jsonl'), 3);

    expect(events.map((e) => e.type)).toEqual(['agent_output', 'agent_tool_call', 'agent_tool_result', 'agent_tool_call', 'agent_tool_result', 'agent_output']);
    expect(events.every((e) => e.data.iteration === 3)).toBe(true);
    expect(events[1]).toEqual({ type: 'agent_tool_call', data: { iteration: 3, tool: 'Write', id: 'toolu_01write1795516952120', input: { file_path: 'hello.txt', content: 'hello from scripted model\n' } } });
    expect(events[4]).toEqual({ type: 'agent_tool_result', data: { iteration: 3, id: 'toolu_02bash1795516952215', isError: false, output: 'hello from scripted model\nREADME.md\nhello.txt' } });
    expect(acc.sessionId).toBe('ceab8a60-b50c-4a6a-b8b0-2cc07100500d');
    expect(acc.model).toBe('claude-opus-5-5');
    expect(acc.toolCalls).toBe(2);
    expect(acc.usage()).toEqual({ inputTokens: 300, outputTokens: 60, cacheReadTokens: 0, cacheCreationTokens: 0, costUsd: 0.0024000000000000002 });
    expect(acc.result).toMatchObject({ isError: false, subtype: 'success', terminalReason: 'completed', numTurns: 3, permissionDenials: 0 });
    expect(acc.output()).toBe('Done. Last tool result: [tool_result "hello from scripted model\\nREADME.md\\nhello.txt"]');
  });

  it("takes a resumed invocation's own cost, not the session's cumulative total", async () => {
    const { acc } = feed(await load('resume.jsonl'));

    expect(acc.result).toMatchObject({ totalCostUsd: 0.0032, invocationCostUsd: 0.0008, numTurns: 1 });
    expect(acc.usage()).toMatchObject({ inputTokens: 100, outputTokens: 20, costUsd: 0.0008 });
  });

  it('reads an error_max_turns result, which has no result text, and falls back to the last assistant text', async () => {
    const { acc } = feed(await load('max-turns.jsonl'));

    expect(acc.result).toMatchObject({ isError: true, subtype: 'error_max_turns', terminalReason: 'max_turns', errors: ['Reached maximum number of turns (1)'] });
    expect(acc.result?.text).toBeUndefined();
    expect(acc.output()).toBe('I will create the file.');
  });

  it('reports API retries and the synthetic API error message as stderr output, and keeps the real model name', async () => {
    const { acc, events } = feed(await load('http500.jsonl'));

    expect(events).toEqual([
      { type: 'agent_output', data: { iteration: 1, stream: 'stderr', text: 'claude: model API request failed (HTTP 500 server_error); retry 1 of 10 in 519 ms' } },
      { type: 'agent_output', data: { iteration: 1, stream: 'stderr', text: expect.stringContaining('API Error: 500 scripted internal error') } },
    ]);
    expect(acc.result).toMatchObject({ isError: true, subtype: 'success', terminalReason: 'api_error', apiErrorStatus: 500, invocationCostUsd: 0 });
    expect(acc.model).toBe('claude-opus-5-5');
  });

  it('reports a permission denial as stderr output and the denied call as an error result', async () => {
    const { acc, events } = feed(await load('permission-denied.jsonl'));

    expect(events.filter((e) => e.type === 'agent_output' && e.data.stream === 'stderr').map((e) => e.data)).toEqual([
      expect.objectContaining({ text: expect.stringMatching(/^claude: permission denied for Bash: Output redirection/) }),
    ]);
    expect(events.find((e) => e.type === 'agent_tool_result')?.data).toMatchObject({ isError: true, id: 'toolu_01bash1795515645342' });
    expect(acc.result).toMatchObject({ isError: false, permissionDenials: 1 });
  });

  it('passes a non-JSON line through as stdout, ignores unknown message types and blank lines', () => {
    const { events } = feed(['Warning: something odd', '{"type":"stream_event","event":{}}', '{"type":"system","subtype":"hook_started"}', '   ']);

    expect(events).toEqual([{ type: 'agent_output', data: { iteration: 1, stream: 'stdout', text: 'Warning: something odd' } }]);
    expect(parseClaudeStreamLine('{"type":"system","subtype":"hook_started"}')).toEqual({ kind: 'other', type: 'system', subtype: 'hook_started' });
    expect(parseClaudeStreamLine('')).toBeUndefined();
  });

  it('bounds tool output in events and joins the text parts of a structured tool result', () => {
    const long = 'x'.repeat(MAX_TOOL_OUTPUT_CHARS + 100);
    const line = JSON.stringify({ type: 'user', message: { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: long }, { type: 'image' }] }] } });

    const [event] = feed([line]).events;

    expect(event?.type === 'agent_tool_result' && event.data.output.startsWith('x'.repeat(MAX_TOOL_OUTPUT_CHARS))).toBe(true);
    expect(event?.type === 'agent_tool_result' && event.data.output).toMatch(/… \[\d+ more characters in the transcript\]$/);
  });
});

describe('classifyClaudeRun', () => {
  const exited = (exitCode: number | null, signal: NodeJS.Signals | null = null): ClaudeRunOutcome['process'] => ({ outcome: 'exited', exitCode, signal, durationMs: 10 });
  const result = (fields: Partial<ClaudeResult>): ClaudeResult => ({ isError: false, errors: [], permissionDenials: 0, ...fields });
  const classify = (process: ClaudeRunOutcome['process'], res?: ClaudeResult, lastStderrLine = ''): ReturnType<typeof classifyClaudeRun> =>
    classifyClaudeRun({ process, result: res, lastStderrLine, idleTimeoutMs: 1000, iteration: 1 });
  const failureOf = (classified: ReturnType<typeof classifyClaudeRun>): { failure: string; code: string; retryable: boolean; message: string } => {
    if (typeof classified === 'string') return { failure: classified, code: '', retryable: false, message: '' };
    return { failure: classified.failure, code: classified.error.code, retryable: classified.error.retryable, message: classified.error.message };
  };

  it('accepts a successful result with exit code 0', () => {
    expect(classify(exited(0), result({ subtype: 'success' }))).toBe('ok');
  });

  it.each([
    ['error_max_turns', result({ isError: true, subtype: 'error_max_turns', terminalReason: 'max_turns', errors: ['Reached maximum number of turns (1)'] }), 'agent_task_failure', 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE', 'Reached maximum number of turns (1)'],
    ['error_during_execution', result({ isError: true, subtype: 'error_during_execution' }), 'agent_task_failure', 'AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE', 'error_during_execution'],
    ['an API 529', result({ isError: true, subtype: 'success', terminalReason: 'api_error', apiErrorStatus: 529, text: 'API Error: Repeated 529 Overloaded errors' }), 'agent_crash', 'AG_ERR_PHASE_BUILD_AGENT_CRASH', 'HTTP 529'],
    ['an API timeout without status', result({ isError: true, subtype: 'success', terminalReason: 'api_error', text: 'Request timed out.' }), 'agent_crash', 'AG_ERR_PHASE_BUILD_AGENT_CRASH', 'The model API request failed: Request timed out.'],
  ])('classifies an is_error result for %s', (_name, res, failure, code, message) => {
    const classified = failureOf(classify(exited(1), res));

    expect(classified).toMatchObject({ failure, code });
    expect(classified.message).toContain(message);
  });

  it('does not mark a 400 from the model API as retryable', () => {
    expect(failureOf(classify(exited(1), result({ isError: true, terminalReason: 'api_error', apiErrorStatus: 400 })))).toMatchObject({ failure: 'agent_crash', retryable: false });
  });

  it.each([
    ['a non-zero exit without a result', exited(1), 'error: unknown option', 'AG_ERR_PHASE_BUILD_AGENT_CRASH', 'exited with code 1 and no result message: error: unknown option'],
    ['exit 0 without a result', exited(0), '', 'AG_ERR_AGENT_PROTOCOL', 'without a result message'],
    ['a signal', exited(null, 'SIGSEGV'), '', 'AG_ERR_PHASE_BUILD_AGENT_CRASH', 'signal SIGSEGV'],
  ])('classifies %s as agent_crash', (_name, process, stderr, code, message) => {
    const classified = failureOf(classify(process, undefined, stderr));

    expect(classified).toMatchObject({ failure: 'agent_crash', code });
    expect(classified.message).toContain(message);
  });

  it('classifies a non-zero exit after a successful result as agent_crash', () => {
    expect(failureOf(classify(exited(2), result({})))).toMatchObject({ failure: 'agent_crash', code: 'AG_ERR_PHASE_BUILD_AGENT_CRASH' });
  });

  it('classifies the idle watchdog and the deadline as agent_timeout even after a result, and cancel as aborted', () => {
    expect(failureOf(classify({ outcome: 'idle_timeout', exitCode: null, signal: 'SIGTERM', durationMs: 5 }))).toMatchObject({ failure: 'agent_timeout', code: 'AG_ERR_PHASE_BUILD_AGENT_TIMEOUT' });
    expect(failureOf(classify({ outcome: 'timeout', exitCode: null, signal: 'SIGTERM', durationMs: 5 }, result({})))).toMatchObject({ failure: 'agent_timeout' });
    expect(classify({ outcome: 'aborted', exitCode: null, signal: 'SIGTERM', durationMs: 5 })).toBe('aborted');
  });

  it('classifies a spawn ENOENT as AG_ERR_AGENT_NOT_INSTALLED', () => {
    const error = Object.assign(new Error('spawn claude ENOENT'), { code: 'ENOENT' });

    expect(failureOf(classify({ outcome: 'spawn_error', exitCode: null, signal: null, durationMs: 0, error }))).toMatchObject({ failure: 'agent_crash', code: 'AG_ERR_AGENT_NOT_INSTALLED' });
  });
});
