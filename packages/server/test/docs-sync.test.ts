import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AgentGateError, ERROR_CATALOGUE, ERROR_CODES, isAgentGateError, toAgentGateError } from '../src/errors.js';
import { DIAGRAM_BEGIN, DIAGRAM_END, embedStateDiagram, renderStateDiagram } from '../src/orchestrator/state-diagram.js';

const docsDir = new URL('../../../docs/', import.meta.url);
const read = (name: string): string => readFileSync(fileURLToPath(new URL(name, docsDir)), 'utf8');

describe('docs/state-machine.md', () => {
  it('embeds the diagram generated from the transition table', () => {
    const doc = read('state-machine.md');
    const block = doc.slice(doc.indexOf(DIAGRAM_BEGIN) + DIAGRAM_BEGIN.length, doc.indexOf(DIAGRAM_END)).trim();
    expect(block).toBe(renderStateDiagram());
    expect(embedStateDiagram(doc)).toBe(doc);
  });

  it('draws all 41 transitions', () => {
    expect(renderStateDiagram().split('\n').filter((l) => l.includes(': '))).toHaveLength(41);
  });

  it('refuses a document without markers', () => {
    expect(() => embedStateDiagram('# nothing here')).toThrow(/markers/);
  });
});

describe('docs/errors.md', () => {
  const documented = [...read('errors.md').matchAll(/^\| `(AG_ERR_[A-Z0-9_]+)` \| (\d{3}) \| (yes|no) \|/gm)];

  it('lists every code of the catalogue exactly once, with its status and retryability', () => {
    const codes = documented.map((m) => m[1]);
    expect(new Set(codes).size).toBe(codes.length);
    expect([...codes].sort()).toEqual([...ERROR_CODES].sort());
    for (const m of documented) {
      const def = ERROR_CATALOGUE[m[1] as keyof typeof ERROR_CATALOGUE];
      expect(Number(m[2])).toBe(def.status);
      expect(m[3]).toBe(def.retryable ? 'yes' : 'no');
    }
  });

  it('uses only AG_ERR_ codes', () => {
    for (const code of ERROR_CODES) expect(code).toMatch(/^AG_ERR_[A-Z0-9_]+$/);
  });
});

describe('AgentGateError', () => {
  it('carries code, status, retryability, cause and details', () => {
    const cause = new Error('disk full');
    const err = new AgentGateError('AG_ERR_STORE_WRITE', 'write failed', { cause, details: { table: 'runs' } });
    expect(err).toMatchObject({ code: 'AG_ERR_STORE_WRITE', status: 500, retryable: true, cause, message: 'write failed' });
    expect(err.toJSON()).toEqual({ code: 'AG_ERR_STORE_WRITE', message: 'write failed', details: { table: 'runs' } });
    expect(new AgentGateError('AG_ERR_STORE_WRITE', 'x', { retryable: false }).retryable).toBe(false);
    expect(new AgentGateError('AG_ERR_INTERNAL', 'y').toJSON()).toEqual({ code: 'AG_ERR_INTERNAL', message: 'y' });
    expect(isAgentGateError(err)).toBe(true);
    expect(isAgentGateError(cause)).toBe(false);
  });

  it('normalises unknown throws without losing the cause', () => {
    const original = new AgentGateError('AG_ERR_PHASE_SNAPSHOT', 'git');
    expect(toAgentGateError(original)).toBe(original);
    const wrapped = toAgentGateError(new TypeError('boom'), 'AG_ERR_PHASE_VERIFY');
    expect(wrapped).toMatchObject({ code: 'AG_ERR_PHASE_VERIFY', message: 'boom' });
    expect(wrapped.cause).toBeInstanceOf(TypeError);
    expect(toAgentGateError('text').code).toBe('AG_ERR_RUN_UNEXPECTED');
    expect(toAgentGateError(42).message).toBe('Unknown error');
  });
});
