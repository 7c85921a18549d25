import { describe, expect, it } from 'vitest';
import {
  ALL_EVENTS,
  ALL_STATES,
  InvalidTransitionError,
  TERMINAL_STATES,
  TRANSITIONS,
  applyTransition,
  canTransition,
  createRun,
  getNextState,
  isTerminalState,
  listTransitions,
  transition,
  type Run,
  type RunIn,
  type RunEvent,
  type RunResult,
  type RunState,
} from '../../src/orchestrator/state-machine.js';
import { AgentGateError } from '../../src/errors.js';

const AT = '2026-01-01T00:00:00.000Z';
const LATER = '2026-01-01T00:05:00.000Z';

/** The SPEC 3 table written out independently of the implementation, as the oracle. */
const SPEC_ROWS: Array<[RunState, RunEvent, RunState, RunResult | null]> = [
  ['queued', 'workspace_acquired', 'leased', null],
  ['leased', 'build_started', 'building', null],
  ['building', 'build_completed', 'snapshotting', null],
  ['building', 'build_failed', 'failed', 'failed_build'],
  ['snapshotting', 'snapshot_completed', 'verifying', null],
  ['snapshotting', 'snapshot_failed', 'failed', 'failed_error'],
  ['verifying', 'verify_passed', 'succeeded', 'passed'],
  ['verifying', 'verify_failed_retryable', 'feedback', null],
  ['verifying', 'verify_failed_terminal', 'failed', 'failed_verification'],
  ['verifying', 'pr_created', 'pr_created', null],
  ['feedback', 'feedback_generated', 'building', null],
  ['feedback', 'verify_failed_terminal', 'failed', 'failed_verification'],
  ['pr_created', 'ci_polling_started', 'ci_polling', null],
  ['pr_created', 'verify_passed', 'succeeded', 'passed'],
  ['ci_polling', 'ci_passed', 'succeeded', 'passed'],
  ['ci_polling', 'ci_failed', 'feedback', null],
  ['ci_polling', 'ci_timeout', 'failed', 'failed_timeout'],
];
const NON_TERMINAL: RunState[] = ['queued', 'leased', 'building', 'snapshotting', 'verifying', 'feedback', 'pr_created', 'ci_polling'];
for (const s of NON_TERMINAL) {
  SPEC_ROWS.push([s, 'user_canceled', 'canceled', 'canceled']);
  SPEC_ROWS.push([s, 'system_error', 'failed', 'failed_error']);
  SPEC_ROWS.push([s, 'timeout', 'failed', 'failed_timeout']);
}
const expected = new Map(SPEC_ROWS.map(([from, event, to, result]) => [`${from}+${event}`, { to, result }]));

function runIn(state: RunState, iteration = 1): Run {
  return { ...createRun({ id: 'run-1', workOrderId: 'wo-1', maxIterations: 3, createdAt: AT }), state, iteration };
}

function walk(events: RunEvent[]): Run {
  return events.reduce((run, event) => applyTransition(run, event, { at: LATER }), createRun({ id: 'r', workOrderId: 'w', maxIterations: 3, createdAt: AT }));
}

describe('run state machine', () => {
  it('has 11 states, 18 events and 6 results', () => {
    expect(ALL_STATES).toHaveLength(11);
    expect(ALL_EVENTS).toHaveLength(18);
    expect(TERMINAL_STATES).toEqual(['succeeded', 'failed', 'canceled']);
  });

  it('accepts exactly the 41 pairs of the SPEC table', () => {
    expect(SPEC_ROWS).toHaveLength(41);
    expect(listTransitions().map((r) => `${r.from}+${r.event}`).sort()).toEqual([...expected.keys()].sort());
  });

  describe('for every (state, event) pair of 198', () => {
    const pairs = ALL_STATES.flatMap((state) => ALL_EVENTS.map((event) => [state, event] as const));
    it('enumerates 198 pairs', () => expect(pairs).toHaveLength(198));

    it.each(pairs)('%s + %s behaves as the table says', (state, event) => {
      const row = expected.get(`${state}+${event}`);
      const before = runIn(state, 2);
      const frozen = JSON.stringify(before);
      expect(canTransition(state, event)).toBe(row !== undefined);
      expect(getNextState(state, event)).toBe(row?.to ?? null);
      if (row === undefined) {
        let thrown: unknown;
        try {
          applyTransition(before, event);
        } catch (error) {
          thrown = error;
        }
        expect(thrown).toBeInstanceOf(InvalidTransitionError);
        expect(thrown).toBeInstanceOf(AgentGateError);
        expect((thrown as InvalidTransitionError).code).toBe('AG_ERR_RUN_INVALID_TRANSITION');
        expect((thrown as InvalidTransitionError).message).toBe(`Invalid transition: ${state} + ${event}`);
        expect((thrown as InvalidTransitionError).status).toBe(409);
      } else {
        const after = applyTransition(before, event, { at: LATER });
        expect(after.state).toBe(row.to);
        expect(after.result).toBe(row.result);
        expect(after.completedAt).toBe(isTerminalState(row.to) ? LATER : null);
        expect(after.updatedAt).toBe(LATER);
        expect(after.iteration).toBe(event === 'feedback_generated' ? 3 : 2);
        expect(after).not.toBe(before);
      }
      expect(JSON.stringify(before)).toBe(frozen);
    });
  });

  it('terminal states accept no event', () => {
    for (const state of TERMINAL_STATES) {
      expect(Object.keys(TRANSITIONS[state])).toEqual([]);
      for (const event of ALL_EVENTS) expect(canTransition(state, event)).toBe(false);
    }
  });

  it('creates a queued run at iteration 1', () => {
    const run = createRun({ id: 'a', workOrderId: 'b', maxIterations: 5, createdAt: AT });
    expect(run).toEqual({
      id: 'a', workOrderId: 'b', state: 'queued', iteration: 1, maxIterations: 5, result: null, error: null,
      createdAt: AT, updatedAt: AT, completedAt: null,
    });
    expect(Date.parse(createRun({ id: 'a', workOrderId: 'b', maxIterations: 1 }).createdAt)).not.toBeNaN();
  });

  it('rejects a non-positive maxIterations', () => {
    expect(() => createRun({ id: 'a', workOrderId: 'b', maxIterations: 0 })).toThrow(/maxIterations/);
    expect(() => createRun({ id: 'a', workOrderId: 'b', maxIterations: 1.5 })).toThrow(AgentGateError);
  });

  it('records the error from detail and keeps it across later transitions', () => {
    const error = { code: 'AG_ERR_PHASE_SNAPSHOT', message: 'git failed', phase: 'snapshot', iteration: 1 };
    const failed = applyTransition(runIn('snapshotting'), 'snapshot_failed', { error, at: LATER });
    expect(failed).toMatchObject({ state: 'failed', result: 'failed_error', error, completedAt: LATER });
    const kept = applyTransition(runIn('verifying'), 'verify_failed_retryable', { at: LATER });
    expect(kept.error).toBeNull();
  });

  it('stamps the current time when no timestamp is given', () => {
    const done = applyTransition(runIn('verifying'), 'verify_passed');
    expect(done.completedAt).toBe(done.updatedAt);
    expect(Date.parse(done.completedAt ?? '')).not.toBeNaN();
  });

  describe('Bug #65 path', () => {
    it('ci_polling → feedback → verify_failed_terminal ends failed / failed_verification', () => {
      const run = walk(['workspace_acquired', 'build_started', 'build_completed', 'snapshot_completed', 'pr_created', 'ci_polling_started', 'ci_failed', 'verify_failed_terminal']);
      expect(run.state).toBe('failed');
      expect(run.result).toBe('failed_verification');
    });
  });

  describe('PR without CI', () => {
    it('verifying → pr_created → succeeded / passed', () => {
      const run = walk(['workspace_acquired', 'build_started', 'build_completed', 'snapshot_completed', 'pr_created', 'verify_passed']);
      expect(run).toMatchObject({ state: 'succeeded', result: 'passed', iteration: 1 });
    });
  });

  it('a retry loop advances the iteration', () => {
    const run = walk([
      'workspace_acquired', 'build_started', 'build_completed', 'snapshot_completed', 'verify_failed_retryable', 'feedback_generated',
      'build_completed', 'snapshot_completed', 'verify_passed',
    ]);
    expect(run).toMatchObject({ state: 'succeeded', result: 'passed', iteration: 2 });
  });

  it('transition() is applyTransition with compile-time checking', () => {
    const queued = createRun({ id: 'a', workOrderId: 'b', maxIterations: 1, createdAt: AT }) as RunIn<'queued'>;
    const leased = transition(queued, 'workspace_acquired', { at: LATER });
    const building = transition(leased, 'build_started');
    expect(building.state).toBe('building');
  });
});
