/**
 * The client commands (`submit`, `status`, `list`, `cancel`, `events --follow`) driving the real CLI
 * against a real server on 127.0.0.1 with real runs.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listRoutes, type RouteDeps } from '../../src/server/app.js';
import { createServerAuth } from '../../src/server/auth.js';
import { toHttpFailure } from '../../src/server/errors.js';
import { eventRoutes } from '../../src/server/routes/events.js';
import { runRoutes } from '../../src/server/routes/runs.js';
import { taskRoutes } from '../../src/server/routes/tasks.js';
import { workOrderRoutes } from '../../src/server/routes/work-orders.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { AGENTS } from '../helpers/git-repo.js';
import { runCli } from '../helpers/cli.js';
import { startServer, type TestServer } from '../server/harness.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const KEY = 'client-test-key';

/** The server's URL: `buildServer` when it mounts the event routes, else the same routes on a bare app. */
async function server(): Promise<{ s: TestServer; url: string }> {
  const s = await startServer({ apiKey: KEY });
  cleanups.push(() => s.close());
  if (listRoutes(s.app).some((route) => route.url === '/ws')) return { s, url: s.url };
  const app: FastifyInstance = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler((error, _request, reply) => {
    const failure = toHttpFailure(error);
    return reply.status(failure.status).send(failure.body);
  });
  const auth = createServerAuth({ apiKey: KEY });
  app.addHook('onRequest', async (request, reply) => {
    if (!auth.authorize(request)) return reply.status(401).send({ success: false, error: { code: 'AG_ERR_API_UNAUTHORIZED', message: 'Missing or invalid API key' } });
  });
  const deps: RouteDeps = { runtime: s.runtime, auth, version: 'test', startedAt: Date.now() };
  await app.register(taskRoutes, deps);
  await app.register(workOrderRoutes, deps);
  await app.register(runRoutes, deps);
  await app.register(eventRoutes, { hub: s.runtime.hub, repos: s.runtime.repos, auth, authenticate: 'self' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => app.close());
  const address = app.server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return { s, url: `http://127.0.0.1:${address.port}` };
}

const env = (url: string): Record<string, string> => ({ AGENTGATE_SERVER: url, AGENTGATE_API_KEY: KEY });

describe('agentgate client commands', () => {
  it('submits a TaskSpec file, follows the run to the end with the exec display, and reports status', async () => {
    const { s, url } = await server();
    const file = join(s.repo.root, 'task.yaml');
    writeFileSync(
      file,
      [
        'apiVersion: agentgate.io/v1',
        'kind: TaskSpec',
        'metadata: { name: client-test }',
        'spec:',
        '  goal: { prompt: Implement add and multiply }',
        '  convergence: { limits: { maxIterations: 2 } }',
        '  execution:',
        `    workspace: { source: local, path: ${s.repo.repo} }`,
        `    agent: { driver: command, command: ${JSON.stringify(s.agent('fix', AGENTS.failThenPass))} }`,
      ].join('\n'),
    );
    const submitted = await runCli(['submit', file, '--json'], { env: env(url) });
    expect(submitted.code, submitted.stderr).toBe(0);
    const workOrderId = String(submitted.json?.['id']);
    const done = await s.waitForStatus(workOrderId, ['succeeded', 'failed', 'canceled']);
    expect(done.status).toBe('succeeded');
    const runs = await s.runtime.repos.runs.list({ limit: 10, offset: 0, workOrderId });
    const runId = runs.items[0]?.id ?? '';

    const followed = await runCli(['events', runId, '--follow'], { env: env(url) });
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stderr).toContain(`run ${runId} started`);
    expect(followed.stderr).toMatch(/iteration 1 failed/);
    expect(followed.stderr).toMatch(/iteration 2 passed/);

    const json = await runCli(['events', runId, '--json'], { env: env(url) });
    const seqs = json.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { seq: number }).seq);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));

    const status = await runCli(['status', workOrderId], { env: env(url) });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('succeeded');
    expect(status.stdout).toContain(runId);
    const list = await runCli(['list'], { env: env(url) });
    expect(list.stdout).toContain(workOrderId);
  });

  it('follows a live run from the start and exits 1 when it fails', async () => {
    const { s, url } = await server();
    const started = await s.runtime.engine.start(resolveTaskSpec({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'client-fail' },
      spec: {
        goal: { prompt: 'Implement add and multiply' },
        convergence: { limits: { maxIterations: 1 } },
        execution: { workspace: { source: 'local', path: s.repo.repo }, agent: { driver: 'command', command: s.agent('wrong', `sleep 1\n${AGENTS.alwaysWrong}`) } },
      },
    } as TaskSpecInput));
    const followed = await runCli(['events', started.runId, '--follow'], { env: env(url) });
    expect(followed.code, followed.stderr).toBe(1);
    expect((await started.done).state).toBe('failed');
    expect(followed.stderr).toContain('FAIL');
  });

  it('explains a refused key (exit 2), an unreachable server (exit 1) and an unknown run', async () => {
    const { url } = await server();
    const refused = await runCli(['list'], { env: { AGENTGATE_SERVER: url, AGENTGATE_API_KEY: 'wrong' } });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('AG_ERR_API_UNAUTHORIZED');
    expect(refused.stderr).toContain('--api-key');
    const unreachable = await runCli(['status', 'x', '--server', 'http://127.0.0.1:9'], { env: { AGENTGATE_API_KEY: KEY } });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain('cannot reach the AgentGate server at http://127.0.0.1:9');
    const unknown = await runCli(['events', 'no-such-run', '--follow'], { env: env(url) });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('AG_ERR_RUN_NOT_FOUND');
    const badSeq = await runCli(['events', 'r', '--after-seq', '-3'], { env: env(url) });
    expect(badSeq.code).toBe(2);
  });
});
