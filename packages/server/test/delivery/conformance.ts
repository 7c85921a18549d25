/**
 * The DeliveryManager conformance suite (SPEC 9; STYLE lesson 10): one contract, one set of tests, run
 * against every manager. A manager's test file calls {@link describeDeliveryConformance} with a fixture
 * that knows how to point a task of *its* kind at a bare repository the suite created (local: a named
 * remote; forges: an emulator whose clone URL is that repository).
 *
 * What every manager must do:
 * - `canHandle` agrees with its `capabilities` on every combination of delivery settings (the suite's
 *   own reading of the capabilities, written independently), and a registry holding only this manager
 *   rejects exactly those specs, naming every offending field path;
 * - `prepare` → `pushIteration` lands the snapshot commit on `refs/heads/<branch>` of the real bare
 *   remote; pushing the same snapshot again succeeds and changes nothing; the next iteration fast-forwards;
 * - a task that does not push leaves the remote untouched; an unreachable remote is a retryable
 *   `AG_ERR_DELIVERY_PUSH`; a snapshot the repository lacks is a failed result, never a throw;
 * - `openChange` is idempotent; `waitForCI` returns `none` at once when the task does not wait;
 * - a step whose signal has aborted reports `cancelled` with the signal's reason (a typed RunAbort stays
 *   itself; anything else becomes AG_ERR_RUN_CANCELED), and pushes nothing;
 * - `finalize` succeeds after any outcome and leaves the delivered branch in place.
 */
import { Snapshotter } from '../../src/workspace/snapshotter.js';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  DeliveryCapabilities,
  DeliveryContext,
  DeliveryManager,
  DeliveryResult,
  DeliveryTarget,
  IterationDeliveryContext,
  PreparedDeliveryContext,
} from '../../src/delivery/manager.js';
import { createDeliveryRegistry } from '../../src/delivery/registry.js';
import { AgentGateError } from '../../src/errors.js';
import type { ProgressEventType, ProgressEvents } from '../../src/observability/events.js';
import type { ResolvedTaskSpec, ResolvedWorkspace } from '../../src/schemas/resolve.js';
import { runCanceled, runTimedOut } from '../../src/util/abort.js';
import { ManualClock } from '../../src/util/clock.js';
import type { Workspace } from '../../src/workspace/types.js';

/** Where a scenario runs; fresh for every test. */
export interface DeliveryConformanceEnv {
  root: string;
  /** `$AGENTGATE_HOME` for the workspace manager. */
  home: string;
  /** The user's repository: one commit on `main`. */
  sourceRepo: string;
  /**
   * An empty bare repository: the fixture must make pushing tasks deliver here (a forge fixture may seed
   * it with the source's default branch: the suite only looks at run branches, `refs/heads/agentgate/*`).
   */
  bareRemote: string;
}

export interface DeliveryConformanceSetup {
  /** A task of the manager's kind that pushes the run branch to `env.bareRemote` and does not wait for CI. */
  pushingSpec: ResolvedTaskSpec;
  /** The same task without a push; omitted by managers that always push (forges). */
  nonPushingSpec?: ResolvedTaskSpec;
  /** Acquires the run's workspace for these tasks. */
  acquire(spec: ResolvedTaskSpec, runId: string): Promise<Workspace>;
}

export interface DeliveryConformanceFixture {
  manager: DeliveryManager;
  setup(env: DeliveryConformanceEnv): Promise<DeliveryConformanceSetup>;
  dispose?(): Promise<void>;
}

export type DeliveryConformanceFactory = () => DeliveryConformanceFixture | Promise<DeliveryConformanceFixture>;

const TEST_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Test User',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test User',
  GIT_COMMITTER_EMAIL: 'test@example.com',
};

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: TEST_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** The sha of `refs/heads/<branch>` in `repo`, or undefined when there is no such branch. */
export function branchSha(repo: string, branch: string): string | undefined {
  const out = git(repo, 'for-each-ref', '--format=%(objectname)', `refs/heads/${branch}`);
  return out === '' ? undefined : out;
}

/** Creates the scenario's repositories in a unique temp dir. */
export async function makeDeliveryEnv(): Promise<DeliveryConformanceEnv> {
  const root = await realpath(await mkdtemp(path.join(tmpdir(), 'agentgate-delivery-')));
  const sourceRepo = path.join(root, 'source');
  const bareRemote = path.join(root, 'remote.git');
  await mkdir(sourceRepo);
  git(sourceRepo, 'init', '--quiet', '--initial-branch=main');
  await writeFile(path.join(sourceRepo, 'README.md'), '# delivery fixture\n');
  git(sourceRepo, 'add', '--all');
  git(sourceRepo, 'commit', '--quiet', '-m', 'initial');
  git(root, 'init', '--quiet', '--bare', bareRemote);
  return { root, home: path.join(root, 'home'), sourceRepo, bareRemote };
}

/** Commits one change in the run's worktree, as the snapshot of `iteration` would; returns its sha. */
/** An iteration as the engine makes it: a file written in the workspace, then AgentGate's own snapshot. */
export async function commitIteration(workspace: Workspace, iteration: number): Promise<string> {
  await writeFile(path.join(workspace.path, `iteration-${iteration}.txt`), `iteration ${iteration}\n`);
  const outcome = await new Snapshotter().snapshot({
    workspace,
    iteration,
    artifactsDir: path.join(path.dirname(workspace.gitDir), 'artifacts'),
    signal: new AbortController().signal,
  });
  if (!outcome.ok) throw outcome.error;
  return outcome.snapshot.sha;
}

export interface RecordedEvent {
  type: ProgressEventType;
  data: ProgressEvents[ProgressEventType];
}

/** A run-level context on a live signal, a manual clock, a silent logger and a recording emit. */
export function deliveryContext(spec: ResolvedTaskSpec, workspace: Workspace, overrides: Partial<DeliveryContext> = {}): DeliveryContext & { events: RecordedEvent[] } {
  const events: RecordedEvent[] = [];
  return {
    runId: workspace.runId,
    workOrderId: `wo-${workspace.runId}`,
    spec,
    workspace,
    branch: workspace.branch,
    signal: new AbortController().signal,
    clock: new ManualClock(),
    logger: pino({ level: 'silent' }),
    emit: (type, data) => {
      events.push({ type, data });
    },
    events,
    ...overrides,
  };
}

export function iterationContext(ctx: PreparedDeliveryContext, iteration: number, snapshotSha: string): IterationDeliveryContext {
  return { ...ctx, iteration, snapshotSha };
}

function abortedSignal(reason: unknown): AbortSignal {
  const controller = new AbortController();
  controller.abort(reason);
  return controller.signal;
}

export function expectOk<T>(result: DeliveryResult<T>): T {
  if (!result.ok) throw new Error(`expected ok, got ${result.cancelled ? 'cancelled' : 'failed'}: ${result.error.code} ${result.error.message}`);
  return result.value;
}

export function expectFailure<T>(result: DeliveryResult<T>): { error: AgentGateError; cancelled: boolean } {
  if (result.ok) throw new Error(`expected a failure, got ${JSON.stringify(result.value)}`);
  expect(result.error).toBeInstanceOf(AgentGateError);
  return result;
}

/** Every combination of the delivery settings a spec can ask for, around `base`. */
function specMatrix(base: ResolvedTaskSpec): ResolvedTaskSpec[] {
  const workspaces: ResolvedWorkspace[] = [
    { source: 'local', path: '/repo' },
    { source: 'git', url: 'https://example.com/repo.git' },
    { source: 'github', repo: 'owner/name', owner: 'owner', name: 'name' },
    { source: 'gitlab', project: 'group/name' },
  ];
  const specs: ResolvedTaskSpec[] = [];
  for (const workspace of workspaces) {
    for (const push of [false, true]) {
      for (const remote of [undefined, 'delivery']) {
        for (const prCreate of [false, true]) {
          for (const prTitle of [undefined, 'A title']) {
            for (const ciWait of [false, true]) {
              const delivery = structuredClone(base.delivery);
              delivery.push = push;
              if (remote === undefined) delete delivery.remote;
              else delivery.remote = remote;
              delivery.pr.create = prCreate;
              if (prTitle === undefined) delete delivery.pr.title;
              else delivery.pr.title = prTitle;
              delivery.ci.wait = ciWait;
              specs.push({ ...structuredClone(base), workspace, delivery });
            }
          }
        }
      }
    }
  }
  return specs;
}

/** The suite's own reading of the capabilities: what a manager with them must accept. */
function supportedByCapabilities(name: string, capabilities: DeliveryCapabilities, spec: ResolvedTaskSpec): boolean {
  const { delivery } = spec;
  const source = spec.workspace.source;
  if (delivery.kind !== name || !capabilities.workspaces.includes(source)) return false;
  if (delivery.push) {
    if (capabilities.pushTarget === 'none' || !capabilities.pushFrom.includes(source)) return false;
    if (capabilities.pushTarget === 'named_remote' && delivery.remote === undefined) return false;
  }
  if (delivery.remote !== undefined && (!delivery.push || capabilities.pushTarget === 'forge')) return false;
  if (delivery.pr.create ? !capabilities.changeRequests : delivery.pr.title !== undefined) return false;
  return !delivery.ci.wait || capabilities.ciWait;
}

export function describeDeliveryConformance(name: string, factory: DeliveryConformanceFactory): void {
  describe(`DeliveryManager conformance: ${name}`, () => {
    let fixture: DeliveryConformanceFixture;
    let manager: DeliveryManager;
    let env: DeliveryConformanceEnv;
    let setup: DeliveryConformanceSetup;
    let runCounter = 0;

    beforeEach(async () => {
      fixture = await factory();
      manager = fixture.manager;
      env = await makeDeliveryEnv();
      setup = await fixture.setup(env);
    });

    afterEach(async () => {
      await fixture.dispose?.();
      await rm(env.root, { recursive: true, force: true });
    });

    /** Acquires a workspace for `spec` and prepares delivery on it. */
    async function prepared(spec: ResolvedTaskSpec): Promise<PreparedDeliveryContext & { events: RecordedEvent[] }> {
      runCounter += 1;
      const workspace = await setup.acquire(spec, `conf-${runCounter}`);
      const ctx = deliveryContext(spec, workspace);
      const target: DeliveryTarget = expectOk(await manager.prepare(ctx));
      return { ...ctx, target };
    }

    describe('capabilities', () => {
      it('are the ones canHandle applies, for every combination of delivery settings', () => {
        for (const spec of specMatrix(setup.pushingSpec)) {
          const expected = supportedByCapabilities(manager.name, manager.capabilities, spec);
          const support = manager.canHandle(spec);
          expect({ delivery: spec.delivery, source: spec.workspace.source, ok: support.ok }).toEqual({ delivery: spec.delivery, source: spec.workspace.source, ok: expected });
          if (!support.ok) expect(support.issues.length).toBeGreaterThan(0);
        }
      });

      it('are what a registry holding only this manager validates against, naming every offending field', () => {
        const registry = createDeliveryRegistry({ builtins: false });
        registry.register(manager);
        for (const spec of specMatrix(setup.pushingSpec)) {
          const support = manager.canHandle(spec);
          let thrown: unknown;
          try {
            registry.validate(spec);
          } catch (error) {
            thrown = error;
          }
          if (support.ok) {
            expect(thrown).toBeUndefined();
            continue;
          }
          expect(thrown).toBeInstanceOf(AgentGateError);
          const error = thrown as AgentGateError;
          expect(error.code).toBe('AG_ERR_DELIVERY_UNSUPPORTED');
          for (const issue of support.issues) expect(error.message).toContain(`${issue.path}: `);
        }
      });

      it('accept the fixture tasks', () => {
        expect(manager.canHandle(setup.pushingSpec)).toEqual({ ok: true });
        if (setup.nonPushingSpec !== undefined) expect(manager.canHandle(setup.nonPushingSpec)).toEqual({ ok: true });
      });
    });

    describe('on a real repository with a bare remote', () => {
      it('prepare returns a target of its kind for the run branch', async () => {
        const ctx = await prepared(setup.pushingSpec);
        expect(ctx.target.kind).toBe(manager.name);
        expect(ctx.target.branch).toBe(ctx.workspace.branch);
      });

      it('pushIteration lands the snapshot on the run branch of the remote; again is a no-op; the next iteration fast-forwards', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const first = await commitIteration(ctx.workspace, 1);
        const pushed = expectOk(await manager.pushIteration(iterationContext(ctx, 1, first)));
        expect(pushed).toMatchObject({ status: 'pushed', sha: first, ref: `refs/heads/${ctx.branch}` });
        expect(branchSha(env.bareRemote, ctx.branch)).toBe(first);

        expect(expectOk(await manager.pushIteration(iterationContext(ctx, 1, first)))).toEqual(pushed);
        expect(branchSha(env.bareRemote, ctx.branch)).toBe(first);

        const second = await commitIteration(ctx.workspace, 2);
        expect(expectOk(await manager.pushIteration(iterationContext(ctx, 2, second)))).toMatchObject({ status: 'pushed', sha: second });
        expect(branchSha(env.bareRemote, ctx.branch)).toBe(second);
        expect(git(env.bareRemote, 'rev-list', '--count', second)).toBe('3');
        // delivery_started / delivery_completed belong to the caller's delivery step, not the manager.
        expect(ctx.events.map((event) => event.type).filter((type) => type.startsWith('delivery_'))).toEqual([]);
      });

      it('pushes nothing when the task does not push (forges always push: the change request needs the branch)', async () => {
        if (setup.nonPushingSpec === undefined) {
          // A manager without a non-pushing task must be one whose delivery is the push itself.
          expect(manager.capabilities.pushTarget).toBe('forge');
          expect(manager.capabilities.changeRequests).toBe(true);
          return;
        }
        const ctx = await prepared(setup.nonPushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        expect(expectOk(await manager.pushIteration(iterationContext(ctx, 1, sha)))).toEqual({ status: 'not_pushed', reason: 'push_disabled' });
        expect(git(env.bareRemote, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
        expect(branchSha(ctx.workspace.repoPath, ctx.branch)).toBe(sha);
      });

      it('reports an unreachable remote as a retryable AG_ERR_DELIVERY_PUSH', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        await rm(env.bareRemote, { recursive: true, force: true });
        const failure = expectFailure(await manager.pushIteration(iterationContext(ctx, 1, sha)));
        expect(failure.cancelled).toBe(false);
        expect(failure.error.code).toBe('AG_ERR_DELIVERY_PUSH');
        expect(failure.error.retryable).toBe(true);
      });

      it('returns a failed result, never a throw, for a snapshot the repository does not have', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const failure = expectFailure(await manager.pushIteration(iterationContext(ctx, 1, 'f'.repeat(40))));
        expect(failure.cancelled).toBe(false);
        expect(failure.error.code).toMatch(/^AG_ERR_DELIVERY_/);
        expect(git(env.bareRemote, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      });

      it('finalize succeeds after any outcome and leaves the delivered branch in place', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        expectOk(await manager.pushIteration(iterationContext(ctx, 1, sha)));
        const change = expectOk(await manager.openChange(iterationContext(ctx, 1, sha)));
        for (const result of ['failed_verification', 'passed'] as const) {
          expectOk(
            await manager.finalize(ctx, {
              result,
              lastIteration: { iteration: 1, snapshotSha: sha },
              ...(change.status === 'none' ? {} : { change: change.change }),
            }),
          );
        }
        expect(branchSha(env.bareRemote, ctx.branch)).toBe(sha);
        expect(branchSha(ctx.workspace.repoPath, ctx.branch)).toBe(sha);
      });
    });

    describe('openChange', () => {
      it('is idempotent: a second call reports the same change', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        expectOk(await manager.pushIteration(iterationContext(ctx, 1, sha)));
        const first = expectOk(await manager.openChange(iterationContext(ctx, 1, sha)));
        const second = expectOk(await manager.openChange(iterationContext(ctx, 1, sha)));
        if (first.status === 'none') expect(second).toEqual(first);
        else expect(second).toEqual({ status: 'reused', change: first.change });
      });
    });

    describe('waitForCI', () => {
      it('reports none at once when the task does not wait for CI', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        const clock = new ManualClock();
        const outcome = await manager.waitForCI({ ...iterationContext(ctx, 1, sha), clock }, new AbortController().signal);
        expect(expectOk(outcome)).toEqual({ status: 'none' });
        expect(clock.pending()).toBe(0);
      });

      it('is cancelled with the signal’s reason when its signal has aborted', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        const reason = runTimedOut(60_000);
        const failure = expectFailure(await manager.waitForCI(iterationContext(ctx, 1, sha), abortedSignal(reason)));
        expect(failure).toEqual({ ok: false, error: reason, cancelled: true });
      });

      it('turns a foreign abort reason into AG_ERR_RUN_CANCELED', async () => {
        const ctx = await prepared(setup.pushingSpec);
        const sha = await commitIteration(ctx.workspace, 1);
        const failure = expectFailure(await manager.waitForCI(iterationContext(ctx, 1, sha), abortedSignal(new Error('shutdown'))));
        expect(failure.cancelled).toBe(true);
        expect(failure.error.code).toBe('AG_ERR_RUN_CANCELED');
      });
    });

    describe('when the run signal has aborted', () => {
      it('every step reports cancelled with the reason, never failed, and pushes nothing', async () => {
        const live = await prepared(setup.pushingSpec);
        const sha = await commitIteration(live.workspace, 1);
        const reason = runCanceled('user asked');
        const ctx = { ...live, signal: abortedSignal(reason) };
        const iteration = iterationContext(ctx, 1, sha);
        const results: DeliveryResult<unknown>[] = [
          await manager.prepare(ctx),
          await manager.pushIteration(iteration),
          await manager.openChange(iteration),
          await manager.finalize(ctx, { result: 'canceled' }),
        ];
        for (const result of results) expect(result).toEqual({ ok: false, error: reason, cancelled: true });
        expect(git(env.bareRemote, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      });
    });
  });
}
