/**
 * Leases (SPEC sections 8 and 13): one mutating run per (repository, branch), with a heartbeat and an
 * expiry so a dead process cannot hold a repository forever. The store decides who holds a lease; the
 * {@link LeaseKeeper} takes it, keeps it alive, and tells the run through an `AbortSignal` the moment it
 * is lost — a run that keeps writing after losing its lease could collide with the run that took over.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { AgentGateError, toAgentGateError } from '../errors.js';
import { leaseNow, systemClock, type TimerClock, type TimerHandle } from '../util/clock.js';
import type { LeaseRepository } from '../store/repositories.js';
import { canceledError } from './git.js';

/**
 * Default lease time-to-live. A run that stops heart-beating is presumed dead after this long; a
 * minute rides out a GC pause or a slow disk while keeping a crashed run's repository blocked briefly.
 */
export const DEFAULT_LEASE_TTL_MS = 60_000;

/**
 * The part of the {@link LeaseRepository} a {@link LeaseKeeper} and the workspace manager use. Any
 * backend's lease repository satisfies it; tests pass an in-memory one.
 */
export type LeaseStore = Pick<LeaseRepository, 'acquire' | 'renew' | 'release' | 'listExpired'>;

/** The lease key of a run branch: `<repoPath>#<branch>`. */
export function leaseKey(repoPath: string, branch: string): string {
  return `${repoPath}#${branch}`;
}

/** An owner id unique to this process instance: `<host>:<pid>:<random>`. */
export function defaultLeaseOwner(): string {
  return `${hostname()}:${process.pid}:${randomUUID()}`;
}

export interface LeaseKeeperOptions {
  /** Usually `Repositories.leases`. */
  store: LeaseStore;
  key: string;
  owner: string;
  runId: string;
  /** Default {@link DEFAULT_LEASE_TTL_MS}. */
  ttlMs?: number;
  /** Time and timers of the heartbeat (a ManualClock in tests). */
  clock?: TimerClock;
}

export type LeaseKeeperState = 'idle' | 'held' | 'lost' | 'released';

/**
 * Holds one lease for one run: acquires it, renews it every `ttl / 3` (a `setTimeout` re-armed after
 * each renewal, so renewals never overlap), fires {@link lost} when a renewal is refused or cannot be
 * made before the lease would expire, and releases it exactly once.
 */
export class LeaseKeeper {
  readonly key: string;
  readonly owner: string;
  readonly runId: string;
  readonly ttlMs: number;
  /** Renewal period: a third of the TTL, so two consecutive renewals may fail before the lease expires. */
  readonly heartbeatMs: number;

  private readonly store: LeaseStore;
  private readonly clock: TimerClock;
  private readonly lostController = new AbortController();
  private current: LeaseKeeperState = 'idle';
  private timer: TimerHandle | undefined;
  /** Our own view of the expiry: the time of the last successful acquire/renewal plus the TTL. */
  private expiresAt = 0;
  private releasing: Promise<void> | undefined;

  constructor(options: LeaseKeeperOptions) {
    const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    if (!Number.isFinite(ttlMs) || ttlMs < 3) {
      throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Lease TTL must be at least 3 ms, got ${ttlMs}`);
    }
    this.store = options.store;
    this.key = options.key;
    this.owner = options.owner;
    this.runId = options.runId;
    this.ttlMs = ttlMs;
    this.heartbeatMs = Math.floor(ttlMs / 3);
    this.clock = options.clock ?? systemClock;
  }

  /** Aborted (reason: AG_ERR_LEASE_LOST) when the lease is lost; never aborted by {@link release}. */
  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  get state(): LeaseKeeperState {
    return this.current;
  }

  /**
   * Takes the lease and starts the heartbeat. A keeper acquires once.
   *
   * @throws AG_ERR_LEASE_HELD when another live owner holds it; the store's error when the store fails;
   *   the abort reason when `signal` fired.
   */
  async acquire(signal: AbortSignal): Promise<void> {
    if (this.current !== 'idle') {
      throw new AgentGateError('AG_ERR_INTERNAL', `LeaseKeeper for ${this.key} was already used (state ${this.current})`);
    }
    if (signal.aborted) throw canceledError(signal, `acquire the lease on ${this.key}`);
    const now = this.clock.now();
    let acquired: boolean;
    try {
      acquired = await this.store.acquire({ key: this.key, owner: this.owner, runId: this.runId, ttlMs: this.ttlMs, ...leaseNow(this.clock) });
    } catch (error) {
      throw toAgentGateError(error, 'AG_ERR_STORE_WRITE');
    }
    if (!acquired) {
      throw new AgentGateError('AG_ERR_LEASE_HELD', `Another live run holds the lease on ${this.key}`, { details: { key: this.key } });
    }
    this.current = 'held';
    this.expiresAt = now + this.ttlMs;
    if (signal.aborted) {
      await this.release();
      throw canceledError(signal, `acquire the lease on ${this.key}`);
    }
    this.arm();
  }

  /**
   * Stops the heartbeat and releases the lease in the store. Idempotent: every call returns the same
   * promise. Releasing a lease that was lost (or never acquired) is not an error.
   */
  release(): Promise<void> {
    this.releasing ??= this.doRelease();
    return this.releasing;
  }

  private async doRelease(): Promise<void> {
    const wasAcquired = this.current !== 'idle';
    this.current = 'released';
    this.disarm();
    if (!wasAcquired) return;
    try {
      await this.store.release({ key: this.key, owner: this.owner });
    } catch (error) {
      throw toAgentGateError(error, 'AG_ERR_STORE_WRITE');
    }
  }

  private arm(): void {
    // The system clock's timers never keep a finished process alive on their own.
    this.timer = this.clock.setTimeout(() => void this.beat(), this.heartbeatMs);
  }

  private disarm(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async beat(): Promise<void> {
    this.timer = undefined;
    if (this.current !== 'held') return;
    const now = this.clock.now();
    let renewed: boolean;
    try {
      renewed = await this.store.renew({ key: this.key, owner: this.owner, ttlMs: this.ttlMs, ...leaseNow(this.clock) });
    } catch (error) {
      if (this.current !== 'held') return;
      // A store hiccup is not a lost lease while the lease is still ours: try again on the next beat,
      // as long as that beat comes before our own view of the expiry.
      if (now + this.heartbeatMs < this.expiresAt) {
        this.arm();
        return;
      }
      this.markLost(`Could not renew the lease on ${this.key} before it expired`, error);
      return;
    }
    if (this.current !== 'held') return;
    if (!renewed) {
      this.markLost(`The lease on ${this.key} was lost (expired or taken over)`, undefined);
      return;
    }
    this.expiresAt = now + this.ttlMs;
    this.arm();
  }

  private markLost(message: string, cause: unknown): void {
    this.current = 'lost';
    this.disarm();
    this.lostController.abort(
      new AgentGateError('AG_ERR_LEASE_LOST', message, { details: { key: this.key, runId: this.runId }, ...(cause === undefined ? {} : { cause }) }),
    );
  }
}
