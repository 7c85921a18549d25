/**
 * Waiting for CI on one commit, forge-agnostic: the forge managers supply `poll()` (one look at the
 * commit's checks, pipelines or statuses) and `describeFailure()` (failed job logs → feedback); this loop
 * owns the timing on the injected clock. It polls every `ci.pollInterval`, backing off ×1.5 per poll up
 * to four times that, never past the `ci.timeout` deadline; rate limits and transient forge errors are
 * waited out inside {@link forgeCall} against the same deadline. Nothing seen for three poll intervals
 * means the repository has no CI: `none`, not failure. A `ci_status` event is emitted whenever the
 * status changes.
 */
import { AgentGateError } from '../errors.js';
import type { ForgeFailure, ForgeRetryPolicy } from './forge-call.js';
import { forgeCall } from './forge-call.js';
import type { CiOutcome, IterationDeliveryContext } from './manager.js';

export type CiLook =
  | { readonly state: 'absent' }
  | { readonly state: 'pending'; readonly detail: string }
  | { readonly state: 'passed'; readonly detail: string }
  | { readonly state: 'failed'; readonly detail: string };

export interface CiWatch {
  readonly poll: (signal: AbortSignal, deadline: number) => Promise<CiLook>;
  readonly describeFailure: (signal: AbortSignal, deadline: number) => Promise<string>;
  readonly classify: (error: unknown) => ForgeFailure;
  readonly policy: ForgeRetryPolicy;
  readonly secrets: readonly string[];
}

/** Polls without CI results before concluding there is no CI. */
export const NO_CI_POLLS = 3;
const BACKOFF = 1.5;
const MAX_INTERVAL_FACTOR = 4;

export async function watchCi(ctx: IterationDeliveryContext, signal: AbortSignal, watch: CiWatch): Promise<CiOutcome> {
  const { clock, spec, iteration } = ctx;
  const { timeoutMs, pollIntervalMs } = spec.delivery.ci;
  const started = clock.now();
  const deadline = started + timeoutMs;
  const noCiAfter = started + Math.min(timeoutMs, NO_CI_POLLS * pollIntervalMs);
  let interval = pollIntervalMs;
  let reported: string | undefined;
  const report = (status: string, detail?: string): void => {
    const key = `${status}\0${detail ?? ''}`;
    if (key === reported) return;
    reported = key;
    ctx.emit('ci_status', { iteration, status, ...(detail === undefined ? {} : { detail }) });
  };
  const callOptions = (what: string) => ({
    what,
    clock,
    signal,
    policy: watch.policy,
    classify: watch.classify,
    secrets: watch.secrets,
    deadline,
    onWait: ({ waitMs, reason }: { waitMs: number; reason: string }) => {
      ctx.logger.warn({ iteration, waitMs, reason }, 'forge call deferred');
      report(reason === 'rate_limit' ? 'rate_limited' : 'forge_unavailable', `retrying in ${Math.ceil(waitMs / 1000)} s`);
    },
  });
  for (;;) {
    let look: CiLook;
    try {
      look = await forgeCall(() => watch.poll(signal, deadline), callOptions(`read the CI status of ${ctx.snapshotSha.slice(0, 12)}`));
    } catch (error) {
      // A forge that stayed unavailable (or rate limited) up to the deadline: CI did not report in time.
      if (!signal.aborted && error instanceof AgentGateError && error.code === 'AG_ERR_DELIVERY_FORGE' && error.details?.['deadline'] === true) return timedOut();
      throw error;
    }
    switch (look.state) {
      case 'passed':
        report('passed', look.detail);
        return { status: 'passed' };
      case 'failed': {
        report('failed', look.detail);
        const feedback = await forgeCall(() => watch.describeFailure(signal, deadline), { ...callOptions('download the failed CI job logs'), deadline: Number.POSITIVE_INFINITY });
        return { status: 'failed', feedback };
      }
      case 'absent':
        if (clock.now() >= noCiAfter) {
          report('none', 'no CI reported for this commit');
          return { status: 'none' };
        }
        report('waiting', 'no CI results yet');
        break;
      case 'pending':
        report('pending', look.detail);
        break;
      default: {
        const unreachable: never = look;
        return unreachable;
      }
    }
    const remaining = deadline - clock.now();
    if (remaining <= 0) return timedOut();
    const nextLook = look.state === 'absent' ? Math.min(interval, Math.max(1, noCiAfter - clock.now())) : interval;
    await clock.sleep(Math.min(nextLook, remaining), signal);
    interval = Math.min(interval * BACKOFF, pollIntervalMs * MAX_INTERVAL_FACTOR);
  }

  function timedOut(): CiOutcome {
    report('timeout', `CI did not finish within ${Math.round(timeoutMs / 1000)} s`);
    return { status: 'timeout', waitedMs: clock.now() - started };
  }
}
