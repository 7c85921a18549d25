import { describe, expect, it } from 'vitest';
import {
  FEEDBACK_INSTRUCTION,
  FeedbackGenerator,
  formatDiagnostic,
  generateFeedback,
  type FeedbackInput,
} from '../../src/execution/feedback-generator.js';
import type { GateResult, VerificationReport } from '../../src/gates/types.js';

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function gate(overrides: Partial<GateResult> & { name: string }): GateResult {
  return { level: 'L1', passed: false, durationMs: 10, diagnostics: [], ...overrides };
}

function report(gates: GateResult[]): VerificationReport {
  const passed = gates.filter((g) => g.passed).length;
  return { passed: passed === gates.length, unverified: false, source: 'verify.yaml', gates, passRatio: gates.length === 0 ? 1 : passed / gates.length, durationMs: 100 };
}

const vitestOutput = [
  ' RUN  v4.1.0 /repo',
  '',
  ' ✓ test/other.test.ts (3 tests) 4ms',
  ' ❯ test/math.test.ts (2 tests | 1 failed) 6ms',
  '   × adds numbers 3ms',
  '     → expected 3 to be 4 // Object.is equality',
  '',
  ' FAIL  test/math.test.ts > adds numbers',
  'AssertionError: expected 3 to be 4 // Object.is equality',
  ' ❯ test/math.test.ts:5:19',
  '',
  ' Test Files  1 failed | 1 passed (2)',
].join('\n');

const typecheck = gate({
  name: 'typecheck',
  command: 'npm run typecheck',
  exitCode: 2,
  outputTail: "src/math.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.",
  diagnostics: [{ tool: 'tsc', file: 'src/math.ts', line: 3, column: 7, message: "TS2322: Type 'string' is not assignable to type 'number'." }],
});
const unitTests = gate({
  name: 'test',
  command: 'npx vitest run',
  exitCode: 1,
  outputTail: vitestOutput,
  diagnostics: [
    { tool: 'vitest', file: 'test/math.test.ts', line: 5, column: 19, test: 'adds numbers', message: 'expected 3 to be 4 // Object.is equality' },
    { tool: 'vitest', file: 'src/math.ts', line: 9, message: 'thrown from here' },
  ],
});
const lint = gate({ name: 'lint', passed: true, command: 'npm run lint', exitCode: 0, outputTail: 'all good' });

describe('generateFeedback', () => {
  describe('for a failed verification', () => {
    const feedback = generateFeedback({ iteration: 2, report: report([typecheck, lint, unitTests]) });

    it('starts with the iteration heading and a summary of the failed gates', () => {
      expect(feedback.text.startsWith('## Verification failed (iteration 2)\n\n2 of 3 gates failed: `typecheck`, `test`.\n')).toBe(true);
    });

    it('names each failing gate with its level, command and exit code, and leaves passing gates out', () => {
      expect(feedback.text).toContain('### Gate `typecheck` failed (L1)\n- Command: `npm run typecheck`\n- Exit code: 2');
      expect(feedback.text).toContain('### Gate `test` failed (L1)\n- Command: `npx vitest run`\n- Exit code: 1');
      expect(feedback.text).not.toContain('lint');
      expect(feedback.failedGates).toEqual(['typecheck', 'test']);
    });

    it('lists diagnostics as file:line:col — message, with the failing test name', () => {
      expect(feedback.text).toContain("- src/math.ts:3:7 — TS2322: Type 'string' is not assignable to type 'number'.");
      expect(feedback.text).toContain('- test/math.test.ts:5:19 — test `adds numbers` — expected 3 to be 4 // Object.is equality');
      expect(feedback.text).toContain('- src/math.ts:9 — thrown from here');
    });

    it('includes the output in a fenced block', () => {
      expect(feedback.text).toContain("Output (complete):\n```text\nsrc/math.ts(3,7): error TS2322");
      expect(feedback.text).toContain('AssertionError: expected 3 to be 4');
    });

    it('lists the files to look at once each, in order of first mention', () => {
      expect(feedback.files).toEqual(['src/math.ts', 'test/math.test.ts']);
      expect(feedback.text).toContain('### Files to look at\n- src/math.ts\n- test/math.test.ts\n\n');
    });

    it('ends with the instruction line and is not truncated', () => {
      expect(feedback.text.endsWith(`${FEEDBACK_INSTRUCTION}\n`)).toBe(true);
      expect(FEEDBACK_INSTRUCTION).toBe('Fix the failures above; do not modify protected tests or verify.yaml.');
      expect(feedback.truncated).toBe(false);
    });
  });

  it('is deterministic: the same input gives the same bytes', () => {
    const input: FeedbackInput = {
      iteration: 3,
      report: report([typecheck, unitTests, gate({ name: 'huge', outputTail: 'noise line\n'.repeat(5000) })]),
      ci: { summary: '1 check failed', failedJobs: [{ name: 'build', logExcerpt: 'Error: boom\n'.repeat(100) }] },
      maxBytes: 3000,
    };
    const first = generateFeedback(input);
    const second = generateFeedback(structuredClone(input));
    expect(second).toEqual(first);
    expect(Buffer.from(second.text).equals(Buffer.from(first.text))).toBe(true);
  });

  describe('size bounds', () => {
    it('caps huge output at maxBytes and keeps the gate name and the instruction', () => {
      const huge = gate({ name: 'test', command: 'npm test', exitCode: 1, outputTail: 'x'.repeat(200) + '\n' + 'ok line\n'.repeat(100_000) });
      const feedback = generateFeedback({ iteration: 1, report: report([huge]), maxBytes: 2000 });
      expect(bytes(feedback.text)).toBeLessThanOrEqual(2000);
      expect(feedback.text).toContain('### Gate `test` failed');
      expect(feedback.text).toContain('Output excerpt (last lines):');
      expect(feedback.text.endsWith(`${FEEDBACK_INSTRUCTION}\n`)).toBe(true);
    });

    it('uses the default 8000-byte cap', () => {
      const gates = Array.from({ length: 12 }, (_, i) => gate({ name: `gate-${i}`, outputTail: `error in gate ${i}\n`.repeat(2000) }));
      expect(bytes(generateFeedback({ iteration: 1, report: report(gates) }).text)).toBeLessThanOrEqual(8000);
    });

    it('caps each excerpt so one noisy gate cannot crowd out the others', () => {
      const noisy = gate({ name: 'noisy', outputTail: 'FAIL something\n'.repeat(10_000) });
      const quiet = gate({ name: 'quiet', outputTail: 'quiet failure: expected true' });
      const feedback = generateFeedback({ iteration: 1, report: report([noisy, quiet]) });
      expect(feedback.text).toContain('quiet failure: expected true');
      const noisyBlock = feedback.text.slice(feedback.text.indexOf('### Gate `noisy`'), feedback.text.indexOf('### Gate `quiet`'));
      expect(bytes(noisyBlock)).toBeLessThan(2300);
      expect(feedback.truncated).toBe(false);
    });

    it('cuts with a visible marker, closes an open code fence and stays within the cap', () => {
      const diagnostics = Array.from({ length: 15 }, (_, i) => ({ tool: 'tsc' as const, file: `src/f${i}.ts`, line: i + 1, message: `ü problem ${i} `.repeat(40) }));
      const gates = Array.from({ length: 6 }, (_, i) => gate({ name: `g${i}`, diagnostics, outputTail: 'ü error '.repeat(300) }));
      const feedback = generateFeedback({ iteration: 1, report: report(gates), maxBytes: 4000 });
      expect(feedback.truncated).toBe(true);
      expect(bytes(feedback.text)).toBeLessThanOrEqual(4000);
      expect(feedback.text).toMatch(/\n\[… truncated \d+ bytes\]\n/);
      expect(feedback.text).toContain('### Files to look at');
      expect(feedback.text.endsWith(`${FEEDBACK_INSTRUCTION}\n`)).toBe(true);
      expect(feedback.text).not.toContain('\uFFFD');
      const beforeMarker = feedback.text.slice(0, feedback.text.indexOf('[… truncated'));
      expect((beforeMarker.match(/^```/gm) ?? []).length % 2).toBe(0);
    });

    it('reports the number of bytes it dropped', () => {
      const gates = Array.from({ length: 30 }, (_, i) => gate({ name: `gate-${i}`, message: 'm'.repeat(400) }));
      const feedback = generateFeedback({ iteration: 1, report: report(gates), maxBytes: 1000 });
      const full = generateFeedback({ iteration: 1, report: report(gates), maxBytes: 1_000_000 });
      const dropped = Number(/\[… truncated (\d+) bytes\]/.exec(feedback.text)?.[1]);
      const kept = feedback.text.slice(0, feedback.text.indexOf('\n[… truncated'));
      expect(full.truncated).toBe(false);
      expect(bytes(kept) + dropped).toBe(bytes(full.text) - bytes(`\n\n${FEEDBACK_INSTRUCTION}\n`));
    });

    it('rejects a maxBytes too small to hold any feedback', () => {
      expect(() => generateFeedback({ iteration: 1, report: report([typecheck]), maxBytes: 10 })).toThrow(expect.objectContaining({ code: 'AG_ERR_CONFIG_INVALID' }));
    });
  });

  describe('output excerpts', () => {
    it('prefers the lines around failure markers over the tail', () => {
      const lines = ['setup 1', 'setup 2', 'FAIL test/a.test.ts > parses input', 'AssertionError: expected 1 to be 2', ...Array.from({ length: 400 }, (_, i) => `passing test ${i} ok`)];
      const feedback = generateFeedback({ iteration: 1, report: report([gate({ name: 'test', outputTail: lines.join('\n') })]) });
      expect(feedback.text).toContain('Output excerpt (lines around failures):\n```text\nsetup 1\nsetup 2\nFAIL test/a.test.ts > parses input');
      expect(feedback.text).not.toContain('passing test 399 ok');
    });

    it('falls back to the tail when no line looks like a failure', () => {
      const lines = Array.from({ length: 1000 }, (_, i) => `line ${i}`);
      const feedback = generateFeedback({ iteration: 1, report: report([gate({ name: 'build', outputTail: lines.join('\n') })]) });
      expect(feedback.text).toContain('Output excerpt (last lines):\n```text\n…\n');
      expect(feedback.text).toContain('line 999\n```');
      expect(feedback.text).not.toContain('line 0\n');
    });

    it('strips terminal colour codes and progress redraws', () => {
      const esc = String.fromCharCode(27);
      const feedback = generateFeedback({ iteration: 1, report: report([gate({ name: 'test', outputTail: `${esc}[31mFAIL${esc}[39m one\r\nprogress 10%\rprogress 100%` })]) });
      expect(feedback.text).toContain('FAIL one\nprogress 100%\n');
      expect(feedback.text).not.toContain(esc);
    });

    it('uses a fence longer than any backtick run in the output', () => {
      const feedback = generateFeedback({ iteration: 1, report: report([gate({ name: 'docs', outputTail: 'bad block:\n```js\ncode\n```' })]) });
      expect(feedback.text).toContain('````text\nbad block:\n```js\ncode\n```\n````');
    });

    it('redacts secrets and well-known token shapes', () => {
      const token = `ghp_${'a'.repeat(36)}`;
      const feedback = generateFeedback({
        iteration: 1,
        report: report([gate({ name: 'deploy', command: 'deploy --key hunter2-secret', outputTail: `auth failed for ${token}` })]),
        secrets: ['hunter2-secret'],
      });
      expect(feedback.text).not.toContain('hunter2-secret');
      expect(feedback.text).not.toContain(token);
      expect(feedback.text).toContain('[REDACTED]');
    });
  });

  describe('gate failures without a normal exit', () => {
    it('includes the tamper message of a contract gate', () => {
      const tamper = gate({ name: 'contracts', level: 'L0', message: 'protected path modified: test/math.test.ts' });
      const feedback = generateFeedback({ iteration: 1, report: report([tamper]) });
      expect(feedback.text).toContain('### Gate `contracts` failed (L0)\n- Reason: protected path modified: test/math.test.ts');
      expect(feedback.text).not.toContain('Command:');
    });

    it('says the gate timed out instead of printing an exit code', () => {
      const slow = gate({ name: 'e2e', command: 'npm run e2e', exitCode: null, timedOut: true, message: 'timed out after 120s' });
      const feedback = generateFeedback({ iteration: 1, report: report([slow]) });
      expect(feedback.text).toContain('- Timed out: the command was killed when it exceeded its timeout.\n- Reason: timed out after 120s');
      expect(feedback.text).not.toContain('Exit code');
    });

    it('says when a command was killed by a signal', () => {
      const feedback = generateFeedback({ iteration: 1, report: report([gate({ name: 'x', command: 'x', exitCode: null })]) });
      expect(feedback.text).toContain('- Exit code: none (the command was killed by a signal)');
    });

    it('lists at most 15 diagnostics per gate and counts the rest', () => {
      const diagnostics = Array.from({ length: 20 }, (_, i) => ({ tool: 'eslint' as const, file: 'src/a.ts', line: i + 1, column: 1, message: `rule ${i}` }));
      const feedback = generateFeedback({ iteration: 1, report: report([gate({ name: 'lint', diagnostics })]) });
      expect(feedback.text).toContain('- src/a.ts:15:1 — rule 14\n- … and 5 more diagnostics');
      expect(feedback.text).not.toContain('rule 15');
    });
  });

  describe('for a CI failure', () => {
    const ci = {
      summary: '2 of 4 checks failed on abc1234',
      failedJobs: [
        { name: 'build (node 20)', logExcerpt: 'npm ERR! code ELIFECYCLE\nnpm ERR! build failed', url: 'https://github.com/o/r/actions/runs/1/job/2' },
        { name: 'e2e', logExcerpt: '' },
      ],
    };

    it('lists the failed jobs with their URLs and log excerpts under "## CI failed"', () => {
      const feedback = generateFeedback({ iteration: 2, ci });
      expect(feedback.text.startsWith('## CI failed (iteration 2)\n\n2 of 4 checks failed on abc1234\n\n### Job `build (node 20)` failed\n- URL: https://github.com/o/r/actions/runs/1/job/2\n')).toBe(true);
      expect(feedback.text).toContain('Log (complete):\n```text\nnpm ERR! code ELIFECYCLE\nnpm ERR! build failed\n```');
      expect(feedback.text).toContain('### Job `e2e` failed');
      expect(feedback.text).not.toContain('## Verification failed');
      expect(feedback.text.endsWith(`${FEEDBACK_INSTRUCTION}\n`)).toBe(true);
      expect(feedback.failedJobs).toEqual(['build (node 20)', 'e2e']);
      expect(feedback.failedGates).toEqual([]);
    });

    it('puts a failed verification before the CI failure when both are given', () => {
      const feedback = generateFeedback({ iteration: 2, report: report([typecheck]), ci });
      expect(feedback.text.indexOf('## Verification failed')).toBeLessThan(feedback.text.indexOf('## CI failed'));
    });

    it('leaves out a verification that passed', () => {
      const feedback = generateFeedback({ iteration: 2, report: report([lint]), ci });
      expect(feedback.text).not.toContain('## Verification failed');
    });
  });

  it('names the paths the snapshot could not capture, bounded, and keeps them when the text is cut', () => {
    const paths = Array.from({ length: 25 }, (_, i) => `vendor/lib-${i}`);
    const full = generateFeedback({ iteration: 1, report: report([unitTests]), uncaptured: paths });
    expect(full.text).toContain('## Changes that are not part of your result');
    expect(full.text).toContain('`vendor/lib-0`');
    expect(full.text).toContain('`vendor/lib-19`');
    expect(full.text).not.toContain('`vendor/lib-20`');
    expect(full.text).toContain('… and 5 more');
    const cut = generateFeedback({ iteration: 1, report: report([unitTests]), uncaptured: ['vendor/lib'], maxBytes: 1200 });
    expect(Buffer.byteLength(cut.text)).toBeLessThanOrEqual(1200);
    expect(cut.text).toContain('`vendor/lib`');
    expect(generateFeedback({ iteration: 1, report: report([unitTests]) }).text).not.toContain('not part of your result');
  });

  it('says so when a failed report names no failed gate', () => {
    const feedback = generateFeedback({ iteration: 1, report: { ...report([]), passed: false } });
    expect(feedback.text).toContain('The verification failed, but no gate reported a failure.');
  });
});

describe('formatDiagnostic', () => {
  const cases: Array<[Parameters<typeof formatDiagnostic>[0], string]> = [
    [{ tool: 'tsc', file: 'a.ts', line: 1, column: 2, message: 'bad' }, 'a.ts:1:2 — bad'],
    [{ tool: 'eslint', file: 'a.ts', line: 1, message: 'bad' }, 'a.ts:1 — bad'],
    [{ tool: 'generic', file: 'a.ts', column: 2, message: 'bad' }, 'a.ts — bad'],
    [{ tool: 'pytest', test: 'test_x', message: 'assert\n  1 == 2' }, 'test `test_x` — assert 1 == 2'],
    [{ tool: 'generic', message: '' }, '(no message)'],
  ];
  it.each(cases)('formats %j as %j', (diagnostic, expected) => {
    expect(formatDiagnostic(diagnostic)).toBe(expected);
  });
});

describe('FeedbackGenerator', () => {
  it('applies its defaults, which a call can override', () => {
    const generator = new FeedbackGenerator({ maxBytes: 600 });
    const input = { iteration: 1, report: report([gate({ name: 'g', message: 'z'.repeat(5000), outputTail: 'y\n'.repeat(5000) })]) };
    expect(bytes(generator.generate(input).text)).toBeLessThanOrEqual(600);
    expect(bytes(generator.generate({ ...input, maxBytes: 900 }).text)).toBeGreaterThan(600);
  });
});
