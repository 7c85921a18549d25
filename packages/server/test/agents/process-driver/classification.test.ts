import { describe, expect, it } from 'vitest';
import { AGENT_FAILURE_CODES, cancellationOf, classifyProcessStop, describeProcessEnd, failWith, type ProcessStopContext } from '../../../src/agents/process-driver/classification.js';
import { AgentGateError } from '../../../src/errors.js';
import type { ProcessOutcome } from '../../../src/util/process.js';

describe('classifyProcessStop', () => {
  const context = (overrides: Partial<ProcessStopContext> = {}): ProcessStopContext => ({
    agent: 'The agent',
    idleTimeoutMs: 500,
    lastStderrLine: 'last words',
    fail: failWith({ iteration: 1 }),
    ...overrides,
  });
  const stop = (outcome: ProcessOutcome, error?: Error, ctx = context()) => classifyProcessStop(error === undefined ? { outcome, durationMs: 42 } : { outcome, durationMs: 42, error }, ctx);

  it('leaves a normal exit to the protocol and reports cancel as aborted', () => {
    expect(stop('exited')).toBeUndefined();
    expect(stop('aborted')).toBe('aborted');
  });

  it('classifies the idle watchdog and the deadline as agent_timeout, naming the last stderr line', () => {
    for (const [outcome, text] of [
      ['idle_timeout', 'The agent produced no output for 500 ms and was stopped: last words'],
      ['timeout', 'The agent was stopped at the run deadline after 42 ms: last words'],
    ] as const) {
      const classified = stop(outcome);
      expect(classified).toMatchObject({ failure: 'agent_timeout' });
      if (typeof classified === 'object') {
        expect(classified.error.code).toBe(AGENT_FAILURE_CODES.agent_timeout);
        expect(classified.error.message).toBe(text);
        expect(classified.error.details).toEqual({ iteration: 1 });
      }
    }
  });

  it('classifies a failed start as agent_crash, and a missing executable through the protocol when it names one', () => {
    const enoent = Object.assign(new Error('spawn x ENOENT'), { code: 'ENOENT' });
    const plain = stop('spawn_error', enoent);
    const named = stop(
      'spawn_error',
      enoent,
      context({ notInstalled: (code) => ({ failure: 'agent_crash', error: new AgentGateError('AG_ERR_AGENT_NOT_INSTALLED', `missing (${code})`) }) }),
    );

    expect(plain).toMatchObject({ failure: 'agent_crash' });
    if (typeof plain === 'object') expect(plain.error).toMatchObject({ code: 'AG_ERR_PHASE_BUILD_AGENT_CRASH', message: 'The agent could not be started: spawn x ENOENT', cause: enoent });
    if (typeof named === 'object') expect(named.error).toMatchObject({ code: 'AG_ERR_AGENT_NOT_INSTALLED', message: 'missing (ENOENT)' });
  });
});

describe('failWith', () => {
  it('merges per-call details, overrides the code and keeps cause and retryable', () => {
    const cause = new Error('root');
    const { failure, error } = failWith({ iteration: 2 })('agent_crash', 'no result', { code: 'AG_ERR_AGENT_PROTOCOL', details: { exitCode: 0 }, cause, retryable: false });

    expect(failure).toBe('agent_crash');
    expect(error).toMatchObject({ code: 'AG_ERR_AGENT_PROTOCOL', message: 'no result', details: { iteration: 2, exitCode: 0 }, cause, retryable: false });
  });
});

describe('cancellationOf', () => {
  const aborted = (reason?: unknown): AbortSignal => {
    const controller = new AbortController();
    controller.abort(reason);
    return controller.signal;
  };

  it('reports a plain cancel as AG_ERR_RUN_CANCELED naming the agent', () => {
    const { failure, error } = cancellationOf(aborted(), 'codex');
    expect(failure).toBe('agent_crash');
    expect(error).toMatchObject({ code: 'AG_ERR_RUN_CANCELED', message: 'codex was stopped because the run was canceled.' });
  });

  it('keeps a typed reason, and a timeout reason makes it agent_timeout', () => {
    const reason = new AgentGateError('AG_ERR_RUN_TIMEOUT', 'wall clock');
    expect(cancellationOf(aborted(reason), 'codex')).toEqual({ failure: 'agent_timeout', error: reason });
  });
});

describe('describeProcessEnd', () => {
  it('names the exit code, the signal or the outcome', () => {
    expect(describeProcessEnd({ outcome: 'exited', exitCode: 3, signal: null })).toBe('exit 3');
    expect(describeProcessEnd({ outcome: 'exited', exitCode: null, signal: 'SIGKILL' })).toBe('signal SIGKILL');
    expect(describeProcessEnd({ outcome: 'idle_timeout', exitCode: null, signal: 'SIGTERM' })).toBe('idle_timeout');
  });
});
