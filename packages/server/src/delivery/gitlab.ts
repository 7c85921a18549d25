/**
 * GitLab delivery (SPEC 9): push the run branch to the project's `http_url_to_repo`, open a merge request
 * against the default branch (a `Draft:` title while waiting for CI), reuse it on later iterations, watch
 * the newest pipeline of the pushed commit, turn the traces of its failed jobs into feedback, and drop
 * the `Draft:` prefix when CI passed.
 *
 * The client is @gitbeaker/rest (URL configurable for self-managed GitLab). It retries 429 and 502 a few
 * times in-process on its own; whatever it gives up on is waited out by {@link forgeCall} on the injected
 * clock. Responses are read through small schemas, so a forge answering an unexpected shape is a clear
 * `AG_ERR_DELIVERY_FORGE`, not a crash deep in the engine.
 */
import { Gitlab } from '@gitbeaker/rest';
import { z } from 'zod';
import { AgentGateError } from '../errors.js';
import { generateFeedback, type CiFailedJob } from '../execution/feedback-generator.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import { assertNever } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import { changeBody, changeTitle } from './change-body.js';
import { jobExcerpt, summariseJobLog } from './ci-logs.js';
import { watchCi, type CiLook } from './ci-watch.js';
import { classifyForgeError, DEFAULT_FORGE_RETRY, forgeCall, type ForgeRetryPolicy } from './forge-call.js';
import { pushToForge } from './forge-push.js';
import { checkedCloneUrl } from './github.js';
import {
  deliveryStep,
  supportFromCapabilities,
  type ChangeOutcome,
  type ChangeRequest,
  type CiOutcome,
  type DeliveryCapabilities,
  type DeliveryContext,
  type DeliveryManager,
  type DeliveryOutcome,
  type DeliveryResult,
  type DeliverySupport,
  type DeliveryTarget,
  type FinalizeOutcome,
  type GitLabDeliveryTarget,
  type IterationDeliveryContext,
  type PreparedDeliveryContext,
  type PushOutcome,
} from './manager.js';

export const GITLAB_DELIVERY_CAPABILITIES: DeliveryCapabilities = {
  workspaces: ['gitlab'],
  pushFrom: ['gitlab'],
  pushTarget: 'forge',
  changeRequests: true,
  ciWait: true,
};

export interface GitLabDeliveryOptions {
  token: string;
  /** Instance URL: `https://gitlab.com` or a self-managed host. */
  url: string;
  retry?: Partial<ForgeRetryPolicy>;
}

const Project = z.looseObject({ id: z.number(), http_url_to_repo: z.string(), default_branch: z.string().nullable().optional() });
const MergeRequest = z.looseObject({ iid: z.number(), web_url: z.string(), title: z.string(), source_branch: z.string(), draft: z.boolean().optional(), work_in_progress: z.boolean().optional() });
const Pipeline = z.looseObject({ id: z.number(), status: z.string(), web_url: z.string().optional() });
const Job = z.looseObject({ id: z.number(), name: z.string(), stage: z.string().optional(), status: z.string(), web_url: z.string().optional() });

/** https://docs.gitlab.com/ee/api/pipelines.html — statuses still running. */
const PENDING = new Set(['created', 'waiting_for_resource', 'preparing', 'pending', 'running', 'scheduled', 'waiting_for_callback']);
const FAILED = new Set(['failed', 'canceled', 'canceling']);
const DRAFT_PREFIX = 'Draft: ';
const MAX_LOGS = 3;

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new AgentGateError('AG_ERR_DELIVERY_FORGE', `GitLab answered ${what} with an unexpected shape`, { retryable: false, cause: result.error });
  return result.data;
}

export class GitLabDeliveryManager implements DeliveryManager {
  readonly name = 'gitlab' as const;
  readonly capabilities = GITLAB_DELIVERY_CAPABILITIES;
  private readonly api: InstanceType<typeof Gitlab>;
  private readonly policy: ForgeRetryPolicy;

  constructor(private readonly options: GitLabDeliveryOptions) {
    if (options.token.trim() === '') throw new AgentGateError('AG_ERR_CONFIG_INVALID', 'GitLab delivery needs a token (AGENTGATE_GITLAB_TOKEN)');
    this.policy = { ...DEFAULT_FORGE_RETRY, ...options.retry };
    this.api = new Gitlab({ host: options.url.replace(/\/+$/, ''), token: options.token });
  }

  canHandle(spec: ResolvedTaskSpec): DeliverySupport {
    return supportFromCapabilities(this.name, this.capabilities, spec);
  }

  /** The project's `http_url_to_repo` from the API: what the workspace cache fetches from (SPEC 9). */
  async cloneUrl(project: string, signal: AbortSignal, clock: TimerClock): Promise<string> {
    const data = parse(Project, await this.call(clock, signal, `read the GitLab project ${project}`, () => this.api.Projects.show(project)), 'the project');
    return checkedCloneUrl(data.http_url_to_repo, project);
  }

  prepare(ctx: DeliveryContext): Promise<DeliveryResult<DeliveryTarget>> {
    return deliveryStep(ctx.signal, 'prepare GitLab delivery', 'AG_ERR_DELIVERY_FORGE', async () => {
      const { spec } = ctx;
      if (spec.workspace.source !== 'gitlab') throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', `GitLab delivery needs a gitlab workspace, not ${spec.workspace.source}`);
      const projectPath = spec.workspace.project.replace(/\.git$/, '');
      const project = parse(Project, await this.call(ctx.clock, ctx.signal, `read the GitLab project ${projectPath}`, () => this.api.Projects.show(projectPath)), 'the project');
      const target: GitLabDeliveryTarget = {
        kind: 'gitlab',
        projectId: project.id,
        projectPath,
        repoPath: ctx.workspace.repoPath,
        branch: ctx.branch,
        cloneUrl: checkedCloneUrl(project.http_url_to_repo, projectPath),
        defaultBranch: project.default_branch ?? 'main',
      };
      return target;
    });
  }

  pushIteration(ctx: IterationDeliveryContext): Promise<DeliveryResult<PushOutcome>> {
    return deliveryStep(ctx.signal, `push iteration ${ctx.iteration}`, 'AG_ERR_DELIVERY_PUSH', async () => {
      const target = gitlabTarget(ctx.target);
      if (!ctx.spec.delivery.push) return { status: 'not_pushed', reason: 'push_disabled' };
      return pushToForge({
        repoPath: target.repoPath,
        cloneUrl: target.cloneUrl,
        branch: target.branch,
        baseSha: ctx.workspace.baseSha,
        sha: ctx.snapshotSha,
        iteration: ctx.iteration,
        tokenUser: 'oauth2',
        token: this.options.token,
        signal: ctx.signal,
      });
    });
  }

  openChange(ctx: IterationDeliveryContext): Promise<DeliveryResult<ChangeOutcome>> {
    return deliveryStep(ctx.signal, 'open the merge request', 'AG_ERR_DELIVERY_FORGE', async () => {
      const target = gitlabTarget(ctx.target);
      if (!ctx.spec.delivery.pr.create) return { status: 'none' };
      const description = changeBody({ spec: ctx.spec, runId: ctx.runId, branch: target.branch, ...(ctx.report === undefined ? {} : { report: ctx.report }), secrets: [this.options.token] });
      const existing = await this.findOpen(ctx, target);
      if (existing !== undefined) {
        await this.call(ctx.clock, ctx.signal, `update merge request !${existing.number}`, () => this.api.MergeRequests.edit(target.projectId, existing.number, { description }));
        return { status: 'reused', change: existing };
      }
      const draft = ctx.spec.delivery.pr.draft || ctx.spec.delivery.ci.wait;
      const title = `${draft ? DRAFT_PREFIX : ''}${changeTitle(ctx.spec, [this.options.token])}`;
      const { labels } = ctx.spec.delivery.pr;
      if (ctx.spec.delivery.pr.reviewers.length > 0) ctx.logger.warn({ reviewers: ctx.spec.delivery.pr.reviewers.length }, 'GitLab reviewers need user ids; not requested');
      const created = parse(
        MergeRequest,
        await this.call(ctx.clock, ctx.signal, 'open the merge request', () =>
          this.api.MergeRequests.create(target.projectId, target.branch, target.defaultBranch, title, { description, ...(labels.length > 0 ? { labels: labels.join(',') } : {}) }),
        ),
        'the new merge request',
      );
      const change = toChange(created);
      ctx.logger.info({ mr: change.number, url: change.url, draft: change.draft }, 'merge request opened');
      return { status: 'opened', change };
    });
  }

  waitForCI(ctx: IterationDeliveryContext, signal: AbortSignal): Promise<DeliveryResult<CiOutcome>> {
    return deliveryStep(signal, 'wait for CI', 'AG_ERR_DELIVERY_FORGE', async () => {
      const target = gitlabTarget(ctx.target);
      if (!ctx.spec.delivery.ci.wait) return { status: 'none' };
      let failedPipeline: number | undefined;
      const poll = async (): Promise<CiLook> => {
        const pipelines = parse(z.array(Pipeline), await this.api.Pipelines.all(target.projectId, { sha: ctx.snapshotSha, perPage: 20 }), 'the pipelines');
        const newest = pipelines.reduce<z.infer<typeof Pipeline> | undefined>((best, candidate) => (best === undefined || candidate.id > best.id ? candidate : best), undefined);
        if (newest === undefined) return { state: 'absent' };
        const detail = `pipeline ${newest.id} ${newest.status} on ${ctx.snapshotSha.slice(0, 12)}`;
        if (PENDING.has(newest.status)) return { state: 'pending', detail };
        if (FAILED.has(newest.status)) {
          failedPipeline = newest.id;
          return { state: 'failed', detail };
        }
        // success, skipped, manual (waiting for a person: nothing failed).
        return { state: 'passed', detail };
      };
      return watchCi(ctx, signal, {
        poll,
        describeFailure: () => this.describeFailure(ctx, target, failedPipeline),
        classify: (error) => classifyForgeError(error, ctx.clock.now()),
        policy: this.policy,
        secrets: [this.options.token],
      });
    });
  }

  /** Drops the `Draft:` prefix AgentGate added when the run passed. */
  finalize(ctx: PreparedDeliveryContext, outcome: DeliveryOutcome): Promise<DeliveryResult<FinalizeOutcome>> {
    return deliveryStep(ctx.signal, 'finalize GitLab delivery', 'AG_ERR_DELIVERY_FORGE', async () => {
      const target = gitlabTarget(ctx.target);
      const change = outcome.change;
      if (change === undefined || outcome.result !== 'passed' || !change.draft || ctx.spec.delivery.pr.draft) return { status: 'unchanged' };
      const current = parse(MergeRequest, await this.call(ctx.clock, ctx.signal, `read merge request !${change.number}`, () => this.api.MergeRequests.show(target.projectId, change.number)), 'the merge request');
      if (!current.title.startsWith(DRAFT_PREFIX)) return { status: 'unchanged' };
      await this.call(ctx.clock, ctx.signal, `mark merge request !${change.number} ready`, () =>
        this.api.MergeRequests.edit(target.projectId, change.number, { title: current.title.slice(DRAFT_PREFIX.length) }),
      );
      ctx.logger.info({ mr: change.number }, 'merge request marked ready');
      return { status: 'updated', change: { ...change, draft: false } };
    });
  }

  private async findOpen(ctx: PreparedDeliveryContext, target: GitLabDeliveryTarget): Promise<ChangeRequest | undefined> {
    const open = parse(
      z.array(MergeRequest),
      await this.call(ctx.clock, ctx.signal, 'list open merge requests', () => this.api.MergeRequests.all({ projectId: target.projectId, sourceBranch: target.branch, state: 'opened' })),
      'the merge requests',
    );
    const mr = open.find((candidate) => candidate.source_branch === target.branch);
    return mr === undefined ? undefined : toChange(mr);
  }

  private async describeFailure(ctx: IterationDeliveryContext, target: GitLabDeliveryTarget, pipelineId: number | undefined): Promise<string> {
    const jobs = pipelineId === undefined ? [] : parse(z.array(Job), await this.api.Jobs.all(target.projectId, { pipelineId, scope: 'failed' }), 'the jobs');
    const failed: CiFailedJob[] = [];
    for (const [index, job] of jobs.entries()) {
      let excerpt = `job ${job.name} ${job.status}`;
      if (index < MAX_LOGS) {
        const trace = await this.api.Jobs.showLog(target.projectId, job.id);
        const text = typeof trace === 'string' ? trace : '';
        excerpt = jobExcerpt(summariseJobLog(text));
      }
      failed.push({ name: job.stage === undefined ? job.name : `${job.stage}: ${job.name}`, logExcerpt: excerpt, ...(job.web_url === undefined ? {} : { url: job.web_url }) });
    }
    const summary = `pipeline ${pipelineId ?? '?'} failed on ${ctx.snapshotSha.slice(0, 12)}: ${jobs.length} failed job(s)${jobs.length > 0 ? ` (${jobs.map((job) => job.name).join(', ')})` : ''}`;
    return generateFeedback({ iteration: ctx.iteration, ci: { summary, failedJobs: failed }, secrets: [this.options.token] }).text;
  }

  private call<T>(clock: TimerClock, signal: AbortSignal, what: string, work: () => Promise<T>): Promise<T> {
    return forgeCall(work, { what, clock, signal, policy: this.policy, classify: (error) => classifyForgeError(error, clock.now()), secrets: [this.options.token] });
  }
}

export function createGitLabDeliveryManager(options: GitLabDeliveryOptions): GitLabDeliveryManager {
  return new GitLabDeliveryManager(options);
}

function toChange(mr: z.infer<typeof MergeRequest>): ChangeRequest {
  return { number: mr.iid, url: mr.web_url, draft: mr.draft ?? mr.work_in_progress ?? mr.title.startsWith(DRAFT_PREFIX) };
}

function gitlabTarget(target: DeliveryTarget): GitLabDeliveryTarget {
  switch (target.kind) {
    case 'gitlab':
      return target;
    case 'local':
    case 'github':
      throw new AgentGateError('AG_ERR_INTERNAL', `GitLab delivery was handed a ${target.kind} target`);
    default:
      return assertNever(target);
  }
}
