import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { PROGRESS_EVENT_TYPES, type ProgressEventType } from '../../src/observability/events.js';
import { ProgressEmitter } from '../../src/observability/progress-emitter.js';
import type { StoredEvent } from '../../src/store/types.js';

describe('docs/events.md', () => {
  it('documents exactly the event types of the ProgressEvents union', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../../../docs/events.md', import.meta.url)), 'utf8');
    const documented = [...doc.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]);
    expect([...documented].sort()).toEqual([...PROGRESS_EVENT_TYPES].sort());
    expect(new Set(PROGRESS_EVENT_TYPES).size).toBe(PROGRESS_EVENT_TYPES.length);
  });

  it('the runtime list covers the whole union', () => {
    expectTypeOf<ProgressEventType>().toEqualTypeOf<(typeof PROGRESS_EVENT_TYPES)[number]>();
  });
});

describe('ProgressEmitter', () => {
  function memoryLog(): { appendEvent: (runId: string, type: string, data: object) => StoredEvent; rows: StoredEvent[] } {
    const rows: StoredEvent[] = [];
    return {
      rows,
      appendEvent(runId, type, data) {
        const row = { seq: rows.filter((r) => r.runId === runId).length + 1, runId, workOrderId: 'wo', type, timestamp: 't', data: data as Record<string, unknown> };
        rows.push(row);
        return row;
      },
    };
  }

  it('appends before delivering and assigns per-run seq', () => {
    const log = memoryLog();
    const emitter = new ProgressEmitter({ log });
    const seen: Array<[number, number]> = [];
    emitter.on((e) => seen.push([e.seq, log.rows.length]));
    emitter.emit('a', 'iteration_started', { iteration: 1 });
    emitter.emit('b', 'iteration_started', { iteration: 1 });
    emitter.forRun('a')('iteration_completed', { iteration: 1, passed: true, durationMs: 3 });
    expect(seen).toEqual([[1, 1], [1, 2], [2, 3]]);
  });

  it('isolates throwing listeners and keeps delivering to the others', () => {
    const emitter = new ProgressEmitter({ log: memoryLog() });
    const got: string[] = [];
    emitter.on(() => {
      throw new Error('boom');
    });
    const off = emitter.onType('gate_checked', (e) => got.push(e.data.gate));
    emitter.emit('r', 'gate_checked', { iteration: 1, gate: 'unit', level: 'L1', passed: true, durationMs: 1 });
    emitter.emit('r', 'iteration_started', { iteration: 2 });
    off();
    emitter.emit('r', 'gate_checked', { iteration: 2, gate: 'lint', level: 'L1', passed: true, durationMs: 1 });
    expect(got).toEqual(['unit']);
    expect(emitter.listenerErrors).toBe(3);
  });

  it('propagates a store failure to the caller instead of delivering an unpersisted event', () => {
    const emitter = new ProgressEmitter({
      log: {
        appendEvent: () => {
          throw new Error('disk full');
        },
      },
    });
    let delivered = 0;
    emitter.on(() => (delivered += 1));
    expect(() => emitter.emit('r', 'iteration_started', { iteration: 1 })).toThrow('disk full');
    expect(delivered).toBe(0);
  });
});
