import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { formatPath, parseWithSchema, parseYamlWithSchema } from '../../src/schemas/errors.js';
import { thrownAgentGateError } from '../helpers/errors.js';

const Schema = z.strictObject({
  name: z.string().min(1),
  items: z.array(z.strictObject({ id: z.number().int(), tags: z.array(z.string()).optional() })),
  mode: z.enum(['fast', 'slow']).optional(),
});

describe('formatPath', () => {
  it('renders keys with dots and indexes with brackets', () => {
    expect(formatPath(['spec', 'convergence', 'limits', 'maxWallClock'])).toBe('spec.convergence.limits.maxWallClock');
    expect(formatPath(['blackbox', 0, 'assertions', 2, 'matches'])).toBe('blackbox[0].assertions[2].matches');
    expect(formatPath([])).toBe('(root)');
  });
});

describe('parseWithSchema', () => {
  it('returns the parsed value', () => {
    expect(parseWithSchema({ name: 'x', items: [] }, Schema)).toEqual({ name: 'x', items: [] });
  });

  it('names every failing path with a plain reason', () => {
    const error = thrownAgentGateError(() => parseWithSchema({ items: [{ id: 'one' }], mode: 'medium' }, Schema));
    expect(error.code).toBe('AG_ERR_SCHEMA_INVALID');
    expect(error.status).toBe(400);
    expect(error.message).toBe(
      'name: required; items[0].id: expected a number, got a string; mode: expected one of "fast", "slow", got "medium"',
    );
    expect(error.details?.issues).toEqual([
      { path: 'name', message: 'required' },
      { path: 'items[0].id', message: 'expected a number, got a string' },
      { path: 'mode', message: 'expected one of "fast", "slow", got "medium"' },
    ]);
  });

  it('reports unknown keys at the key itself and lists the allowed ones', () => {
    const error = thrownAgentGateError(() => parseWithSchema({ name: 'x', items: [], nmae: 'y' }, Schema));
    expect(error.message).toBe('nmae: unknown key (allowed: items, mode, name)');
  });

  it('uses the code the caller chose', () => {
    const error = thrownAgentGateError(() => parseWithSchema({}, Schema, { code: 'AG_ERR_VERIFY_CONFIG_INVALID' }));
    expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
  });
});

describe('parseYamlWithSchema', () => {
  it('parses valid YAML', () => {
    expect(parseYamlWithSchema('name: a\nitems:\n  - id: 1\n', Schema, { fileName: 'a.yaml' })).toEqual({ name: 'a', items: [{ id: 1 }] });
  });

  it('names file and line of a syntax error', () => {
    const text = 'name: a\nitems:\n  - id: 1\n    tags: [x, y\n  - id: 2\n';
    const error = thrownAgentGateError(() => parseYamlWithSchema(text, Schema, { fileName: 'a.yaml' }));
    expect(error.code).toBe('AG_ERR_YAML_PARSE');
    expect(error.message).toMatch(/^a\.yaml:5:\d+: invalid YAML: /);
    expect(error.details).toMatchObject({ file: 'a.yaml', line: 5, kind: 'yaml_syntax' });
  });

  it('names the line of a duplicate key', () => {
    const error = thrownAgentGateError(() => parseYamlWithSchema('name: a\nitems: []\nname: b\n', Schema, { fileName: 'dup.yaml' }));
    expect(error.code).toBe('AG_ERR_YAML_PARSE');
    expect(error.message).toMatch(/^dup\.yaml:3:1: invalid YAML: Map keys must be unique/);
  });

  it('names the line of the failing value', () => {
    const text = 'name: a\nitems:\n  - id: 1\n  - id: two\n';
    const error = thrownAgentGateError(() => parseYamlWithSchema(text, Schema, { fileName: 'a.yaml' }));
    expect(error.message).toBe('a.yaml:4: items[1].id: expected a number, got a string');
    expect(error.details).toEqual({ file: 'a.yaml', issues: [{ path: 'items[1].id', message: 'expected a number, got a string', line: 4 }] });
  });

  it('points a missing field at its nearest existing ancestor', () => {
    const text = '# header\nitems:\n  - tags: [x]\n    id: 1\n  - tags: []\n';
    const error = thrownAgentGateError(() => parseYamlWithSchema(text, Schema, { fileName: 'a.yaml' }));
    expect(error.message).toBe('a.yaml:2: name: required; a.yaml:5: items[1].id: required');
  });

  it('follows YAML aliases when looking up lines', () => {
    const text = 'name: a\nbase: &b\n  id: x\nitems:\n  - *b\n';
    const error = thrownAgentGateError(() => parseYamlWithSchema(text, Schema, { fileName: 'a.yaml' }));
    expect(error.message).toContain('a.yaml:3: items[0].id: expected a number, got a string');
    expect(error.message).toContain('a.yaml:2: base: unknown key');
  });

  it('supports merge keys for sharing fields between items', () => {
    const text = 'name: a\nitems:\n  - &first { id: 1, tags: [x] }\n  - <<: *first\n    id: 2\n';
    expect(parseYamlWithSchema(text, Schema, { fileName: 'a.yaml' }).items).toEqual([
      { id: 1, tags: ['x'] },
      { id: 2, tags: ['x'] },
    ]);
  });

  it('reports an empty document as a schema error at line 1 or the file', () => {
    const error = thrownAgentGateError(() => parseYamlWithSchema('', Schema, { fileName: 'empty.yaml' }));
    expect(error.code).toBe('AG_ERR_SCHEMA_INVALID');
    expect(error.message).toContain('(root): expected an object, got null');
  });
});
