/**
 * TaskSpec: the declarative description of one coding task (SPEC sections 2, 5, 7, 8, 9).
 *
 * A TaskSpec is what a person writes (`agentgate task run task.yaml`, `POST /api/v1/tasks`) and what a legacy
 * WorkOrder is translated into, so it is the single input format of the engine. The schema fills every
 * default that does not depend on another field; {@link resolveTaskSpec} (resolve.ts) derives the rest.
 *
 * Objects are strict: a TaskSpec is authored by hand, and an unknown key there is nearly always a typo
 * (`maxIteration`, `brnachPrefix`) whose silent loss would change what the run does.
 */

import { z } from 'zod';
import { DurationSchema } from './duration.js';
import { parseWithSchema, parseYamlWithSchema } from './errors.js';
import { VerifyConfigSchema } from './verify-config.js';
import { SANDBOX_MODES } from '../util/sandbox.js';

export const TASK_SPEC_API_VERSION = 'agentgate.io/v1';
export const TASK_SPEC_KIND = 'TaskSpec';

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

const NonEmpty = z.string().trim().min(1);

/** True when the text holds an ASCII control character (names and refs must print on one line). */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** A scalar written in YAML (`FOO: 1`, `team: true`) where a string is meant. */
const StringLike = z.union([z.string(), z.number(), z.boolean()], { error: (issue) => `expected a string, got ${Array.isArray(issue.input) ? 'a list' : typeof issue.input}` }).transform(String);

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

const GithubRepoSchema = z.string().trim().regex(GITHUB_REPO_PATTERN, { error: (issue) => `expected "owner/name", got ${JSON.stringify(issue.input)}` });

/** A GitLab project path (`group/sub/project`) or numeric id; kept as a string either way. */
export const GitlabProjectSchema = z
  .union([z.string().trim().regex(/^[A-Za-z0-9_.][A-Za-z0-9_./-]*$/), z.number().int().positive()], {
    error: (issue) => `expected a GitLab project path ("group/project") or numeric id, got ${JSON.stringify(issue.input)}`,
  })
  .transform(String);

const WorkspaceSchema = z.discriminatedUnion('source', [
  z.strictObject({ source: z.literal('local'), path: NonEmpty, ref: GitRefSchema.optional() }),
  z.strictObject({ source: z.literal('git'), url: GitUrlSchema, ref: GitRefSchema.optional() }),
  z.strictObject({ source: z.literal('github'), repo: GithubRepoSchema, ref: GitRefSchema.optional() }),
  z.strictObject({ source: z.literal('gitlab'), project: GitlabProjectSchema, ref: GitRefSchema.optional() }),
]);

export type TaskSpecWorkspace = z.output<typeof WorkspaceSchema>;

const HttpUrlSchema = z.url({ protocol: /^https?$/, error: (issue) => `expected an http(s) URL, got ${JSON.stringify(issue.input)}` });

const AgentSchema = z
  .strictObject({
    driver: z.enum(AGENT_DRIVERS).default('claude-code'),
    /** Shell command for the `command` driver. */
    command: NonEmpty.optional(),
    model: NonEmpty.optional(),
    maxTurns: z.number().int().positive().optional(),
    allowedTools: z.array(NonEmpty).optional(),
    /** Extra environment for the agent process only; never the server's own secrets. */
    env: EnvMapSchema.optional(),
    /** Alternative API endpoint (passed as `ANTHROPIC_BASE_URL` to Claude Code). */
    baseUrl: HttpUrlSchema.optional(),
  })
  .superRefine((agent, ctx) => {
    if (agent.driver === 'command' && agent.command === undefined) {
      ctx.addIssue({ code: 'custom', path: ['command'], message: 'required when driver is "command" (the shell command that runs the agent)' });
    }
  });

/**
 * Where agents and gates run (SPEC 8, docs/security.md). Both fields are optional: an absent `mode`
 * takes the configured default (`AGENTGATE_SANDBOX`, else `auto`), an absent `network` is `true`.
 */
const SandboxSchema = z.strictObject({
  mode: z.enum(SANDBOX_MODES).optional(),
  /** `false` cuts the sandbox off every network, loopback of the host included. */
  network: z.boolean().optional(),
});

export type TaskSpecSandbox = z.output<typeof SandboxSchema>;

const LimitsSchema = z.strictObject({
  maxIterations: z.number().int().min(1).max(MAX_ITERATIONS_CAP).default(TASK_SPEC_DEFAULTS.maxIterations),
  maxWallClock: DurationSchema.default(TASK_SPEC_DEFAULTS.maxWallClock),
  maxTokens: z.number().int().positive().optional(),
  maxCostUsd: z.number().positive().optional(),
  /** No agent output for this long kills the agent (SPEC section 7). */
  idleTimeout: DurationSchema.default(TASK_SPEC_DEFAULTS.idleTimeout),
});

const Ratio = z.number().min(0).max(1);

/**
 * One variant per strategy, so each `config` accepts only its own parameters. `strategy` defaults to
 * `fixed`; zod treats the defaulted literal as matching an absent discriminator.
 */
const ConvergenceSchema = z.discriminatedUnion('strategy', [
  z.strictObject({
    strategy: z.literal('fixed').default('fixed'),
    config: z.strictObject({ iterations: z.number().int().min(1).max(MAX_ITERATIONS_CAP).optional() }).prefault({}),
    limits: LimitsSchema.prefault({}),
  }),
  z.strictObject({
    strategy: z.literal('hybrid'),
    config: z
      .strictObject({
        baseIterations: z.number().int().min(1).default(TASK_SPEC_DEFAULTS.hybrid.baseIterations),
        bonusIterations: z.number().int().min(0).default(TASK_SPEC_DEFAULTS.hybrid.bonusIterations),
        progressThreshold: Ratio.default(TASK_SPEC_DEFAULTS.hybrid.progressThreshold),
      })
      .prefault({}),
    limits: LimitsSchema.prefault({}),
  }),
  z.strictObject({
    strategy: z.literal('ralph'),
    config: z
      .strictObject({
        windowSize: z.number().int().min(2).default(TASK_SPEC_DEFAULTS.ralph.windowSize),
        similarityThreshold: Ratio.default(TASK_SPEC_DEFAULTS.ralph.similarityThreshold),
        minIterations: z.number().int().min(1).default(TASK_SPEC_DEFAULTS.ralph.minIterations),
      })
      .prefault({}),
    limits: LimitsSchema.prefault({}),
  }),
  z.strictObject({
    strategy: z.literal('manual'),
    config: z.strictObject({}).prefault({}),
    limits: LimitsSchema.prefault({}),
  }),
]);

export type TaskSpecConvergence = z.output<typeof ConvergenceSchema>;

/** A branch-name prefix: characters git accepts in a ref, no `..`, no leading `-` or `/`. */
const BranchPrefixSchema = z
  .string()
  .regex(/^(?![-/])(?!.*\.\.)[A-Za-z0-9._/-]*$/, { error: (issue) => `not a valid branch prefix: ${JSON.stringify(issue.input)}` });

const DeliverySchema = z.strictObject({
  git: z
    .strictObject({
      branchPrefix: BranchPrefixSchema.default(TASK_SPEC_DEFAULTS.branchPrefix),
      /** Push the run branch. Defaults to true when a PR/MR is created, false otherwise (resolved later). */
      push: z.boolean().optional(),
      remote: z
        .string()
        .regex(/^(?!-)[A-Za-z0-9._-]+$/, { error: (issue) => `not a valid remote name: ${JSON.stringify(issue.input)}` })
        .optional(),
    })
    .prefault({}),
  pr: z
    .strictObject({
      create: z.boolean().default(false),
      draft: z.boolean().optional(),
      title: NonEmpty.optional(),
      labels: z.array(NonEmpty).optional(),
      reviewers: z.array(NonEmpty).optional(),
    })
    .prefault({}),
  ci: z
    .strictObject({
      wait: z.boolean().default(false),
      timeout: DurationSchema.default(TASK_SPEC_DEFAULTS.ciTimeout),
      pollInterval: DurationSchema.default(TASK_SPEC_DEFAULTS.ciPollInterval),
      /** Feed CI failures back to the agent for another iteration. */
      retryOnFailure: z.boolean().default(true),
    })
    .prefault({}),
});

const SpecSchema = z
  .strictObject({
    goal: z.strictObject({ prompt: PromptText, context: z.string().max(MAX_PROMPT_CHARS, `must be at most ${MAX_PROMPT_CHARS} characters`).optional() }),
    convergence: ConvergenceSchema.prefault({}),
    execution: z.strictObject({
      workspace: WorkspaceSchema,
      agent: AgentSchema.prefault({}),
      sandbox: SandboxSchema.optional(),
    }),
    delivery: DeliverySchema.prefault({}),
    /** Inline gates; when present they replace the repository's verify.yaml. */
    verify: VerifyConfigSchema.optional(),
  })
  .superRefine((spec, ctx) => {
    const source = spec.execution.workspace.source;
    if (spec.delivery.pr.create && source !== 'github' && source !== 'gitlab') {
      ctx.addIssue({
        code: 'custom',
        path: ['delivery', 'pr', 'create'],
        message: `opening a pull/merge request needs a github or gitlab workspace, got ${source}`,
      });
    }
    if (spec.delivery.pr.create && spec.delivery.git.push === false) {
      ctx.addIssue({ code: 'custom', path: ['delivery', 'git', 'push'], message: 'cannot be false when delivery.pr.create is true (the PR needs the pushed branch)' });
    }
  });

/** The TaskSpec document schema. */
export const TaskSpecSchema = z.strictObject({
  apiVersion: z.literal(TASK_SPEC_API_VERSION),
  kind: z.literal(TASK_SPEC_KIND),
  metadata: z.strictObject({
    name: NonEmpty.max(200).refine((name) => !hasControlCharacter(name), { error: 'must not contain control characters' }),
    labels: z.record(z.string(), StringLike).optional(),
  }),
  spec: SpecSchema,
});

/** A validated TaskSpec with every schema-level default filled in. */
export type TaskSpec = z.output<typeof TaskSpecSchema>;
/** A TaskSpec as written: optional fields may be absent. */
export type TaskSpecInput = z.input<typeof TaskSpecSchema>;

/** Validates a TaskSpec given as an object (HTTP JSON body, programmatic use). Throws AG_ERR_SCHEMA_INVALID. */
export function parseTaskSpec(value: unknown): TaskSpec {
  return parseWithSchema(value, TaskSpecSchema);
}

/**
 * Parses TaskSpec YAML. Syntax errors are AG_ERR_YAML_PARSE and schema errors AG_ERR_SCHEMA_INVALID, both
 * naming `<file>:<line>`.
 */
export function parseTaskSpecYaml(text: string, fileName: string): TaskSpec {
  return parseYamlWithSchema(text, TaskSpecSchema, { fileName });
}
