/**
 * `GET /api/v1/runs/:id/iterations/:n/patch`: the iteration's diff as text/x-diff, bounded to
 * MAX_PATCH_BYTES with a truncation note, 404 for an unknown run, iteration or a patch path that does not
 * resolve inside `$AGENTGATE_HOME/runs/<runId>/`, 401 without the key.
 */
import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_PATCH_BYTES, truncationNote } from '../../src/server/routes/runs.js';
import { AGENTS } from '../helpers/git-repo.js';
import { startServer, type TestServer } from './harness.js';

const KEY = 'runs-patch-test-key-0123456789';
const auth = { authorization: `Bearer ${KEY}` };
const servers: TestServer[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

interface RunData {
  id: string;
  iterations: Array<{ iteration: number; record: { snapshot?: { patchPath?: string } } }>;
}

async function finishedRun(): Promise<{ s: TestServer; run: RunData }> {
  const s = await startServer({ apiKey: KEY });
  servers.push(s);
  const submitted = await s.request('POST', '/api/v1/work-orders', {
    headers: auth,
    body: { taskPrompt: 'Implement add and multiply', workspaceSource: { type: 'local', path: s.repo.repo }, agentType: 'command', agentCommand: s.agent('a', AGENTS.correct), maxIterations: 1 },
  });
  expect(submitted.status).toBe(201);
  const workOrderId = (submitted.json?.data as { id: string }).id;
  await s.waitForStatus(workOrderId, ['succeeded']);
  const runs = await s.request('GET', `/api/v1/runs?workOrderId=${workOrderId}`, { headers: auth });
  const runId = (runs.json?.data as { items: Array<{ id: string }> }).items[0]?.id ?? '';
  const detail = await s.request('GET', `/api/v1/runs/${runId}`, { headers: auth });
  return { s, run: detail.json?.data as RunData };
}

describe('GET /api/v1/runs/:id/iterations/:n/patch', () => {
  it('serves the diff, bounds it, and refuses unknown runs, iterations and paths outside the run directory', async () => {
    const { s, run } = await finishedRun();
    const path = `/api/v1/runs/${run.id}/iterations/1/patch`;

    const reply = await s.request('GET', path, { headers: auth });
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toMatch(/^text\/x-diff/);
    expect(reply.text).toContain('diff --git a/src/math.js b/src/math.js');
    expect(reply.text).toContain('+export function multiply(a, b) { return a * b; }');

    expect((await s.request('GET', path)).status).toBe(401);
    const unknownRun = await s.request('GET', '/api/v1/runs/no-such-run/iterations/1/patch', { headers: auth });
    expect(unknownRun.status).toBe(404);
    expect(unknownRun.json?.error?.code).toBe('AG_ERR_RUN_NOT_FOUND');
    const unknownIteration = await s.request('GET', `/api/v1/runs/${run.id}/iterations/7/patch`, { headers: auth });
    expect(unknownIteration.status).toBe(404);
    expect(unknownIteration.json?.error?.code).toBe('AG_ERR_API_NOT_FOUND');
    expect((await s.request('GET', `/api/v1/runs/${run.id}/iterations/0/patch`, { headers: auth })).status).toBe(400);
    expect((await s.request('GET', `/api/v1/runs/${run.id}/iterations/x/patch`, { headers: auth })).status).toBe(400);

    const patchPath = run.iterations[0]?.record.snapshot?.patchPath ?? '';
    expect(patchPath.startsWith(join(s.repo.home, 'runs', run.id) + '/')).toBe(true);

    // Longer than the bound: the first MAX_PATCH_BYTES (cut at a line end), then the note.
    const line = `+${'x'.repeat(99)}\n`;
    const big = line.repeat(Math.ceil((MAX_PATCH_BYTES * 1.5) / line.length));
    writeFileSync(patchPath, big);
    const truncated = await s.request('GET', path, { headers: auth });
    expect(truncated.status).toBe(200);
    expect(truncated.text.endsWith(truncationNote(Buffer.byteLength(big)))).toBe(true);
    expect(Buffer.byteLength(truncated.text)).toBeLessThanOrEqual(MAX_PATCH_BYTES + truncationNote(big.length).length);

    // A patch path that resolves outside the run's directory (here: a symlink) is never read.
    const outside = join(s.repo.root, 'secret.txt');
    writeFileSync(outside, 'not a patch');
    rmSync(patchPath);
    symlinkSync(outside, patchPath);
    const escaped = await s.request('GET', path, { headers: auth });
    expect(escaped.status).toBe(404);
    expect(escaped.text).not.toContain('not a patch');

    // A missing file is a 404 too.
    rmSync(patchPath);
    expect((await s.request('GET', path, { headers: auth })).status).toBe(404);
  });
});
