/**
 * The primitive schemas and constants shared by the TaskSpec and the legacy WorkOrder body. Only zod:
 * no Node.js module and no YAML, so the dashboard can bundle the WorkOrder schema and validate its form
 * with exactly the rules the server applies.
 */
import { z } from 'zod';

/** Agent drivers built into AgentGate (SPEC section 7). */
export const AGENT_DRIVERS = ['command', 'claude-code', 'codex'] as const;
export type AgentDriverName = (typeof AGENT_DRIVERS)[number];

/** Convergence strategies (SPEC section 5). */
export const CONVERGENCE_STRATEGIES = ['fixed', 'hybrid', 'ralph', 'manual'] as const;
export type ConvergenceStrategyName = (typeof CONVERGENCE_STRATEGIES)[number];

/** Defaults of SPEC section 5 and 9, in one place so docs, schema and resolver agree. */
export const TASK_SPEC_DEFAULTS = {
  maxIterations: 3,
  maxWallClock: '1h',
  idleTimeout: '10m',
  hybrid: { baseIterations: 3, bonusIterations: 2, progressThreshold: 0.1 },
  ralph: { windowSize: 3, similarityThreshold: 0.95, minIterations: 1 },
  branchPrefix: 'agentgate/',
  ciTimeout: '30m',
  ciPollInterval: '30s',
} as const;

/** Hard cap on iterations, shared with the WorkOrder API so both inputs accept the same range. */
export const MAX_ITERATIONS_CAP = 100;

/**
 * Longest task prompt. Agents receive the prompt as one argument or environment string, which Linux
 * caps at 128 KiB (MAX_ARG_STRLEN); 32,768 characters stay below it even at 4 bytes per character.
 */
export const MAX_PROMPT_CHARS = 32_768;

/** A task prompt: non-empty and within {@link MAX_PROMPT_CHARS}. */
export const PromptText = z.string().trim().min(1).max(MAX_PROMPT_CHARS, `must be at most ${MAX_PROMPT_CHARS} characters (longer context belongs in files of the repository)`);

export const NonEmpty = z.string().trim().min(1);

/** True when the text holds an ASCII control character (names and refs must print on one line). */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** A scalar written in YAML (`FOO: 1`, `team: true`) where a string is meant. */
export const StringLike = z.union([z.string(), z.number(), z.boolean()], { error: (issue) => `expected a string, got ${Array.isArray(issue.input) ? 'a list' : typeof issue.input}` }).transform(String);

/** `KEY: value` pairs whose keys must be usable as environment variable names. */
export const EnvMapSchema = z.record(z.string(), StringLike).superRefine((env, ctx) => {
  for (const key of Object.keys(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      ctx.addIssue({ code: 'custom', path: [key], message: 'not a valid environment variable name (letters, digits, _; not starting with a digit)' });
    }
  }
});

/**
 * A git ref as accepted by `git check-ref-format`, minus exotic cases. A leading `-` is refused so a ref can
 * never be read as a git option.
 */
export const GitRefSchema = NonEmpty.refine(
  (ref) => !/[\s~^:?*[\\]/.test(ref) && !hasControlCharacter(ref) && !ref.includes('..') && !ref.includes('@{') && !ref.startsWith('-') && !ref.startsWith('/') && !ref.endsWith('/') && !ref.endsWith('.lock') && !ref.endsWith('.'),
  { error: (issue) => `not a valid git ref: ${JSON.stringify(issue.input)}` },
);

/** A clone URL or path. Only shape checks: git itself decides what it can clone. Never starts with `-`. */
export const GitUrlSchema = NonEmpty.refine((url) => !url.startsWith('-') && !/\s/.test(url), {
  error: (issue) => `not a valid git URL: ${JSON.stringify(issue.input)}`,
});

/** `owner/name` as GitHub spells repositories. */
export const GITHUB_REPO_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\/(?!\.\.?$)[A-Za-z0-9._-]+$/;

export const GithubRepoSchema = z.string().trim().regex(GITHUB_REPO_PATTERN, { error: (issue) => `expected "owner/name", got ${JSON.stringify(issue.input)}` });

/** A GitLab project path (`group/sub/project`) or numeric id; kept as a string either way. */
export const GitlabProjectSchema = z
  .union([z.string().trim().regex(/^[A-Za-z0-9_.][A-Za-z0-9_./-]*$/), z.number().int().positive()], {
    error: (issue) => `expected a GitLab project path ("group/project") or numeric id, got ${JSON.stringify(issue.input)}`,
  })
  .transform(String);
