/**
 * The submit form's checks run the server's own WorkOrder schema (`WorkOrderBodySchema` from
 * packages/server/src/schemas/work-order-body.ts — zod only, bundled into the page), so the form refuses
 * exactly what the API would refuse, with the same field paths. The server validates again and its
 * `details.issues` are shown per field the same way.
 */
import { schemaErrorMap, toSchemaIssues } from '../../server/src/schemas/issues.js';
import { WorkOrderBodySchema } from '../../server/src/schemas/work-order-body.js';
import type { ApiIssue } from './api.js';

export interface WorkOrderFormValues {
  readonly taskPrompt: string;
  readonly sourceType: string;
  readonly location: string;
  readonly ref: string;
  readonly agentType: string;
  readonly agentCommand: string;
  readonly maxIterations: string;
}

export const AGENT_TYPES = ['command', 'claude-code', 'codex'] as const;
export const SOURCE_TYPES = { local: 'path', git: 'url', github: 'repo', gitlab: 'project' } as const;

export type ValidationResult = { readonly ok: true; readonly body: Record<string, unknown> } | { readonly ok: false; readonly issues: readonly ApiIssue[] };

function isSourceType(value: string): value is keyof typeof SOURCE_TYPES {
  return Object.hasOwn(SOURCE_TYPES, value);
}

export function validateWorkOrder(values: WorkOrderFormValues): ValidationResult {
  const location = values.location.trim();
  const field = isSourceType(values.sourceType) ? SOURCE_TYPES[values.sourceType] : 'path';
  const agentCommand = values.agentCommand.trim();
  const iterations = values.maxIterations.trim();
  const body: Record<string, unknown> = {
    taskPrompt: values.taskPrompt,
    workspaceSource: { type: values.sourceType, [field]: location, ...(values.ref.trim() !== '' && { ref: values.ref.trim() }) },
    agentType: values.agentType,
    ...(agentCommand !== '' && { agentCommand }),
    // A form field is text: only plain decimals become numbers, anything else reaches the schema as text.
    maxIterations: /^\d+$/.test(iterations) ? Number(iterations) : iterations,
  };
  // The server's schema with the server's error map: the same paths and the same words as the API's 400.
  const parsed = WorkOrderBodySchema.safeParse(body, { error: schemaErrorMap, reportInput: true });
  if (!parsed.success) return { ok: false, issues: toSchemaIssues(parsed.error).map((issue): ApiIssue => ({ path: issue.path, message: issue.message })) };
  return { ok: true, body };
}
