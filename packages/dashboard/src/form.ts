/**
 * The submit form's client-side checks: the rules of the server's WorkOrder schema
 * (packages/server/src/schemas/work-order.ts) that a user can get wrong in a form. The server validates
 * again and its `details.issues` are shown per field the same way.
 */
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

/** Same limits as the server: prompts up to 32,768 characters, at most 100 iterations. */
export const MAX_PROMPT_CHARS = 32_768;
export const MAX_ITERATIONS = 100;
export const AGENT_TYPES = ['command', 'claude-code', 'codex'] as const;
export const SOURCE_TYPES = { local: 'path', git: 'url', github: 'repo', gitlab: 'project' } as const;

export type ValidationResult = { readonly ok: true; readonly body: Record<string, unknown> } | { readonly ok: false; readonly issues: readonly ApiIssue[] };

function isSourceType(value: string): value is keyof typeof SOURCE_TYPES {
  return Object.hasOwn(SOURCE_TYPES, value);
}

export function validateWorkOrder(values: WorkOrderFormValues): ValidationResult {
  const issues: ApiIssue[] = [];
  const prompt = values.taskPrompt.trim();
  if (prompt === '') issues.push({ path: 'taskPrompt', message: 'must not be empty' });
  else if (prompt.length > MAX_PROMPT_CHARS) issues.push({ path: 'taskPrompt', message: `at most ${MAX_PROMPT_CHARS} characters` });

  const location = values.location.trim();
  let workspaceSource: Record<string, string> | null = null;
  if (!isSourceType(values.sourceType)) issues.push({ path: 'workspaceSource.type', message: `one of ${Object.keys(SOURCE_TYPES).join(', ')}` });
  else {
    const field = SOURCE_TYPES[values.sourceType];
    if (location === '') issues.push({ path: `workspaceSource.${field}`, message: 'must not be empty' });
    else if (values.sourceType === 'local' && !location.startsWith('/')) issues.push({ path: 'workspaceSource.path', message: 'an absolute path on the server' });
    else if (values.sourceType === 'github' && !/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(location)) issues.push({ path: 'workspaceSource.repo', message: 'expected "owner/name"' });
    else workspaceSource = { type: values.sourceType, [field]: location, ...(values.ref.trim() !== '' && { ref: values.ref.trim() }) };
  }

  const agentType = values.agentType;
  if (!(AGENT_TYPES as readonly string[]).includes(agentType)) issues.push({ path: 'agentType', message: `one of ${AGENT_TYPES.join(', ')}` });
  const agentCommand = values.agentCommand.trim();
  if (agentType === 'command' && agentCommand === '') issues.push({ path: 'agentCommand', message: 'required when agentType is "command"' });

  const maxIterations = Number(values.maxIterations);
  if (!/^\d+$/.test(values.maxIterations.trim()) || !Number.isInteger(maxIterations) || maxIterations < 1 || maxIterations > MAX_ITERATIONS) {
    issues.push({ path: 'maxIterations', message: `a whole number from 1 to ${MAX_ITERATIONS}` });
  }

  if (issues.length > 0 || workspaceSource === null) return { ok: false, issues };
  return { ok: true, body: { taskPrompt: prompt, workspaceSource, agentType, ...(agentCommand !== '' && { agentCommand }), maxIterations } };
}
