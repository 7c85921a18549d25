/**
 * API-key authentication and browser tickets (SPEC 10), the {@link ServerAuth} of the HTTP server.
 *
 * The key is compared in constant time: both sides are hashed to a fixed length first, so neither the
 * content nor the length of the configured key leaks through response timing. Browsers cannot set an
 * `Authorization` header on a WebSocket, so an authenticated `POST /api/v1/auth/ticket` hands out a
 * random, single-use ticket valid for {@link DEFAULT_TICKET_TTL_MS}; the browser offers it as the
 * WebSocket subprotocol `agentgate.ticket.<ticket>` — never in a URL, which would land in access logs.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import type { ServerAuth } from './contracts.js';

/** Long enough to open a socket right after asking, short enough that a leaked ticket is worthless. */
export const DEFAULT_TICKET_TTL_MS = 30_000;

/**
 * Outstanding tickets kept at most; the oldest is dropped beyond it, so a client that asks for tickets
 * in a loop cannot grow the server's memory.
 */
export const MAX_OUTSTANDING_TICKETS = 10_000;

/** The WebSocket subprotocol prefix that carries a ticket: `agentgate.ticket.<ticket>`. */
export const TICKET_PROTOCOL_PREFIX = 'agentgate.ticket.';

/** 32 random bytes, base64url: 43 characters, all legal in a subprotocol token. */
const TICKET_BYTES = 32;
const TICKET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export interface ServerAuthOptions {
  /** No key (undefined or empty): authentication is off and every route is open. */
  readonly apiKey?: string | undefined;
  readonly ticketTtlMs?: number;
  readonly clock?: Clock;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The bearer token of an `Authorization` header, or null. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1] ?? null;
}

/**
 * The ticket offered in a `Sec-WebSocket-Protocol` header (`agentgate.ticket.<t>`, possibly among other
 * protocols), or null.
 */
export function ticketFromProtocols(header: string | string[] | undefined): string | null {
  const values = header === undefined ? [] : Array.isArray(header) ? header : [header];
  for (const value of values) {
    for (const protocol of value.split(',')) {
      const trimmed = protocol.trim();
      if (trimmed.startsWith(TICKET_PROTOCOL_PREFIX)) return trimmed.slice(TICKET_PROTOCOL_PREFIX.length);
    }
  }
  return null;
}

export class ApiKeyAuth implements ServerAuth {
  readonly required: boolean;
  private readonly keyDigest: Buffer | null;
  private readonly ttlMs: number;
  private readonly clock: Clock;
  /** ticket → expiry (epoch ms), in issue order (Map keeps insertion order). */
  private readonly tickets = new Map<string, number>();

  constructor(options: ServerAuthOptions = {}) {
    const key = options.apiKey;
    this.required = key !== undefined && key !== '';
    this.keyDigest = this.required && key !== undefined ? digest(key) : null;
    const ttl = options.ticketTtlMs ?? DEFAULT_TICKET_TTL_MS;
    if (!Number.isInteger(ttl) || ttl <= 0) throw new AgentGateError('AG_ERR_CONFIG_INVALID', `ticketTtlMs: expected a positive integer, got ${String(ttl)}`);
    this.ttlMs = ttl;
    this.clock = options.clock ?? { now: () => Date.now() };
  }

  authorize(request: FastifyRequest): boolean {
    if (this.keyDigest === null) return true;
    const token = bearerToken(request.headers.authorization);
    if (token === null) return false;
    return timingSafeEqual(digest(token), this.keyDigest);
  }

  issueTicket(): { readonly ticket: string; readonly expiresAt: string } {
    const now = this.clock.now();
    this.prune(now);
    while (this.tickets.size >= MAX_OUTSTANDING_TICKETS) {
      const oldest = this.tickets.keys().next();
      if (oldest.done === true) break;
      this.tickets.delete(oldest.value);
    }
    const ticket = randomBytes(TICKET_BYTES).toString('base64url');
    const expiresAt = now + this.ttlMs;
    this.tickets.set(ticket, expiresAt);
    return { ticket, expiresAt: new Date(expiresAt).toISOString() };
  }

  redeemTicket(ticket: string): boolean {
    if (!TICKET_PATTERN.test(ticket)) return false;
    const expiresAt = this.tickets.get(ticket);
    if (expiresAt === undefined) return false;
    // Single use: gone whether or not it was still valid.
    this.tickets.delete(ticket);
    return this.clock.now() < expiresAt;
  }

  /** Tickets are issued with one TTL, so the Map's insertion order is expiry order: drop from the front. */
  private prune(now: number): void {
    for (const [ticket, expiresAt] of this.tickets) {
      if (expiresAt > now) return;
      this.tickets.delete(ticket);
    }
  }
}

export function createServerAuth(options: ServerAuthOptions = {}): ServerAuth {
  return new ApiKeyAuth(options);
}
