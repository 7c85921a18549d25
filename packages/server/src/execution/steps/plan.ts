/**
 * `leased` → load the gate plan from the base commit and prepare the delivery target before the agent
 * runs, so a broken verify.yaml or an unusable remote fails the run at once as a configuration error
 * instead of after a paid agent iteration.
 */
import { toAgentGateError } from '../../errors.js';
import { prepareDelivery } from './delivery.js';
import type { RunContext, StepOutcome } from './types.js';
import { phaseContext } from './types.js';

export async function loadGatePlan(run: RunContext): Promise<StepOutcome<'leased'>> {
  const { workspace } = phaseContext(run);
  // Normally read by the workspace step while the worktree was created; read here otherwise.
  const loaded =
    run.progress.planLoad ??
    (await run.services.verifier
      .loadPlan({ worktreePath: workspace.path, baseSha: workspace.baseSha, signal: run.signal, clock: run.clock, ...(run.spec.verify !== undefined && { inline: run.spec.verify }) })
      .then(
        (plan) => ({ ok: true as const, plan }),
        (error: unknown) => ({ ok: false as const, error: toAgentGateError(error, 'AG_ERR_PHASE_VERIFY') }),
      ));
  run.progress.planLoad = undefined;
  if (!loaded.ok) return { event: 'system_error', error: { ...run.failure(loaded.error, 'verify'), iteration: 1 } };
  run.progress.plan = loaded.plan;
  const deliveryError = await prepareDelivery(run);
  if (deliveryError !== undefined) return { event: 'system_error', error: { ...run.failure(deliveryError, 'delivery'), iteration: 1 } };
  return { event: 'build_started' };
}
