import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CODEX_RESUME_PROMPT,
  CODEX_THREAD_USAGE_FILE,
  CodexDriver,
} from '../../src/agents/codex/index.js';
import { FEEDBACK_HEADING } from '../../src/agents/agent-input.js';
import { TRANSCRIPT_FILE } from '../../src/agents/process-driver/transcript.js';
import type { AgentRequest, AgentResult } from '../../src/agents/types.js';
import type { EmitFn } from '../../src/observability/events.js';
import { systemClock } from '../../src/util/clock.js';
import { agentEnv } from '../../src/util/secrets.js';
import { inputItemText, startScriptedOpenAIServer, type ScriptedOpenAIServer } from '../fixtures/openai-scripted-server.js';
import { CONFORMANCE_MARKER_ENV, describeAgentDriverConformance, liveProcessesWithMarker, recordingEmit, type RecordedEvent } from './conformance.js';

const execFileAsync = promisify(execFile);

/** The pinned real CLI (devDependency @openai/codex). */
const CODEX_BIN = fileURLToPath(new URL('../../node_modules/.bin/codex', import.meta.url));

/** A model key that matches no well-known token shape, so only value-based redaction can hide it. */
const SENTINEL_OPENAI_KEY = 'test-openai-key-sentinel-7f3a9c';
const FAKE_FORGE_TOKEN = 'fake-forge-token-5c2e8d1b';

/** A model name codex knows, so the real tool set (including apply_patch) is offered. */
const MODEL = 'gpt-5.5';

const addFilePatch = (file: string, ...lines: string[]): string => `*** Begin Patch\n*** Add File: ${file}\n${lines.map((l) => `+${l}\n`).join('')}*** End Patch\n`;

/**
 * The environment codex needs offline: its config and sessions in a temp dir (never /root), the sentinel
 * key, the scripted server as base URL, and no retries so failures are fast.
 */
async function codexEnv(server: ScriptedOpenAIServer, home: string): Promise<Record<string, string>> {
  await mkdir(path.join(home, '.codex'), { recursive: true });
  return {
    HOME: home,
    CODEX_HOME: path.join(home, '.codex'),
    OPENAI_API_KEY: SENTINEL_OPENAI_KEY,
    OPENAI_BASE_URL: server.baseUrl,
    AGENTGATE_CODEX_MAX_RETRIES: '0',
  };
}

describeAgentDriverConformance('codex', async () => {
  const server = await startScriptedOpenAIServer();
  const home = await mkdtemp(path.join(os.tmpdir(), 'agentgate-codex-home-'));
  const env = await codexEnv(server, home);
  const options = { model: MODEL };
  return {
    driver: new CodexDriver({ binary: CODEX_BIN }),
    succeedsAndEditsFile: () => {
      server.enqueue({ text: 'Creating result.txt.', applyPatch: addFilePatch('result.txt', 'hello') }, { text: 'All done.' });
      return { request: { options, env }, editedFile: { path: 'result.txt', content: 'hello\n' }, outputInOrder: ['Creating result.txt.', 'All done.'] };
    },
    failsTheTask: () => {
      // The model's context window runs out: the agent cannot finish, and retrying as is will not help.
      server.enqueue({ failed: { code: 'context_length_exceeded', message: 'Your input exceeds the context window of this model.' } });
      return { request: { options, env }, expectedFailure: 'agent_task_failure' };
    },
    hangsSilently: () => {
      server.enqueue({ hangAfterHeaders: true });
      return { request: { options, env, idleTimeoutMs: 1500 } };
    },
    runsLong: () => {
      server.enqueue({ text: 'Working on it.', shellCommands: ['sleep 1000'] }, { hangAfterHeaders: true });
      return { request: { options, env } };
    },
    dispose: async () => {
      await server.close();
      await rm(home, { recursive: true, force: true });
    },
  };
});

describe('CodexDriver with the real codex CLI', () => {
  let root: string;
  let workspacePath: string;
  let artifactsDir: string;
  let server: ScriptedOpenAIServer;
  let env: Record<string, string>;
  let marker: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'agentgate-codex-'));
    workspacePath = path.join(root, 'workspace');
    artifactsDir = path.join(root, 'artifacts');
    await mkdir(workspacePath);
    await execFileAsync('git', ['init', '-q', workspacePath]);
    server = await startScriptedOpenAIServer();
    env = await codexEnv(server, path.join(root, 'home'));
    marker = randomUUID();
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
    prompt: 'Create the files the task needs.',
    feedback: '',
    workspacePath,
    artifactsDir,
    idleTimeoutMs: 60_000,
    env: { ...agentEnv(process.env), ...env, [CONFORMANCE_MARKER_ENV]: marker },
    options: { model: MODEL },
    ...overrides,
  });

  const run = (req: AgentRequest, emit: EmitFn = recordingEmit().emit, driver = new CodexDriver({ binary: CODEX_BIN })): Promise<AgentResult> =>
    driver.run(req, { signal: new AbortController().signal, emit, clock: systemClock });

  describe('when the model runs a shell command and applies a patch', () => {
    it('succeeds with both files in the workspace and reports thread, usage, turns and tool calls', async () => {
      server.enqueue(
        { shellCommands: ['echo from-shell > shell.txt && cat shell.txt'] },
        { applyPatch: addFilePatch('patched.txt', 'from apply_patch') },
        { text: 'Both files are in place.' },
      );

      const result = await run(request());

      expect(result).toMatchObject({ ok: true, exitCode: 0, model: MODEL, turns: 1, toolCalls: 2, output: 'Both files are in place.' });
      expect(result.sessionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      // Three responses of 100 input (10 cached) and 20 output tokens each.
      expect(result.usage).toEqual({ inputTokens: 270, cacheReadTokens: 30, cacheCreationTokens: 0, outputTokens: 60, costUsd: 0 });
      expect(await readFile(path.join(workspacePath, 'shell.txt'), 'utf8')).toBe('from-shell\n');
      expect(await readFile(path.join(workspacePath, 'patched.txt'), 'utf8')).toBe('from apply_patch\n');
    });

    it('streams the tool calls, their results and the final text in order', async () => {
      server.enqueue({ shellCommands: ['echo from-shell > shell.txt && cat shell.txt'] }, { applyPatch: addFilePatch('patched.txt', 'x') }, { text: 'Done here.' });
      const { emit, events } = recordingEmit();

      await run(request({ iteration: 3, feedback: 'Make the gate pass.' }), emit);

      const relevant = events.filter((e) => e.type !== 'agent_output' || e.data.stream === 'text');
      expect(relevant.map(describeEvent)).toEqual(['call exec_command', 'result ok', 'call apply_patch', 'result ok', 'text Done here.']);
      const [shellCall, shellResult, patchCall, patchResult] = relevant;
      expect(shellCall?.data).toMatchObject({ iteration: 3, input: { command: expect.stringContaining('echo from-shell > shell.txt') as unknown } });
      expect(shellResult?.data).toMatchObject({ iteration: 3, id: (shellCall?.data as { id: string }).id, output: 'from-shell\n' });
      expect(patchCall?.data).toMatchObject({ input: { changes: [{ path: path.join(workspacePath, 'patched.txt'), kind: 'add' }] } });
      expect(patchResult?.data).toMatchObject({ isError: false, output: `add ${path.join(workspacePath, 'patched.txt')}` });
    });

    it('sends the task with the feedback and the gate summary, through the configured provider and key', async () => {
      await run(request({ iteration: 2, feedback: 'Gate "test" failed.', gateSummary: 'Only passing gates count.' }));

      const [sent] = server.responseRequests();
      expect(sent?.headers.authorization).toBe(`Bearer ${SENTINEL_OPENAI_KEY}`);
      expect(sent?.body?.model).toBe(MODEL);
      const tools = (sent?.body?.tools ?? []).map((t) => t.name);
      expect(tools).toEqual(expect.arrayContaining(['exec_command', 'apply_patch']));
      const texts = (sent?.body?.input ?? []).map(inputItemText);
      expect(texts.at(-1)).toBe(`Create the files the task needs.\n\n${FEEDBACK_HEADING}\n\nGate "test" failed.`);
      expect(texts.some((t) => t.includes('Only passing gates count.'))).toBe(true);
    });
  });

  describe('when a later iteration resumes the thread', () => {
    it('re-sends the earlier conversation with the feedback, keeps the session id and reports only its own usage', async () => {
      server.enqueue({ text: 'First attempt finished.' }, { text: 'Fixed the failing gate.' });
      const first = await run(request());
      expect(first.ok).toBe(true);

      const second = await run(request({ iteration: 2, sessionId: first.sessionId, feedback: 'Gate "unit" failed: expected 2, got 3' }));

      expect(second).toMatchObject({ ok: true, sessionId: first.sessionId, turns: 1, output: 'Fixed the failing gate.' });
      // codex reports 200/20/40 cumulatively for the thread; the iteration used one response.
      expect(second.usage).toEqual({ inputTokens: 90, cacheReadTokens: 10, cacheCreationTokens: 0, outputTokens: 20, costUsd: 0 });
      const resumed = server.responseRequests()[1]?.body?.input ?? [];
      const texts = resumed.map(inputItemText);
      expect(texts).toContain('Create the files the task needs.');
      expect(resumed.some((item) => item.role === 'assistant' && inputItemText(item) === 'First attempt finished.')).toBe(true);
      expect(texts.at(-1)).toBe(`${CODEX_RESUME_PROMPT}\n\n${FEEDBACK_HEADING}\n\nGate "unit" failed: expected 2, got 3`);
      const recorded = JSON.parse(await readFile(path.join(artifactsDir, CODEX_THREAD_USAGE_FILE), 'utf8')) as Record<string, { inputTokens: number }>;
      expect(recorded[first.sessionId ?? '']?.inputTokens).toBe(200);
    });

    it('starts a new thread with the task and the feedback when the thread no longer exists', async () => {
      const missing = '01a20d2c-0000-7000-8000-000000000000';

      const result = await run(request({ iteration: 2, sessionId: missing, feedback: 'Fix the lint errors.' }));

      expect(result.ok).toBe(true);
      expect(result.sessionId).not.toBe(missing);
      const texts = (server.responseRequests()[0]?.body?.input ?? []).map(inputItemText);
      expect(texts.at(-1)).toBe(`Create the files the task needs.\n\n${FEEDBACK_HEADING}\n\nFix the lint errors.`);
      expect(await readFile(path.join(artifactsDir, TRANSCRIPT_FILE), 'utf8')).toContain(`codex has no thread ${missing}`);
    });
  });

  describe('when the model API fails', () => {
    it('reports an HTTP 500 as agent_crash naming the status, after one request', async () => {
      const failing = await startScriptedOpenAIServer({ fallback: { http: 500 } });
      const started = performance.now();

      const result = await run(request({ env: { ...request().env, OPENAI_BASE_URL: failing.baseUrl } }));
      await failing.close();

      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.failure).toBe('agent_crash');
      expect(result.aborted).toBe(false);
      expect(result.error.code).toBe('AG_ERR_PHASE_BUILD_AGENT_CRASH');
      expect(result.error.message).toContain('HTTP 500');
      expect(result.error.details).toMatchObject({ httpStatus: 500 });
      expect(failing.responseRequests()).toHaveLength(1);
      expect(performance.now() - started).toBeLessThan(10_000);
    });
  });

  describe('when the model stream stalls after the response headers', () => {
    it('is stopped by the idle watchdog as agent_timeout with no codex process left', async () => {
      server.enqueue({ hangAfterHeaders: true });

      const result = await run(request({ idleTimeoutMs: 1500 }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_timeout', aborted: false });
      if (result.ok) return;
      expect(result.error.message).toContain('no output for 1500 ms');
      expect(result.sessionId).toBeDefined();
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });
  });

  describe('secrets', () => {
    it('keeps the model key and AgentGate tokens out of the transcript, the events and the agent environment', async () => {
      vi.stubEnv('AGENTGATE_GITHUB_TOKEN', FAKE_FORGE_TOKEN);
      server.enqueue(
        { text: `I was told the key is ${SENTINEL_OPENAI_KEY} and the token ${FAKE_FORGE_TOKEN}.`, shellCommands: [`env > env.txt; echo "${SENTINEL_OPENAI_KEY}"`] },
        { text: `Done with ${SENTINEL_OPENAI_KEY}.` },
      );
      const { emit, events } = recordingEmit();
      // A caller that forgot to strip AgentGate's token: the driver must still not pass it on.
      const req = request({ env: { ...request().env, AGENTGATE_GITHUB_TOKEN: FAKE_FORGE_TOKEN } });

      const result = await run(req, emit);

      expect(result.ok).toBe(true);
      const transcript = await readFile(path.join(artifactsDir, TRANSCRIPT_FILE), 'utf8');
      const published = JSON.stringify(events) + JSON.stringify(result);
      for (const text of [transcript, published]) {
        expect(text).not.toContain(SENTINEL_OPENAI_KEY);
        expect(text).not.toContain(FAKE_FORGE_TOKEN);
        expect(text).toContain('[REDACTED]');
      }
      const agentSaw = await readFile(path.join(workspacePath, 'env.txt'), 'utf8');
      expect(agentSaw).not.toContain(FAKE_FORGE_TOKEN);
      expect(agentSaw).toContain(`${CONFORMANCE_MARKER_ENV}=${marker}`);
    });
  });

  describe('when a command leaves a process running outside the process group', () => {
    it('kills it before returning', async () => {
      // codex runs each command in a session of its own; setsid + nohup also escapes the PTY hang-up.
      server.enqueue({ shellCommands: ['setsid nohup sleep 1000 > /dev/null 2>&1 < /dev/null &'] }, { text: 'Left a daemon behind.' });

      const result = await run(request());

      expect(result.ok).toBe(true);
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
    });
  });

  describe('when codex is not installed', () => {
    it('fails with AG_ERR_AGENT_NOT_INSTALLED telling how to install it', async () => {
      const result = await run(request(), recordingEmit().emit, new CodexDriver({ binary: path.join(root, 'no-such-codex') }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_crash', aborted: false });
      if (result.ok) return;
      expect(result.error.code).toBe('AG_ERR_AGENT_NOT_INSTALLED');
      expect(result.error.message).toContain('npm install -g @openai/codex');
      expect(result.error.message).toContain('AGENTGATE_CODEX_BIN');
    });

    it('looks the binary up on the agent PATH when AGENTGATE_CODEX_BIN names none', async () => {
      const result = await run(request({ env: { ...request().env, PATH: root, AGENTGATE_CODEX_BIN: '' } }), recordingEmit().emit, new CodexDriver());

      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.error.code).toBe('AG_ERR_AGENT_NOT_INSTALLED');
      expect(result.error.details).toMatchObject({ binary: 'codex' });
    });
  });

  describe('when the options are invalid', () => {
    it('fails before starting codex with AG_ERR_CONFIG_INVALID', async () => {
      const result = await run(request({ options: { model: MODEL, maxTurns: 3 } }));

      expect(result).toMatchObject({ ok: false, failure: 'agent_crash' });
      if (result.ok) return;
      expect(result.error.code).toBe('AG_ERR_CONFIG_INVALID');
      expect(server.requests).toHaveLength(0);
    });
  });
});

function describeEvent(event: RecordedEvent): string {
  switch (event.type) {
    case 'agent_tool_call':
      return `call ${event.data.tool}`;
    case 'agent_tool_result':
      return `result ${event.data.isError ? 'error' : 'ok'}`;
    case 'agent_output':
      return `${event.data.stream} ${event.data.text}`;
    default:
      return event.type;
  }
}
