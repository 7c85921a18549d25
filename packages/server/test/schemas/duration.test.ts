import { describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { DurationSchema, formatDuration, parseDuration, tryParseDuration } from '../../src/schemas/duration.js';

describe('parseDuration', () => {
  it.each([
    ['30m', 1_800_000],
    ['1h', 3_600_000],
    ['90s', 90_000],
    ['1h30m', 5_400_000],
    ['1h 30m', 5_400_000],
    ['500ms', 500],
    ['1m500ms', 60_500],
    ['1.5h', 5_400_000],
    ['2d', 172_800_000],
    ['45', 45_000],
    [' 10M ', 600_000],
  ])('parses %j as %i ms', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });

  it('reads a bare number as seconds', () => {
    expect(parseDuration(90)).toBe(90_000);
    expect(parseDuration(0.25)).toBe(250);
  });

  it.each(['abc', '', '10x', '-5m', 'm', '1h30', '5 minutes', 'NaN'])('rejects %j with a hint', (input) => {
    const result = tryParseDuration(input);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain('use e.g. 30m, 1h, 90s');
  });

  it('rejects units out of order or repeated', () => {
    expect(tryParseDuration('30m1h')).toMatchObject({ ok: false, reason: expect.stringContaining('largest to smallest') as string });
    expect(tryParseDuration('1m1m')).toMatchObject({ ok: false });
  });

  it('rejects negative, infinite and non-numeric inputs', () => {
    expect(tryParseDuration(-1).ok).toBe(false);
    expect(tryParseDuration(Number.POSITIVE_INFINITY).ok).toBe(false);
    expect(tryParseDuration({}).ok).toBe(false);
    expect(tryParseDuration(true).ok).toBe(false);
  });

  it('throws a classified error with the caller-chosen code', () => {
    expect(() => parseDuration('abc')).toThrow(AgentGateError);
    try {
      parseDuration('soon', 'AG_ERR_CLI_USAGE');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AgentGateError);
      expect((error as AgentGateError).code).toBe('AG_ERR_CLI_USAGE');
      expect((error as AgentGateError).message).toBe('invalid duration "soon" (use e.g. 30m, 1h, 90s, 1h30m, 500ms or a number of seconds)');
    }
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [500, '500ms'],
    [90_000, '1m30s'],
    [5_400_000, '1h30m'],
    [90_061_001, '1d1h1m1s1ms'],
    [-30_000, '-30s'],
  ])('formats %i ms as %j', (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [1, 999, 61_000, 3_599_999, 86_400_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });

  it('refuses non-finite input', () => {
    expect(() => formatDuration(Number.NaN)).toThrow(AgentGateError);
  });
});

describe('DurationSchema', () => {
  it('keeps the value as written', () => {
    expect(DurationSchema.parse('30m')).toBe('30m');
    expect(DurationSchema.parse(60)).toBe(60);
  });

  it('rejects zero and explains why', () => {
    const result = DurationSchema.safeParse('0s');
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toBe('duration must be greater than zero, got "0s"');
  });
});
