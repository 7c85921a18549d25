/**
 * Fixtures of the repository contract. Written against the interfaces only: no SQL, no backend type,
 * and no control over the backend's clock — lease times are taken relative to the real clock with
 * margins of an hour, so a database server whose clock differs by seconds runs the suite unchanged.
 */
import { afterEach, beforeEach, expect } from 'vitest';
import { AgentGateError, type ErrorCode } from '../../../src/errors.js';
import { createRun, type Run } from '../../../src/orchestrator/state-machine.js';
import type { IterationRecord } from '../../../src/store/records.js';
import type { Fence, Repositories } from '../../../src/store/repositories.js';
import type { NewWorkOrder, StoredEvent, StoredRun } from '../../../src/store/types.js';

export type MakeRepositories = () => Promise<{ repos: Repositories; cleanup(): Promise<void> }>;

export interface RepositoryContractOptions {
  /** Appends raced with `Promise.all` in the concurrency test. Default 40. */
  readonly concurrentAppends?: number;
}

export const HOUR = 3_600_000;
export const OWNER = 'owner-a';

/** Opens fresh repositories before each test and cleans them up after; call inside a `describe`. */
export function useRepositories(make: MakeRepositories): () => Repositories {
  let current: { repos: Repositories; cleanup(): Promise<void> } | undefined;
  beforeEach(async () => {
    current = await make();
  });
  afterEach(async () => {
    const done = current;
    current = undefined;
    await done?.cleanup();
  });
  return () => {
    if (current === undefined) throw new Error('repositories are only available inside a test');
    return current.repos;
  };
}

export function workOrderInput(id = 'wo-1', createdAt?: string): NewWorkOrder {
  return {
    id,
    source: 'task_spec',
    spec: { prompt: 'fix the failing test', maxIterations: 3 },
    request: { taskPrompt: 'fix the failing test' },
    ...(createdAt === undefined ? {} : { createdAt }),
  };
}

export function newRun(id: string, workOrderId = 'wo-1', createdAt = '2025-01-01T00:00:00.000Z'): Run {
  return createRun({ id, workOrderId, maxIterations: 3, createdAt });
}

export function runLeaseKey(runId: string): string {
  return `run:${runId}`;
}

export function fenceOf(runId: string, owner = OWNER): Fence {
  return { leaseKey: runLeaseKey(runId), owner };
}

export interface SeedOptions {
  readonly workOrderId?: string;
  readonly owner?: string;
  readonly createdAt?: string;
}

/** Creates a run (and its work order when absent) holding its lease for an hour; returns its fence. */
export async function seedRun(repos: Repositories, id = 'run-1', options: SeedOptions = {}): Promise<{ run: StoredRun; fence: Fence }> {
  const workOrderId = options.workOrderId ?? 'wo-1';
  const owner = options.owner ?? OWNER;
  const { run } = await repos.runs.create({
    workOrder: workOrderInput(workOrderId),
    run: newRun(id, workOrderId, options.createdAt),
    meta: { branch: `agentgate/${id}` },
    lease: { key: runLeaseKey(id), owner, ttlMs: HOUR, now: new Date() },
  });
  return { run, fence: fenceOf(id, owner) };
}

/** Resolves to what `promise` rejected with; fails the test when it resolved. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, the promise resolved');
    },
    (error: unknown) => error,
  );
}

/** Asserts `promise` rejects with an AgentGateError of `code` and returns it. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<AgentGateError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(AgentGateError);
  expect(error).toMatchObject({ code });
  if (!(error instanceof AgentGateError)) throw new Error('unreachable');
  return error;
}

/** Everything stored about a run, to prove a refused write changed nothing. */
export async function runFootprint(repos: Repositories, runId: string) {
  return {
    run: await repos.runs.get(runId),
    events: await repos.runs.listEvents(runId, { limit: 100_000 }),
    iterations: await repos.iterations.list(runId),
  };
}

export function expectGapless(events: readonly StoredEvent[]): void {
  expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index + 1));
}

/** An iteration record with every part filled, to prove the typed record survives a round trip. */
export function fullIterationRecord(): IterationRecord {
  return {
    agent: {
      exitCode: 0,
      durationMs: 4200,
      sessionId: 'session-1',
      model: 'model-x',
      usage: { inputTokens: 1200, outputTokens: 340, cacheReadTokens: 10, costUsd: 0.0123 },
      turns: 4,
      toolCalls: 7,
      output: 'Fixed the off-by-one in src/range.ts',
      transcriptPath: '/home/ag/runs/run-1/transcript.jsonl',
    },
    snapshot: {
      iteration: 1,
      sha: 'a'.repeat(40),
      treeSha: 'b'.repeat(40),
      uncaptured: [],
      noChange: false,
      filesChanged: 2,
      insertions: 10,
      deletions: 3,
      changedFiles: ['src/range.ts', 'test/range.test.ts'],
      patchPath: '/home/ag/runs/run-1/iteration-1.patch',
    },
    verification: {
      passed: false,
      unverified: false,
      source: 'verify.yaml',
      gates: [
        {
          name: 'unit',
          level: 'L1',
          passed: false,
          durationMs: 900,
          command: 'npm test',
          exitCode: 1,
          message: '1 test failed',
          outputTail: 'expected 3, got 2',
          diagnostics: [{ tool: 'vitest', file: 'test/range.test.ts', line: 12, test: 'range › ends', message: 'expected 3, got 2' }],
        },
      ],
      passRatio: 0,
      durationMs: 950,
      notes: ['found verify.yaml'],
    },
    decision: { action: 'continue', reason: 'gates failed, iterations left', limit: null, strategy: 'hybrid' },
    feedback: { text: 'The test `range › ends` fails: expected 3, got 2.', truncated: false },
    error: { code: 'AG_ERR_PHASE_VERIFY_FAILED', message: 'verification failed', phase: 'verify' },
  };
}
