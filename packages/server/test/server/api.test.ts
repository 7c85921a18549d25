import { describe, expect, it } from 'vitest';
import { listRoutes } from '../../src/server/app.js';
import { AGENTS } from '../helpers/git-repo.js';
import { serversClosedAfterEach, type Envelope, type TestServer } from './harness.js';

const server = serversClosedAfterEach();

function data<T>(envelope: Envelope | undefined): T {
  expect(envelope?.success).toBe(true);
  return envelope?.data as T;
}

function taskSpecJson(s: TestServer, command: string, name = 'api-task'): Record<string, unknown> {
  return {
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name, labels: { team: 'core' } },
    spec: {
      goal: { prompt: 'Implement add and multiply' },
      convergence: { limits: { maxIterations: 2 } },
      execution: { workspace: { source: 'local', path: s.repo.repo }, agent: { driver: 'command', command, env: { MODEL_KEY: 'sk-secret-value-123' } } },
    },
  };
}

function taskSpecYaml(s: TestServer, command: string): string {
  return `apiVersion: agentgate.io/v1
kind: TaskSpec
metadata:
  name: yaml-task
spec:
  goal:
    prompt: Implement add and multiply
  convergence:
    limits:
      maxIterations: 2
  execution:
    workspace:
      source: local
      path: ${JSON.stringify(s.repo.repo)}
    agent:
      driver: command
      command: ${JSON.stringify(command)}
`;
}

describe('POST /api/v1/tasks', () => {
  it('takes a TaskSpec as JSON, runs it, and never shows agent.env values', async () => {
    const s = await server();
    const reply = await s.request('POST', '/api/v1/tasks', { body: taskSpecJson(s, s.agent('a', AGENTS.correct)) });
    expect(reply.status).toBe(201);
    const workOrder = data<{ id: string; source: string; name: string }>(reply.json);
    expect(workOrder).toMatchObject({ source: 'task_spec', name: 'api-task' });
    expect(reply.text).not.toContain('sk-secret-value-123');
    const done = await s.waitForStatus(workOrder.id, ['succeeded', 'failed', 'canceled']);
    expect(done.status).toBe('succeeded');
    const detail = await s.request('GET', `/api/v1/work-orders/${workOrder.id}`);
    expect(detail.text).not.toContain('sk-secret-value-123');
    expect(detail.text).toContain('MODEL_KEY');
  });

  it.each(['application/yaml', 'text/yaml', 'application/x-yaml; charset=utf-8'])('takes a TaskSpec as YAML (%s)', async (contentType) => {
    const s = await server({ startQueue: false });
    const reply = await s.request('POST', '/api/v1/tasks', { raw: taskSpecYaml(s, 'true'), contentType });
    expect(reply.status).toBe(201);
    expect(data<{ name: string; status: string; queuePosition: number }>(reply.json)).toMatchObject({ name: 'yaml-task', status: 'queued', queuePosition: 1 });
  });

  it('names the line of a YAML schema error and of a YAML syntax error', async () => {
    const s = await server({ startQueue: false });
    const schema = await s.request('POST', '/api/v1/tasks', { raw: taskSpecYaml(s, 'true').replace('maxIterations: 2', 'maxIterations: zero'), contentType: 'application/yaml' });
    expect(schema.status).toBe(400);
    expect(schema.json?.error?.code).toBe('AG_ERR_SCHEMA_INVALID');
    expect(schema.json?.error?.message).toMatch(/^request body:10: spec\.convergence\.limits\.maxIterations: /);
    const syntax = await s.request('POST', '/api/v1/tasks', { raw: 'apiVersion: [unclosed\nkind: TaskSpec\n', contentType: 'text/yaml' });
    expect(syntax.status).toBe(400);
    expect(syntax.json?.error?.code).toBe('AG_ERR_YAML_PARSE');
    expect(syntax.json?.error?.details).toMatchObject({ file: 'request body' });
  });

  it('answers a JSON TaskSpec with bad fields with 400 naming them', async () => {
    const s = await server({ startQueue: false });
    const body = taskSpecJson(s, 'true');
    const reply = await s.request('POST', '/api/v1/tasks', { body: { ...body, kind: 'Task', extra: 1 } });
    expect(reply.status).toBe(400);
    const paths = (reply.json?.error?.details?.['issues'] as Array<{ path: string }>).map((issue) => issue.path);
    expect(paths).toEqual(expect.arrayContaining(['kind', 'extra']));
  });
});

describe('GET /api/v1/runs', () => {
  it('lists runs with filters, and answers unknown ids with 404', async () => {
    const s = await server();
    const workOrder = data<{ id: string }>((await s.request('POST', '/api/v1/tasks', { body: taskSpecJson(s, s.agent('a', AGENTS.correct)) })).json);
    await s.waitForStatus(workOrder.id, ['succeeded', 'failed']);
    const all = data<{ items: Array<{ id: string; workOrderId: string; state: string }>; total: number; hasMore: boolean }>((await s.request('GET', '/api/v1/runs')).json);
    expect(all).toMatchObject({ total: 1, hasMore: false });
    expect(all.items[0]).toMatchObject({ workOrderId: workOrder.id, state: 'succeeded' });
    expect(data<{ total: number }>((await s.request('GET', `/api/v1/runs?workOrderId=${workOrder.id}&state=succeeded`)).json).total).toBe(1);
    expect(data<{ total: number }>((await s.request('GET', '/api/v1/runs?state=failed')).json).total).toBe(0);
    expect((await s.request('GET', '/api/v1/runs?state=exploded')).status).toBe(400);
    const missing = await s.request('GET', '/api/v1/runs/00000000-0000-0000-0000-000000000000');
    expect(missing.status).toBe(404);
    expect(missing.json?.error?.code).toBe('AG_ERR_RUN_NOT_FOUND');
  });
});

describe('GET /api/v1/queue', () => {
  it('shows an empty queue', async () => {
    const s = await server({ maxConcurrent: 3 });
    expect(data((await s.request('GET', '/api/v1/queue')).json)).toEqual({ depth: 0, running: 0, maxConcurrent: 3, entries: [] });
  });
});

describe('GET /metrics', () => {
  it('serves the Prometheus text format', async () => {
    const s = await server({ startQueue: false });
    const reply = await s.request('GET', '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toContain('text/plain');
    expect(reply.text).toContain('# TYPE agentgate_runs_started_total counter');
    expect(reply.text).toContain('agentgate_active_runs');
  });
});

describe('health routes', () => {
  it('answers /health, /health/live and /health/ready, and 503 once the store is gone', async () => {
    const s = await server({ startQueue: false });
    for (const [path, status] of [['/health', 'ok'], ['/health/live', 'live'], ['/health/ready', 'ready']] as const) {
      const reply = await s.request('GET', path);
      expect(reply.status).toBe(200);
      expect(data<{ status: string; version: string }>(reply.json)).toMatchObject({ status, version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    }
    await s.runtime.repos.close();
    const notReady = await s.request('GET', '/health/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.json?.success).toBe(false);
    expect((await s.request('GET', '/health/live')).status).toBe(200);
  });
});

describe('every response', () => {
  it('carries X-Request-ID: a sane incoming one is echoed, anything else replaced', async () => {
    const s = await server({ startQueue: false });
    const echoed = await s.request('GET', '/health', { headers: { 'x-request-id': 'client-req.42:a_b' } });
    expect(echoed.headers.get('x-request-id')).toBe('client-req.42:a_b');
    const replaced = await s.request('GET', '/api/v1/queue', { headers: { 'x-request-id': 'has spaces and <html>' } });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const tooLong = await s.request('GET', '/api/v1/queue', { headers: { 'x-request-id': 'a'.repeat(200) } });
    expect(tooLong.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    for (const reply of [await s.request('GET', '/nowhere'), await s.request('POST', '/api/v1/tasks', { raw: '{', contentType: 'application/json' })]) {
      expect(reply.headers.get('x-request-id')).toMatch(/\S/);
    }
  });

  it('answers an unknown route with 404 in the envelope', async () => {
    const s = await server({ startQueue: false });
    const reply = await s.request('GET', '/api/v1/nothing-here');
    expect(reply.status).toBe(404);
    expect(reply.json).toEqual({ success: false, error: { code: 'AG_ERR_API_NOT_FOUND', message: 'No route GET /api/v1/nothing-here' } });
    const wrongMethod = await s.request('PUT', '/api/v1/queue');
    expect(wrongMethod.status).toBe(404);
  });
});

describe('the OpenAPI document at /docs', () => {
  it('lists every route of the API with its schemas, and the UI is served', async () => {
    const s = await server({ startQueue: false });
    const reply = await s.request('GET', '/docs/json');
    expect(reply.status).toBe(200);
    const doc = JSON.parse(reply.text) as { openapi: string; paths: Record<string, Record<string, { responses?: Record<string, unknown> }>> };
    expect(doc.openapi).toMatch(/^3\./);
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`)));
    const api = listRoutes(s.app).filter((route) => route.method !== 'HEAD' && !route.hidden);
    expect(api.length).toBeGreaterThanOrEqual(14);
    expect(api.some((route) => route.url.startsWith('/docs'))).toBe(false);
    for (const route of api) {
      const openApiPath = route.url.replace(/:([A-Za-z]+)/g, '{$1}');
      expect(documented, `${route.method} ${route.url}`).toContain(`${route.method} ${openApiPath}`);
    }
    expect(doc.paths['/api/v1/work-orders']?.['post']?.responses).toHaveProperty('201');
    const ui = await fetch(`${s.url}/docs`, { redirect: 'manual' });
    expect([200, 302]).toContain(ui.status);
  });
});
