/**
 * Riding out a store that is unreachable for a moment (a PostgreSQL restart or fail-over, a SQLite file
 * another process holds locked): a run's writes — its events, its commits, its metadata — are retried
 * with backoff while the error says the store could not be reached (`AG_ERR_STORE_UNAVAILABLE`) or was
 * busy (`AG_ERR_STORE_BUSY`), for at most `limitMs`. Any other error ends it at once, and so does the
 * limit: the last error is thrown, classified as it was.
 *
 * The run lease bounds how long an outage can last anyway: its heartbeat keeps trying while the lease is
 * still ours (`workspace/lease.ts`) and gives the run up once it may have expired — so a retried write
 * never lands after another process took the run over (the store's fence refuses it).
 *
 * A write whose connection broke while its COMMIT was in flight may have been applied; retrying it then
 * gives `AG_ERR_STORE_CONFLICT` (a version-checked commit), which the run actor treats as lost ownership.
 */
import { toAgentGateError, type AgentGateError } from '../errors.js';
import type { TimerClock } from './clock.js';

/** Codes that mean "try again shortly": nothing was written. */
export const TRANSIENT_STORE_CODES: ReadonlySet<string> = new Set(['AG_ERR_STORE_UNAVAILABLE', 'AG_ERR_STORE_BUSY']);

/** Default bound of one write's retries; a lease (60 s by default) outlives it. */
export const DEFAULT_STORE_RETRY_MS = 30_000;

const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 2_000;

export interface StoreRetryOptions {
  readonly clock: TimerClock;
  /** Total time spent waiting between attempts at most (default {@link DEFAULT_STORE_RETRY_MS}). */
  readonly limitMs?: number;
  /** Told about every retry (to log it). */
  readonly onRetry?: (error: AgentGateError, attempt: number, delayMs: number) => void;
}

export function isTransientStoreError(error: unknown): boolean {
  return TRANSIENT_STORE_CODES.has(toAgentGateError(error).code);
}

/** Runs `write`, again after a transient store error, with exponential backoff up to the limit. */
export async function retryStoreWrite<T>(write: () => Promise<T>, options: StoreRetryOptions): Promise<T> {
  const limitMs = options.limitMs ?? DEFAULT_STORE_RETRY_MS;
  let waited = 0;
  let delay = FIRST_DELAY_MS;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await write();
    } catch (error) {
      if (!isTransientStoreError(error) || waited >= limitMs) throw error;
      const pause = Math.min(delay, limitMs - waited);
      options.onRetry?.(toAgentGateError(error), attempt, pause);
      await options.clock.sleep(pause);
      waited += pause;
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }
}
