/**
 * The typed event map of the event hub (SPEC 11). Every event is persisted with a per-run `seq`
 * before any listener sees it. `docs/events.md` documents each type; a test keeps both in sync.
 */
import type { RunEvent, RunResult, RunState } from '../orchestrator/state-machine.js';

export type PhaseName = 'workspace' | 'build' | 'snapshot' | 'verify' | 'feedback' | 'delivery';

export interface UsageTotals {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export interface ErrorPayload {
  code: string;
  message: string;
  phase?: string;
  iteration?: number;
}

export interface ProgressEvents {
  run_started: { maxIterations: number; strategy: string; agent: string; workspace: string; branch: string; warnings: string[] };
  run_state_changed: { from: RunState; event: RunEvent; to: RunState; iteration: number; result?: RunResult; error?: ErrorPayload };
  iteration_started: { iteration: number };
  iteration_completed: {
    iteration: number;
    passed: boolean;
    durationMs: number;
    /** What the agent reported for this iteration (absent when the agent never ran). */
    agent?: { inputTokens: number; outputTokens: number; costUsd: number; turns: number };
  };
  phase_started: { iteration: number; phase: PhaseName };
  phase_completed: { iteration: number; phase: PhaseName; ok: boolean; durationMs: number; error?: ErrorPayload };
  gate_checked: { iteration: number; gate: string; level: string; passed: boolean; durationMs: number; exitCode?: number | null; message?: string };
  convergence_decision: { iteration: number; strategy: string; decision: 'continue' | 'stop'; reason: string };
  delivery_started: { kind: string; iteration: number };
  delivery_completed: { kind: string; ok: boolean; branch?: string; prUrl?: string; error?: ErrorPayload };
  ci_status: { iteration: number; status: string; detail?: string };
  agent_output: { iteration: number; stream: 'stdout' | 'stderr' | 'text'; text: string };
  agent_tool_call: { iteration: number; tool: string; id?: string; input: unknown };
  agent_tool_result: { iteration: number; id?: string; isError: boolean; output: string };
  run_completed: { result: RunResult; iterations: number; branch: string; durationMs: number; unverified: boolean; usage: UsageTotals };
  run_failed: { result: RunResult; iterations: number; branch: string; durationMs: number; error: ErrorPayload | null; usage: UsageTotals };
  run_canceled: { iterations: number; branch: string; durationMs: number; reason: string };
  work_order_created: { status: string };
  work_order_updated: { status: string; runId?: string; reason?: string };
}

export type ProgressEventType = keyof ProgressEvents;

export const PROGRESS_EVENT_TYPES = [
  'run_started',
  'run_state_changed',
  'iteration_started',
  'iteration_completed',
  'phase_started',
  'phase_completed',
  'gate_checked',
  'convergence_decision',
  'delivery_started',
  'delivery_completed',
  'ci_status',
  'agent_output',
  'agent_tool_call',
  'agent_tool_result',
  'run_completed',
  'run_failed',
  'run_canceled',
  'work_order_created',
  'work_order_updated',
] as const satisfies readonly ProgressEventType[];

/** The stored and delivered envelope of one event. */
export interface ProgressEnvelope<T extends ProgressEventType = ProgressEventType> {
  seq: number;
  runId: string;
  workOrderId: string;
  type: T;
  timestamp: string;
  data: ProgressEvents[T];
}

/** Where a phase or driver sends events; the engine binds it to one run. */
export type EmitFn = <T extends ProgressEventType>(type: T, data: ProgressEvents[T]) => void;

/** The two types of a work order's own log (its own `seq`, not a run's). */
export type WorkOrderEventType = 'work_order_created' | 'work_order_updated';

/** Types of a run's log: every {@link ProgressEventType} except the work-order ones. */
export type RunEventType = Exclude<ProgressEventType, WorkOrderEventType>;

/** One envelope per run event type, keyed by type: `RunEnvelopeMap[T]` is the envelope of `T`. */
export type RunEnvelopeMap = { [T in RunEventType]: ProgressEnvelope<T> };

/**
 * A run event as a discriminated union: `switch (event.type)` narrows `event.data` without casts.
 * Every member is a {@link ProgressEnvelope}, so listeners written for the old emitter accept it.
 */
export type RunEventEnvelope = RunEnvelopeMap[RunEventType];

/** An entry of a work order's log: `seq` is the work order's own sequence (1, 2, 3 … no gaps). */
export interface WorkOrderEnvelope<T extends WorkOrderEventType = WorkOrderEventType> {
  seq: number;
  workOrderId: string;
  type: T;
  timestamp: string;
  data: ProgressEvents[T];
}

export type WorkOrderEnvelopeMap = { [T in WorkOrderEventType]: WorkOrderEnvelope<T> };

/** A work-order event as a discriminated union on `type`. */
export type WorkOrderEventEnvelope = WorkOrderEnvelopeMap[WorkOrderEventType];

/** A run event to append: `type` and `data` checked together (the store assigns seq and timestamp). */
export type NewRunEvent = {
  [T in RunEventType]: { readonly type: T; readonly data: ProgressEvents[T]; readonly timestamp?: string };
}[RunEventType];
