/**
 * GitHub delivery (SPEC 9): push `agentgate/<runId>` to the repository's `clone_url`, open a pull request
 * against the default branch (draft while waiting for CI; title from the task; body with iterations,
 * gate results and cost, redacted), reuse it on later iterations, watch check runs and commit statuses
 * of the pushed commit, download and summarise the logs of failed GitHub Actions jobs into feedback, and
 * mark the pull request ready when CI passed.
 *
 * The client is @octokit/rest with the retry plugin (5xx retried twice in-process) and the throttling
 * plugin (writes serialised as GitHub asks; its rate-limit handlers decline in-process waiting so that
 * {@link forgeCall} waits on the injected clock instead, honouring `retry-after` / `x-ratelimit-reset`).
 * The base URL is configurable for GitHub Enterprise Server (`https://ghe.example.com/api/v3`).
 */
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { Octokit } from '@octokit/rest';
import type { Logger } from 'pino';
import { AgentGateError } from '../errors.js';
import { generateFeedback, type CiFailedJob } from '../execution/feedback-generator.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import { assertNever } from '../util/abort.js';
import type { TimerClock } from '../util/clock.js';
import { changeBody, changeTitle } from './change-body.js';
import { jobExcerpt, summariseJobLog } from './ci-logs.js';
import { watchCi, type CiLook } from './ci-watch.js';
import { classifyForgeError, DEFAULT_FORGE_RETRY, forgeCall, httpErrorInfo, type ForgeRetryPolicy } from './forge-call.js';
import { pushToForge } from './forge-push.js';
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
  type GitHubDeliveryTarget,
  type IterationDeliveryContext,
  type PreparedDeliveryContext,
  type PushOutcome,
} from './manager.js';

export const GITHUB_DELIVERY_CAPABILITIES: DeliveryCapabilities = {
  workspaces: ['github'],
  pushFrom: ['github'],
  pushTarget: 'forge',
  changeRequests: true,
  ciWait: true,
};

export interface GitHubDeliveryOptions {
  token: string;
  /** REST API base URL: `https://api.github.com` or `https://<host>/api/v3`. */
  apiUrl: string;
  /** Retries on the clock (see {@link forgeCall}). */
  retry?: Partial<ForgeRetryPolicy>;
  /** Base of the retry plugin's in-process backoff (base × retry²); default 1000 ms (the plugin's). */
  clientRetryBaseMs?: number;
  logger?: Logger;
}

/** Check-run conclusions that fail CI (https://docs.github.com/en/rest/checks/runs). */
const FAILED_CONCLUSIONS = new Set(['failure', 'timed_out', 'cancelled', 'action_required', 'startup_failure', 'stale']);
const FAILED_STATUSES = new Set(['failure', 'error']);
/** Failed jobs whose logs are downloaded; the rest are named only. */
const MAX_LOGS = 3;
const GitHubClient = Octokit.plugin(retry, throttling);
type GitHubClient = InstanceType<typeof GitHubClient>;

interface FailedCheck {
  name: string;
  url?: string;
  /** GitHub Actions job id (an Actions check run's id is its job id). */
  jobId?: number;
  summary?: string;
}

export class GitHubDeliveryManager implements DeliveryManager {
  readonly name = 'github' as const;
  readonly capabilities = GITHUB_DELIVERY_CAPABILITIES;
  private readonly client: GitHubClient;
  private readonly policy: ForgeRetryPolicy;

  constructor(private readonly options: GitHubDeliveryOptions) {
    if (options.token.trim() === '') throw new AgentGateError('AG_ERR_CONFIG_INVALID', 'GitHub delivery needs a token (AGENTGATE_GITHUB_TOKEN)');
    this.policy = { ...DEFAULT_FORGE_RETRY, ...options.retry };
    const log = options.logger;
    this.client = new GitHubClient({
      auth: options.token,
      baseUrl: options.apiUrl.replace(/\/+$/, ''),
      userAgent: 'agentgate',
      log: {
        debug: () => undefined,
        info: () => undefined,
        warn: (message: string) => log?.warn({ forge: 'github' }, redactToken(message, options.token)),
        error: (message: string) => log?.error({ forge: 'github' }, redactToken(message, options.token)),
      },
      retry: { retries: 2, ...(options.clientRetryBaseMs === undefined ? {} : { retryAfterBaseValue: options.clientRetryBaseMs }) },
      throttle: {
        // Decline in-process waits: forgeCall waits on the injected clock, bounded by the CI deadline.
        onRateLimit: () => false,
        onSecondaryRateLimit: () => false,
      },
    });
  }

  canHandle(spec: ResolvedTaskSpec): DeliverySupport {
    return supportFromCapabilities(this.name, this.capabilities, spec);
  }

  /** The repository's `clone_url` from the API: what the workspace cache fetches from (SPEC 9). */
  async cloneUrl(repo: string, signal: AbortSignal, clock: TimerClock): Promise<string> {
    const [owner = '', name = ''] = repo.split('/');
    const data = await this.call(clock, signal, `read the GitHub repository ${repo}`, () => this.client.rest.repos.get({ owner, repo: name, request: { signal } }));
    return checkedCloneUrl(data.data.clone_url, repo);
  }

  prepare(ctx: DeliveryContext): Promise<DeliveryResult<DeliveryTarget>> {
    return deliveryStep(ctx.signal, 'prepare GitHub delivery', 'AG_ERR_DELIVERY_FORGE', async () => {
      const { spec, workspace } = ctx;
      if (spec.workspace.source !== 'github') throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', `GitHub delivery needs a github workspace, not ${spec.workspace.source}`);
      const { owner, name } = spec.workspace;
      const repo = await this.call(ctx.clock, ctx.signal, `read the GitHub repository ${owner}/${name}`, () => this.client.rest.repos.get({ owner, repo: name, request: { signal: ctx.signal } }));
      const target: GitHubDeliveryTarget = {
        kind: 'github',
        owner,
        repo: name,
        repoPath: workspace.repoPath,
        branch: ctx.branch,
        cloneUrl: checkedCloneUrl(repo.data.clone_url, `${owner}/${name}`),
        defaultBranch: repo.data.default_branch,
      };
      return target;
    });
  }

  pushIteration(ctx: IterationDeliveryContext): Promise<DeliveryResult<PushOutcome>> {
    return deliveryStep(ctx.signal, `push iteration ${ctx.iteration}`, 'AG_ERR_DELIVERY_PUSH', async () => {
      const target = githubTarget(ctx.target);
      if (!ctx.spec.delivery.push) return { status: 'not_pushed', reason: 'push_disabled' };
      return pushToForge({
        repoPath: target.repoPath,
        cloneUrl: target.cloneUrl,
        branch: target.branch,
        baseSha: ctx.workspace.baseSha,
        sha: ctx.snapshotSha,
        iteration: ctx.iteration,
        tokenUser: 'x-access-token',
        token: this.options.token,
        signal: ctx.signal,
      });
    });
  }

  openChange(ctx: IterationDeliveryContext): Promise<DeliveryResult<ChangeOutcome>> {
    return deliveryStep(ctx.signal, 'open the pull request', 'AG_ERR_DELIVERY_FORGE', async () => {
      const target = githubTarget(ctx.target);
      if (!ctx.spec.delivery.pr.create) return { status: 'none' };
      const body = changeBody({ spec: ctx.spec, runId: ctx.runId, branch: target.branch, ...(ctx.report === undefined ? {} : { report: ctx.report }), secrets: [this.options.token] });
      const existing = await this.findOpen(ctx, target);
      if (existing !== undefined) {
        await this.call(ctx.clock, ctx.signal, `update pull request #${existing.number}`, () =>
          this.client.rest.pulls.update({ owner: target.owner, repo: target.repo, pull_number: existing.number, body, request: { signal: ctx.signal } }),
        );
        return { status: 'reused', change: existing };
      }
      const draft = ctx.spec.delivery.pr.draft || ctx.spec.delivery.ci.wait;
      let created: ChangeRequest;
      try {
        const response = await this.call(ctx.clock, ctx.signal, 'open the pull request', () =>
          this.client.rest.pulls.create({
            owner: target.owner,
            repo: target.repo,
            title: changeTitle(ctx.spec, [this.options.token]),
            head: target.branch,
            base: target.defaultBranch,
            body,
            draft,
            request: { signal: ctx.signal },
          }),
        );
        created = { number: response.data.number, url: response.data.html_url, draft: response.data.draft ?? draft };
      } catch (error) {
        // A create that timed out may have succeeded: GitHub then answers 422 ("already exists"). Reuse it.
        const again = error instanceof AgentGateError && error.details?.['status'] === 422 ? await this.findOpen(ctx, target) : undefined;
        if (again === undefined) throw error;
        return { status: 'reused', change: again };
      }
      await this.decorate(ctx, target, created.number);
      ctx.logger.info({ pr: created.number, url: created.url, draft }, 'pull request opened');
      return { status: 'opened', change: created };
    });
  }

  waitForCI(ctx: IterationDeliveryContext, signal: AbortSignal): Promise<DeliveryResult<CiOutcome>> {
    return deliveryStep(signal, 'wait for CI', 'AG_ERR_DELIVERY_FORGE', async () => {
      const target = githubTarget(ctx.target);
      if (!ctx.spec.delivery.ci.wait) return { status: 'none' };
      let failures: FailedCheck[] = [];
      const poll = async (pollSignal: AbortSignal): Promise<CiLook> => {
        const request = { signal: pollSignal };
        const [runs, combined] = await Promise.all([
          this.client.rest.checks.listForRef({ owner: target.owner, repo: target.repo, ref: ctx.snapshotSha, per_page: 100, request }),
          this.client.rest.repos.getCombinedStatusForRef({ owner: target.owner, repo: target.repo, ref: ctx.snapshotSha, per_page: 100, request }),
        ]);
        const checks = runs.data.check_runs;
        const statuses = combined.data.statuses;
        if (checks.length === 0 && statuses.length === 0) return { state: 'absent' };
        const total = checks.length + statuses.length;
        const pending = checks.filter((run) => run.status !== 'completed').length + statuses.filter((status) => status.state === 'pending').length;
        failures = [
          ...checks
            .filter((run) => run.status === 'completed' && run.conclusion !== null && FAILED_CONCLUSIONS.has(run.conclusion))
            .map((run): FailedCheck => ({
              name: run.name,
              ...(run.html_url === null ? {} : { url: run.html_url }),
              ...(run.app?.slug === 'github-actions' ? { jobId: run.id } : {}),
              ...(run.output.summary === null || run.output.summary === undefined ? {} : { summary: [run.output.title, run.output.summary, run.output.text].filter((part) => typeof part === 'string').join('\n') }),
            })),
          ...statuses
            .filter((status) => FAILED_STATUSES.has(status.state))
            .map((status): FailedCheck => ({ name: status.context, ...(status.target_url === null ? {} : { url: status.target_url }), ...(status.description === null ? {} : { summary: status.description }) })),
        ];
        if (pending > 0) return { state: 'pending', detail: `${total - pending} of ${total} checks finished` };
        if (failures.length > 0) return { state: 'failed', detail: `${failures.length} of ${total} checks failed on ${ctx.snapshotSha.slice(0, 12)}: ${failures.map((f) => f.name).join(', ')}` };
        return { state: 'passed', detail: `${total} checks passed on ${ctx.snapshotSha.slice(0, 12)}` };
      };
      return watchCi(ctx, signal, {
        poll,
        describeFailure: (failSignal) => this.describeFailures(ctx, target, failures, failSignal),
        classify: (error) => classifyForgeError(error, ctx.clock.now()),
        policy: this.policy,
        secrets: [this.options.token],
      });
    });
  }

  /** Draft → ready when the run passed and the draft was AgentGate's (the task did not ask for a draft). */
  finalize(ctx: PreparedDeliveryContext, outcome: DeliveryOutcome): Promise<DeliveryResult<FinalizeOutcome>> {
    return deliveryStep(ctx.signal, 'finalize GitHub delivery', 'AG_ERR_DELIVERY_FORGE', async () => {
      const target = githubTarget(ctx.target);
      const change = outcome.change;
      if (change === undefined || outcome.result !== 'passed' || !change.draft || ctx.spec.delivery.pr.draft) return { status: 'unchanged' };
      const pr = await this.call(ctx.clock, ctx.signal, `read pull request #${change.number}`, () =>
        this.client.rest.pulls.get({ owner: target.owner, repo: target.repo, pull_number: change.number, request: { signal: ctx.signal } }),
      );
      if (pr.data.draft !== true) return { status: 'unchanged' };
      await this.call(ctx.clock, ctx.signal, `mark pull request #${change.number} ready for review`, () =>
        this.client.graphql(
          'mutation($id: ID!) { markPullRequestReadyForReview(input: { pullRequestId: $id }) { pullRequest { isDraft } } }',
          { id: pr.data.node_id, request: { signal: ctx.signal } },
        ),
      );
      ctx.logger.info({ pr: change.number }, 'pull request marked ready for review');
      return { status: 'updated', change: { ...change, draft: false } };
    });
  }

  private async findOpen(ctx: PreparedDeliveryContext, target: GitHubDeliveryTarget): Promise<ChangeRequest | undefined> {
    const open = await this.call(ctx.clock, ctx.signal, 'list open pull requests', () =>
      this.client.rest.pulls.list({ owner: target.owner, repo: target.repo, head: `${target.owner}:${target.branch}`, state: 'open', per_page: 10, request: { signal: ctx.signal } }),
    );
    const pr = open.data.find((candidate) => candidate.head.ref === target.branch);
    return pr === undefined ? undefined : { number: pr.number, url: pr.html_url, draft: pr.draft ?? false };
  }

  /** Labels and reviewers: optional extras, so a failure is logged, not fatal. */
  private async decorate(ctx: PreparedDeliveryContext, target: GitHubDeliveryTarget, number: number): Promise<void> {
    const { labels, reviewers } = ctx.spec.delivery.pr;
    const request = { signal: ctx.signal };
    const extras: [string, () => Promise<unknown>][] = [];
    if (labels.length > 0) extras.push(['add labels', () => this.client.rest.issues.addLabels({ owner: target.owner, repo: target.repo, issue_number: number, labels, request })]);
    if (reviewers.length > 0) extras.push(['request reviewers', () => this.client.rest.pulls.requestReviewers({ owner: target.owner, repo: target.repo, pull_number: number, reviewers, request })]);
    for (const [what, work] of extras) {
      try {
        await this.call(ctx.clock, ctx.signal, `${what} on pull request #${number}`, work);
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        const classified = error instanceof AgentGateError ? error : new AgentGateError('AG_ERR_DELIVERY_FORGE', String(error));
        ctx.logger.warn({ code: classified.code, err: classified.message, pr: number }, 'pull request extra failed');
      }
    }
  }

  private async describeFailures(ctx: IterationDeliveryContext, target: GitHubDeliveryTarget, failures: readonly FailedCheck[], signal: AbortSignal): Promise<string> {
    const jobs: CiFailedJob[] = [];
    for (const [index, failure] of failures.entries()) {
      let excerpt = failure.summary ?? '';
      if (failure.jobId !== undefined && index < MAX_LOGS) excerpt = (await this.jobLog(target, failure.jobId, signal)) ?? excerpt;
      jobs.push({ name: failure.name, logExcerpt: excerpt === '' ? '(no log available)' : excerpt, ...(failure.url === undefined ? {} : { url: failure.url }) });
    }
    const summary = `${failures.length} check(s) failed on ${ctx.snapshotSha.slice(0, 12)}: ${failures.map((f) => f.name).join(', ')}`;
    return generateFeedback({ iteration: ctx.iteration, ci: { summary, failedJobs: jobs }, secrets: [this.options.token] }).text;
  }

  /** The failing step and error lines of an Actions job; undefined when the log is gone (expired, 404/410). */
  private async jobLog(target: GitHubDeliveryTarget, jobId: number, signal: AbortSignal): Promise<string | undefined> {
    const request = { signal };
    try {
      const job = await this.client.rest.actions.getJobForWorkflowRun({ owner: target.owner, repo: target.repo, job_id: jobId, request });
      const failingStep = job.data.steps?.find((step) => step.conclusion === 'failure')?.name;
      const logs = await this.client.rest.actions.downloadJobLogsForWorkflowRun({ owner: target.owner, repo: target.repo, job_id: jobId, request });
      const text = typeof logs.data === 'string' ? logs.data : logs.data instanceof ArrayBuffer ? new TextDecoder().decode(logs.data) : '';
      return jobExcerpt(summariseJobLog(text, failingStep === undefined ? {} : { failingStep }));
    } catch (error) {
      const status = httpErrorInfo(error).status;
      if (status === 404 || status === 410) return undefined;
      throw error;
    }
  }

  private call<T>(clock: TimerClock, signal: AbortSignal, what: string, work: () => Promise<T>): Promise<T> {
    return forgeCall(work, { what, clock, signal, policy: this.policy, classify: (error) => classifyForgeError(error, clock.now()), secrets: [this.options.token] });
  }
}

export function createGitHubDeliveryManager(options: GitHubDeliveryOptions): GitHubDeliveryManager {
  return new GitHubDeliveryManager(options);
}

function githubTarget(target: DeliveryTarget): GitHubDeliveryTarget {
  switch (target.kind) {
    case 'github':
      return target;
    case 'local':
    case 'gitlab':
      throw new AgentGateError('AG_ERR_INTERNAL', `GitHub delivery was handed a ${target.kind} target`);
    default:
      return assertNever(target);
  }
}

/** A clone URL git may fetch and push: http(s) or file, no credentials, nothing else (`ext::` …). */
export function checkedCloneUrl(url: string, repo: string): string {
  if (!URL.canParse(url)) throw new AgentGateError('AG_ERR_DELIVERY_FORGE', `The forge returned no usable clone URL for ${repo}`, { retryable: false });
  const parsed = new URL(url);
  if (!['https:', 'http:', 'file:'].includes(parsed.protocol) || parsed.username !== '' || parsed.password !== '') {
    throw new AgentGateError('AG_ERR_DELIVERY_FORGE', `The forge returned a clone URL AgentGate does not use for ${repo} (${parsed.protocol})`, { retryable: false });
  }
  return url;
}

function redactToken(message: string, token: string): string {
  return token.length >= 6 ? message.split(token).join('[REDACTED]') : message;
}
