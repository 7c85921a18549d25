/**
 * `agentgate submit | status | list | cancel | events` against a running server (SPEC 12). The server is
 * `--server URL` over `AGENTGATE_SERVER` over http://127.0.0.1:3001; the API key `--api-key` over
 * `AGENTGATE_API_KEY`, sent as `Authorization: Bearer`. Exit codes as `exec`: 0 succeeded, 1 failed (or
 * the server failed / was unreachable), 2 invalid input or a refused key, 130 canceled.
 *
 * `events <runId> --follow` renders the run like `exec` does (the same {@link ProgressDisplay}) from the
 * run's SSE stream, and after a dropped connection resumes with `Last-Event-ID` = the last seq it showed,
 * so no event is shown twice or skipped.
 */
import type { Command } from 'commander';
import { ERROR_CATALOGUE } from '../errors.js';
import type { ProgressEnvelope } from '../observability/events.js';
import { systemClock } from '../util/clock.js';
import { sanitizeForTerminal } from '../util/terminal.js';
import { ApiClient, ApiError, DEFAULT_SERVER_URL } from './client/api-client.js';
import { ProgressDisplay } from './progress-display.js';
import { EXIT, taskSpecFromFile, taskSpecFromFlags, type CliIo, type ExecFlags } from './run-command.js';

interface ClientFlags {
  server?: string;
  apiKey?: string;
  json?: boolean;
}

/** Reconnect attempts in a row without receiving anything before `events --follow` gives up. */
const MAX_RECONNECTS = 8;

function client(flags: ClientFlags, io: CliIo): ApiClient {
  return new ApiClient(flags.server ?? io.env['AGENTGATE_SERVER'] ?? DEFAULT_SERVER_URL, flags.apiKey ?? io.env['AGENTGATE_API_KEY']);
}

function exitFor(error: ApiError): number {
  if (error.status === 401 || error.code === 'AG_ERR_CLI_USAGE') return EXIT.invalid;
  const known = error.code in ERROR_CATALOGUE ? ERROR_CATALOGUE[error.code as keyof typeof ERROR_CATALOGUE].status : error.status;
  return known === 400 ? EXIT.invalid : EXIT.failed;
}

function text(untrusted: unknown): string {
  return sanitizeForTerminal(String(untrusted));
}

/** Runs a command body; every error becomes a message on stderr (and a JSON line with --json) and an exit code. */
async function guarded(io: CliIo, flags: ClientFlags, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error) {
    const apiError =
      error instanceof ApiError
        ? error
        : new ApiError(typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : 'AG_ERR_INTERNAL', error instanceof Error ? error.message : String(error), 0);
    const hint = apiError.status === 401 ? ' (pass --api-key or set AGENTGATE_API_KEY)' : '';
    io.stderr.write(`error ${apiError.code}: ${text(apiError.message)}${hint}\n`);
    if (flags.json) io.stdout.write(`${JSON.stringify({ error: { code: apiError.code, message: apiError.message } })}\n`);
    return apiError.code === 'AG_ERR_CLI_USAGE' || apiError.code === 'AG_ERR_SCHEMA_INVALID' || apiError.code === 'AG_ERR_YAML_PARSE' ? EXIT.invalid : exitFor(apiError);
  }
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

const CLOSING: Record<string, number> = { run_completed: EXIT.succeeded, run_failed: EXIT.failed, run_canceled: EXIT.canceled };

/** Exit code of a closing event: a failure whose error is invalid input is 2, as in `exec`. */
function exitForClosing(event: ProgressEnvelope): number {
  if (event.type !== 'run_failed') return CLOSING[event.type] ?? EXIT.failed;
  const code = record(record(event.data)['error'])['code'];
  return typeof code === 'string' && code in ERROR_CATALOGUE && ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status === 400 ? EXIT.invalid : EXIT.failed;
}

function exitForState(state: unknown): number {
  return state === 'succeeded' ? EXIT.succeeded : state === 'canceled' ? EXIT.canceled : EXIT.failed;
}

/** Follows a run's SSE stream to its closing event, resuming after dropped connections. */
async function followRun(api: ApiClient, runId: string, afterSeq: number, flags: ClientFlags & { verbose?: boolean }, io: CliIo): Promise<number> {
  const run = record(await api.request('GET', `/api/v1/runs/${encodeURIComponent(runId)}`));
  const display = flags.json
    ? null
    : new ProgressDisplay({ stream: io.stderr, clock: systemClock, maxIterations: typeof run['maxIterations'] === 'number' ? run['maxIterations'] : 1, ...(flags.verbose !== undefined && { verbose: flags.verbose }) });
  let lastSeq = afterSeq;
  let failures = 0;
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    for (;;) {
      let received = false;
      try {
        for await (const frame of api.stream(`/api/v1/runs/${encodeURIComponent(runId)}/stream`, lastSeq > 0 ? String(lastSeq) : undefined, abort.signal)) {
          if (frame.event === 'lagged' || frame.event === 'error') continue;
          const event = JSON.parse(frame.data) as ProgressEnvelope;
          if (event.seq <= lastSeq) continue;
          lastSeq = event.seq;
          received = true;
          failures = 0;
          if (display === null) io.stdout.write(`${frame.data}\n`);
          else display.handle(event);
          const exit = CLOSING[event.type];
          if (exit !== undefined) return exitForClosing(event);
        }
        // The stream ended without the closing event (204: we already had it; or the server closed it).
        const now = record(await api.request('GET', `/api/v1/runs/${encodeURIComponent(runId)}`));
        if (now['completedAt'] !== null && now['completedAt'] !== undefined && !received) return exitForState(now['state']);
      } catch (error) {
        if (abort.signal.aborted) {
          io.stderr.write(`\nstopped following run ${runId} (the run goes on; resume with: agentgate events ${runId} --follow --after-seq ${lastSeq})\n`);
          return EXIT.canceled;
        }
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
        failures += 1;
        if (failures > MAX_RECONNECTS) throw error;
        const delay = Math.min(5_000, 250 * 2 ** failures);
        io.stderr.write(`connection to the server lost; reconnecting in ${(delay / 1000).toFixed(1)}s (after seq ${lastSeq})\n`);
        await systemClock.sleep(delay, abort.signal).catch(() => undefined);
      }
    }
  } finally {
    display?.stop();
    process.off('SIGINT', onSigint);
  }
}

function withServerFlags(command: Command): Command {
  return command
    .option('--server <url>', `AgentGate server (default $AGENTGATE_SERVER, else ${DEFAULT_SERVER_URL})`)
    .option('--api-key <key>', 'API key (default $AGENTGATE_API_KEY)')
    .option('--json', 'print JSON on stdout');
}

function workOrderLine(wo: Record<string, unknown>): string {
  const position = typeof wo['queuePosition'] === 'number' ? ` (queue position ${wo['queuePosition']})` : '';
  return `${text(wo['id'])}  ${text(wo['status'])}${position}  ${text(wo['taskPrompt'] ?? wo['name'] ?? '')}`.trimEnd();
}

/** Adds the client commands to the `agentgate` program. */
export function registerClientCommands(program: Command, io: CliIo, setExit: (code: number) => void): void {
  withServerFlags(program.command('submit [taskspec]').description('submit a TaskSpec YAML file, or a task from flags (as exec), to the server'))
    .option('--path <repo>', 'local git repository (on the server machine)')
    .option('--git <url>', 'git remote to clone and work on')
    .option('--ref <ref>', 'start from this ref')
    .option('--prompt <text>', 'the task for the agent')
    .option('--agent <driver>', 'agent driver: command | claude-code | codex', 'claude-code')
    .option('--agent-command <shell>', 'shell command of the command agent')
    .option('--model <name>', 'model for claude-code / codex')
    .option('--max-iterations <n>', 'maximum build → verify iterations')
    .option('--timeout <duration>', 'wall clock for the whole run, e.g. 10m')
    .option('--idle-timeout <duration>', 'kill an agent silent for this long')
    .option('--strategy <name>', 'fixed | hybrid | ralph | manual')
    .action(async (file: string | undefined, flags: ClientFlags & Omit<ExecFlags, 'delivery' | 'json'>) => {
      setExit(
        await guarded(io, flags, async () => {
          const api = client(flags, io);
          const spec = file !== undefined ? await taskSpecFromFile(file, io.cwd) : taskSpecFromFlags({ ...flags, delivery: 'local' }, io.cwd);
          const workOrder = record(await api.request('POST', '/api/v1/tasks', spec));
          if (flags.json) io.stdout.write(`${JSON.stringify(workOrder)}\n`);
          else io.stdout.write(`submitted work order ${text(workOrder['id'])} (${text(workOrder['status'])})\n`);
          return EXIT.succeeded;
        }),
      );
    });

  withServerFlags(program.command('status <id>').description('show a work order (with its runs) or a run')).action(async (id: string, flags: ClientFlags) => {
    setExit(
      await guarded(io, flags, async () => {
        const api = client(flags, io);
        let data: Record<string, unknown>;
        try {
          data = record(await api.request('GET', `/api/v1/work-orders/${encodeURIComponent(id)}`));
        } catch (error) {
          if (!(error instanceof ApiError) || error.status !== 404) throw error;
          data = record(await api.request('GET', `/api/v1/runs/${encodeURIComponent(id)}`));
        }
        if (flags.json) {
          io.stdout.write(`${JSON.stringify(data)}\n`);
          return EXIT.succeeded;
        }
        if ('state' in data) {
          io.stdout.write(`run ${text(data['id'])}  ${text(data['state'])}${data['result'] ? ` (${text(data['result'])})` : ''}  iteration ${text(data['iteration'])}/${text(data['maxIterations'])}  branch ${text(data['branch'] ?? '-')}\n`);
        } else {
          io.stdout.write(`work order ${workOrderLine(data)}\n`);
          const runs = Array.isArray(data['runs']) ? data['runs'].map(record) : [];
          for (const run of runs) io.stdout.write(`  run ${text(run['id'])}  ${text(run['state'])}${run['result'] ? ` (${text(run['result'])})` : ''}\n`);
        }
        return EXIT.succeeded;
      }),
    );
  });

  withServerFlags(program.command('list').description('list work orders, newest first'))
    .option('--status <status>', 'only work orders in this status')
    .option('--limit <n>', 'how many (default 20)')
    .action(async (flags: ClientFlags & { status?: string; limit?: string }) => {
      setExit(
        await guarded(io, flags, async () => {
          const query = new URLSearchParams({ ...(flags.status !== undefined && { status: flags.status }), ...(flags.limit !== undefined && { limit: flags.limit }) });
          const page = record(await client(flags, io).request('GET', `/api/v1/work-orders${query.size > 0 ? `?${query}` : ''}`));
          const items = Array.isArray(page['items']) ? page['items'].map(record) : [];
          if (flags.json) io.stdout.write(`${JSON.stringify(page)}\n`);
          else for (const item of items) io.stdout.write(`${workOrderLine(item)}\n`);
          return EXIT.succeeded;
        }),
      );
    });

  withServerFlags(program.command('cancel <workOrderId>').description('cancel a queued or running work order')).action(async (id: string, flags: ClientFlags) => {
    setExit(
      await guarded(io, flags, async () => {
        const workOrder = record(await client(flags, io).request('DELETE', `/api/v1/work-orders/${encodeURIComponent(id)}`));
        if (flags.json) io.stdout.write(`${JSON.stringify(workOrder)}\n`);
        else io.stdout.write(`work order ${workOrderLine(workOrder)}\n`);
        return EXIT.succeeded;
      }),
    );
  });

  withServerFlags(program.command('events <runId>').description("print a run's events; --follow streams them live like exec"))
    .option('--follow', 'stream live events until the run ends (exit code as exec)')
    .option('--after-seq <n>', 'start after this seq (default 0)')
    .option('--verbose', 'print every agent output line')
    .action(async (runId: string, flags: ClientFlags & { follow?: boolean; afterSeq?: string; verbose?: boolean }) => {
      setExit(
        await guarded(io, flags, async () => {
          if (flags.afterSeq !== undefined && !/^\d{1,15}$/.test(flags.afterSeq)) throw new ApiError('AG_ERR_CLI_USAGE', `--after-seq: expected a non-negative integer, got "${flags.afterSeq}"`, 0);
          const afterSeq = Number(flags.afterSeq ?? 0);
          const api = client(flags, io);
          if (flags.follow) return followRun(api, runId, afterSeq, flags, io);
          let after = afterSeq;
          for (;;) {
            const page = record(await api.request('GET', `/api/v1/runs/${encodeURIComponent(runId)}/events?afterSeq=${after}&limit=1000`));
            const items = Array.isArray(page['items']) ? page['items'].map(record) : [];
            for (const item of items) {
              if (flags.json) io.stdout.write(`${JSON.stringify(item)}\n`);
              else io.stdout.write(`${text(item['seq'])}  ${text(item['timestamp'])}  ${text(item['type'])}  ${text(JSON.stringify(item['data']))}\n`);
            }
            after = typeof page['nextAfterSeq'] === 'number' ? page['nextAfterSeq'] : after;
            if (page['hasMore'] !== true) return EXIT.succeeded;
          }
        }),
      );
    });
}
