/**
 * `agentgate worker [--max-concurrent N] [--drain-timeout 30s] [--on-drain-timeout requeue|cancel]
 * [--poll-interval 1s]` (issue 14, docs/deployment.md): a process that only executes work orders — no
 * HTTP API. It shares the store with the API nodes (`AGENTGATE_DATABASE_URL`; or the SQLite file of one
 * `$AGENTGATE_HOME` on one machine) and, every poll period, claims queued work orders up to its capacity
 * (exactly one process wins each claim) and acts on cancel requests the API nodes recorded for its
 * runs. It reconciles runs of dead processes at start and every `AGENTGATE_RECONCILE_INTERVAL_MS`, like
 * every node.
 *
 * It runs until it is told to stop, idle or busy, on either store: it holds the event loop open itself
 * ({@link holdProcessOpen}). Drain on SIGTERM or SIGINT: it stops claiming at once, lets its runs finish
 * until the drain timeout, then cancels the rest — and by default hands their work orders back to the
 * queue (`queued`, reason `handed_back`) so another worker runs them from the start; with
 * `--on-drain-timeout cancel` they end `canceled`. Then it closes the store and exits 0. A second signal stops waiting (exit 130; the run
 * leases then expire and another node reconciles the runs).
 *
 * JSON logs go to stdout (pino); the human lines (what it is, the drain) to stderr.
 */
import { Option, type Command } from 'commander';
import { AgentGateError, isAgentGateError, toAgentGateError } from '../errors.js';
import { createLogger } from '../observability/logger.js';
import { createRuntime, type Runtime } from '../runtime.js';
import { loadConfig, type AgentGateConfig } from '../schemas/config.js';
import { formatDuration, tryParseDuration } from '../schemas/duration.js';
import { EXIT, type CliIo } from './run-command.js';

export interface WorkerFlags {
  maxConcurrent?: string;
  drainTimeout?: string;
  onDrainTimeout?: string;
  pollInterval?: string;
}

/** How long a draining worker's runs may take to finish before they are handed back (or canceled). */
export const DEFAULT_WORKER_DRAIN_MS = 30_000;
/** Default period of polling a shared store, in a worker and in `serve` (queue and event subscriptions). */
export const DEFAULT_POLL_EVERY_MS = 1_000;
export const DRAIN_TIMEOUT_ACTIONS = ['requeue', 'cancel'] as const;
export type DrainTimeoutAction = (typeof DRAIN_TIMEOUT_ACTIONS)[number];

/** Seams of {@link workerCommand} for tests (in-process, without real signals). */
export interface WorkerHooks {
  /** Resolves with the name of what starts the drain; default the first SIGTERM or SIGINT. */
  readonly stop?: Promise<string>;
  /** Resolves when waiting for the drain must stop; default a second SIGTERM or SIGINT. */
  readonly force?: () => Promise<unknown>;
  /** Called once the worker is claiming work. */
  readonly onReady?: (runtime: Runtime) => void;
}

/** Resolves with the first of the signals received. */
export function nextSignal(signals: readonly NodeJS.Signals[]): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handlers = signals.map((signal) => {
      const handler = (): void => {
        for (const [s, h] of handlers) process.off(s, h);
        resolve(signal);
      };
      process.on(signal, handler);
      return [signal, handler] as const;
    });
  });
}

/** A duration flag in ms (`30s`, `1m`, a number of seconds); `min` is the smallest accepted. */
export function durationFlag(flag: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const parsed = tryParseDuration(value);
  if (!parsed.ok) throw new AgentGateError('AG_ERR_CLI_USAGE', `${flag}: ${parsed.reason}`, { details: { flag, value } });
  if (parsed.ms < min) throw new AgentGateError('AG_ERR_CLI_USAGE', `${flag}: must be at least ${formatDuration(min)}, got ${value}`, { details: { flag, value } });
  return parsed.ms;
}

interface WorkerSettings {
  readonly config: AgentGateConfig;
  readonly drainMs: number;
  readonly pollEveryMs: number;
  readonly onDrainTimeout: DrainTimeoutAction;
}

function settingsOf(flags: WorkerFlags, io: CliIo): WorkerSettings {
  const config = loadConfig(io.env, { ...(flags.maxConcurrent !== undefined && { maxConcurrent: flags.maxConcurrent }) });
  const onDrainTimeout = flags.onDrainTimeout ?? 'requeue';
  if (onDrainTimeout !== 'requeue' && onDrainTimeout !== 'cancel') {
    throw new AgentGateError('AG_ERR_CLI_USAGE', `--on-drain-timeout: expected requeue or cancel, got ${onDrainTimeout}`);
  }
  return {
    config,
    drainMs: durationFlag('--drain-timeout', flags.drainTimeout, DEFAULT_WORKER_DRAIN_MS, 0),
    pollEveryMs: durationFlag('--poll-interval', flags.pollInterval, DEFAULT_POLL_EVERY_MS, 10),
    onDrainTimeout,
  };
}

/**
 * Holds the event loop open until the returned function is called. Nothing else the worker waits on
 * does: its poll, reconcile and lease timers are unref'd (util/clock.ts — a pending deadline never keeps
 * a process alive on its own), a signal listener is not a handle, and the SQLite store holds no socket.
 * Without this hold, Node finds nothing left to wait for right after "worker started" and exits 0 — on
 * SQLite; on PostgreSQL only the pool's idle sockets happened to keep the process up.
 */
function holdProcessOpen(): () => void {
  // The longest delay a Node timer accepts (~24.8 days); it is re-armed each time and does nothing.
  const handle = setInterval(() => undefined, 2 ** 31 - 1);
  return () => clearInterval(handle);
}

/** Runs the worker and resolves with the exit code once it has drained and stopped. */
export async function workerCommand(flags: WorkerFlags, io: CliIo, hooks: WorkerHooks = {}): Promise<number> {
  let settings: WorkerSettings;
  try {
    settings = settingsOf(flags, io);
  } catch (error) {
    io.stderr.write(`agentgate worker: ${isAgentGateError(error) ? error.message : String(error)}\n`);
    return EXIT.invalid;
  }
  // The process lives until the worker has stopped (or a second signal gave up on the drain), whichever
  // store it uses and whatever keeps sockets open.
  const release = holdProcessOpen();
  try {
    return await runWorker(settings, io, hooks);
  } finally {
    release();
  }
}

/** {@link workerCommand} once its flags are valid. */
async function runWorker(settings: WorkerSettings, io: CliIo, hooks: WorkerHooks): Promise<number> {
  const { config, drainMs, pollEveryMs, onDrainTimeout } = settings;
  // Listening before anything starts: a signal during start-up still drains instead of killing.
  const stop = hooks.stop ?? nextSignal(['SIGTERM', 'SIGINT']);
  const logger = createLogger({ level: config.logLevel });
  let runtime: Runtime;
  try {
    runtime = await createRuntime({ config, logger, baseEnv: io.env, maxConcurrent: config.maxConcurrent });
  } catch (error) {
    const failure = toAgentGateError(error, 'AG_ERR_STORE_OPEN');
    io.stderr.write(`agentgate worker: ${failure.code}: ${failure.message}\n`);
    return failure.status < 500 ? EXIT.invalid : EXIT.failed;
  }
  try {
    await runtime.reapStaleWorkspaces();
    runtime.queue.start({ pollEveryMs });
  } catch (error) {
    const failure = toAgentGateError(error, 'AG_ERR_INTERNAL');
    io.stderr.write(`agentgate worker: cannot start: ${failure.code}: ${failure.message}\n`);
    await runtime.close();
    return failure.status < 500 ? EXIT.invalid : EXIT.failed;
  }
  io.stderr.write(
    `AgentGate worker ${runtime.engine.owner}: up to ${config.maxConcurrent} runs at once from ${runtime.repos.location}, looking for work every ${formatDuration(pollEveryMs)}\n`,
  );
  logger.info({ owner: runtime.engine.owner, store: runtime.repos.location, maxConcurrent: config.maxConcurrent, pollEveryMs }, 'worker started');
  hooks.onReady?.(runtime);

  const received = await stop;
  const handBack = onDrainTimeout === 'requeue';
  io.stderr.write(
    `${received}: draining (no new work; running runs get ${formatDuration(drainMs)} to finish, then are ${handBack ? 'handed back to the queue' : 'canceled'})\n`,
  );
  logger.info({ signal: received, drainMs, onDrainTimeout }, 'worker draining');
  const forced = (hooks.force ?? (() => nextSignal(['SIGTERM', 'SIGINT'])))().then(() => 'forced' as const);
  const active = runtime;
  const shutdown = (async () => {
    await active.queue.close({ drainMs, cancelReason: `worker draining (${received})`, handBack });
    await active.close();
    return 'done' as const;
  })();
  const outcome = await Promise.race([shutdown, forced]);
  if (outcome === 'forced') {
    io.stderr.write('second signal: exiting without waiting for the drain to finish\n');
    return EXIT.canceled;
  }
  io.stderr.write('stopped\n');
  return EXIT.succeeded;
}

/** Adds `worker` to the program. */
export function registerWorkerCommand(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('worker')
    .description('run queued work orders from the shared store, without the HTTP API')
    .option('--max-concurrent <n>', 'runs executing at once in this worker (default 2; $AGENTGATE_MAX_CONCURRENT)')
    .option('--drain-timeout <duration>', 'on SIGTERM/SIGINT, how long running runs may take to finish (default 30s)')
    .addOption(new Option('--on-drain-timeout <action>', 'what happens to runs still running after the drain timeout').choices(DRAIN_TIMEOUT_ACTIONS).default('requeue'))
    .option('--poll-interval <duration>', 'how often to look for queued work and cancel requests (default 1s)')
    .action(async (flags: WorkerFlags) => {
      setExit(await workerCommand(flags, io));
    });
}
