import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProgressDisplay } from '../../src/cli/progress-display.js';
import type { ProgressEnvelope, ProgressEventType, ProgressEvents } from '../../src/observability/events.js';

function envelope<T extends ProgressEventType>(seq: number, type: T, data: ProgressEvents[T]): ProgressEnvelope {
  return { seq, runId: 'run-1', workOrderId: 'wo-1', type, timestamp: 't', data } as ProgressEnvelope;
}

function stream(tty: boolean): { chunks: string[]; isTTY: boolean; columns: number; write(chunk: string): boolean } {
  const chunks: string[] = [];
  return { chunks, isTTY: tty, columns: 80, write: (c: string) => (chunks.push(c), true) };
}

describe('ProgressDisplay', () => {
  let now = 0;
  const clock = { now: () => now };
  beforeEach(() => {
    now = 0;
    vi.useFakeTimers();
  });
  afterEach(() => vi.useRealTimers());

  it('on a TTY redraws a status line with iteration, phase, elapsed time and the last agent line', () => {
    const out = stream(true);
    const display = new ProgressDisplay({ stream: out, clock, maxIterations: 3 });
    display.handle(envelope(1, 'phase_started', { iteration: 2, phase: 'verify' }));
    display.handle(envelope(2, 'agent_output', { iteration: 2, stream: 'stdout', text: 'editing src/math.js' }));
    now = 75_000;
    vi.advanceTimersByTime(130);
    const status = out.chunks.at(-1) ?? '';
    expect(status.startsWith('\r\x1b[K')).toBe(true);
    expect(status).toContain('iteration 2/3 · verify · 01:15 · editing src/math.js');
    display.handle(envelope(3, 'gate_checked', { iteration: 2, gate: 'unit', level: 'L1', passed: false, durationMs: 1500, exitCode: 1, message: 'exit code 1' }));
    expect(out.chunks.join('')).toContain('gate unit [L1] FAIL (1.5s, exit 1) — exit code 1\n');
    display.stop();
    const count = out.chunks.length;
    vi.advanceTimersByTime(1000);
    expect(out.chunks.length).toBe(count);
    expect(out.chunks.at(-1)).toBe('\r\x1b[K');
  });

  it('shows the last line of a coalesced output event and every line in verbose plain mode', () => {
    const out = stream(false);
    const display = new ProgressDisplay({ stream: out, clock, maxIterations: 1, verbose: true });
    display.handle(envelope(1, 'agent_output', { iteration: 1, stream: 'stdout', text: 'one\ntwo' }));
    display.stop();
    expect(out.chunks.join('')).toBe('[00:00]   │ one\n[00:00]   │ two\n');
  });

  it('neutralises escape sequences and control characters in untrusted text, on a TTY too', () => {
    const out = stream(true);
    const display = new ProgressDisplay({ stream: out, clock, maxIterations: 1 });
    display.handle(envelope(1, 'agent_output', { iteration: 1, stream: 'stdout', text: '\x1b]0;X\x07\x1b[2K\r… succeeded' }));
    display.handle(envelope(2, 'gate_checked', { iteration: 1, gate: 'g\x1b[31m\b', level: 'L1', passed: false, durationMs: 0, message: 'bad\u202etxt' }));
    vi.advanceTimersByTime(130);
    display.stop();
    const text = out.chunks.join('').replaceAll('\r\x1b[K', '');
    // eslint-disable-next-line no-control-regex -- the characters the test looks for
    expect(text).not.toMatch(/[\x1b\x07\r\b\u202e]/);
    expect(text).toContain('gate g\\x08 [L1] FAIL (0.0s) — bad\\u{202e}txt');
    expect(text).toContain('· \\r… succeeded');
  });

  it('without a TTY writes plain timestamped lines and no escape codes', () => {
    const out = stream(false);
    const display = new ProgressDisplay({ stream: out, clock, maxIterations: 3, verbose: true });
    display.handle(envelope(1, 'run_started', { maxIterations: 3, strategy: 'fixed', agent: 'command', workspace: '/r', branch: 'agentgate/run-1', warnings: [] }));
    now = 2_000;
    display.handle(envelope(2, 'run_state_changed', { from: 'building', event: 'build_failed', to: 'failed', iteration: 1, result: 'failed_build', error: { code: 'AG_ERR_X', message: 'boom' } }));
    display.handle(envelope(3, 'agent_output', { iteration: 1, stream: 'stdout', text: 'hello' }));
    display.handle(envelope(4, 'convergence_decision', { iteration: 1, strategy: 'fixed', decision: 'stop', reason: '3 of 3 used' }));
    display.handle(envelope(5, 'iteration_completed', { iteration: 1, passed: false, durationMs: 2500 }));
    display.stop();
    const text = out.chunks.join('');
    expect(text).not.toContain('\x1b');
    expect(text.split('\n')).toEqual([
      '[00:00] run run-1 started: agent command, strategy fixed, up to 3 iteration(s), branch agentgate/run-1',
      '[00:02] state building → failed (failed_build) — AG_ERR_X: boom',
      '[00:02]   │ hello',
      '[00:02] iteration 1: stop (fixed: 3 of 3 used)',
      '[00:02] iteration 1 failed in 2.5s',
      '',
    ]);
  });
});
