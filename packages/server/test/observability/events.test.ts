import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { PROGRESS_EVENT_TYPES, type ProgressEventType } from '../../src/observability/events.js';

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
