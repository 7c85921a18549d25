import { describe, expect, it } from 'vitest';
import { KeyedMutex } from '../../src/workspace/keyed-mutex.js';

/** A promise with its resolve function, to hold a critical section open until the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const live = (): AbortSignal => new AbortController().signal;

describe('KeyedMutex', () => {
  it('runs holders of one key one after another, in arrival order', async () => {
    const mutex = new KeyedMutex();
    const order: string[] = [];
    const first = gate();
    const started = gate();
    const a = mutex.runExclusive('repo', live(), async () => {
      order.push('a start');
      started.open();
      await first.promise;
      order.push('a end');
    });
    const b = mutex.runExclusive('repo', live(), async () => {
      order.push('b');
    });
    await started.promise;
    expect(order).toEqual(['a start']);
    first.open();
    await Promise.all([a, b]);
    expect(order).toEqual(['a start', 'a end', 'b']);
    expect(mutex.size).toBe(0);
  });

  it('lets different keys run at the same time', async () => {
    const mutex = new KeyedMutex();
    const held = gate();
    const a = mutex.runExclusive('one', live(), () => held.promise);
    await mutex.runExclusive('two', live(), async () => undefined);
    held.open();
    await a;
  });

  it('releases the key when the holder throws', async () => {
    const mutex = new KeyedMutex();
    await expect(mutex.runExclusive('repo', live(), () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(mutex.runExclusive('repo', live(), async () => 'next')).resolves.toBe('next');
  });

  it('gives up waiting when aborted, without running and without breaking the queue', async () => {
    const mutex = new KeyedMutex();
    const held = gate();
    const ran: string[] = [];
    const a = mutex.runExclusive('repo', live(), async () => {
      await held.promise;
      ran.push('a');
    });
    const controller = new AbortController();
    const b = mutex.runExclusive('repo', controller.signal, async () => {
      ran.push('b');
    });
    const c = mutex.runExclusive('repo', live(), async () => {
      ran.push('c');
    });
    const reason = new Error('canceled');
    controller.abort(reason);
    await expect(b).rejects.toBe(reason);
    expect(ran).toEqual([]);
    held.open();
    await Promise.all([a, c]);
    expect(ran).toEqual(['a', 'c']);
  });
});
