/**
 * Turns rows of the durable logs (`StoredEvent`, `StoredWorkOrderEvent`, untyped JSON) into the typed
 * envelope unions of `events.ts`, checking at run time what the types promise: the `type` is one this
 * build knows, and the payload carries every required field of that type. A row that fails is an
 * internal invariant violation (the log holds what no typed writer of this build wrote: a newer
 * version's event, a hand edit) and is reported as a classified error — never passed on under a cast.
 *
 * Field *values* are not re-validated: every writer goes through the typed `append`, and checking each
 * value of every event would cost the delivery budget of SPEC 15 for no protection the types lack.
 */
import { AgentGateError } from '../errors.js';
import type { JsonObject, StoredEvent, StoredWorkOrderEvent } from '../store/types.js';
import type {
  ProgressEnvelope,
  ProgressEvents,
  RunEnvelopeMap,
  RunEventEnvelope,
  RunEventType,
  WorkOrderEnvelope,
  WorkOrderEnvelopeMap,
  WorkOrderEventEnvelope,
  WorkOrderEventType,
} from './events.js';

/** The keys an object type must have (its non-optional properties). */
type RequiredKeys<O> = { [K in keyof O]-?: object extends Pick<O, K> ? never : K }[keyof O];

type RequiredKeyTable<Types extends keyof ProgressEvents> = { [T in Types]: readonly RequiredKeys<ProgressEvents[T]>[] };

/** Required payload fields per run event type; the check below fails to compile when one is missing. */
const RUN_REQUIRED_KEYS = {
  run_started: ['maxIterations', 'strategy', 'agent', 'workspace', 'branch', 'warnings'],
  run_state_changed: ['from', 'event', 'to', 'iteration'],
  iteration_started: ['iteration'],
  iteration_completed: ['iteration', 'passed', 'durationMs'],
  phase_started: ['iteration', 'phase'],
  phase_completed: ['iteration', 'phase', 'ok', 'durationMs'],
  gate_checked: ['iteration', 'gate', 'level', 'passed', 'durationMs'],
  convergence_decision: ['iteration', 'strategy', 'decision', 'reason'],
  delivery_started: ['kind', 'iteration'],
  delivery_completed: ['kind', 'ok'],
  ci_status: ['iteration', 'status'],
  agent_output: ['iteration', 'stream', 'text'],
  agent_tool_call: ['iteration', 'tool', 'input'],
  agent_tool_result: ['iteration', 'isError', 'output'],
  run_completed: ['result', 'iterations', 'branch', 'durationMs', 'unverified', 'usage'],
  run_failed: ['result', 'iterations', 'branch', 'durationMs', 'error', 'usage'],
  run_canceled: ['iterations', 'branch', 'durationMs', 'reason'],
} as const satisfies RequiredKeyTable<RunEventType>;

const WORK_ORDER_REQUIRED_KEYS = {
  work_order_created: ['status'],
  work_order_updated: ['status'],
} as const satisfies RequiredKeyTable<WorkOrderEventType>;

/** `never` when every required key of every type is listed; otherwise the missing keys. */
type MissingKeys<Table, Types extends keyof ProgressEvents & keyof Table> = {
  [T in Types]: Exclude<RequiredKeys<ProgressEvents[T]>, Table[T] extends readonly (infer K)[] ? K : never>;
}[Types];
const runTableComplete: [MissingKeys<typeof RUN_REQUIRED_KEYS, RunEventType>] extends [never] ? true : false = true;
const workOrderTableComplete: [MissingKeys<typeof WORK_ORDER_REQUIRED_KEYS, WorkOrderEventType>] extends [never] ? true : false = true;
void runTableComplete;
void workOrderTableComplete;

/** Every run event type, derived from the checked table so the two cannot drift. */
export const RUN_EVENT_TYPES: readonly RunEventType[] = Object.keys(RUN_REQUIRED_KEYS).filter(isRunEventType);
export const WORK_ORDER_EVENT_TYPES: readonly WorkOrderEventType[] = Object.keys(WORK_ORDER_REQUIRED_KEYS).filter(isWorkOrderEventType);

export function isRunEventType(type: string): type is RunEventType {
  return Object.hasOwn(RUN_REQUIRED_KEYS, type);
}

export function isWorkOrderEventType(type: string): type is WorkOrderEventType {
  return Object.hasOwn(WORK_ORDER_REQUIRED_KEYS, type);
}

/** Narrows a run envelope to one type (a predicate, so `onType` needs no cast). */
export function isRunEnvelopeOfType<T extends RunEventType>(event: RunEventEnvelope, type: T): event is RunEnvelopeMap[T] {
  return event.type === type;
}

function hasKeys<T extends keyof ProgressEvents>(data: JsonObject, keys: readonly string[]): data is JsonObject & ProgressEvents[T] {
  for (const key of keys) if (!Object.hasOwn(data, key)) return false;
  return true;
}

function runDecoder<T extends RunEventType>(type: T): (stored: StoredEvent) => ProgressEnvelope<T> {
  const keys = RUN_REQUIRED_KEYS[type];
  return (stored) => {
    const { data } = stored;
    if (!hasKeys<T>(data, keys)) throw undecodable('run', stored, 'payload lacks a required field');
    return { seq: stored.seq, runId: stored.runId, workOrderId: stored.workOrderId, type, timestamp: stored.timestamp, data };
  };
}

function workOrderDecoder<T extends WorkOrderEventType>(type: T): (stored: StoredWorkOrderEvent) => WorkOrderEnvelope<T> {
  const keys = WORK_ORDER_REQUIRED_KEYS[type];
  return (stored) => {
    const { data } = stored;
    if (!hasKeys<T>(data, keys)) throw undecodable('work order', stored, 'payload lacks a required field');
    return { seq: stored.seq, workOrderId: stored.workOrderId, type, timestamp: stored.timestamp, data };
  };
}

/*
 * One decoder per type, in a table typed as a mapped type: indexing it with a checked `type` gives the
 * member of the union for that type, which is how the payload and its type stay correlated without a cast.
 */
const RUN_DECODERS: { [T in RunEventType]: (stored: StoredEvent) => RunEnvelopeMap[T] } = {
  run_started: runDecoder('run_started'),
  run_state_changed: runDecoder('run_state_changed'),
  iteration_started: runDecoder('iteration_started'),
  iteration_completed: runDecoder('iteration_completed'),
  phase_started: runDecoder('phase_started'),
  phase_completed: runDecoder('phase_completed'),
  gate_checked: runDecoder('gate_checked'),
  convergence_decision: runDecoder('convergence_decision'),
  delivery_started: runDecoder('delivery_started'),
  delivery_completed: runDecoder('delivery_completed'),
  ci_status: runDecoder('ci_status'),
  agent_output: runDecoder('agent_output'),
  agent_tool_call: runDecoder('agent_tool_call'),
  agent_tool_result: runDecoder('agent_tool_result'),
  run_completed: runDecoder('run_completed'),
  run_failed: runDecoder('run_failed'),
  run_canceled: runDecoder('run_canceled'),
};

const WORK_ORDER_DECODERS: { [T in WorkOrderEventType]: (stored: StoredWorkOrderEvent) => WorkOrderEnvelopeMap[T] } = {
  work_order_created: workOrderDecoder('work_order_created'),
  work_order_updated: workOrderDecoder('work_order_updated'),
};

function decodeRun<T extends RunEventType>(stored: StoredEvent, type: T): RunEventEnvelope {
  return RUN_DECODERS[type](stored);
}

function decodeWorkOrder<T extends WorkOrderEventType>(stored: StoredWorkOrderEvent, type: T): WorkOrderEventEnvelope {
  return WORK_ORDER_DECODERS[type](stored);
}

/**
 * A stored run event as the typed union.
 * @throws AgentGateError `AG_ERR_INTERNAL` (details: log, id, seq, type) for an unknown type — including
 *   a work-order type, which never belongs in a run's log — or a payload missing a required field.
 */
export function toRunEventEnvelope(stored: StoredEvent): RunEventEnvelope {
  const { type } = stored;
  if (!isRunEventType(type)) throw undecodable('run', stored, 'unknown event type');
  return decodeRun(stored, type);
}

/** A stored work-order event as the typed union. @throws as {@link toRunEventEnvelope}. */
export function toWorkOrderEventEnvelope(stored: StoredWorkOrderEvent): WorkOrderEventEnvelope {
  const { type } = stored;
  if (!isWorkOrderEventType(type)) throw undecodable('work order', stored, 'unknown event type');
  return decodeWorkOrder(stored, type);
}

function undecodable(log: 'run' | 'work order', stored: StoredEvent | StoredWorkOrderEvent, problem: string): AgentGateError {
  const id = 'runId' in stored ? stored.runId : stored.workOrderId;
  return new AgentGateError('AG_ERR_INTERNAL', `Stored ${log} event cannot be read: ${problem}`, {
    details: { log, id, seq: stored.seq, type: stored.type },
  });
}
