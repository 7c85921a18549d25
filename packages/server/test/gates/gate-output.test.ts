/** Gate output is untrusted and unbounded: logs keep head and tail, assertions run in linear time. */
import { readFileSync, statSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkAssertion } from '../../src/gates/blackbox.js';
import { GATE_LOG_LIMITS } from '../../src/gates/command-gate.js';
import { Verifier } from '../../src/gates/verifier.js';
import type { VerifyResult } from '../../src/gates/verifier.js';
import type { VerificationReport } from '../../src/gates/types.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { createRepo, gateContext } from './helpers.js';
import type { TempRepo } from './helpers.js';

let repo: TempRepo;
const verifier = new Verifier({ killGraceMs: 200 });

beforeEach(() => {
  repo = createRepo({ 'package.json': '{}' });
});
afterEach(() => repo.cleanup());

function report(result: VerifyResult): VerificationReport {
  if (!result.ok) throw new Error(`verification failed to run: ${result.error.code} ${result.error.message}`);
  return result.report;
}

describe('gate output', () => {
  it('keeps the head and the tail of a 100 MB gate log within its limits, with a marker between', async () => {
    const command = `echo first-line; yes 'gate flood line 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c 100000000; echo; echo last-line; exit 1`;
    const r = report(await verifier.verify(gateContext(repo, { inline: parseVerifyConfig({ tests: [{ name: 'noisy', command }] }) })));
    const gate = r.gates.find((g) => g.name === 'noisy');
    expect(gate).toMatchObject({ passed: false, exitCode: 1 });
    expect(gate?.outputTail).toContain('last-line');
    const logPath = gate?.logPath ?? '';
    expect(statSync(logPath).size).toBeLessThanOrEqual(GATE_LOG_LIMITS.headBytes + GATE_LOG_LIMITS.tailBytes + 1024);
    const log = readFileSync(logPath, 'utf8');
    expect(log.startsWith(`$ ${command}\nfirst-line\n`)).toBe(true);
    expect(log).toMatch(/\n=== agentgate: \d+ lines \/ \d+ bytes of output omitted here/);
    expect(log).toMatch(/last-line\n\[exit code 1 after \d+ ms\]\n$/);
  }, 120_000);

  it('redacts secrets in the kept head and tail of the log', async () => {
    const secret = 'ghp_' + 'x'.repeat(36);
    // The token is split in the command so that only the output holds it whole.
    const command = `t=ghp_; t="\${t}${'x'.repeat(36)}"; echo "head $t"; yes 'filler line for the log' | head -c 6000000; echo; echo "tail $t"`;
    const r = report(await verifier.verify(gateContext(repo, { inline: parseVerifyConfig({ tests: [{ name: 'leaky', command }] }) })));
    const log = readFileSync(r.gates.find((g) => g.name === 'leaky')?.logPath ?? '', 'utf8');
    expect(log).toContain('head [REDACTED]');
    expect(log).toContain('tail [REDACTED]');
    expect(log).not.toContain(secret);
  }, 60_000);

  describe('matches assertions', () => {
    it('decide a catastrophically backtracking pattern on 60 a and a ! (false, promptly)', () => {
      const stdout = `${'a'.repeat(60)}!`;
      expect(checkAssertion({ matches: '^(a+)+$' }, { exitCode: 0, stdout, stdoutTruncated: false })).toBe('expected stdout to match /^(a+)+$/');
      expect(checkAssertion({ matches: '^(a+)+$' }, { exitCode: 0, stdout: 'a'.repeat(60), stdoutTruncated: false })).toBeUndefined();
      expect(checkAssertion({ matches: '(x+x+)+y' }, { exitCode: 0, stdout: 'x'.repeat(100_000), stdoutTruncated: false })).toBe('expected stdout to match /(x+x+)+y/');
    });

    it('keep JavaScript-like semantics for common patterns (anchors, classes, Unicode)', () => {
      const check = (matches: string, stdout: string): boolean => checkAssertion({ matches }, { exitCode: 0, stdout, stdoutTruncated: false }) === undefined;
      expect(check('^\\{"sum":\\d+', '{"sum":5}')).toBe(true);
      expect(check('sum$', 'the sum\n')).toBe(false);
      expect(check('^ok$', 'line\nok')).toBe(false);
      expect(check('(?m)^ok$', 'line\nok\n')).toBe(true);
      expect(check('caf.$', 'café')).toBe(true);
      expect(check('\\w+@\\w+\\.com', 'mail me: a@b.com')).toBe(true);
    });
  });
});
