/** Capturing the {@link AgentGateError} a call throws or a promise rejects with, so a test can assert on it. */
import { AgentGateError } from '../../src/errors.js';

/**
 * Calls `fn` and returns the AgentGateError it threw. Anything else it throws is rethrown unchanged,
 * and returning normally fails the test with a plain Error.
 */
export function thrownAgentGateError(fn: () => unknown): AgentGateError {
  try {
    fn();
  } catch (error) {
    if (error instanceof AgentGateError) return error;
    throw error;
  }
  throw new Error('expected an AgentGateError to be thrown, but the call returned');
}

/**
 * Awaits `promise` and returns the AgentGateError it rejected with. Any other rejection is rethrown
 * unchanged, and resolving fails the test with a plain Error.
 */
export async function rejectedAgentGateError(promise: Promise<unknown>): Promise<AgentGateError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AgentGateError) return error;
    throw error;
  }
  throw new Error('expected a rejection with an AgentGateError, but the promise resolved');
}
