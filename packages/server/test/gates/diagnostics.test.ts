import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  parseNodeTestDiagnostics,
  parseDiagnostics,
  parseEslintDiagnostics,
  parseJestDiagnostics,
  parsePytestDiagnostics,
  parseTscDiagnostics,
  parseVitestDiagnostics,
  stripAnsi,
} from '../../src/gates/diagnostics.js';

/** Outputs captured from the real tools (tsc 5.9, eslint 9, vitest 4, pytest 9); jest's from its docs. */
const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url)), 'utf8');
const cwd = '/work/repo';

describe('diagnostics parsers', () => {
  describe('tsc', () => {
    it('reads file, line, column and code from the plain format', () => {
      expect(parseTscDiagnostics(fixture('tsc.txt'))).toEqual([
        { tool: 'tsc', file: 'src/a.ts', line: 1, column: 14, message: "TS2322: Type 'string' is not assignable to type 'number'." },
        { tool: 'tsc', file: 'src/a.ts', line: 3, column: 3, message: "TS2322: Type 'string' is not assignable to type 'number'." },
      ]);
    });

    it('reads the coloured --pretty format the same way', () => {
      const pretty = fixture('tsc-pretty.txt');
      expect(pretty).not.toBe(stripAnsi(pretty));
      expect(parseTscDiagnostics(pretty)).toEqual(parseTscDiagnostics(fixture('tsc.txt')));
    });
  });

  describe('eslint', () => {
    it('reads the stylish format, relative to the worktree, errors only when there are errors', () => {
      expect(parseEslintDiagnostics(fixture('eslint-stylish.txt'), { cwd })).toEqual([
        { tool: 'eslint', file: 'lib/b.js', line: 1, column: 5, message: "'unused' is assigned a value but never used (no-unused-vars)" },
        { tool: 'eslint', file: 'lib/b.js', line: 1, column: 15, message: 'Missing semicolon (semi)' },
        { tool: 'eslint', file: 'lib/b.js', line: 2, column: 7, message: "'y' is assigned a value but never used (no-unused-vars)" },
      ]);
    });

    it('reports warnings when a run has only warnings', () => {
      const onlyWarnings = '\n/work/repo/lib/c.js\n  4:1  warning  Unexpected var, use let or const instead  no-var\n\n✖ 1 problem (0 errors, 1 warning)\n';
      expect(parseEslintDiagnostics(onlyWarnings, { cwd })).toEqual([{ tool: 'eslint', file: 'lib/c.js', line: 4, column: 1, message: 'Unexpected var, use let or const instead (no-var)' }]);
    });

    it('reads the unix format', () => {
      expect(parseEslintDiagnostics(fixture('eslint-unix.txt'), { cwd })).toEqual([
        { tool: 'eslint', file: 'lib/b.js', line: 1, column: 5, message: "'unused' is assigned a value but never used. (no-unused-vars)" },
        { tool: 'eslint', file: 'lib/b.js', line: 1, column: 15, message: 'Missing semicolon. (semi)' },
      ]);
    });

    it('reads the compact format', () => {
      expect(parseEslintDiagnostics(fixture('eslint-compact.txt'), { cwd })).toEqual([
        { tool: 'eslint', file: 'lib/b.js', line: 1, column: 5, message: "'unused' is assigned a value but never used. (no-unused-vars)" },
      ]);
    });
  });

  describe('vitest', () => {
    it('names the failed test with its assertion and the location of the failing line', () => {
      expect(parseVitestDiagnostics(fixture('vitest.txt'), { cwd })).toEqual([
        { tool: 'vitest', file: 'test/math.test.ts', line: 5, column: 23, test: 'math > adds', message: 'AssertionError: expected 4 to be 3 // Object.is equality' },
      ]);
    });

    it('reports a suite that failed to load', () => {
      const output = ' FAIL  test/broken.test.ts [ test/broken.test.ts ]\nError: Cannot find module \'../src/missing\'\n ❯ test/broken.test.ts:1:1\n⎯⎯⎯⎯[1/1]⎯\n';
      expect(parseVitestDiagnostics(output)).toEqual([{ tool: 'vitest', file: 'test/broken.test.ts', line: 1, column: 1, message: "Error: Cannot find module '../src/missing'" }]);
    });
  });

  describe('jest', () => {
    it('names each failed test with its first error line and the first frame outside node_modules', () => {
      expect(parseJestDiagnostics(fixture('jest.txt'), { cwd })).toEqual([
        { tool: 'jest', file: 'test/math.test.js', line: 5, column: 23, test: 'math › adds', message: 'expect(received).toBe(expected) // Object.is equality' },
        { tool: 'jest', file: 'test/math.test.js', line: 14, column: 18, test: 'strings › joins words', message: "TypeError: Cannot read properties of undefined (reading 'join')" },
      ]);
    });
  });

  describe('pytest', () => {
    it('reads the short summary and takes line numbers from the tracebacks', () => {
      expect(parsePytestDiagnostics(fixture('pytest.txt'), { cwd })).toEqual([
        { tool: 'pytest', file: 'tests/test_x.py', line: 5, test: 'test_add', message: 'assert 4 == 3' },
        { tool: 'pytest', file: 'tests/test_x.py', line: 12, test: 'TestThing::test_method', message: 'ValueError: boom' },
      ]);
    });

    it('falls back to the traceback lines when there is no summary', () => {
      expect(parsePytestDiagnostics('tests/test_y.py:7: AssertionError\n')).toEqual([{ tool: 'pytest', file: 'tests/test_y.py', line: 7, message: 'AssertionError' }]);
    });
  });

  describe('parseDiagnostics', () => {
    it('finds each tool in mixed output without cross-talk', () => {
      const mixed = [fixture('tsc.txt'), fixture('eslint-stylish.txt'), fixture('vitest.txt'), fixture('jest.txt'), fixture('pytest.txt')].join('\n');
      const tools = parseDiagnostics(mixed, { cwd }).map((d) => d.tool);
      expect(tools.filter((t) => t === 'tsc')).toHaveLength(2);
      expect(tools.filter((t) => t === 'eslint')).toHaveLength(3);
      expect(tools.filter((t) => t === 'vitest')).toHaveLength(1);
      expect(tools.filter((t) => t === 'jest')).toHaveLength(2);
      expect(tools.filter((t) => t === 'pytest')).toHaveLength(2);
    });

    it('returns nothing for output no parser recognises', () => {
      expect(parseDiagnostics('npm ERR! missing script: test\nDone in 0.1s\n')).toEqual([]);
    });

    it('bounds the number of diagnostics and drops duplicates', () => {
      const many = Array.from({ length: 200 }, (_, i) => `src/f${i}.ts(1,1): error TS1005: ';' expected.`).join('\n');
      expect(parseDiagnostics(many, { max: 10 })).toHaveLength(10);
      expect(parseDiagnostics(`${fixture('tsc.txt')}\n${fixture('tsc.txt')}`)).toHaveLength(2);
    });

    it('cuts very long messages', () => {
      const [d] = parseDiagnostics(`src/a.ts(1,1): error TS2322: ${'x'.repeat(5000)}`);
      expect(d!.message.length).toBeLessThanOrEqual(501);
    });
  });
});

describe('parseNodeTestDiagnostics', () => {
  it('reads test name, file:line and the error of node:test TAP output', () => {
    const output = readFileSync(new URL('./fixtures/node-test-tap.txt', import.meta.url), 'utf8');
    expect(parseNodeTestDiagnostics(output, { cwd: '/tmp/home/worktrees/run-1' })).toEqual([
      { tool: 'node-test', file: 'test/math.test.js', line: 9, column: 1, test: 'multiply multiplies two numbers', message: 'Expected values to be strictly equal:' },
      { tool: 'node-test', file: 'test/math.test.js', line: 13, column: 1, test: 'divide rejects zero', message: 'division by zero was accepted' },
    ]);
  });
});
