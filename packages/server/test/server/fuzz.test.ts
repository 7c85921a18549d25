/**
 * Property-based fuzzing of every route (SPEC 14): whatever a client sends — random JSON, random bytes,
 * structurally-near-valid documents, odd ids, query strings and media types — the answer is never a 5xx,
 * always the envelope with an AG_ERR_* code on failure, and the server keeps serving. The queue is not
 * started, so a body that happens to be valid is stored and waits instead of running.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type Reply, type TestServer } from './harness.js';

const RUNS = 120;

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ startQueue: false, apiKey: 'fuzz-key', server: { bodyLimit: 64 * 1024 } });
});
afterAll(async () => {
  await s.close();
});

const AUTH = { authorization: 'Bearer fuzz-key' };

function expectSane(reply: Reply, what: string): void {
  expect(reply.status, `${what} → ${reply.status} ${reply.text.slice(0, 300)}`).toBeLessThan(500);
  expect(reply.headers.get('x-request-id'), what).toMatch(/\S/);
  if (reply.status >= 400) {
    expect(reply.json?.success, what).toBe(false);
    expect(reply.json?.error?.code, what).toMatch(/^AG_ERR_[A-Z_]+$/);
  }
}

/** JSON-serialisable anything, including top-level scalars and nulls. */
const anyJson = fc.oneof(fc.jsonValue(), fc.anything().map((value) => JSON.stringify(value) ?? 'null').map((text) => JSON.parse(text) as unknown));

/** A value that is sometimes right for a field and sometimes anything. */
function near<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 3, arbitrary: valid }, { weight: 1, arbitrary: fc.jsonValue() });
}

const workspaceSource = fc.oneof(
  fc.record({ type: near(fc.constant('local')), path: near(fc.string()), branch: near(fc.string()) }, { requiredKeys: ['type'] }),
  fc.record({ type: near(fc.constant('git')), url: near(fc.webUrl()), ref: near(fc.string()) }, { requiredKeys: ['type'] }),
  fc.record({ type: near(fc.constant('github')), repo: near(fc.constantFrom('acme/api', 'api', '../x')), owner: near(fc.string()) }, { requiredKeys: ['type'] }),
  fc.record({ type: near(fc.constant('gitlab')), project: near(fc.oneof(fc.integer(), fc.string())) }, { requiredKeys: ['type'] }),
);

const legacyBody = fc.record(
  {
    taskPrompt: near(fc.string({ maxLength: 200 })),
    workspaceSource: near(workspaceSource),
    agentType: near(fc.constantFrom('command', 'claude-code', 'codex', 'claude-code-subscription', 'claude-code-api', 'gpt')),
    agentCommand: near(fc.constantFrom('true', 'false', '')),
    maxIterations: near(fc.integer({ min: -5, max: 200 })),
    maxTime: near(fc.integer({ min: -5, max: 100_000 })),
    waitForCI: near(fc.boolean()),
    harness: near(
      fc.record(
        {
          profile: near(fc.string()),
          loopStrategy: near(fc.record({ mode: near(fc.constantFrom('fixed', 'hybrid', 'ralph', 'manual')), maxIterations: near(fc.integer({ min: -1, max: 200 })) })),
          gitOps: near(fc.record({ mode: near(fc.constantFrom('local', 'push_only', 'github_pr', 'gitlab_mr')) })),
          verification: near(fc.record({ waitForCI: near(fc.boolean()) })),
        },
        { requiredKeys: [] },
      ),
    ),
    gatePlanSource: fc.string(),
  },
  { requiredKeys: [] },
);

const taskSpec = fc.record(
  {
    apiVersion: near(fc.constant('agentgate.io/v1')),
    kind: near(fc.constant('TaskSpec')),
    metadata: near(fc.record({ name: near(fc.string()), labels: near(fc.dictionary(fc.string(), fc.string())) }, { requiredKeys: ['name'] })),
    spec: near(
      fc.record(
        {
          goal: near(fc.record({ prompt: near(fc.string()), context: near(fc.string()) }, { requiredKeys: ['prompt'] })),
          convergence: near(fc.record({ strategy: near(fc.constantFrom('fixed', 'hybrid', 'ralph', 'manual')), limits: near(fc.record({ maxIterations: near(fc.integer()), maxWallClock: near(fc.constantFrom('10m', '1h', 'soon', '-1s')) }, { requiredKeys: [] })) }, { requiredKeys: [] })),
          execution: near(
            fc.record({
              workspace: near(fc.record({ source: near(fc.constantFrom('local', 'git', 'github')), path: near(fc.string()), url: near(fc.string()) }, { requiredKeys: ['source'] })),
              agent: near(fc.record({ driver: near(fc.constantFrom('command', 'claude-code', 'codex')), command: near(fc.string()), env: near(fc.dictionary(fc.string(), fc.string())) }, { requiredKeys: ['driver'] })),
            }),
          ),
          delivery: near(fc.record({ pr: near(fc.record({ create: near(fc.boolean()) })), ci: near(fc.record({ wait: near(fc.boolean()) })) }, { requiredKeys: [] })),
        },
        { requiredKeys: ['goal'] },
      ),
    ),
  },
  { requiredKeys: [] },
);

/** Raw bodies: JSON texts, broken JSON, random (also non-UTF-8) bytes, YAML-ish text. */
const rawBody = fc.oneof(
  fc.json().map((text) => ({ raw: text, contentType: 'application/json' })),
  fc.string().map((text) => ({ raw: `{"taskPrompt": ${text}`, contentType: 'application/json' })),
  fc.uint8Array({ maxLength: 256 }).map((bytes) => ({ raw: bytes, contentType: 'application/json' })),
  fc.string({ maxLength: 300 }).map((text) => ({ raw: text, contentType: 'application/yaml' })),
  fc.tuple(fc.string(), fc.constantFrom('text/plain', 'application/xml', 'multipart/form-data', 'application/json; charset=latin1', 'text/yaml; charset=utf-8', '', 'a/b/c')).map(([text, contentType]) => ({ raw: text, contentType })),
);

const body = fc.oneof(
  anyJson.map((value) => ({ raw: JSON.stringify(value), contentType: 'application/json' })),
  legacyBody.map((value) => ({ raw: JSON.stringify(value), contentType: 'application/json' })),
  taskSpec.map((value) => ({ raw: JSON.stringify(value), contentType: 'application/json' })),
  rawBody,
);

/** Path segments: ids, traversal attempts, encoded junk. */
const idSegment = fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 300 }), fc.constantFrom('..', '%2e%2e', '%00', 'a%2Fb', '%E0%A4%A', ' ', '%')).map((id) => (/^%|^\.\.$/.test(id) ? id : encodeURIComponent(id)));

const query = fc
  .array(fc.tuple(fc.constantFrom('limit', 'offset', 'status', 'state', 'workOrderId', 'x', '__proto__', 'constructor'), fc.oneof(fc.string(), fc.integer().map(String), fc.constantFrom('', '-1', '1e3', '0x10', 'queued', 'succeeded'))), { maxLength: 5 })
  .map((pairs) => pairs.map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`).join('&'));

async function send(method: string, path: string, payload?: { raw: string | Uint8Array; contentType: string }): Promise<Reply> {
  return s.request(method, path, { headers: AUTH, ...(payload !== undefined && { raw: payload.raw, contentType: payload.contentType }) });
}

describe('fuzzing every route', () => {
  it.each(['/api/v1/work-orders', '/api/v1/tasks'])('POST %s never answers 5xx', async (path) => {
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        expectSane(await send('POST', path, payload), `POST ${path}`);
      }),
      { numRuns: RUNS },
    );
  });

  it.each([
    ['GET', '/api/v1/work-orders/:id'],
    ['DELETE', '/api/v1/work-orders/:id'],
    ['POST', '/api/v1/work-orders/:id/runs'],
    ['GET', '/api/v1/runs/:id'],
  ])('%s %s with any id never answers 5xx', async (method, pattern) => {
    await fc.assert(
      fc.asyncProperty(idSegment, fc.option(body, { nil: undefined }), async (id, payload) => {
        const path = pattern.replace(':id', id);
        expectSane(await send(method, path, method === 'GET' ? undefined : payload), `${method} ${path}`);
      }),
      { numRuns: RUNS },
    );
  });

  it.each(['/api/v1/work-orders', '/api/v1/runs', '/api/v1/queue', '/metrics', '/health', '/health/ready', '/health/live'])('GET %s with any query never answers 5xx', async (path) => {
    await fc.assert(
      fc.asyncProperty(query, async (q) => {
        expectSane(await send('GET', `${path}?${q}`), `GET ${path}?${q}`);
      }),
      { numRuns: path.startsWith('/api/v1/') ? RUNS : 30 },
    );
  });

  it('POST /api/v1/auth/ticket with any body never answers 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        expectSane(await send('POST', '/api/v1/auth/ticket', payload), 'POST /api/v1/auth/ticket');
      }),
      { numRuns: 50 },
    );
  });

  it('any method on any path, with any headers, never answers 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'),
        fc.array(idSegment, { minLength: 1, maxLength: 4 }),
        fc.option(fc.constantFrom('Bearer fuzz-key', 'Bearer x', 'Basic Zm9v', '', 'Bearer'), { nil: undefined }),
        fc.option(fc.string({ maxLength: 200 }), { nil: undefined }),
        async (method, segments, authorization, requestId) => {
          const headers: Record<string, string> = {};
          if (authorization !== undefined) headers['authorization'] = authorization;
          if (requestId !== undefined && /^[\t\x20-\x7e]*$/.test(requestId)) headers['x-request-id'] = requestId;
          const reply = await s.request(method, `/${segments.join('/')}`, { headers });
          expectSane(reply, `${method} /${segments.join('/')}`);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('still serves after all of it', async () => {
    const reply = await s.request('GET', '/health/ready');
    expect(reply.status).toBe(200);
    expect((await send('GET', '/api/v1/queue')).status).toBe(200);
  });
});
