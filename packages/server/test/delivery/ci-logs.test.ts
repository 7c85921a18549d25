import { describe, expect, it } from 'vitest';
import { jobExcerpt, summariseJobLog } from '../../src/delivery/ci-logs.js';
import { actionsLog } from '../fixtures/forge/github-emulator.js';
import { gitlabTrace } from '../fixtures/forge/gitlab-emulator.js';

describe('summariseJobLog', () => {
  it('finds the failing step and the error lines of a GitHub Actions log, without timestamps', () => {
    const summary = summariseJobLog(actionsLog('npm test', ['ok 1 - add', 'not ok 2 - multiply', 'AssertionError: expected 6 to equal 7']));
    expect(summary.failingStep).toBe('npm test');
    expect(summary.excerpt).toContain('AssertionError: expected 6 to equal 7');
    expect(summary.excerpt).toContain('error: Process completed with exit code 1.');
    expect(summary.excerpt).not.toMatch(/\d{4}-\d\d-\d\dT/);
    expect(summary.excerpt).not.toContain('Syncing repository');
  });

  it('reads GitLab section markers as steps and strips ANSI colours', () => {
    const summary = summariseJobLog(gitlabTrace(['FAIL test/math.test.js', 'TypeError: x is not a function']));
    expect(summary.failingStep).toBe('step_script');
    expect(summary.excerpt).toContain('TypeError: x is not a function');
    expect(summary.excerpt).not.toContain(String.fromCharCode(27));
    expect(summary.excerpt).not.toContain('section_start');
  });

  it('prefers the step the forge named, and stays within its byte bound on a huge log', () => {
    const huge = Array.from({ length: 50_000 }, (_, i) => `line ${i} Error: failure number ${i}`).join('\n');
    const summary = summariseJobLog(huge, { failingStep: 'Run tests', maxBytes: 2000 });
    expect(summary.failingStep).toBe('Run tests');
    expect(Buffer.byteLength(summary.excerpt)).toBeLessThanOrEqual(2000);
    expect(summary.truncated).toBe(true);
    expect(jobExcerpt(summary)).toMatch(/^Failing step: Run tests\n/);
  });

  it('falls back to the end of a log without recognisable errors', () => {
    const summary = summariseJobLog(Array.from({ length: 30 }, (_, i) => `step ${i}`).join('\n'));
    expect(summary.excerpt.split('\n')).toHaveLength(15);
    expect(summary.excerpt).toContain('step 29');
  });
});
