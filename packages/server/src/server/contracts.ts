/**
 * The seams between the parts of the HTTP server (issue 9), written first so the app, the event routes
 * and the queue can be built side by side: the {@link WorkOrderQueue} (durable queue + scheduler, in
 * `execution/work-order-queue.ts`) and {@link ServerAuth} (API key and browser tickets, in
 * `server/auth.ts`). Routes depend on these interfaces, never on each other's internals.
 */
import type { FastifyRequest } from 'fastify';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { StoredWorkOrder, WorkOrderSource } from '../store/types.js';

export interface QueueEntry {
  readonly workOrderId: string;
  /** 1 = next to run. */
  readonly position: number;
  readonly queuedAt: string;
}

export interface QueueSnapshot {
  /** Work orders waiting to run. */
  readonly depth: number;
  /** Runs executing now (in this process). */
  readonly running: number;
  readonly maxConcurrent: number;
  /** Waiting work orders, next first. */
  readonly entries: readonly QueueEntry[];
}

export interface SubmitWorkOrder {
  readonly spec: ResolvedTaskSpec;
  readonly source: WorkOrderSource;
  /** The request exactly as the client sent it (legacy WorkOrder body, TaskSpec document). */
  readonly request: object | null;
}

/**
 * The durable queue: work orders are stored `queued` and run automatically, oldest first, as capacity
 * (`maxConcurrent`) allows; they survive a restart. Errors are AgentGateErrors: AG_ERR_WORK_ORDER_NOT_FOUND
 * (404), AG_ERR_API_CONFLICT (409) for a state that does not allow the operation.
 */
export interface WorkOrderQueue {
  /** Validates (agent, delivery, sandbox) before storing; stores the work order `queued`; schedules. */
  submit(input: SubmitWorkOrder): Promise<StoredWorkOrder>;
  /** Cancels a queued work order (→ canceled) or its running run (→ the run ends canceled). */
  cancel(workOrderId: string, reason?: string): Promise<StoredWorkOrder>;
  /** Queues another run of a finished work order (its stored spec). 409 while it is queued or running. */
  runAgain(workOrderId: string): Promise<StoredWorkOrder>;
  snapshot(): Promise<QueueSnapshot>;
  /** The work order's position while it waits, else null. */
  position(workOrderId: string): Promise<number | null>;
  /** Starts scheduling (and periodic reconciliation). Idempotent. */
  start(): void;
  /** Stops taking new work; cancels or drains running runs within `deadlineMs`. Idempotent. */
  close(options?: { readonly drainMs?: number; readonly cancelReason?: string }): Promise<void>;
}

/**
 * API-key authentication (SPEC 10): when a key is configured, every route except `/health*` requires
 * `Authorization: Bearer <key>` — including `/ws` and SSE. Browsers cannot set headers on a WebSocket or
 * an EventSource, so an authenticated `POST /api/v1/auth/ticket` hands out a short-lived, single-use
 * ticket that the browser passes as the WebSocket subprotocol `agentgate.ticket.<ticket>` (never in a URL,
 * which would land in access logs).
 */
export interface ServerAuth {
  /** False when no API key is configured (everything is open). */
  readonly required: boolean;
  /** Whether the request carries the right key (constant-time comparison), or no key is required. */
  authorize(request: FastifyRequest): boolean;
  /** A new ticket valid for `ttlMs` (default 30 s), for one WebSocket or SSE connection. */
  issueTicket(): { readonly ticket: string; readonly expiresAt: string };
  /** Consumes a ticket: true once, while it is valid. */
  redeemTicket(ticket: string): boolean;
}
