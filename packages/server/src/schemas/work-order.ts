/**
 * Parsing of the legacy WorkOrder HTTP body (`POST /api/v1/work-orders`, SPEC section 10); the schema is in
 * `work-order-body.ts` (zod only, shared with the dashboard).
 */
import { parseWithSchema } from './errors.js';
import { WorkOrderBodySchema, type WorkOrderBody } from './work-order-body.js';

export {
  GIT_OPS_MODES,
  HarnessSchema,
  LEGACY_AGENT_TYPES,
  WorkOrderBodySchema,
  WorkspaceSourceSchema,
} from './work-order-body.js';
export type { GitOpsMode, WorkOrderAgentType, WorkOrderBody, WorkOrderBodyInput, WorkOrderHarness, WorkOrderWorkspaceSource } from './work-order-body.js';

/** Validates an HTTP body; throws AG_ERR_SCHEMA_INVALID (400) naming each bad field. */
export function parseWorkOrderBody(value: unknown): WorkOrderBody {
  return parseWithSchema(value, WorkOrderBodySchema);
}
