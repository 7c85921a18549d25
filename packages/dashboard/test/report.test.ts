/** The run page's pure readers: gate excerpts from an iteration record, delivery / PR / CI state from events. */
import { describe, expect, it } from 'vitest';
import { deliveryOf, EXCERPT_CHARS, gatesOf, safeUrl } from '../src/report.js';
import type { EventEnvelope } from '../src/timeline.js';

let seq = 0;
function ev(type: string, data: Record<string, unknown>): EventEnvelope {
  seq += 1;
  return { seq, runId: 'r', workOrderId: 'w', type, timestamp: new Date(0).toISOString(), data };
}

describe('gatesOf', () => {
  it('bounds the excerpt of a failed gate to its end and keeps diagnostics', () => {
    const outputTail = `${'a'.repeat(10_000)}\nAssertionError: expected 5 to be 6`;
    const gates = gatesOf({
      verification: {
        gates: [
          { name: 'lint', passed: true, exitCode: 0, outputTail: 'ok', diagnostics: [] },
          { name: 'unit-tests', passed: false, exitCode: 1, message: '1 test failed', outputTail, diagnostics: [{ tool: 'vitest', file: 'test/math.test.js', line: 3, test: 'multiply', message: 'expected 5 to be 6' }] },
        ],
      },
    });
    expect(gates.map((g) => [g.name, g.passed, g.exitCode])).toEqual([['lint', true, 0], ['unit-tests', false, 1]]);
    expect(gates[0]?.excerpt).toBe('');
    const failed = gates[1];
    expect(failed?.excerpt.endsWith('AssertionError: expected 5 to be 6')).toBe(true);
    expect(failed?.excerpt.length).toBeLessThanOrEqual(EXCERPT_CHARS + 50);
    expect(failed?.excerpt).toMatch(/^… \d+ characters omitted …/);
    expect(failed?.diagnostics).toEqual(['test/math.test.js:3 — multiply — expected 5 to be 6']);
    expect(gatesOf({})).toEqual([]);
  });
});

describe('deliveryOf', () => {
  it('follows delivery and CI events and takes the PR from run.meta', () => {
    expect(deliveryOf([], {})).toMatchObject({ started: false, ci: null, prUrl: null });
    const events = [
      ev('delivery_started', { kind: 'github', iteration: 1 }),
      ev('ci_status', { iteration: 1, status: 'pending', detail: '0 of 2 checks done' }),
      ev('ci_status', { iteration: 1, status: 'failed', detail: '1 of 2 checks failed on abc: test' }),
      ev('delivery_completed', { kind: 'github', ok: true, branch: 'agentgate/x', prUrl: 'https://github.com/o/r/pull/7' }),
    ];
    expect(deliveryOf(events.slice(0, 2), {})).toMatchObject({ started: true, ok: null, kind: 'github', ci: { status: 'pending' } });
    expect(deliveryOf(events, {})).toEqual({
      started: true,
      kind: 'github',
      ok: true,
      branch: 'agentgate/x',
      prUrl: 'https://github.com/o/r/pull/7',
      error: null,
      ci: { status: 'failed', detail: '1 of 2 checks failed on abc: test', iteration: 1 },
    });
    expect(deliveryOf([], { prUrl: 'https://gitlab.com/g/p/-/merge_requests/3' })).toMatchObject({ started: true, prUrl: 'https://gitlab.com/g/p/-/merge_requests/3' });
    expect(deliveryOf([ev('delivery_completed', { kind: 'local', ok: false, error: 'push refused' })], {})).toMatchObject({ ok: false, error: 'push refused' });
  });

  it('links only http(s) URLs', () => {
    expect(safeUrl('https://github.com/o/r/pull/7')).toBe('https://github.com/o/r/pull/7');
    expect(safeUrl('javascript:alert(1)')).toBeNull();
    expect(safeUrl('not a url')).toBeNull();
  });
});
