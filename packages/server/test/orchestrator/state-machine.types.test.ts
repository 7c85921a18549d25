/**
 * Type-level tests: this file is checked by `tsc` (pnpm typecheck). Each `@ts-expect-error` line must
 * be a compile error; if the table ever allowed the event, tsc would fail on an unused directive.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { createRun, transition, type RunIn, type TransitionMap } from '../../src/orchestrator/state-machine.js';

describe('TransitionMap', () => {
  it('lists the legal events of a state', () => {
    expectTypeOf<TransitionMap['queued']>().toEqualTypeOf<'workspace_acquired' | 'user_canceled' | 'system_error' | 'timeout'>();
    expectTypeOf<TransitionMap['succeeded']>().toEqualTypeOf<never>();
    expectTypeOf<TransitionMap['feedback']>().toEqualTypeOf<'feedback_generated' | 'verify_failed_terminal' | 'user_canceled' | 'system_error' | 'timeout'>();
  });

  it('rejects an illegal event at compile time and narrows the next state', () => {
    const queued = createRun({ id: 'a', workOrderId: 'b', maxIterations: 1 }) as RunIn<'queued'>;
    const leased = transition(queued, 'workspace_acquired');
    expectTypeOf(leased.state).toEqualTypeOf<'leased'>();
    // @ts-expect-error ci_passed is not a legal event in state queued
    expect(() => transition(queued, 'ci_passed')).toThrow('Invalid transition: queued + ci_passed');
    const done = { ...queued, state: 'succeeded' as const };
    // @ts-expect-error terminal states accept no event at all
    expect(() => transition(done, 'user_canceled')).toThrow('Invalid transition: succeeded + user_canceled');
  });
});
