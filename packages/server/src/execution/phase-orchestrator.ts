/**
 * PhaseOrchestrator: runs one phase handler for the engine with everything around it — the phase's
 * `PhaseContext`, a child logger, `phase_started` / `phase_completed` events, timing, and the single
 * boundary where an unexpected throw is normalised into a classified error. It never changes run
 * state; the engine does that from the returned result.
 */
import { toAgentGateError } from '../errors.js';
import { abortError } from '../util/abort.js';
import { redact, secretValues } from '../util/secrets.js';
import { BuildPhase } from './phases/build.js';
import { FeedbackPhase } from './phases/feedback.js';
import { SnapshotPhase } from './phases/snapshot.js';
import { VerifyPhase } from './phases/verify.js';
import type { ExecutionContext, ExecutionServices, IterationPhase, PhaseContext, PhaseHandler, PhaseOutputs, PhaseResult } from './context.js';

export type PhaseHandlers = { [P in IterationPhase]: PhaseHandler<P> };

export function defaultPhaseHandlers(): PhaseHandlers {
  return { build: new BuildPhase(), snapshot: new SnapshotPhase(), verify: new VerifyPhase(), feedback: new FeedbackPhase() };
}

/** Error code used when a handler throws instead of returning a result. */
const UNEXPECTED_CODES = {
  build: 'AG_ERR_PHASE_BUILD_AGENT_CRASH',
  snapshot: 'AG_ERR_PHASE_SNAPSHOT',
  verify: 'AG_ERR_PHASE_VERIFY',
  feedback: 'AG_ERR_PHASE_FEEDBACK',
} as const satisfies Record<IterationPhase, string>;

export class PhaseOrchestrator {
  constructor(
    private readonly services: ExecutionServices,
    private readonly handlers: PhaseHandlers = defaultPhaseHandlers(),
  ) {}

  async run<P extends IterationPhase>(phase: P, ctx: ExecutionContext): Promise<PhaseResult<PhaseOutputs[P]>> {
    const iteration = ctx.progress.iteration;
    const logger = ctx.logger.child({ iteration, phase });
    const phaseCtx: PhaseContext = {
      runId: ctx.runId,
      workOrderId: ctx.workOrderId,
      iteration,
      phase,
      spec: ctx.spec,
      workspace: ctx.workspace,
      artifactsDir: ctx.artifactsDir,
      signal: ctx.signal,
      deadline: ctx.deadline,
      logger,
      emit: ctx.emit,
      clock: this.services.clock,
      services: this.services,
      progress: ctx.progress,
    };
    const started = this.services.clock.now();
    ctx.emit('phase_started', { iteration, phase });
    logger.debug('phase started');
    const handler: PhaseHandler<P> = this.handlers[phase];
    let result: PhaseResult<PhaseOutputs[P]>;
    try {
      result = await handler.execute(phaseCtx);
    } catch (error) {
      result = { ok: false, error: toAgentGateError(error, UNEXPECTED_CODES[phase]), cancelled: ctx.signal.aborted };
    }
    // A phase stopped by the run's signal reports the signal's typed reason: a run that timed out says
    // timeout in this phase's event and in the iteration record, never canceled.
    if (!result.ok && ctx.signal.aborted) result = { ...result, error: abortError(ctx.signal, phase), cancelled: true };
    const durationMs = this.services.clock.now() - started;
    if (result.ok) {
      ctx.emit('phase_completed', { iteration, phase, ok: true, durationMs });
      logger.info({ durationMs }, 'phase completed');
    } else {
      const error = { code: result.error.code, message: redact(result.error.message, secretValues(this.services.baseEnv)), phase, iteration };
      ctx.emit('phase_completed', { iteration, phase, ok: false, durationMs, error });
      logger.warn({ durationMs, code: result.error.code, cancelled: result.cancelled }, 'phase failed');
    }
    return result;
  }
}
