/**
 * The legacy WorkOrder HTTP body (`POST /api/v1/work-orders`, SPEC section 10).
 *
 * Existing clients must keep working unchanged, so this schema is deliberately lenient where the old API was:
 * unknown top-level keys are **stripped** (old clients send fields such as `gatePlanSource` or `policies`
 * that no longer mean anything), unknown keys inside `harness` are tolerated, and legacy spellings
 * (`claude-code-subscription`, `branch` for `ref`, `{ owner, repo }`) are accepted and normalised. It is
 * still strict about what it does use: a bad value is a 400 naming the field. The body is then translated by
 * `workOrderToTaskSpec()` (resolve.ts) so work orders and TaskSpecs share one execution path.
 *
 * Only zod (and the zod-only primitives): the dashboard bundles this module and validates its submit form
 * with the same rules. Parsing with AgentGate's error wording is in `work-order.ts`.
 */

import { z } from 'zod';
import { CONVERGENCE_STRATEGIES, GITHUB_REPO_PATTERN, GitRefSchema, GitUrlSchema, GitlabProjectSchema, MAX_ITERATIONS_CAP, PromptText } from './primitives.js';
import type { AgentDriverName } from './primitives.js';

const NonEmpty = z.string().trim().min(1);

/** Legacy agent names mapped to today's drivers. */
export const LEGACY_AGENT_TYPES = {
  command: 'command',
  'claude-code': 'claude-code',
  codex: 'codex',
  'claude-code-subscription': 'claude-code',
  'claude-code-api': 'claude-code',
} as const satisfies Record<string, AgentDriverName>;

export type WorkOrderAgentType = keyof typeof LEGACY_AGENT_TYPES;

const AGENT_TYPE_NAMES = Object.keys(LEGACY_AGENT_TYPES) as [WorkOrderAgentType, ...WorkOrderAgentType[]];

/** Legacy `harness.gitOps.mode` values. */
export const GIT_OPS_MODES = ['local', 'push_only', 'github_pr', 'gitlab_mr'] as const;
export type GitOpsMode = (typeof GIT_OPS_MODES)[number];

/** Old clients said `branch`, newer ones `ref`; both mean the ref to start from. */
const RefFields = { ref: GitRefSchema.optional(), branch: GitRefSchema.optional() };

const WorkspaceSourceVariants = z.discriminatedUnion('type', [
  z.object({ type: z.literal('local'), path: NonEmpty, ...RefFields }),
  z.object({ type: z.literal('git'), url: GitUrlSchema, ...RefFields }),
  z
    .object({ type: z.literal('github'), repo: NonEmpty, owner: NonEmpty.optional(), ...RefFields })
    .superRefine((source, ctx) => {
      const full = source.owner === undefined ? source.repo : `${source.owner}/${source.repo}`;
      if (!GITHUB_REPO_PATTERN.test(full)) {
        ctx.addIssue({
          code: 'custom',
          path: ['repo'],
          message: source.owner === undefined ? `expected "owner/name" (or set owner and repo separately), got ${JSON.stringify(source.repo)}` : `owner "${source.owner}" and repo "${source.repo}" do not form a valid owner/name`,
        });
      }
    }),
  z.object({ type: z.literal('gitlab'), project: GitlabProjectSchema, ...RefFields }),
]);

/**
 * `workspaceSource`, normalised: `branch` folded into `ref`, GitHub `{ owner, repo }` folded into
 * `repo: "owner/name"`. Setting `branch` and `ref` to different values is an error rather than a guess.
 */
export const WorkspaceSourceSchema = WorkspaceSourceVariants.superRefine((source, ctx) => {
  if (source.ref !== undefined && source.branch !== undefined && source.ref !== source.branch) {
    ctx.addIssue({ code: 'custom', path: ['branch'], message: `conflicts with ref "${source.ref}"; set only one` });
  }
}).transform((source) => {
  const ref = source.ref ?? source.branch;
  const withRef = ref === undefined ? {} : { ref };
  switch (source.type) {
    case 'local':
      return { type: source.type, path: source.path, ...withRef };
    case 'git':
      return { type: source.type, url: source.url, ...withRef };
    case 'github':
      return { type: source.type, repo: source.owner === undefined ? source.repo : `${source.owner}/${source.repo}`, ...withRef };
    case 'gitlab':
      return { type: source.type, project: source.project, ...withRef };
    default: {
      const unreachable: never = source;
      return unreachable;
    }
  }
});

export type WorkOrderWorkspaceSource = z.output<typeof WorkspaceSourceSchema>;

const Ratio = z.number().min(0).max(1);

/**
 * The legacy harness block. Only the keys AgentGate still acts on are typed; any other key is kept
 * (loose objects) so old profiles round-trip without a 400.
 */
export const HarnessSchema = z.looseObject({
  profile: NonEmpty.optional(),
  loopStrategy: z
    .looseObject({
      mode: z.enum(CONVERGENCE_STRATEGIES),
      maxIterations: z.number().int().min(1).max(MAX_ITERATIONS_CAP).optional(),
      // fixed
      iterations: z.number().int().min(1).max(MAX_ITERATIONS_CAP).optional(),
      // hybrid (legacy profiles call the bonus `maxBonusIterations`)
      baseIterations: z.number().int().min(1).optional(),
      bonusIterations: z.number().int().min(0).optional(),
      maxBonusIterations: z.number().int().min(0).optional(),
      progressThreshold: Ratio.optional(),
      // ralph
      windowSize: z.number().int().min(2).optional(),
      similarityThreshold: Ratio.optional(),
      minIterations: z.number().int().min(1).optional(),
    })
    .optional(),
  verification: z.looseObject({ waitForCI: z.boolean().optional() }).optional(),
  gitOps: z.looseObject({ mode: z.enum(GIT_OPS_MODES).optional() }).optional(),
  executionLimits: z.looseObject({ maxWallClockSeconds: z.number().int().positive().optional() }).optional(),
});

export type WorkOrderHarness = z.output<typeof HarnessSchema>;

/**
 * The `POST /api/v1/work-orders` body. `z.object` strips unknown top-level keys on purpose (see the module
 * comment); `agentType` comes out as a driver name, legacy aliases already mapped.
 */
export const WorkOrderBodySchema = z
  .object({
    taskPrompt: PromptText,
    workspaceSource: WorkspaceSourceSchema,
    agentType: z
      .enum(AGENT_TYPE_NAMES)
      .default('claude-code')
      .transform((type): AgentDriverName => LEGACY_AGENT_TYPES[type]),
    agentCommand: NonEmpty.optional(),
    maxIterations: z.number().int().min(1).max(MAX_ITERATIONS_CAP).default(3),
    /** Wall-clock limit in seconds. */
    maxTime: z.number().int().positive().optional(),
    waitForCI: z.boolean().default(false),
    harness: HarnessSchema.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.agentType === 'command' && body.agentCommand === undefined) {
      ctx.addIssue({ code: 'custom', path: ['agentCommand'], message: 'required when agentType is "command"' });
    }
    const mode = body.harness?.gitOps?.mode;
    const type = body.workspaceSource.type;
    if ((mode === 'github_pr' && type !== 'github') || (mode === 'gitlab_mr' && type !== 'gitlab')) {
      ctx.addIssue({
        code: 'custom',
        path: ['harness', 'gitOps', 'mode'],
        message: `${mode} needs a ${mode === 'github_pr' ? 'github' : 'gitlab'} workspaceSource, got ${type}`,
      });
    }
  });

/** A validated WorkOrder body, defaults applied and legacy spellings normalised. */
export type WorkOrderBody = z.output<typeof WorkOrderBodySchema>;
/** The body as clients send it. */
export type WorkOrderBodyInput = z.input<typeof WorkOrderBodySchema>;
