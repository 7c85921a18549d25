/**
 * The WebSocket protocol of `GET /ws` (SPEC 11, docs/events.md "WebSocket"): the client messages as zod
 * schemas, the server's control messages as types, and the close codes. Kept apart from the connection
 * so the dashboard, the CLI and the tests read one definition.
 */
import { z } from 'zod';
import { isRunEventType, isWorkOrderEventType } from '../observability/event-envelope.js';

/**
 * Close codes (RFC 6455 §7.4.2 leaves 4000–4999 to applications).
 * - `lagged` 4008: the client fell more than the connection's buffer behind; the reason names the
 *   subscription and the `afterSeq` to resume from (every event up to it was sent before the close).
 * - `goingAway` 1001: the server is shutting down.
 * - `messageTooBig` 1009: a client message above {@link MAX_MESSAGE_BYTES} (closed by `ws` itself).
 * A socket that stops answering heartbeats is terminated without a close frame (the client sees 1006).
 */
export const WS_CLOSE = {
  goingAway: 1001,
  messageTooBig: 1009,
  lagged: 4008,
} as const;

/** Largest client message accepted; subscribe messages are a few hundred bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024;

/** Subscriptions one socket may hold at once (a dashboard watches a page of runs, not thousands). */
export const MAX_SUBSCRIPTIONS_PER_SOCKET = 100;

/** The subprotocol a client offers alongside its ticket, so the server has a non-secret one to select. */
export const WS_PROTOCOL = 'agentgate.v1';

/** Prefix of the browser ticket subprotocol: `agentgate.ticket.<ticket>` (src/server/contracts.ts). */
export const TICKET_PROTOCOL_PREFIX = 'agentgate.ticket.';

const id = z.string().min(1).max(200);

const subscribe = z
  .object({
    type: z.literal('subscribe'),
    runId: id.optional(),
    workOrderId: id.optional(),
    afterSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    filters: z.array(z.string().min(1).max(100)).max(32).optional(),
  })
  .superRefine((value, ctx) => {
    if ((value.runId === undefined) === (value.workOrderId === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['runId'], message: 'exactly one of runId or workOrderId is required' });
      return;
    }
    const known = value.runId !== undefined ? isRunEventType : isWorkOrderEventType;
    value.filters?.forEach((type, index) => {
      if (!known(type)) ctx.addIssue({ code: 'custom', path: ['filters', index], message: `unknown event type for this subscription: ${type}` });
    });
  });

const unsubscribe = z
  .object({ type: z.literal('unsubscribe'), runId: id.optional(), workOrderId: id.optional() })
  .refine((value) => (value.runId === undefined) !== (value.workOrderId === undefined), {
    path: ['runId'],
    message: 'exactly one of runId or workOrderId is required',
  });

const ping = z.object({ type: z.literal('ping') });

export type SubscribeMessage = z.infer<typeof subscribe>;
export type UnsubscribeMessage = z.infer<typeof unsubscribe>;
export type ClientMessage = SubscribeMessage | UnsubscribeMessage | z.infer<typeof ping>;

export interface MessageIssue {
  readonly path: string;
  readonly message: string;
}

export type ParsedMessage = { readonly ok: true; readonly message: ClientMessage } | { readonly ok: false; readonly message: string; readonly issues: MessageIssue[] };

/** Parses one text frame. Never throws: anything wrong becomes issues naming the field path. */
export function parseClientMessage(text: string): ParsedMessage {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, message: 'message is not valid JSON', issues: [{ path: '', message: 'invalid JSON' }] };
  }
  const type = typeof json === 'object' && json !== null && 'type' in json ? (json as { type: unknown }).type : undefined;
  const schema = type === 'subscribe' ? subscribe : type === 'unsubscribe' ? unsubscribe : type === 'ping' ? ping : null;
  if (schema === null) {
    return { ok: false, message: 'unknown message type (expected subscribe, unsubscribe or ping)', issues: [{ path: 'type', message: 'expected subscribe | unsubscribe | ping' }] };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, message: parsed.data };
  const issues = parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join('.'), message: issue.message }));
  const first = issues[0];
  return { ok: false, message: first === undefined ? 'invalid message' : `${first.path || 'message'}: ${first.message}`, issues };
}

/** What a subscription is keyed by: one run's log or one work order's log. */
export type SubscriptionTarget = { readonly runId: string } | { readonly workOrderId: string };

export function targetOf(message: { readonly runId?: string | undefined; readonly workOrderId?: string | undefined }): SubscriptionTarget {
  return message.runId !== undefined ? { runId: message.runId } : { workOrderId: message.workOrderId ?? '' };
}

export function targetKey(target: SubscriptionTarget): string {
  return 'runId' in target ? `run:${target.runId}` : `workOrder:${target.workOrderId}`;
}

/** Why the server stopped one subscription (the socket stays open unless the reason is `lagged`). */
export type SubscriptionEndReason = 'run_ended' | 'unsubscribed' | 'lagged' | 'error';

/** Control messages the server sends; events are sent as their envelope plus `"kind": "event"`. */
export type ServerControlMessage =
  | ({ readonly type: 'subscription_confirmed'; readonly afterSeq: number; readonly filters: readonly string[] | null } & SubscriptionTarget)
  | ({ readonly type: 'subscription_ended'; readonly reason: SubscriptionEndReason; readonly lastSeq: number; readonly error?: { code: string; message: string } } & SubscriptionTarget)
  | { readonly type: 'pong'; readonly timestamp: string }
  | { readonly type: 'error'; readonly code: string; readonly message: string; readonly details?: { readonly issues?: readonly MessageIssue[] } & Record<string, unknown> };
