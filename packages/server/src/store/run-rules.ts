/**
 * The checks and errors of the repository contract's rules (repositories.ts) that do not depend on a
 * backend: which events only `commit` writes, which closing event a terminal commit carries, the
 * `run_state_changed` payload, and the errors every backend throws for the same situation. Both
 * backends call these inside their writing transaction, so the rules cannot drift apart.
 */
import { AgentGateError } from '../errors.js';
import { isTerminalState, type Run, type RunState } from '../orchestrator/state-machine.js';
import { CLOSING_EVENT_TYPES, type CommitRequest, type Fence } from './repositories.js';
import type { NewEvent, RunStateChangedData } from './types.js';

/** Event types only `runs.commit` may write. */
const COMMIT_ONLY_TYPES: ReadonlySet<string> = new Set(['run_state_changed', ...Object.values(CLOSING_EVENT_TYPES)]);

/** `appendEvents` refuses the types only `commit` writes (checked before any transaction starts). */
export function assertAppendable(runId: string, events: readonly NewEvent[]): void {
  for (const event of events) {
    if (COMMIT_ONLY_TYPES.has(event.type)) {
      throw new AgentGateError('AG_ERR_INTERNAL', `${event.type} is written by runs.commit only, not appended`, { details: { runId, type: event.type } });
    }
  }
}

/** A commit into a terminal state carries exactly its closing event; any other commit carries none. */
export function checkClosing(runId: string, next: Run, closing: NewEvent | undefined): NewEvent | undefined {
  if (!isTerminalState(next.state)) {
    if (closing !== undefined) {
      throw new AgentGateError('AG_ERR_INTERNAL', `Run ${runId}: a closing event (${closing.type}) on a commit into ${next.state}`, {
        details: { runId, to: next.state, closing: closing.type },
      });
    }
    return undefined;
  }
  const expected = CLOSING_EVENT_TYPES[next.state];
  if (closing === undefined || closing.type !== expected) {
    throw new AgentGateError('AG_ERR_INTERNAL', `Run ${runId}: a commit into ${next.state} must carry its ${expected} event`, {
      details: { runId, to: next.state, expected, ...(closing === undefined ? {} : { closing: closing.type }) },
    });
  }
  return closing;
}

/** The payload of the `run_state_changed` event a commit writes. */
export function stateChangedData(current: Run, request: CommitRequest, next: Run): RunStateChangedData {
  return {
    from: current.state,
    event: request.event,
    to: next.state,
    iteration: next.iteration,
    ...(next.result === null ? {} : { result: next.result }),
    ...(request.error === undefined ? {} : { error: request.error }),
  };
}

/** The events a commit writes: `run_state_changed`, then the closing event when the run ended. */
export function commitEvents(current: Run, request: CommitRequest, next: Run, at: string): NewEvent[] {
  const closing = checkClosing(current.id, next, request.closing);
  const events: NewEvent[] = [{ type: 'run_state_changed', data: stateChangedData(current, request, next), timestamp: at }];
  if (closing !== undefined) events.push({ ...closing, timestamp: closing.timestamp ?? at });
  return events;
}

export function assertNotTerminal(runId: string, state: RunState, operation: string): void {
  if (isTerminalState(state)) {
    throw new AgentGateError('AG_ERR_RUN_ALREADY_TERMINAL', `Refused ${operation}: run ${runId} is already ${state}`, {
      details: { runId, state, operation },
    });
  }
}

export function assertExpectedVersion(runId: string, version: number, expectedVersion: number | undefined): void {
  if (expectedVersion !== undefined && expectedVersion !== version) {
    throw new AgentGateError('AG_ERR_STORE_CONFLICT', `Run ${runId} is at version ${version}, expected ${expectedVersion}`, {
      details: { runId, version, expectedVersion },
    });
  }
}

/** The run of `runs.create` must belong to the work order it creates. */
export function assertSameWorkOrder(run: Run, workOrderId: string): void {
  if (workOrderId !== run.workOrderId) {
    throw new AgentGateError('AG_ERR_INTERNAL', `Run ${run.id} belongs to work order ${run.workOrderId}, not ${workOrderId}`);
  }
}

/**
 * The fencing decision, given the lease row read inside the writing transaction (undefined: no row).
 * @throws AG_ERR_LEASE_LOST
 */
export function assertFenceHolds(
  fence: Fence,
  row: { readonly owner: string; readonly expires_at: number } | undefined,
  nowMs: number,
  operation: string,
): void {
  if (row !== undefined && row.owner === fence.owner && row.expires_at > nowMs) return;
  const why = row === undefined ? 'no longer exists' : row.owner !== fence.owner ? 'is held by another owner' : 'has expired';
  throw new AgentGateError('AG_ERR_LEASE_LOST', `Refused ${operation}: the lease ${fence.leaseKey} ${why}`, {
    details: { leaseKey: fence.leaseKey, owner: fence.owner, operation },
  });
}

export function leaseHeld(key: string, runId: string): AgentGateError {
  return new AgentGateError('AG_ERR_LEASE_HELD', `Another live owner holds the lease ${key}; run ${runId} was not created`, {
    details: { key, runId },
  });
}

export function workOrderClaimed(workOrderId: string, status: string, runId: string): AgentGateError {
  return new AgentGateError('AG_ERR_WORK_ORDER_CLAIMED', `Work order ${workOrderId} is ${status}, not queued: run ${runId} was not created`, {
    details: { workOrderId, status, runId },
  });
}

export function exclusiveBusy(exclusiveKey: string, runId: string, cause?: unknown): AgentGateError {
  return new AgentGateError('AG_ERR_RUN_EXCLUSIVE_BUSY', `A run that has not finished holds ${exclusiveKey}; run ${runId} was not created`, {
    details: { exclusiveKey, runId },
    ...(cause === undefined ? {} : { cause }),
  });
}
