import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/util/clock.js';
import { OutputEventLimiter, omittedOutputText, type OutputEventLimits } from '../../src/util/output-events.js';

const LIMITS: OutputEventLimits = { maxLinesPerEvent: 3, maxCharsPerEvent: 40, eventsPerSecond: 2, burstEvents: 2, maxCharsTotal: 1000, markerIntervalMs: 1000, tailLines: 0 };

function setup(limits: OutputEventLimits = LIMITS): { clock: ManualClock; events: Array<[string, string]>; limiter: OutputEventLimiter<'stdout' | 'stderr'> } {
  const clock = new ManualClock();
  const events: Array<[string, string]> = [];
  const limiter = new OutputEventLimiter<'stdout' | 'stderr'>((stream, text) => events.push([stream, text]), clock, limits);
  return { clock, events, limiter };
}

describe('OutputEventLimiter', () => {
  it('gives a line that arrives alone an event of its own, in the same turn', async () => {
    const { events, limiter } = setup();
    limiter.push('stdout', 'hello');
    expect(events).toEqual([]);
    await Promise.resolve();
    expect(events).toEqual([['stdout', 'hello']]);
  });

  it('coalesces lines of one turn up to the line and character limits, and splits on a stream change', () => {
    const { events, limiter } = setup({ ...LIMITS, burstEvents: 10 });
    for (const line of ['a', 'b', 'c', 'd']) limiter.push('stdout', line);
    limiter.push('stderr', 'oops');
    limiter.push('stderr', 'x'.repeat(30));
    limiter.push('stderr', 'y'.repeat(30));
    limiter.flush();
    expect(events).toEqual([
      ['stdout', 'a\nb\nc'],
      ['stdout', 'd'],
      ['stderr', `oops\n${'x'.repeat(30)}`],
      ['stderr', 'y'.repeat(30)],
    ]);
  });

  it('drops lines beyond the rate, says how many with a marker, and resumes when tokens refill', async () => {
    const { clock, events, limiter } = setup({ ...LIMITS, maxLinesPerEvent: 1 });
    for (let i = 0; i < 10; i += 1) limiter.push('stdout', `line ${i}`);
    limiter.flush();
    expect(events).toEqual([['stdout', 'line 0'], ['stdout', 'line 1']]);
    await clock.advance(500);
    limiter.push('stdout', 'after');
    limiter.flush();
    expect(events.slice(2)).toEqual([['stdout', omittedOutputText(8, 8 * 7)], ['stdout', 'after']]);
    expect(limiter.stats).toMatchObject({ events: 3, markers: 1, omittedLines: 8, omittedBytes: 56 });
  });

  it('emits a marker at most once per interval while a flood lasts, and a last one at close', async () => {
    const { clock, events, limiter } = setup({ ...LIMITS, eventsPerSecond: 0.001, burstEvents: 1 });
    limiter.push('stdout', 'first');
    limiter.flush();
    for (let second = 0; second < 5; second += 1) {
      for (let i = 0; i < 100; i += 1) limiter.push('stdout', 'flood');
      await clock.advance(1000);
    }
    limiter.push('stdout', 'last');
    limiter.close();
    const markers = events.filter(([, text]) => text.includes('omitted'));
    expect(events[0]).toEqual(['stdout', 'first']);
    expect(markers.length).toBeGreaterThanOrEqual(4);
    expect(markers.length).toBeLessThanOrEqual(6);
    expect(limiter.stats.omittedLines).toBe(501);
    const counted = markers.reduce((sum, [, text]) => sum + Number(/… (\d+) lines/.exec(text)?.[1]), 0);
    expect(counted).toBe(501);
  });

  it('never renders a dropped line', () => {
    const { limiter } = setup({ ...LIMITS, maxLinesPerEvent: 1, burstEvents: 1 });
    let rendered = 0;
    for (let i = 0; i < 50; i += 1) {
      limiter.push('stdout', 'x', (raw) => {
        rendered += 1;
        return raw;
      });
    }
    limiter.close();
    expect(rendered).toBe(1);
  });

  it('stops putting text into events once the total is used up, but keeps counting', () => {
    const { events, limiter } = setup({ ...LIMITS, burstEvents: 100, maxCharsTotal: 20 });
    for (let i = 0; i < 10; i += 1) {
      limiter.push('stdout', '0123456789');
      limiter.flush();
    }
    limiter.close();
    expect(events.filter(([, text]) => !text.includes('omitted'))).toHaveLength(2);
    expect(events.at(-1)?.[1]).toBe(omittedOutputText(8, 88));
  });

  it('emits the last dropped lines at close, after the marker for the rest', () => {
    const { events, limiter } = setup({ ...LIMITS, maxLinesPerEvent: 1, burstEvents: 1, tailLines: 2 });
    for (let i = 0; i < 10; i += 1) limiter.push('stdout', `line ${i}`, (raw) => raw.toUpperCase());
    limiter.push('stderr', 'done', (raw) => raw.toUpperCase());
    limiter.close();
    expect(events).toEqual([
      ['stdout', 'LINE 0'],
      ['stdout', omittedOutputText(8, 8 * 7)],
      ['stdout', 'LINE 9'],
      ['stderr', 'DONE'],
    ]);
    expect(limiter.stats).toMatchObject({ omittedLines: 8, omittedBytes: 56 });
  });

  it('keeps the last lines when a flood marker falls due on the very last one', async () => {
    const { clock, events, limiter } = setup({ ...LIMITS, maxLinesPerEvent: 1, burstEvents: 1, eventsPerSecond: 0.001, tailLines: 2 });
    limiter.push('stdout', 'first');
    limiter.flush();
    for (let i = 0; i < 10; i += 1) limiter.push('stdout', `flood ${i}`);
    limiter.push('stderr', 'end of output');
    // The marker interval has passed when the agent's last line arrives: the marker is due on that line.
    await clock.advance(1000);
    limiter.push('stdout', 'implemented');
    limiter.close();
    expect(events).toEqual([
      ['stdout', 'first'],
      ['stdout', omittedOutputText(10, 10 * 8)],
      ['stderr', 'end of output'],
      ['stdout', 'implemented'],
    ]);
    expect(limiter.stats).toMatchObject({ omittedLines: 10, markers: 1 });
  });

  it('counts every dropped line exactly once across flood markers, the held tail and close', async () => {
    const { clock, events, limiter } = setup({ ...LIMITS, maxLinesPerEvent: 1, burstEvents: 1, eventsPerSecond: 0.001, tailLines: 3 });
    limiter.push('stdout', 'first');
    limiter.flush();
    for (let second = 0; second < 4; second += 1) {
      for (let i = 0; i < 50; i += 1) limiter.push(i % 2 === 0 ? 'stdout' : 'stderr', `line ${second}.${i}`);
      await clock.advance(1000);
    }
    limiter.push('stdout', 'last');
    limiter.close();
    const markers = events.filter(([, text]) => text.includes('omitted'));
    const counted = markers.reduce((sum, [, text]) => sum + Number(/… (\d+) lines/.exec(text)?.[1]), 0);
    const shown = events.filter(([, text]) => !text.includes('omitted')).map(([, text]) => text);
    expect(shown[0]).toBe('first');
    expect(shown.slice(-3)).toEqual(['line 3.48', 'line 3.49', 'last']);
    expect(counted + shown.length - 1).toBe(201);
    expect(limiter.stats.omittedLines).toBe(counted);
  });

  it('holds back nothing once something was emitted after the dropped lines', async () => {
    const { clock, events, limiter } = setup({ ...LIMITS, maxLinesPerEvent: 1, burstEvents: 1, tailLines: 2 });
    for (let i = 0; i < 5; i += 1) limiter.push('stdout', `line ${i}`);
    await clock.advance(1000);
    limiter.push('stdout', 'later');
    limiter.close();
    expect(events).toEqual([['stdout', 'line 0'], ['stdout', omittedOutputText(4, 4 * 7)], ['stdout', 'later']]);
  });

  it('tells whether a line would be admitted, without using a token', () => {
    const { limiter, events } = setup({ ...LIMITS, burstEvents: 1 });
    expect(limiter.accepting('stdout')).toBe(true);
    limiter.push('stdout', 'a');
    expect(limiter.accepting('stdout')).toBe(true);
    expect(limiter.accepting('stderr')).toBe(false);
    limiter.omit('stderr', 'b');
    limiter.close();
    expect(events).toEqual([['stdout', 'a'], ['stderr', omittedOutputText(1, 2)]]);
  });
});
