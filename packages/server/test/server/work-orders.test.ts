import { describe, expect, it } from 'vitest';
import { AGENTS } from '../helpers/git-repo.js';
import { serversClosedAfterEach, type Envelope, type TestServer } from './harness.js';

const server = serversClosedAfterEach();

interface WorkOrderData {
  id: string;
  status: string;
  source: string;
  queuePosition: number | null;
  taskPrompt: string | null;
  request: Record<string, unknown> | null;
  runs?: Array<{ id: string; state: string; result: string | null }>;
}

function data<T>(envelope: Envelope | undefined): T {
  expect(envelope?.success).toBe(true);
  return envelope?.data as T;
}

/** A legacy WorkOrder body as the original API's clients sent it. */
function legacyBody(s: TestServer, agentCommand: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { taskPrompt: 'Implement add and multiply', workspaceSource: { type: 'local', path: s.repo.repo }, agentType: 'command', agentCommand, maxIterations: 2, ...extra };
}

/** An agent that blocks until the file `release` exists in the temp root. */
function blockingAgent(s: TestServer, name: string): string {
  return s.agent(name, `while [ ! -f "${s.repo.root}/release-${name}" ]; do sleep 0.05; done\n${AGENTS.correct}`);
}

describe('POST /api/v1/work-orders', () => {
  describe('with a legacy WorkOrder body', () => {
    it('answers 201 with the queued work order, runs it automatically, and shows its runs', async () => {
      const s = await server();
      const submitted = await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, s.agent('a', AGENTS.correct)) });
      expect(submitted.status).toBe(201);
      expect(submitted.headers.get('x-request-id')).toMatch(/\S/);
      const workOrder = data<WorkOrderData>(submitted.json);
      expect(workOrder).toMatchObject({ source: 'work_order', taskPrompt: 'Implement add and multiply' });
      expect(['queued', 'running']).toContain(workOrder.status);

      await s.waitForStatus(workOrder.id, ['succeeded', 'failed', 'canceled']);
      const detail = await s.request('GET', `/api/v1/work-orders/${workOrder.id}`);
      expect(detail.status).toBe(200);
      const view = data<WorkOrderData>(detail.json);
      expect(view).toMatchObject({ id: workOrder.id, status: 'succeeded', queuePosition: null });
      expect(view.runs).toHaveLength(1);
      expect(view.runs?.[0]).toMatchObject({ state: 'succeeded', result: 'passed' });

      const runId = view.runs?.[0]?.id ?? '';
      const run = await s.request('GET', `/api/v1/runs/${runId}`);
      expect(run.status).toBe(200);
      const runView = data<{ id: string; workOrderId: string; iterations: Array<{ iteration: number; record: Record<string, unknown> }> }>(run.json);
      expect(runView).toMatchObject({ id: runId, workOrderId: workOrder.id });
      expect(runView.iterations.map((i) => i.iteration)).toEqual([1]);
      expect(runView.iterations[0]?.record).toHaveProperty('verification');
    });

    it('accepts the original spellings: unknown top-level keys, branch for ref, harness blocks', async () => {
      const s = await server({ startQueue: false });
      const body = legacyBody(s, 'true', {
        workspaceSource: { type: 'local', path: s.repo.repo, branch: 'main' },
        gatePlanSource: 'auto',
        policies: { networkAllowed: false },
        maxTime: 600,
        waitForCI: false,
        harness: { profile: 'default', loopStrategy: { mode: 'fixed', iterations: 2 }, gitOps: { mode: 'local' }, executionLimits: { maxWallClockSeconds: 900 }, custom: { kept: true } },
      });
      const reply = await s.request('POST', '/api/v1/work-orders', { body });
      expect(reply.status).toBe(201);
      const workOrder = data<WorkOrderData>(reply.json);
      expect(workOrder).toMatchObject({ status: 'queued', queuePosition: 1 });
      // The request is kept as the client sent it, unknown keys included.
      expect(workOrder.request).toMatchObject({ gatePlanSource: 'auto', workspaceSource: { branch: 'main' } });
    });

    it('maps the legacy claude-code agent types without running them', async () => {
      const s = await server({ startQueue: false });
      for (const agentType of ['claude-code-subscription', 'claude-code-api']) {
        const reply = await s.request('POST', '/api/v1/work-orders', { body: { taskPrompt: 'x', workspaceSource: { type: 'local', path: s.repo.repo }, agentType } });
        expect([201, 400]).toContain(reply.status);
        if (reply.status === 201) expect(data<{ spec: { agent: { driver: string } } }>(reply.json).spec.agent.driver).toBe('claude-code');
        else expect(reply.json?.error?.code).toMatch(/^AG_ERR_AGENT_/);
      }
    });
  });

  describe('with a bad body', () => {
    it('answers 400 naming every bad field', async () => {
      const s = await server({ startQueue: false });
      const reply = await s.request('POST', '/api/v1/work-orders', { body: { taskPrompt: '', workspaceSource: { type: 'svn' }, agentType: 'gpt', maxIterations: 500 } });
      expect(reply.status).toBe(400);
      expect(reply.json?.success).toBe(false);
      expect(reply.json?.error?.code).toBe('AG_ERR_SCHEMA_INVALID');
      const paths = (reply.json?.error?.details?.['issues'] as Array<{ path: string }>).map((issue) => issue.path);
      expect(paths).toEqual(['taskPrompt', 'workspaceSource.type', 'agentType', 'maxIterations']);
      expect(reply.json?.error?.message).toContain('workspaceSource.type: expected one of');
    });

    it('requires agentCommand for the command agent', async () => {
      const s = await server({ startQueue: false });
      const reply = await s.request('POST', '/api/v1/work-orders', { body: { taskPrompt: 'x', workspaceSource: { type: 'local', path: s.repo.repo }, agentType: 'command' } });
      expect(reply.status).toBe(400);
      expect(reply.json?.error?.message).toBe('agentCommand: required when agentType is "command"');
    });

    it.each([
      ['malformed JSON', '{"taskPrompt": ', 'application/json', 400],
      ['an empty JSON body', '', 'application/json', 400],
      ['a JSON array', '[1,2]', 'application/json', 400],
      ['a JSON string', '"hello"', 'application/json', 400],
      ['a prototype-poisoning key', '{"__proto__": {"x": 1}}', 'application/json', 400],
      ['an unsupported media type', 'taskPrompt=x', 'application/x-www-form-urlencoded', 415],
      ['YAML (accepted on /tasks only)', 'taskPrompt: x', 'application/yaml', 415],
    ])('answers %s with %s', async (_name, raw, contentType, status) => {
      const s = await server({ startQueue: false });
      const reply = await s.request('POST', '/api/v1/work-orders', { raw, contentType });
      expect(reply.status).toBe(status);
      expect(reply.json?.success).toBe(false);
      expect(reply.json?.error?.code).toMatch(status === 415 ? /^AG_ERR_API_UNSUPPORTED_MEDIA_TYPE$/ : /^AG_ERR_/);
      expect(reply.headers.get('x-request-id')).toMatch(/\S/);
    });

    it('answers a missing body with 400', async () => {
      const s = await server({ startQueue: false });
      const reply = await s.request('POST', '/api/v1/work-orders');
      expect(reply.status).toBe(400);
      expect(reply.json?.error?.code).toBe('AG_ERR_SCHEMA_INVALID');
    });

    it('answers a body over the limit with 413', async () => {
      const s = await server({ startQueue: false, server: { bodyLimit: 4096 } });
      const reply = await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, 'true', { taskPrompt: 'x'.repeat(8000) }) });
      expect(reply.status).toBe(413);
      expect(reply.json).toMatchObject({ success: false, error: { code: 'AG_ERR_API_PAYLOAD_TOO_LARGE', details: { reason: 'payload_too_large' } } });
    });

    it('answers an agent the registry rejects with its 4xx', async () => {
      const s = await server({ startQueue: false });
      const reply = await s.request('POST', '/api/v1/work-orders', {
        body: legacyBody(s, 'true', { workspaceSource: { type: 'github', repo: 'acme/api' }, harness: { gitOps: { mode: 'github_pr' } }, waitForCI: true }),
      });
      expect(reply.status).toBeGreaterThanOrEqual(400);
      expect(reply.status).toBeLessThan(500);
    });
  });
});

describe('GET /api/v1/work-orders', () => {
  it('pages newest first with {items,total,limit,offset,hasMore} and filters by status', async () => {
    const s = await server({ startQueue: false });
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const reply = await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, 'true') });
      ids.push(data<WorkOrderData>(reply.json).id);
    }
    const first = data<{ items: WorkOrderData[]; total: number; limit: number; offset: number; hasMore: boolean }>((await s.request('GET', '/api/v1/work-orders?limit=2')).json);
    expect(first).toMatchObject({ total: 3, limit: 2, offset: 0, hasMore: true });
    expect(first.items.map((w) => w.id)).toEqual([ids[2], ids[1]]);
    expect(first.items.map((w) => w.queuePosition)).toEqual([3, 2]);
    const second = data<{ items: WorkOrderData[]; hasMore: boolean }>((await s.request('GET', '/api/v1/work-orders?limit=2&offset=2')).json);
    expect(second.items.map((w) => w.id)).toEqual([ids[0]]);
    expect(second.hasMore).toBe(false);
    const none = data<{ items: WorkOrderData[]; total: number }>((await s.request('GET', '/api/v1/work-orders?status=succeeded')).json);
    expect(none).toMatchObject({ items: [], total: 0 });
    const queued = data<{ total: number }>((await s.request('GET', '/api/v1/work-orders?status=queued')).json);
    expect(queued.total).toBe(3);
  });

  it.each([
    ['limit=0', 'query.limit'],
    ['limit=101', 'query.limit'],
    ['limit=abc', 'query.limit'],
    ['limit=1e3', 'query.limit'],
    ['offset=-1', 'query.offset'],
    ['status=done', 'query.status'],
    ['limit=1&limit=2', 'query.limit'],
  ])('answers ?%s with 400 naming %s', async (query, path) => {
    const s = await server({ startQueue: false });
    const reply = await s.request('GET', `/api/v1/work-orders?${query}`);
    expect(reply.status).toBe(400);
    expect(reply.json?.error?.code).toBe('AG_ERR_API_BAD_REQUEST');
    expect(reply.json?.error?.message).toContain(`${path}:`);
  });
});

describe('GET /api/v1/work-orders/:id', () => {
  it('answers an unknown id with 404 and a malformed one with 400', async () => {
    const s = await server({ startQueue: false });
    const missing = await s.request('GET', '/api/v1/work-orders/00000000-0000-0000-0000-000000000000');
    expect(missing.status).toBe(404);
    expect(missing.json?.error?.code).toBe('AG_ERR_WORK_ORDER_NOT_FOUND');
    const malformed = await s.request('GET', `/api/v1/work-orders/${encodeURIComponent('a b/c')}`);
    expect(malformed.status).toBe(400);
    expect(malformed.json?.error?.message).toContain('params.id');
  });
});

describe('DELETE /api/v1/work-orders/:id', () => {
  it('cancels a queued work order, which leaves the queue', async () => {
    const s = await server({ maxConcurrent: 1 });
    const first = data<WorkOrderData>((await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, blockingAgent(s, 'first')) })).json);
    const second = data<WorkOrderData>((await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, 'true') })).json);
    await s.waitForStatus(first.id, ['running']);
    const queue = data<{ depth: number; running: number; maxConcurrent: number; entries: Array<{ workOrderId: string; position: number }> }>((await s.request('GET', '/api/v1/queue')).json);
    expect(queue).toMatchObject({ depth: 1, running: 1, maxConcurrent: 1 });
    expect(queue.entries).toEqual([expect.objectContaining({ workOrderId: second.id, position: 1 })]);
    expect(data<WorkOrderData>((await s.request('GET', `/api/v1/work-orders/${second.id}`)).json).queuePosition).toBe(1);

    const canceled = await s.request('DELETE', `/api/v1/work-orders/${second.id}`);
    expect(canceled.status).toBe(200);
    expect(data<WorkOrderData>(canceled.json).status).toBe('canceled');
    expect(data<{ depth: number }>((await s.request('GET', '/api/v1/queue')).json).depth).toBe(0);

    // A finished work order cannot be canceled; it can be run again.
    const again = await s.request('DELETE', `/api/v1/work-orders/${second.id}`);
    expect(again.status).toBe(409);
    expect(again.json?.success).toBe(false);
    // Running: canceled, its run ends canceled.
    const running = await s.request('DELETE', `/api/v1/work-orders/${first.id}`);
    expect(running.status).toBe(200);
    const done = await s.waitForStatus(first.id, ['canceled', 'failed', 'succeeded']);
    expect(done.status).toBe('canceled');
    const runs = data<WorkOrderData>((await s.request('GET', `/api/v1/work-orders/${first.id}`)).json).runs ?? [];
    expect(runs[0]?.state).toBe('canceled');
  });

  it('answers an unknown id with 404', async () => {
    const s = await server({ startQueue: false });
    const reply = await s.request('DELETE', '/api/v1/work-orders/nope');
    expect(reply.status).toBe(404);
    expect(reply.json?.error?.code).toBe('AG_ERR_WORK_ORDER_NOT_FOUND');
  });
});

describe('POST /api/v1/work-orders/:id/runs', () => {
  it('runs a finished work order again, and refuses while it is queued', async () => {
    const s = await server();
    const workOrder = data<WorkOrderData>((await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, s.agent('a', AGENTS.correct)) })).json);
    await s.waitForStatus(workOrder.id, ['succeeded', 'failed']);
    const again = await s.request('POST', `/api/v1/work-orders/${workOrder.id}/runs`);
    expect(again.status).toBe(202);
    expect(['queued', 'running']).toContain(data<WorkOrderData>(again.json).status);
    const refused = await s.request('POST', `/api/v1/work-orders/${workOrder.id}/runs`);
    if (refused.status !== 202) {
      expect(refused.status).toBe(409);
      expect(refused.json?.error?.code).toMatch(/CONFLICT/);
    }
    await s.waitForStatus(workOrder.id, ['succeeded', 'failed']);
    const detail = data<WorkOrderData>((await s.request('GET', `/api/v1/work-orders/${workOrder.id}`)).json);
    expect(detail.status).toBe('succeeded');
    expect(detail.runs?.length).toBeGreaterThanOrEqual(2);
    expect(detail.runs?.every((run) => run.state === 'succeeded')).toBe(true);
  });

  it('answers 409 while queued and 404 for an unknown id', async () => {
    const s = await server({ startQueue: false });
    const workOrder = data<WorkOrderData>((await s.request('POST', '/api/v1/work-orders', { body: legacyBody(s, 'true') })).json);
    const refused = await s.request('POST', `/api/v1/work-orders/${workOrder.id}/runs`);
    expect(refused.status).toBe(409);
    expect(refused.json?.error?.code).toBe('AG_ERR_API_CONFLICT');
    expect((await s.request('POST', '/api/v1/work-orders/nope/runs')).status).toBe(404);
  });
});
