import { describe, expect, it } from 'vitest';
import { parseVerifyConfig, parseVerifyConfigYaml } from '../../src/schemas/verify-config.js';
import type { VerifyConfig } from '../../src/schemas/verify-config.js';
import { thrownAgentGateError } from '../helpers/errors.js';

const CAMEL = `version: "1"
environment:
  setup:
    - { name: install, command: npm ci, timeout: 300 }
contracts:
  requiredFiles: [package.json]
  forbiddenPatterns: ["**/.env", "**/*.pem"]
  protectedPaths: ["test/**"]
tests:
  - { name: typecheck, command: npm run typecheck, timeout: 120 }
  - { name: test, command: npm test, timeout: 300, expectedExit: 0 }
blackbox:
  - name: cli-json
    command: ./bin/cli --json
    stdinFile: fixtures/in.json
    assertions:
      - exitCode: 0
      - contains: '"ok"'
      - matches: '^\\{.*\\}$'
      - jsonEquals: { ok: true, exit_code: 0 }
policy:
  maxRuntimeSeconds: 600
`;

const SNAKE = `version: 1
environment:
  setup:
    - { name: install, command: npm ci, timeout: 5m }
contracts:
  required_files: [package.json]
  forbidden_patterns: ["**/.env", "**/*.pem"]
  protected_paths: ["test/**"]
tests:
  - { name: typecheck, command: npm run typecheck, timeout: 120 }
  - { name: test, command: npm test, timeout: 300, expected_exit: 0 }
blackbox:
  - name: cli-json
    command: ./bin/cli --json
    stdin_file: fixtures/in.json
    assertions:
      - exit_code: 0
      - contains: '"ok"'
      - matches: '^\\{.*\\}$'
      - json_equals: { ok: true, exit_code: 0 }
policy:
  max_runtime_seconds: 600
`;

describe('verify.yaml', () => {
  it('parses the SPEC example with every field', () => {
    const expected: VerifyConfig = {
      version: '1',
      environment: { setup: [{ name: 'install', command: 'npm ci', timeout: 300 }] },
      contracts: { requiredFiles: ['package.json'], forbiddenPatterns: ['**/.env', '**/*.pem'], protectedPaths: ['test/**'] },
      tests: [
        { name: 'typecheck', command: 'npm run typecheck', timeout: 120, expectedExit: 0 },
        { name: 'test', command: 'npm test', timeout: 300, expectedExit: 0 },
      ],
      blackbox: [
        {
          name: 'cli-json',
          command: './bin/cli --json',
          stdinFile: 'fixtures/in.json',
          timeout: 60,
          assertions: [{ exitCode: 0 }, { contains: '"ok"' }, { matches: '^\\{.*\\}$' }, { jsonEquals: { ok: true, exit_code: 0 } }],
        },
      ],
      policy: { maxRuntimeSeconds: 600 },
    };
    expect(parseVerifyConfigYaml(CAMEL, 'verify.yaml')).toEqual(expected);
  });

  it('reads snake_case keys exactly like camelCase, leaving jsonEquals values untouched', () => {
    expect(parseVerifyConfigYaml(SNAKE, 'verify.yaml')).toEqual(parseVerifyConfigYaml(CAMEL, 'verify.yaml'));
  });

  it('fills defaults for an empty document body', () => {
    expect(parseVerifyConfigYaml('version: "1"\n', 'verify.yaml')).toEqual({
      version: '1',
      environment: { setup: [] },
      contracts: { requiredFiles: [], forbiddenPatterns: [], protectedPaths: [] },
      tests: [],
      blackbox: [],
      policy: {},
    });
  });

  it('defaults a test timeout to 300 s and the expected exit code to 0', () => {
    expect(parseVerifyConfig({ tests: [{ name: 'unit', command: 'make test' }] }).tests).toEqual([
      { name: 'unit', command: 'make test', timeout: 300, expectedExit: 0 },
    ]);
  });

  describe('when invalid', () => {
    it('names the file and the line of a schema error', () => {
      const text = CAMEL.replace('timeout: 120', 'timeout: -4');
      const error = thrownAgentGateError(() => parseVerifyConfigYaml(text, '.agentgate/verify.yaml'));
      expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
      expect(error.message).toBe('.agentgate/verify.yaml:10: tests[0].timeout: expected a positive number of seconds (or a duration such as 5m), got -4');
    });

    it('names the line of a missing command', () => {
      const text = 'tests:\n  - name: lint\n  - name: test\n    timeout: 10\n';
      const error = thrownAgentGateError(() => parseVerifyConfigYaml(text, 'verify.yaml'));
      expect(error.message).toBe('verify.yaml:2: tests[0].command: required; verify.yaml:3: tests[1].command: required');
    });

    it('names the line of a snake_case key that fails validation', () => {
      const text = 'contracts:\n  required_files: package.json\n';
      const error = thrownAgentGateError(() => parseVerifyConfigYaml(text, 'verify.yaml'));
      expect(error.message).toBe('verify.yaml:2: contracts.requiredFiles: expected a list, got a string');
    });

    it('reports a YAML syntax error as a verify config error with the line', () => {
      const error = thrownAgentGateError(() => parseVerifyConfigYaml('tests:\n  - name: a\n   command: b\n', 'verify.yaml'));
      expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
      expect(error.message).toMatch(/^verify\.yaml:3:\d+: invalid YAML: /);
      expect(error.details).toMatchObject({ file: 'verify.yaml', line: 3, kind: 'yaml_syntax' });
    });

    it('rejects an invalid regular expression in matches', () => {
      const text = CAMEL.replace("matches: '^\\{.*\\}$'", "matches: '([a-z'");
      const error = thrownAgentGateError(() => parseVerifyConfigYaml(text, 'verify.yaml'));
      expect(error.message).toMatch(/^verify\.yaml:19: blackbox\[0\]\.assertions\[2\]\.matches: invalid regular expression "\(\[a-z": /);
    });

    it.each([
      ['a backreference', '(a)\\1', 'invalid escape sequence'],
      ['a lookahead', 'a(?=b)', 'invalid perl operator'],
      ['a lookbehind', '(?<!x)y', 'invalid perl operator'],
    ])('rejects %s in matches, which RE2 cannot run in linear time, naming file:line and the reason', (_kind, pattern, reason) => {
      const text = CAMEL.replace("matches: '^\\{.*\\}$'", () => `matches: '${pattern}'`);
      const error = thrownAgentGateError(() => parseVerifyConfigYaml(text, '.agentgate/verify.yaml'));
      expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
      expect(error.message).toContain(`.agentgate/verify.yaml:19: blackbox[0].assertions[2].matches: invalid regular expression ${JSON.stringify(pattern)}: ${reason}`);
      expect(error.message).toContain('RE2 syntax');
    });

    it('accepts a pattern that backtracks catastrophically in JavaScript: RE2 runs it in linear time', () => {
      const text = CAMEL.replace("matches: '^\\{.*\\}$'", () => `matches: '^(a+)+$'`);
      expect(parseVerifyConfigYaml(text, 'verify.yaml').blackbox[0]?.assertions[2]).toEqual({ matches: '^(a+)+$' });
    });

    it('rejects both spellings of one key at the snake_case key', () => {
      const text = 'contracts:\n  requiredFiles: [a]\n  required_files: [b]\n';
      const error = thrownAgentGateError(() => parseVerifyConfigYaml(text, 'verify.yaml'));
      expect(error.message).toBe('verify.yaml:3: contracts.required_files: both "requiredFiles" and its alias "required_files" are set; keep one');
    });

    it('rejects an unknown key rather than dropping a gate', () => {
      const error = thrownAgentGateError(() => parseVerifyConfigYaml('contracts:\n  requiredFile: [a]\n', 'verify.yaml'));
      expect(error.message).toBe('verify.yaml:2: contracts.requiredFile: unknown key (allowed: forbiddenPatterns, protectedPaths, requiredFiles)');
    });

    it('rejects assertions with zero or two kinds', () => {
      const error = thrownAgentGateError(() =>
        parseVerifyConfig({ blackbox: [{ name: 'x', command: 'y', assertions: [{}, { exitCode: 0, contains: 'ok' }] }] }),
      );
      expect(error.details?.issues).toEqual([
        { path: 'blackbox[0].assertions[0]', message: 'expected one of exitCode, contains, matches, jsonEquals' },
        { path: 'blackbox[0].assertions[1]', message: 'set only one of exitCode, contains per assertion' },
      ]);
    });

    it('rejects stdin together with stdinFile, and a blackbox without assertions', () => {
      expect(thrownAgentGateError(() => parseVerifyConfig({ blackbox: [{ name: 'x', command: 'y', stdin: 'a', stdinFile: 'b', assertions: [{ exitCode: 0 }] }] })).message).toBe(
        'blackbox[0].stdinFile: set either stdin or stdinFile, not both',
      );
      expect(thrownAgentGateError(() => parseVerifyConfig({ blackbox: [{ name: 'x', command: 'y', assertions: [] }] })).message).toBe(
        'blackbox[0].assertions: must have at least one item',
      );
    });

    it('rejects an unsupported version', () => {
      expect(thrownAgentGateError(() => parseVerifyConfig({ version: '2' })).message).toBe('version: unsupported version "2" (expected "1")');
    });
  });
});
