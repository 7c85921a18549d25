/**
 * Title and body of the pull/merge request AgentGate opens: the task, the iterations, the gate results of
 * the last verification and the cost. Everything is redacted (the forge token, well-known token shapes)
 * and bounded before it leaves: the body is public to everyone who can read the repository.
 */
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import { redact } from '../util/secrets.js';
import type { DeliveryReport } from './manager.js';

const MAX_TITLE = 72;
const MAX_PROMPT = 1500;
const MAX_GATES = 30;

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** `pr.title`, else the first line of the prompt, else the task name; at most 72 characters. */
export function changeTitle(spec: ResolvedTaskSpec, secrets: readonly string[]): string {
  const firstLine = spec.prompt.split('\n').find((line) => line.trim() !== '') ?? '';
  const title = oneLine(redact(spec.delivery.pr.title ?? (firstLine === '' ? spec.name : firstLine), secrets));
  return title.length > MAX_TITLE ? `${title.slice(0, MAX_TITLE - 1)}…` : title || 'AgentGate run';
}

/** Backticks in untrusted text would break out of code spans; replace them. */
function code(text: string): string {
  return `\`${text.replace(/`/g, "'")}\``;
}

export function changeBody(input: { spec: ResolvedTaskSpec; runId: string; branch: string; report?: DeliveryReport; secrets: readonly string[] }): string {
  const { spec, report } = input;
  const prompt = spec.prompt.length > MAX_PROMPT ? `${spec.prompt.slice(0, MAX_PROMPT)}…` : spec.prompt;
  const lines = [
    `Opened by AgentGate for run ${code(input.runId)} (branch ${code(input.branch)}).`,
    '',
    '### Task',
    '',
    ...prompt.split('\n').map((line) => `> ${line}`),
  ];
  if (report !== undefined) {
    lines.push('', '### Result so far', '', `- Iterations: ${report.iterations}`);
    lines.push(`- Cost: $${report.costUsd.toFixed(4)} (${report.inputTokens} input / ${report.outputTokens} output tokens)`);
    if (report.gates.length > 0) {
      lines.push('', '| Gate | Result |', '| --- | --- |');
      for (const gate of report.gates.slice(0, MAX_GATES)) lines.push(`| ${code(oneLine(gate.name)).replace(/\|/g, '\\|')} | ${gate.passed ? 'passed' : 'failed'} |`);
      if (report.gates.length > MAX_GATES) lines.push(`| … | ${report.gates.length - MAX_GATES} more |`);
    }
  }
  if (spec.delivery.ci.wait) lines.push('', 'AgentGate waits for CI on this branch; failures go back to the agent as feedback. Draft until CI passes.');
  return redact(lines.join('\n'), input.secrets);
}
