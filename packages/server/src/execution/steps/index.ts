/**
 * The step table: the phase order of every run, one step per non-terminal state (SPEC 3). The run
 * actor looks up the step of the run's current state, runs it and commits the event it returns; a new
 * state (a new delivery kind's) is a new row here, not a branch in a loop.
 */
import { build } from './build.js';
import { afterChange, pollCi } from './delivery.js';
import { feedback } from './feedback.js';
import { loadGatePlan } from './plan.js';
import { snapshot } from './snapshot.js';
import type { StepTable } from './types.js';
import { verify } from './verify.js';
import { acquireWorkspace } from './workspace.js';

export const STEPS: StepTable = {
  queued: acquireWorkspace,
  leased: loadGatePlan,
  building: build,
  snapshotting: snapshot,
  verifying: verify,
  feedback,
  pr_created: afterChange,
  ci_polling: pollCi,
};

export type { RunContext, Step, StepOutcome, StepServices, StepTable } from './types.js';
export type { DeliveryProgress } from './delivery.js';
