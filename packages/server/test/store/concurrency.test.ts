import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../src/store/types.js';
import { TempStores, seedRun } from './helpers/store-fixture.js';

const temp = new TempStores();
const children: ChildProcessWithoutNullStreams[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await temp.cleanup();
});

const here = dirname(fileURLToPath(import.meta.url));
const serverPackage = join(here, '..', '..');
const childScript = join(here, 'helpers', 'append-events.child.ts');

function expectGapless(events: readonly StoredEvent[], n: number): void {
  expect(events.length).toBe(n);
  events.forEach((event, index) => expect(event.seq).toBe(index + 1));
}

/** Spawns one writer and resolves once it reports `ready`. */
async function startWriter(dbPath: string, runId: string, writer: string, count: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, dbPath, runId, writer, String(count)], {
    cwd: serverPackage,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout });
  const output: string[] = [];
  const exited = once(child, 'exit');
  const ready = new Promise<void>((resolve, reject) => {
    lines.on('line', (line) => {
      output.push(line);
      if (line === 'ready') resolve();
    });
    void exited.then(([code]) => reject(new Error(`writer ${writer} exited (${String(code)}) before ready: ${stderr}`)));
  });
  await ready;
  return {
    go: () => child.stdin.end('go\n'),
    finished: async () => {
      const [code] = (await exited) as [number | null];
      return { code, output, stderr };
    },
  };
}

describe('SQLite repositories under concurrent writers', () => {
  it('gives two connections interleaving thousands of appends gapless, unique seqs', async () => {
    const path = await temp.dbPath();
    const one = temp.open(path);
    const two = temp.open(path);
    await seedRun(one, 'run-1');
    await seedRun(two, 'run-2');

    // A deterministic but irregular interleaving over two runs and two connections.
    let state = 7;
    const total = 4000;
    for (let i = 0; i < total; i += 1) {
      state = (state * 1103515245 + 12345) % 2147483648;
      const store = state % 3 === 0 ? one : two;
      const runId = state % 5 < 3 ? 'run-1' : 'run-2';
      await store.runs.appendEvents(runId, [{ type: 'agent_output', data: { i } }], null);
    }

    const run1 = await one.runs.listEvents('run-1', { limit: total });
    const run2 = await two.runs.listEvents('run-2', { limit: total });
    expectGapless(run1, run1.length);
    expectGapless(run2, run2.length);
    expect(run1.length + run2.length).toBe(total);
    const order = [...run1, ...run2].map((e) => e.data['i']).sort((a, b) => Number(a) - Number(b));
    expect(order).toEqual(Array.from({ length: total }, (_, i) => i));
    // Within a run, seq order is the append order.
    const run1Order = run1.map((e) => Number(e.data['i']));
    expect(run1Order).toEqual([...run1Order].sort((a, b) => a - b));
  });

  it('loses no row and duplicates no seq when two processes append to one run at once', async () => {
    const path = await temp.dbPath();
    const setup = temp.open(path);
    await seedRun(setup, 'run-1');
    await setup.runs.appendEvents('run-1', [{ type: 'run_started', data: {} }], null);

    const perWriter = 1500;
    const writers = await Promise.all([startWriter(path, 'run-1', 'a', perWriter), startWriter(path, 'run-1', 'b', perWriter)]);
    for (const writer of writers) writer.go();
    const results = await Promise.all(writers.map((writer) => writer.finished()));

    for (const result of results) {
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.output).toEqual(['ready', `done ${perWriter}`]);
    }
    const events = await setup.runs.listEvents('run-1', { limit: 10_000 });
    expectGapless(events, 1 + 2 * perWriter);
    for (const writer of ['a', 'b']) {
      const mine = events.filter((e) => e.data['writer'] === writer).map((e) => Number(e.data['i']));
      expect(mine).toEqual(Array.from({ length: perWriter }, (_, i) => i));
    }
    expect(await setup.runs.lastSeq('run-1')).toBe(1 + 2 * perWriter);
  });
});
