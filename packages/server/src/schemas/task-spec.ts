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

import {
  AGENT_DRIVERS,
  EnvMapSchema,
  GitRefSchema,
  GitUrlSchema,
  GitlabProjectSchema,
  GithubRepoSchema,
  MAX_ITERATIONS_CAP,
  MAX_PROMPT_CHARS,
  NonEmpty,
  PromptText,
  StringLike,
  TASK_SPEC_DEFAULTS,
  hasControlCharacter,
} from './primitives.js';

export {
  AGENT_DRIVERS,
  CONVERGENCE_STRATEGIES,
  EnvMapSchema,
  GITHUB_REPO_PATTERN,
  GitRefSchema,
  GitUrlSchema,
  GitlabProjectSchema,
  MAX_ITERATIONS_CAP,
  MAX_PROMPT_CHARS,
  PromptText,
  TASK_SPEC_DEFAULTS,
  hasControlCharacter,
} from './primitives.js';
export type { AgentDriverName, ConvergenceStrategyName } from './primitives.js';

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
