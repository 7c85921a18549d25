/**
 * An in-process mutex per key. Git serialises most writes with lock files, but two runs that clone,
 * fetch or add worktrees in the same repository at the same moment can still collide on
 * `packed-refs.lock` or observe a half-finished clone; serialising those steps per repository inside
 * one process removes that class of failure. (Several AgentGate processes sharing one home are not
 * supported; the lease in the store is what keeps them apart.)
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  /**
   * Runs `fn` once every earlier holder of `key` has finished. Waiting is abortable: an aborted waiter
   * rejects with the signal's reason, never runs `fn`, and does not disturb the queue behind it.
   */
  async runExclusive<T>(key: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let unlock: () => void = () => undefined;
    const mine = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    try {
      await waitUnlessAborted(previous, signal);
      return await fn();
    } finally {
      unlock();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Number of keys currently held or waited for (for tests and diagnostics). */
  get size(): number {
    return this.tails.size;
  }
}

function waitUnlessAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
