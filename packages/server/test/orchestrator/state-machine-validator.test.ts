import { describe, expect, it } from 'vitest';
import { StateMachineValidator, type TableShape } from '../../src/orchestrator/state-machine-validator.js';

const small: TableShape = {
  start: { go: { to: 'middle' }, abort: { to: 'done' } },
  middle: { finish: { to: 'done' } },
  done: {},
};

function validator(table: TableShape, events = ['go', 'abort', 'finish']): StateMachineValidator {
  return new StateMachineValidator({ table, initial: 'start', terminal: ['done'], events });
}

describe('StateMachineValidator', () => {
  describe('on the real transition table', () => {
    const real = new StateMachineValidator();
    it('finds no issue', () => expect(real.validate()).toEqual({ valid: true, issues: [] }));

    it('enumerates paths from queued to every terminal state', () => {
      const paths = real.enumeratePaths();
      const terminals = new Set(paths.map((p) => p.terminal));
      expect(terminals).toEqual(new Set(['succeeded', 'failed', 'canceled']));
      const events = paths.map((p) => p.events.join(','));
      expect(events).toContain('workspace_acquired,build_started,build_completed,snapshot_completed,verify_passed');
      expect(events).toContain('workspace_acquired,build_started,build_completed,snapshot_completed,pr_created,ci_polling_started,ci_failed,verify_failed_terminal');
      for (const p of paths) {
        expect(p.states[0]).toBe('queued');
        expect(p.states).toHaveLength(p.events.length + 1);
        expect(new Set(p.states).size).toBe(p.states.length);
      }
    });
  });

  it('accepts a small sound table', () => expect(validator(small).validate().valid).toBe(true));

  it('reports an unreachable state', () => {
    const report = validator({ ...small, island: { finish: { to: 'done' } } }).validate();
    expect(report.valid).toBe(false);
    expect(report.issues).toEqual([{ kind: 'unreachable_state', state: 'island' }]);
  });

  it('reports a dead-end non-terminal state', () => {
    const table: TableShape = { start: { go: { to: 'middle' }, abort: { to: 'done' } }, middle: { finish: { to: 'middle' } }, done: {} };
    expect(validator(table).validate().issues).toEqual([{ kind: 'dead_end', state: 'middle' }]);
  });

  it('reports a terminal state with an exit', () => {
    const table: TableShape = { ...small, done: { go: { to: 'start' } } };
    expect(validator(table).validate().issues).toEqual([{ kind: 'terminal_with_exit', state: 'done', event: 'go' }]);
  });

  it('reports orphan events and unknown targets', () => {
    const table: TableShape = { ...small, middle: { finish: { to: 'done' }, jump: { to: 'nowhere' } } };
    const issues = validator(table, ['go', 'abort', 'finish', 'jump', 'never_used']).validate().issues;
    expect(issues).toContainEqual({ kind: 'orphan_event', event: 'never_used' });
    expect(issues).toContainEqual({ kind: 'unknown_target', state: 'middle', event: 'jump', to: 'nowhere' });
  });

  it('ignores undefined rows', () => {
    const table: TableShape = { ...small, middle: { finish: { to: 'done' }, go: undefined } };
    expect(validator(table).validate().valid).toBe(true);
  });
});
