/**
 * Rows of the store's tables and their mapping to the stored types, shared by both backends: SQLite and
 * PostgreSQL use the same column names, keep JSON as text and timestamps as ISO strings, so one mapping
 * reads both. JSON columns in and out, enum columns checked on the way out (a corrupt row is
 * `AG_ERR_INTERNAL`, never a wrongly typed value), argument checks shared by the repositories.
 */
import { AgentGateError } from '../errors.js';
import { ALL_RESULTS, ALL_STATES, type RunErrorInfo, type RunResult, type RunState } from '../orchestrator/state-machine.js';
import type { IterationRecord } from './records.js';
import type { StoredIterationRecord } from './repositories.js';
import {
  ALL_WORK_ORDER_SOURCES,
  ALL_WORK_ORDER_STATUSES,
  type JsonObject,
  type Lease,
  type ListEventsQuery,
  type StoredEvent,
  type StoredRun,
  type StoredWorkOrder,
  type StoredWorkOrderEvent,
} from './types.js';

/** Default page size of `listEvents`, matching the API's `GET /runs/:id/events` default. */
export const DEFAULT_EVENTS_LIMIT = 1000;

export interface WorkOrderRow {
  id: string;
  status: string;
  source: string;
  spec_json: string;
  request_json: string | null;
  created_at: string;
  updated_at: string;
}

export interface RunRow {
  id: string;
  work_order_id: string;
  state: string;
  iteration: number;
  max_iterations: number;
  result: string | null;
  error_json: string | null;
  branch: string | null;
  data_json: string;
  version: number;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

export interface IterationRow {
  run_id: string;
  iteration: number;
  data_json: string;
  started_at: string;
  completed_at: string | null;
}

export interface EventRow {
  run_id: string;
  seq: number;
  work_order_id: string;
  type: string;
  timestamp: string;
  data_json: string;
}

export interface WorkOrderEventRow {
  work_order_id: string;
  seq: number;
  type: string;
  timestamp: string;
  data_json: string;
}

export interface LeaseRow {
  key: string;
  owner: string;
  run_id: string;
  expires_at: number;
  heartbeat_at: number;
}

export interface CountRow {
  total: number;
}

export interface SeqRow {
  seq: number;
}

export function runNotFound(runId: string): AgentGateError {
  return new AgentGateError('AG_ERR_RUN_NOT_FOUND', `Run ${runId} not found`, { details: { runId } });
}

export function workOrderNotFound(workOrderId: string): AgentGateError {
  return new AgentGateError('AG_ERR_WORK_ORDER_NOT_FOUND', `Work order ${workOrderId} not found`, { details: { workOrderId } });
}

function corrupt(what: string, cause?: unknown): AgentGateError {
  return new AgentGateError('AG_ERR_INTERNAL', `Stored ${what} is corrupt`, cause === undefined ? {} : { cause });
}

function checkNonNegativeInteger(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `${name}: must be a non-negative integer, got ${String(value)}`);
  }
}

export function checkPaging(limit: number, offset: number): void {
  checkNonNegativeInteger(limit, 'limit');
  checkNonNegativeInteger(offset, 'offset');
}

export function checkEventsQuery(query: ListEventsQuery): { afterSeq: number; limit: number } {
  const afterSeq = query.afterSeq ?? 0;
  const limit = query.limit ?? DEFAULT_EVENTS_LIMIT;
  checkNonNegativeInteger(afterSeq, 'afterSeq');
  checkNonNegativeInteger(limit, 'limit');
  return { afterSeq, limit };
}

export function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `ttlMs: must be a positive integer, got ${String(ttlMs)}`);
  }
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Serialises a payload; only JSON objects are stored so every reader gets an object back. */
export function toJson(value: object, what: string): string {
  if (!isJsonObject(value)) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `${what}: must be a JSON object`);
  }
  try {
    return JSON.stringify(value);
  } catch (err) {
    throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `${what}: is not JSON-serialisable`, { cause: err });
  }
}

function parseJsonObject(text: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw corrupt(what, err);
  }
  if (!isJsonObject(value)) throw corrupt(what);
  return value;
}

function oneOf<T extends string>(values: readonly T[], value: string, what: string): T {
  const found = values.find((candidate) => candidate === value);
  if (found === undefined) throw corrupt(`${what} "${value}"`);
  return found;
}

function parseRunError(text: string | null): RunErrorInfo | null {
  if (text === null) return null;
  const value = parseJsonObject(text, 'run error');
  const { code, message, phase, iteration } = value;
  if (typeof code !== 'string' || typeof message !== 'string') throw corrupt('run error');
  return {
    code,
    message,
    ...(typeof phase === 'string' ? { phase } : {}),
    ...(typeof iteration === 'number' ? { iteration } : {}),
  };
}

const OBJECT_PARTS = ['agent', 'snapshot', 'verification', 'decision', 'feedback', 'error'] as const satisfies readonly (keyof IterationRecord)[];

/**
 * Checks the top level of an iteration record read back from the store: every part is absent or an
 * object, and the two parts the store itself relies on (`error`, `feedback`) have their fields. The
 * nested reports are trusted: only {@link IterationRepository.save} writes this column, from a typed
 * record.
 */
function isIterationRecord(value: JsonObject): value is JsonObject & IterationRecord {
  for (const part of OBJECT_PARTS) {
    const field = value[part];
    if (field !== undefined && !isJsonObject(field)) return false;
  }
  const { error, feedback } = value;
  if (isJsonObject(error) && (typeof error['code'] !== 'string' || typeof error['message'] !== 'string')) return false;
  if (isJsonObject(feedback) && (typeof feedback['text'] !== 'string' || typeof feedback['truncated'] !== 'boolean')) return false;
  return true;
}

export function mapWorkOrder(row: WorkOrderRow): StoredWorkOrder {
  return {
    id: row.id,
    status: oneOf(ALL_WORK_ORDER_STATUSES, row.status, 'work order status'),
    source: oneOf(ALL_WORK_ORDER_SOURCES, row.source, 'work order source'),
    spec: parseJsonObject(row.spec_json, 'work order spec'),
    request: row.request_json === null ? null : parseJsonObject(row.request_json, 'work order request'),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function mapRun(row: RunRow): StoredRun {
  const result: RunResult | null = row.result === null ? null : oneOf(ALL_RESULTS, row.result, 'run result');
  const state: RunState = oneOf(ALL_STATES, row.state, 'run state');
  return {
    id: row.id,
    workOrderId: row.work_order_id,
    state,
    iteration: row.iteration,
    maxIterations: row.max_iterations,
    result,
    error: parseRunError(row.error_json),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    branch: row.branch,
    meta: parseJsonObject(row.data_json, 'run metadata'),
    version: row.version,
  };
}

export function mapEvent(row: EventRow): StoredEvent {
  return {
    seq: row.seq,
    runId: row.run_id,
    workOrderId: row.work_order_id,
    type: row.type,
    timestamp: row.timestamp,
    data: parseJsonObject(row.data_json, 'event data'),
  };
}

export function mapWorkOrderEvent(row: WorkOrderEventRow): StoredWorkOrderEvent {
  return {
    seq: row.seq,
    workOrderId: row.work_order_id,
    type: row.type,
    timestamp: row.timestamp,
    data: parseJsonObject(row.data_json, 'work order event data'),
  };
}

export function mapIteration(row: IterationRow): StoredIterationRecord {
  const record = parseJsonObject(row.data_json, 'iteration record');
  if (!isIterationRecord(record)) throw corrupt(`iteration record ${row.run_id}#${row.iteration}`);
  return {
    runId: row.run_id,
    iteration: row.iteration,
    record,
    startedAt: row.started_at,
    completedAt: row.completed_at,
  };
}

export function mapLease(row: LeaseRow): Lease {
  return {
    key: row.key,
    owner: row.owner,
    runId: row.run_id,
    expiresAt: new Date(row.expires_at).toISOString(),
    heartbeatAt: new Date(row.heartbeat_at).toISOString(),
  };
}
