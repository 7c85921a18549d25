import WebSocket from 'ws';
import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { isPublicRoute, listRoutes } from '../../src/server/app.js';
import { ApiKeyAuth, MAX_OUTSTANDING_TICKETS, bearerToken, ticketFromProtocols } from '../../src/server/auth.js';
import { ManualClock } from '../../src/util/clock.js';
import { serversClosedAfterEach } from './harness.js';

const KEY = 'test-api-key-0123456789';

const server = serversClosedAfterEach();

function requestWith(authorization?: string): FastifyRequest {
  // Only the headers are read by authorize().
  const request: Pick<FastifyRequest, 'headers'> = { headers: authorization === undefined ? {} : { authorization } };
  return request as FastifyRequest;
}

/** Opens a WebSocket offering `protocols`; resolves with the HTTP status of the refusal, or 101. */
function upgradeStatus(url: string, protocols: string[], headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, protocols, { headers });
    socket.on('open', () => {
      socket.on('close', () => resolve(101));
      socket.close();
    });
    socket.on('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.on('error', (error) => {
      if (!('statusCode' in error)) reject(error);
    });
  });
}

describe('ApiKeyAuth', () => {
  it('accepts exactly the configured bearer key', () => {
    const auth = new ApiKeyAuth({ apiKey: KEY });
    expect(auth.required).toBe(true);
    expect(auth.authorize(requestWith(`Bearer ${KEY}`))).toBe(true);
    expect(auth.authorize(requestWith(`bearer ${KEY}`))).toBe(true);
    for (const header of [undefined, '', KEY, `Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`, `Basic ${KEY}`, `Bearer  `, `Bearer ${KEY} extra`]) {
      expect(auth.authorize(requestWith(header)), String(header)).toBe(false);
    }
  });

  it('is open when no key (or an empty one) is configured', () => {
    for (const apiKey of [undefined, '']) {
      const auth = new ApiKeyAuth(apiKey === undefined ? {} : { apiKey });
      expect(auth.required).toBe(false);
      expect(auth.authorize(requestWith())).toBe(true);
    }
  });

  it('hands out random tickets that redeem once, within their TTL', async () => {
    const clock = new ManualClock();
    const auth = new ApiKeyAuth({ apiKey: KEY, clock, ticketTtlMs: 30_000 });
    const first = auth.issueTicket();
    const second = auth.issueTicket();
    expect(first.ticket).not.toBe(second.ticket);
    expect(first.ticket).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(first.expiresAt) - clock.now()).toBe(30_000);
    expect(auth.redeemTicket(first.ticket)).toBe(true);
    expect(auth.redeemTicket(first.ticket)).toBe(false);
    await clock.advance(30_000);
    expect(auth.redeemTicket(second.ticket)).toBe(false);
    expect(auth.redeemTicket('not-a-ticket')).toBe(false);
  });

  it('keeps at most MAX_OUTSTANDING_TICKETS, dropping the oldest', () => {
    const auth = new ApiKeyAuth({ apiKey: KEY });
    const oldest = auth.issueTicket().ticket;
    for (let i = 0; i < MAX_OUTSTANDING_TICKETS; i += 1) auth.issueTicket();
    expect(auth.redeemTicket(oldest)).toBe(false);
  });

  it('reads bearer tokens and ticket subprotocols', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('Token abc')).toBeNull();
    expect(ticketFromProtocols('agentgate.v1, agentgate.ticket.abc')).toBe('abc');
    expect(ticketFromProtocols(['agentgate.v1'])).toBeNull();
    expect(ticketFromProtocols(undefined)).toBeNull();
  });
});

describe('with an API key configured', () => {
  it('refuses every route but /health* without the key, and accepts it with the key', async () => {
    const s = await server({ apiKey: KEY, startQueue: false });
    // Every registered route, including routes added by plugins later: none may escape the check.
    const routes = listRoutes(s.app);
    expect(routes.length).toBeGreaterThanOrEqual(14);
    const checked: string[] = [];
    for (const { method, url } of routes) {
      const path = url.replace(/:[A-Za-z]+/g, 'some-id').replace(/\*$/, 'x');
      const isHealth = url === '/health' || url.startsWith('/health/');
      // The dashboard's page and assets hold no data: open, like /health*. Everything else needs the key.
      const isDashboard = isPublicRoute(url) && !isHealth;
      expect(isPublicRoute(url), `${method} ${url} is public`).toBe(isHealth || url === '/' || url === '/assets/*');
      for (const authorization of [undefined, 'Bearer wrong-key', `Basic ${KEY}`]) {
        const reply = await s.request(method, path, { headers: authorization === undefined ? {} : { authorization } });
        if (isHealth) {
          expect(reply.status, `${method} ${url}`).toBe(200);
        } else if (isDashboard) {
          expect(reply.status, `${method} ${url}`).not.toBe(401);
        } else {
          expect(reply.status, `${method} ${url} with ${String(authorization)}`).toBe(401);
          if (method !== 'HEAD') expect(reply.json?.error?.code).toBe('AG_ERR_API_UNAUTHORIZED');
          expect(reply.headers.get('www-authenticate')).toContain('Bearer');
          expect(reply.headers.get('x-request-id')).toMatch(/\S/);
        }
      }
      const authorized = await s.request(method, path, { headers: { authorization: `Bearer ${KEY}` } });
      expect(authorized.status, `${method} ${url} with the key`).not.toBe(401);
      checked.push(`${method} ${url}`);
    }
    expect(checked).toEqual(
      expect.arrayContaining(['POST /api/v1/work-orders', 'GET /metrics', 'GET /docs/json', 'POST /api/v1/auth/ticket', 'GET /ws', 'GET /api/v1/runs/:id/stream', 'GET /api/v1/runs/:id/events']),
    );
    // Unknown routes are refused before they are found.
    expect((await s.request('GET', '/api/v1/unknown')).status).toBe(401);
  });

  it('issues a ticket only to an authenticated client; the ticket opens one WebSocket upgrade, once', async () => {
    const s = await server({ apiKey: KEY, startQueue: false });
    expect((await s.request('POST', '/api/v1/auth/ticket')).status).toBe(401);
    const issued = await s.request('POST', '/api/v1/auth/ticket', { headers: { authorization: `Bearer ${KEY}` } });
    expect(issued.status).toBe(201);
    expect(issued.headers.get('cache-control')).toBe('no-store');
    const { ticket, protocol } = issued.json?.data as { ticket: string; protocol: string };
    expect(protocol).toBe(`agentgate.ticket.${ticket}`);
    const wsUrl = `${s.url.replace('http', 'ws')}/ws`;
    expect(await upgradeStatus(wsUrl, ['agentgate.ticket.not-issued'])).toBe(401);
    // Redeemed: passes authentication (101 once the event routes serve /ws, 404 before).
    expect(await upgradeStatus(wsUrl, [protocol])).not.toBe(401);
    expect(await upgradeStatus(wsUrl, [protocol])).toBe(401);
    // The key works on the upgrade too.
    expect(await upgradeStatus(wsUrl, [], { authorization: `Bearer ${KEY}` })).not.toBe(401);
    // A ticket is not a key for plain HTTP.
    const other = (await s.request('POST', '/api/v1/auth/ticket', { headers: { authorization: `Bearer ${KEY}` } })).json?.data as { ticket: string };
    expect((await s.request('GET', '/api/v1/queue', { headers: { authorization: `Bearer ${other.ticket}` } })).status).toBe(401);
  });
});

describe('without an API key', () => {
  it('serves every route', async () => {
    const s = await server({ startQueue: false });
    expect((await s.request('GET', '/api/v1/queue')).status).toBe(200);
    expect((await s.request('POST', '/api/v1/auth/ticket')).status).toBe(201);
  });
});
