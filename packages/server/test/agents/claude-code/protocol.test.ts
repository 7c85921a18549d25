/** The pure parts of the claude-code protocol: option checks, the command line, the stream parser and accumulator on captured claude 2.1.330 output, and the classification. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  CLAUDE_CODE_DEFAULT_ALLOWED_TOOLS,
  CLAUDE_CODE_FEEDBACK_LEAD,
  CLAUDE_CODE_SYSTEM_NOTE,
  ClaudeStreamAccumulator,
  MAX_TOOL_OUTPUT_CHARS,
  buildClaudeCodeInvocation,
  classifyClaudeRun,
  parseClaudeStreamLine,
  validateClaudeCodeOptions,
  type AgentStreamEvent,
  type ClaudeResult,
  type ClaudeRunOutcome,
} from '../../../src/agents/claude-code/index.js';
import { FEEDBACK_HEADING } from '../../../src/agents/agent-input.js';
import type { AgentOptions } from '../../../src/agents/types.js';
import { AgentGateError } from '../../../src/errors.js';

const STREAM_FIXTURES = fileURLToPath(new URL('../../fixtures/claude-stream/', import.meta.url));

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
