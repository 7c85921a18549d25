/**
 * The snapshot's patch file and branch publication run on while the iteration's gates run
 * (`SnapshotRequest.background`). However a run ends — verified, canceled right after its snapshot, or
 * failing to record what the publication did — the publication has ended and been recorded before the run
 * closes, and the run never closes while its gates still run. Real runtime, real git, real gates.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PhaseContext } from '../../src/execution/context.js';
import { BuildPhase } from '../../src/execution/phases/build.js';
import { FeedbackPhase } from '../../src/execution/phases/feedback.js';
import { SnapshotPhase } from '../../src/execution/phases/snapshot.js';
import { VerifyPhase } from '../../src/execution/phases/verify.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { AGENTS, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { commandTask } from '../helpers/tasks.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Handlers = NonNullable<Parameters<typeof createRuntime>[0]['handlers']>;

async function setup(handlers: Partial<Handlers>): Promise<{ repo: TempRepo; runtime: Runtime }> {
  const repo = makeRepo();
  cleanups.push(repo.cleanup);
  const runtime = await createRuntime({
    config: loadConfig({ AGENTGATE_HOME: repo.home }),
    logger: silentLogger(),
    baseEnv: { ...process.env },
    handlers: { build: new BuildPhase(), snapshot: new SnapshotPhase(), verify: new VerifyPhase(), feedback: new FeedbackPhase(), ...handlers },
  });
  cleanups.push(() => runtime.close());
  return { repo, runtime };
}

/** A snapshot phase that cancels the run as soon as the snapshot returned, or once its publication settled. */
function cancelAfterSnapshot(cancel: AbortController, when: 'returned' | 'settled'): Handlers['snapshot'] {
  const phase = new SnapshotPhase();
  return {
    name: 'snapshot',
    async execute(ctx: PhaseContext) {
      const result = await phase.execute(ctx);
      if (result.ok) {
        if (when === 'settled') await result.value.settled;
        cancel.abort();
      }
      return result;
    },
  };
}

/** A run of the correct agent whose snapshot phase cancels it (`cancelAfterSnapshot`). */
async function canceledAfterSnapshot(when: 'returned' | 'settled'): Promise<{ repo: TempRepo; runtime: Runtime; outcome: Awaited<ReturnType<Runtime['engine']['run']>> }> {
  const cancel = new AbortController();
  const { repo, runtime } = await setup({ snapshot: cancelAfterSnapshot(cancel, when) });
  const spec = commandTask(repo.repo, `sh ${writeAgent(repo.root, 'agent', AGENTS.correct)}`, { name: `settle-${when}` });
  return { repo, runtime, outcome: await runtime.engine.run(spec, { signal: cancel.signal }) };
}

const runBranches = (repo: TempRepo): string => git(repo.repo, 'for-each-ref', '--format=%(refname)', 'refs/heads/agentgate/');

describe('a snapshot whose publication runs on during verification', () => {
  it('a cancel between the snapshot and verification: the published branch is named by the run and its closing state', async () => {
    const { repo, runtime, outcome } = await canceledAfterSnapshot('settled');
    expect(outcome.state).toBe('canceled');
    expect(runBranches(repo)).toBe(`refs/heads/agentgate/${outcome.runId}`);
    expect(outcome.branch).toBe(`agentgate/${outcome.runId}`);
    expect((await runtime.repos.runs.get(outcome.runId))?.meta.branchPublished).toBe(true);
  });

  it('a cancel while the publication may still run: the run says it has a branch exactly when the repository has it', async () => {
    const { repo, runtime, outcome } = await canceledAfterSnapshot('returned');
    expect(outcome.state).toBe('canceled');
    const published = runBranches(repo) !== '';
    expect((await runtime.repos.runs.get(outcome.runId))?.meta.branchPublished === true).toBe(published);
    expect(outcome.branch !== null && outcome.branch !== '').toBe(published);
    const [iteration] = await runtime.repos.iterations.list(outcome.runId);
    // A publication the cancel stopped is the iteration's error, in phase snapshot.
    if (!published) expect(iteration?.record.error).toMatchObject({ phase: 'snapshot', code: 'AG_ERR_RUN_CANCELED' });
  });

  it('when the store refuses to record the publication, the run ends only after its gates did', async () => {
    const verify = new VerifyPhase();
    let gatesEnded = false;
    const { repo, runtime } = await setup({
      verify: {
        name: 'verify',
        async execute(ctx: PhaseContext) {
          // Gates that outlast the publication: the run must still wait for them.
          await new Promise((resolve) => setTimeout(resolve, 300));
          const result = await verify.execute(ctx);
          gatesEnded = true;
          return result;
        },
      },
    });
    const runs = runtime.repos.runs;
    const updateMeta = runs.updateMeta.bind(runs);
    runs.updateMeta = async (...args: Parameters<typeof updateMeta>) => {
      if (args[1].branchPublished === true) throw new Error('disk I/O error');
      return updateMeta(...args);
    };
    const spec = commandTask(repo.repo, `sh ${writeAgent(repo.root, 'agent', AGENTS.correct)}`, { name: 'settle-store' });
    const outcome = await runtime.engine.run(spec);
    expect(gatesEnded).toBe(true);
    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_error' });
  });
});
