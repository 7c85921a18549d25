/**
 * VerifyPhase: runs the gate plan in the worktree. A failing gate is a normal result (the report says
 * `passed: false`); only being unable to run the gates is a phase failure. The plan's
 * `environment.setup` runs once per run, before the first verification.
 */
import type { PhaseContext, PhaseHandler, PhaseResult, VerifyOutput } from '../context.js';

export class VerifyPhase implements PhaseHandler<'verify'> {
  readonly name = 'verify' as const;

  async execute(ctx: PhaseContext): Promise<PhaseResult<VerifyOutput>> {
    const taken = ctx.progress.snapshot?.iteration === ctx.iteration ? ctx.progress.snapshot : undefined;
    const gateContext = {
      worktreePath: ctx.workspace.path,
      baseSha: ctx.workspace.baseSha,
      iteration: ctx.iteration,
      artifactsDir: ctx.artifactsDir,
      signal: ctx.signal,
      clock: ctx.clock,
      emit: ctx.emit,
      env: ctx.services.baseEnv,
      // The snapshot phase has just committed the worktree on the run branch, the HEAD of AgentGate's git
      // directory of the run (its index is that snapshot's): tamper detection compares trees — with the
      // snapshot's own list of changes from the base when it reported one, so git does not diff them again.
      snapshot: {
        commit: taken?.sha ?? 'HEAD',
        git: { gitDir: ctx.workspace.gitDir, indexFile: ctx.workspace.indexFile, workTree: ctx.workspace.path },
        ...(taken?.changesFromBase !== undefined && { changesFromBase: taken.changesFromBase }),
      },
      ...(ctx.spec.verify !== undefined && { inline: ctx.spec.verify }),
      ...(ctx.progress.plan !== undefined && { plan: ctx.progress.plan }),
    };
    if (ctx.iteration === 1) {
      const setup = await ctx.services.verifier.setup(gateContext);
      if (!setup.ok) return { ok: false, error: setup.error, cancelled: setup.cancelled };
    }
    const result = await ctx.services.verifier.verify(gateContext);
    if (!result.ok) return { ok: false, error: result.error, cancelled: result.cancelled };
    return { ok: true, value: { report: result.report } };
  }
}
