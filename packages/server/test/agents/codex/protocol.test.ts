/** The pure parts of the codex protocol: the accumulator on captured codex-cli 0.169.0 events, failure classification, per-iteration usage, the command line and option checks. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  CODEX_CONTINUE_PROMPT,
  CODEX_RESUME_PROMPT,
  CodexEventAccumulator,
  MAX_TOOL_OUTPUT_CHARS,
  buildCodexArgs,
  classifyCodexFailure,
  composeCodexPrompt,
  perIterationUsage,
  validateCodexOptions,
  type CodexEmission,
} from '../../../src/agents/codex/index.js';
import { FEEDBACK_HEADING } from '../../../src/agents/agent-input.js';
import { AgentGateError } from '../../../src/errors.js';

const EVENTS_DIR = fileURLToPath(new URL('../../fixtures/codex-events/', import.meta.url));


describe('CodexEventAccumulator', () => {
  const feed = async (file: string, iteration = 1): Promise<{ emissions: CodexEmission[]; accumulator: CodexEventAccumulator }> => {
    const accumulator = new CodexEventAccumulator(iteration);
    const lines = (await readFile(path.join(EVENTS_DIR, file), 'utf8')).split('\n');
    return { emissions: lines.flatMap((line) => accumulator.push(line)), accumulator };
  };

  it('turns a command execution into a tool call and its result, then the message into text', async () => {
    const { emissions, accumulator } = await feed('exec-command.jsonl', 2);

    expect(emissions.map((e) => e.type)).toEqual(['agent_tool_call', 'agent_tool_result', 'agent_output']);
    expect(emissions[0]?.data).toEqual({ iteration: 2, tool: 'exec_command', id: 'item_0', input: { command: "/bin/bash -lc 'echo hello-from-codex > codex-out.txt && cat codex-out.txt'" } });
    expect(emissions[1]?.data).toEqual({ iteration: 2, id: 'item_0', isError: false, output: 'hello-from-codex\n' });
    expect(emissions[2]?.data).toMatchObject({ iteration: 2, stream: 'text', text: expect.stringMatching(/^Done\. Tool output was/) as unknown });
    expect(accumulator.summary()).toMatchObject({
      threadId: '01a20d26-7138-7082-af8b-19a362374e84',
      turnsCompleted: 1,
      toolCalls: 1,
      turnFailure: undefined,
      usage: { inputTokens: 240, cachedInputTokens: 40, cacheWriteInputTokens: 0, outputTokens: 60, reasoningOutputTokens: 0 },
    });
  });

  it('reports a file change as an apply_patch call with its changes', async () => {
    const { emissions } = await feed('apply-patch.jsonl');

    expect(emissions[0]).toMatchObject({ type: 'agent_tool_call', data: { tool: 'apply_patch', input: { changes: [{ kind: 'add', path: expect.stringMatching(/patched\.txt$/) as unknown }] } } });
    expect(emissions[1]).toMatchObject({ type: 'agent_tool_result', data: { isError: false, output: expect.stringMatching(/^add .*patched\.txt$/) as unknown } });
  });

  it('records retries and the turn failure, and passes warnings on as stderr', async () => {
    const { emissions, accumulator } = await feed('http500-retries.jsonl');

    expect(emissions.every((e) => e.type === 'agent_output' && e.data.stream === 'stderr')).toBe(true);
    expect(emissions[0]?.data).toMatchObject({ text: expect.stringContaining('Model metadata for `scripted-model` not found') as unknown });
    const summary = accumulator.summary();
    expect(summary.errors).toHaveLength(6);
    expect(summary.turnsCompleted).toBe(0);
    expect(summary.turnFailure).toMatch(/experiencing high demand/);
  });

  it('keeps the tool call a turn made before its stream failed', async () => {
    const { emissions, accumulator } = await feed('response-failed.jsonl');

    expect(emissions.filter((e) => e.type === 'agent_tool_call')).toHaveLength(1);
    expect(accumulator.summary().turnFailure).toBe('stream disconnected before completion: scripted response.failed');
  });

  it('reads the cumulative usage of a resumed thread', async () => {
    const { accumulator } = await feed('resume.jsonl');

    expect(accumulator.summary().usage).toMatchObject({ inputTokens: 360, cachedInputTokens: 60, outputTokens: 90 });
  });

  it('emits a call before the result when a tool item is only seen completed, and flags a failing command', () => {
    const accumulator = new CodexEventAccumulator(1);

    const emissions = accumulator.push(JSON.stringify({ type: 'item.completed', item: { id: 'item_5', type: 'command_execution', command: 'false', aggregated_output: 'x'.repeat(10_000), exit_code: 1, status: 'failed' } }));

    expect(emissions.map((e) => e.type)).toEqual(['agent_tool_call', 'agent_tool_result']);
    const result = emissions[1]?.data as { isError: boolean; output: string };
    expect(result.isError).toBe(true);
    expect(result.output.length).toBeLessThan(MAX_TOOL_OUTPUT_CHARS + 100);
    expect(result.output).toMatch(/^\[… 5904 earlier characters omitted\]/);
    expect(accumulator.summary().toolCalls).toBe(1);
  });

  it('passes non-JSON lines on as stdout and ignores reasoning and unknown events', () => {
    const accumulator = new CodexEventAccumulator(1);

    expect(accumulator.push('plain text')).toEqual([{ type: 'agent_output', data: { iteration: 1, stream: 'stdout', text: 'plain text' } }]);
    expect(accumulator.push(JSON.stringify({ type: 'item.completed', item: { id: 'r', type: 'reasoning', text: 'thinking' } }))).toEqual([]);
    expect(accumulator.push(JSON.stringify({ type: 'some.future.event', value: 1 }))).toEqual([]);
  });

  it('redacts every text it emits', () => {
    const accumulator = new CodexEventAccumulator(1, (text) => text.replaceAll('s3cret', '[REDACTED]'));

    const emissions = accumulator.push(JSON.stringify({ type: 'item.started', item: { id: 'i', type: 'command_execution', command: 'echo s3cret', aggregated_output: '', exit_code: null } }));

    expect(emissions[0]?.data).toMatchObject({ input: { command: 'echo [REDACTED]' } });
  });
});

describe('classifyCodexFailure', () => {
  it.each([
    ['We’re currently experiencing high demand, which may cause temporary errors.', 500],
    ['unexpected status 502 Bad Gateway: scripted HTTP 502, url: http://127.0.0.1:1/v1/responses', 502],
    ['unexpected status 401 Unauthorized: bad key', 401],
    ['exceeded retry limit, last status: 429 Too Many Requests', 429],
  ])('reads the HTTP status of an API error: %s', (message, status) => {
    expect(classifyCodexFailure(message)).toMatchObject({ kind: 'api', httpStatus: status });
  });

  it('treats a raw JSON error body, a broken stream and a refused connection as API failures', () => {
    expect(classifyCodexFailure('{"error":{"message":"bad request","type":"invalid_request_error"}}').kind).toBe('api');
    expect(classifyCodexFailure('stream disconnected before completion: idle timeout waiting for SSE').kind).toBe('api');
    expect(classifyCodexFailure('Connection failed: error sending request').kind).toBe('api');
  });

  it('treats missing credentials as configuration and a full context window as the task failing', () => {
    expect(classifyCodexFailure('Missing environment variable: `OPENAI_API_KEY`.').kind).toBe('config');
    expect(classifyCodexFailure("Codex ran out of room in the model's context window. Start a new thread or clear earlier history before retrying.").kind).toBe('task');
  });
});

describe('perIterationUsage', () => {
  const cumulative = { inputTokens: 400, cachedInputTokens: 40, cacheWriteInputTokens: 0, outputTokens: 80, reasoningOutputTokens: 20 };

  it('subtracts the thread usage seen after the previous invocation', () => {
    expect(perIterationUsage(cumulative, { inputTokens: 300, cachedInputTokens: 30, cacheWriteInputTokens: 0, outputTokens: 60, reasoningOutputTokens: 15 })).toEqual({
      inputTokens: 90,
      cacheReadTokens: 10,
      cacheCreationTokens: 0,
      outputTokens: 20,
      costUsd: 0,
    });
  });

  it('reports the whole thread without a baseline, with cached input split off and no cost', () => {
    expect(perIterationUsage(cumulative)).toEqual({ inputTokens: 360, cacheReadTokens: 40, cacheCreationTokens: 0, outputTokens: 80, costUsd: 0 });
  });
});

describe('buildCodexArgs', () => {
  const base = { prompt: 'Do it.', feedback: '', options: {}, env: {} };

  it('runs exec with JSON output, no plugins or analytics, no sandbox and the prompt after --', () => {
    expect(buildCodexArgs(base)).toEqual([
      'exec',
      '--json',
      '--skip-git-repo-check',
      '--disable',
      'plugins',
      '-c',
      'analytics.enabled=false',
      '--dangerously-bypass-approvals-and-sandbox',
      '--',
      'Do it.',
    ]);
  });

  it('configures the agentgate provider from OPENAI_BASE_URL or baseUrl, with the retry knob', () => {
    const args = buildCodexArgs({ ...base, options: { model: 'gpt-5.5' }, env: { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', AGENTGATE_CODEX_MAX_RETRIES: '1' } });

    expect(args.join(' ')).toContain(
      '-m gpt-5.5 -c model_provider="agentgate" -c model_providers.agentgate.name="agentgate" -c model_providers.agentgate.base_url="http://127.0.0.1:9/v1" -c model_providers.agentgate.env_key="OPENAI_API_KEY" -c model_providers.agentgate.wire_api="responses" -c model_providers.agentgate.request_max_retries=1 -c model_providers.agentgate.stream_max_retries=1 --disable unbounded_connection_retries',
    );
    expect(buildCodexArgs({ ...base, options: { baseUrl: 'https://proxy.example/v1' } })).toContain('model_providers.agentgate.base_url="https://proxy.example/v1"');
    expect(buildCodexArgs(base).join(' ')).not.toContain('model_provider');
  });

  it('puts resume and the thread id after the flags', () => {
    const args = buildCodexArgs({ ...base, feedback: '- a failing gate' }, 'thread-1');

    expect(args.slice(-4)).toEqual(['resume', 'thread-1', '--', `${CODEX_RESUME_PROMPT}\n\n${FEEDBACK_HEADING}\n\n- a failing gate`]);
  });

  it('rejects a malformed retry count', () => {
    expect(() => buildCodexArgs({ ...base, env: { AGENTGATE_CODEX_MAX_RETRIES: 'many' } })).toThrow(AgentGateError);
  });
});

describe('composeCodexPrompt', () => {
  it('sends the task first, the task and feedback without a thread, and only the feedback to a resumed thread', () => {
    expect(composeCodexPrompt({ prompt: 'Task.', feedback: '' }, false)).toBe('Task.');
    expect(composeCodexPrompt({ prompt: 'Task.', feedback: 'Fix.' }, false)).toBe(`Task.\n\n${FEEDBACK_HEADING}\n\nFix.`);
    expect(composeCodexPrompt({ prompt: 'Task.', feedback: 'Fix.' }, true)).toBe(`${CODEX_RESUME_PROMPT}\n\n${FEEDBACK_HEADING}\n\nFix.`);
    expect(composeCodexPrompt({ prompt: 'Task.', feedback: ' ' }, true)).toBe(CODEX_CONTINUE_PROMPT);
  });
});

describe('validateCodexOptions', () => {
  it('accepts a model and an http(s) base URL', () => {
    expect(() => validateCodexOptions({ model: 'gpt-5.5', baseUrl: 'https://api.openai.com/v1' })).not.toThrow();
  });

  it.each([
    [{ command: 'codex' }, 'command'],
    [{ maxTurns: 5 }, 'maxTurns'],
    [{ allowedTools: ['Bash'] }, 'allowedTools'],
    [{ model: '--help' }, 'model'],
    [{ baseUrl: 'ftp://example.com' }, 'baseUrl'],
  ])('rejects %j naming the option', (options, option) => {
    const thrown = (() => {
      try {
        validateCodexOptions(options);
      } catch (error) {
        return error;
      }
      return undefined;
    })();
    expect(thrown).toBeInstanceOf(AgentGateError);
    expect(thrown).toMatchObject({ code: 'AG_ERR_CONFIG_INVALID', details: { option } });
  });
});
