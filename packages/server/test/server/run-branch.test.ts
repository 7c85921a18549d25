/**
 * Honest branches through the API (issue 11): a run's `branch` names a branch only once a snapshot commit
 * reached the repository. A run whose agent changed nothing has none — in the run view, the closing event
 * and the repository — and one that changed something has it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AGENTS, git } from '../helpers/git-repo.js';
import { startServer, type TestServer } from './harness.js';

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

interface RunView {
  id: string;
  branch: string | null;
  meta: Record<string, unknown>;
}

async function runOf(s: TestServer, agent: string, status: 'succeeded' | 'failed'): Promise<RunView> {
  const submitted = await s.request('POST', '/api/v1/work-orders', {
    body: { taskPrompt: 'Implement add and multiply', workspaceSource: { type: 'local', path: s.repo.repo }, agentType: 'command', agentCommand: agent, maxIterations: 1 },
  });
  expect(submitted.status).toBe(201);
  const workOrderId = (submitted.json?.data as { id: string }).id;
  await s.waitForStatus(workOrderId, [status]);
  const runs = await s.request('GET', `/api/v1/runs?workOrderId=${workOrderId}`);
  const runId = (runs.json?.data as { items: Array<{ id: string }> }).items[0]?.id ?? '';
  return (await s.request('GET', `/api/v1/runs/${runId}`)).json?.data as RunView;
}

describe('a run’s branch in the API', () => {
  it('is null, and absent from the repository, when the agent changed nothing; named and present when it did', async () => {
    const s = await startServer();
    servers.push(s);

    const idle = await runOf(s, s.agent('idle', 'echo "looked, changed nothing"'), 'failed');
    expect(idle.branch).toBeNull();
    expect(idle.meta['branchPublished']).toBe(false);
    const closing = (await s.runtime.repos.runs.listEvents(idle.id, { limit: 1000 })).at(-1);
    expect(closing?.type).toBe('run_failed');
    expect(closing?.data['branch']).toBe('');

    const worked = await runOf(s, s.agent('worked', AGENTS.correct), 'succeeded');
    expect(worked.branch).toBe(`agentgate/${worked.id}`);
    expect(worked.meta['branchPublished']).toBe(true);
    expect(git(s.repo.repo, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/agentgate/')).toBe(`agentgate/${worked.id}`);
  });
});
