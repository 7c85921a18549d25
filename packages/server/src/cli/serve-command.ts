/**
 * `agentgate serve [--port 3001] [--host 127.0.0.1] [--api-key K] [--max-concurrent N] [--no-worker]
 * [--poll-interval 1s]` (SPEC 12): the HTTP API on a runtime with its durable queue. Configuration is
 * flags over environment (`AGENTGATE_API_KEY`, `AGENTGATE_MAX_CONCURRENT`, `AGENTGATE_HOME`, …) over
 * defaults, validated before anything starts (a bad value: exit 2 naming the flag or variable).
 *
 * Roles (issue 14, docs/deployment.md): by default the server is also a worker — its queue executes
 * work orders. `--no-worker` makes it an API node only: it stores and cancels work orders, serves every
 * run of the shared store, and reconciles runs of dead processes, but never claims work (`agentgate
 * worker` processes do). On PostgreSQL (`AGENTGATE_DATABASE_URL`) its queue also polls for work other
 * nodes queued. Event subscriptions (WebSocket, SSE) always follow the store for runs this process does
 * not execute, every `--poll-interval`, so a client here follows a run executed anywhere.
 *
 * JSON request and run logs go to stdout (pino); the human lines (where it listens, where the docs are,
 * shutdown) go to stderr. SIGTERM or SIGINT shuts down gracefully — the queue stops taking work and
 * cancels or drains its runs within the deadline, then the HTTP server closes, then the store — and the
 * process exits 0. A second signal during shutdown stops waiting (exit 130; process groups are still
 * killed on exit).
 */
import type { Command } from 'commander';
import { isAgentGateError, toAgentGateError } from '../errors.js';
import { createLogger } from '../observability/logger.js';
import { createRuntime } from '../runtime.js';
import { loadConfig } from '../schemas/config.js';
import { buildServer, DEFAULT_DOCS_PREFIX } from '../server/app.js';
import { systemClock } from '../util/clock.js';
import { EXIT, type CliIo } from './run-command.js';
import { DEFAULT_POLL_EVERY_MS, durationFlag, nextSignal } from './worker-command.js';

export interface ServeFlags {
  port?: string;
  host?: string;
  apiKey?: string;
  maxConcurrent?: string;
  /** False with `--no-worker`: an API node that never executes work orders. */
  worker?: boolean;
  pollInterval?: string;
}

/** How long running runs may take to finish on shutdown before they are canceled. */
export const SHUTDOWN_DRAIN_MS = 10_000;

/** Where a listening address is printed: IPv6 hosts need brackets in a URL. */
function urlOf(host: string, port: number): string {
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}

/** Starts the server and resolves with the exit code once it has shut down. */
export async function serveCommand(flags: ServeFlags, io: CliIo): Promise<number> {
  let config;
  let pollEveryMs: number;
  try {
    config = loadConfig(io.env, {
      ...(flags.port !== undefined && { port: flags.port }),
      ...(flags.host !== undefined && { host: flags.host }),
      ...(flags.apiKey !== undefined && { apiKey: flags.apiKey }),
      ...(flags.maxConcurrent !== undefined && { maxConcurrent: flags.maxConcurrent }),
    });
    pollEveryMs = durationFlag('--poll-interval', flags.pollInterval, DEFAULT_POLL_EVERY_MS, 10);
  } catch (error) {
    io.stderr.write(`agentgate serve: ${isAgentGateError(error) ? error.message : String(error)}\n`);
    return EXIT.invalid;
  }

  const logger = createLogger({ level: config.logLevel });
  let runtime;
  try {
    runtime = await createRuntime({ config, logger, baseEnv: io.env, processMetrics: true, maxConcurrent: config.maxConcurrent });
  } catch (error) {
    const failure = toAgentGateError(error, 'AG_ERR_STORE_OPEN');
    io.stderr.write(`agentgate serve: ${failure.code}: ${failure.message}\n`);
    return failure.status < 500 ? EXIT.invalid : EXIT.failed;
  }

  const signal = nextSignal(['SIGTERM', 'SIGINT']);
  const executes = flags.worker !== false;
  const { engine } = runtime;
  // Runs this process executes reach the hub directly; every other one is followed in the store.
  runtime.hub.followStore({ clock: systemClock, pollEveryMs, isLocalRun: (runId) => engine.isActive(runId) });
  let app;
  try {
    await runtime.reapStaleWorkspaces();
    app = await buildServer({ runtime, logger });
    // One process on SQLite sees every submission itself; on a shared database others submit too.
    runtime.queue.start({ execute: executes, pollEveryMs: config.databaseUrl === undefined ? 0 : pollEveryMs });
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    const failure = toAgentGateError(error, 'AG_ERR_INTERNAL');
    io.stderr.write(`agentgate serve: cannot start: ${failure.message}\n`);
    await runtime.queue.close({ drainMs: 0, cancelReason: 'server failed to start' });
    await app?.close();
    await runtime.close();
    return failure.status < 500 ? EXIT.invalid : EXIT.failed;
  }

  const address = app.server.address();
  const url = typeof address === 'object' && address !== null ? urlOf(address.address, address.port) : urlOf(config.host, config.port);
  io.stderr.write(`AgentGate listening on ${url}\n`);
  io.stderr.write(`API docs (OpenAPI) at ${url}${DEFAULT_DOCS_PREFIX}\n`);
  if (!executes) io.stderr.write(`API node only (--no-worker): work orders are executed by \`agentgate worker\` processes sharing ${runtime.repos.location}\n`);
  if (config.apiKey === undefined) io.stderr.write('warning: no API key configured (AGENTGATE_API_KEY or --api-key): the API is open to anyone who can reach it\n');

  const received = await signal;
  io.stderr.write(`${received}: shutting down (running runs get ${SHUTDOWN_DRAIN_MS / 1000} s to finish, then are canceled)\n`);
  const forced = nextSignal(['SIGTERM', 'SIGINT']).then(() => 'forced' as const);
  const server = app;
  const activeRuntime = runtime;
  const shutdown = (async () => {
    await activeRuntime.queue.close({ drainMs: SHUTDOWN_DRAIN_MS, cancelReason: `server shutting down (${received})` });
    await server.close();
    await activeRuntime.close();
    return 'done' as const;
  })();
  const outcome = await Promise.race([shutdown, forced]);
  if (outcome === 'forced') {
    io.stderr.write('second signal: exiting without waiting for shutdown to finish\n');
    return EXIT.canceled;
  }
  io.stderr.write('stopped\n');
  return EXIT.succeeded;
}

/** Adds `serve` to the program. */
export function registerServeCommand(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('serve')
    .description('start the HTTP API and the work-order queue')
    .option('--port <port>', 'port to listen on (default 3001; $AGENTGATE_PORT)')
    .option('--host <host>', 'address to bind (default 127.0.0.1; $AGENTGATE_HOST)')
    .option('--api-key <key>', 'require Authorization: Bearer <key> on every route but /health* ($AGENTGATE_API_KEY)')
    .option('--max-concurrent <n>', 'runs executing at once (default 2; $AGENTGATE_MAX_CONCURRENT)')
    .option('--no-worker', 'API node only: never execute work orders here (agentgate worker processes do)')
    .option('--poll-interval <duration>', 'how often to read the shared store for other processes\' events and work (default 1s)')
    .action(async (flags: ServeFlags) => {
      setExit(await serveCommand(flags, io));
    });
}
