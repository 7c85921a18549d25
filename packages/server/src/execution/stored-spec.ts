/**
 * The spec of a work order as the store gives it back, made runnable again: the queue starts work
 * orders queued before a restart, and "run again", from the store alone.
 *
 * The store never holds `agent.env` values (`storableSpec` in engine.ts writes `[REDACTED]` instead), so
 * a run started from the store cannot carry the model credentials its submitter passed in `agent.env`.
 * Those keys are dropped rather than handed to the agent as the literal `[REDACTED]`: the agent then sees
 * what the server's own environment gives it (minus AgentGate's secrets), and a run that needed the
 * submitter's key fails visibly in its build phase. Runs the queue starts in the process that accepted
 * the submission use the spec it kept in memory, with the values.
 */
import { AgentGateError } from '../errors.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import type { StoredWorkOrder } from '../store/types.js';
import { REDACTED_ENV_VALUE } from './engine.js';

export interface RunnableSpec {
  readonly spec: ResolvedTaskSpec;
  /** `agent.env` keys whose values the store did not keep (dropped from the spec). */
  readonly droppedEnv: readonly string[];
}

/** @throws AgentGateError `AG_ERR_INTERNAL` when the stored spec does not have the resolved shape. */
export function runnableSpec(workOrder: StoredWorkOrder): RunnableSpec {
  const stored: object = workOrder.spec;
  if (!isResolvedTaskSpec(stored)) {
    throw new AgentGateError('AG_ERR_INTERNAL', `the stored spec of work order ${workOrder.id} is not a resolved task spec`, {
      details: { workOrderId: workOrder.id },
    });
  }
  const env: Record<string, string> = {};
  const droppedEnv: string[] = [];
  for (const [key, value] of Object.entries(stored.agent.env)) {
    if (value === REDACTED_ENV_VALUE) droppedEnv.push(key);
    else env[key] = value;
  }
  return { spec: { ...stored, agent: { ...stored.agent, env } }, droppedEnv };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A structural check of the fields the engine reads first. The store only holds specs the resolver
 * produced, so this guards against a corrupt or foreign row, not against client input.
 */
function isResolvedTaskSpec(value: object): value is ResolvedTaskSpec {
  if (!isRecord(value)) return false;
  const { agent, workspace, sandbox, convergence, delivery } = value;
  return (
    typeof value['prompt'] === 'string' &&
    typeof value['name'] === 'string' &&
    isRecord(workspace) &&
    typeof workspace['source'] === 'string' &&
    isRecord(agent) &&
    typeof agent['driver'] === 'string' &&
    isRecord(agent['env']) &&
    Object.values(agent['env']).every((v) => typeof v === 'string') &&
    isRecord(sandbox) &&
    typeof sandbox['mode'] === 'string' &&
    isRecord(convergence) &&
    isRecord(convergence['limits']) &&
    typeof convergence['limits']['maxIterations'] === 'number' &&
    isRecord(delivery) &&
    typeof delivery['kind'] === 'string' &&
    typeof delivery['branchPrefix'] === 'string'
  );
}
