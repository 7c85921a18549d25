/**
 * `agentgate exec` and `agentgate task run`: both turn their input into a TaskSpec, resolve it with
 * the same resolver the HTTP API uses, and run it in-process on the engine with a live progress
 * display. Ctrl-C cancels the run cleanly (exit 130).
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { AgentGateError, ERROR_CATALOGUE, toAgentGateError } from '../errors.js';
import type { RunOutcome, StartedRun } from '../execution/engine.js';
import { loadConfig, type AgentGateConfig } from '../schemas/config.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../schemas/resolve.js';
import { parseTaskSpec, parseTaskSpecYaml, type TaskSpec, type TaskSpecInput } from '../schemas/task-spec.js';
import { createRuntime, type LocalRuntime } from '../runtime.js';
import { formatGatePlan, loadGatePlan } from '../gates/loader.js';
import { inspectLocalRepository, type PreparedSource } from '../workspace/local.js';
import { systemClock } from '../util/clock.js';
import { killAllProcessGroups } from '../util/process.js';
import { sanitizeForTerminal } from '../util/terminal.js';
import { ProgressDisplay } from './progress-display.js';

export const EXIT = { succeeded: 0, failed: 1, invalid: 2, canceled: 130 } as const;

export interface ExecFlags {
  path?: string;
  git?: string;
  /** `owner/name`: a GitHub workspace (needs AGENTGATE_GITHUB_TOKEN). */
  github?: string;
  /** `group/project`: a GitLab workspace (needs AGENTGATE_GITLAB_TOKEN). */
  gitlab?: string;
  ref?: string;
  prompt?: string;
  agent: string;
  agentCommand?: string;
  model?: string;
  maxIterations?: string;
  timeout?: string;
  idleTimeout?: string;
  strategy?: string;
  delivery: string;
  waitCi?: boolean;
  json?: boolean;
  verbose?: boolean;
}

export interface CliIo {
  stdout: { write(chunk: string): boolean };
  stderr: NodeJS.WriteStream | { write(chunk: string): boolean; isTTY?: boolean };
  env: Record<string, string | undefined>;
  cwd: string;
}

function usage(message: string): AgentGateError {
  return new AgentGateError('AG_ERR_CLI_USAGE', message);
}

function positiveInt(flag: string, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw usage(`${flag}: expected a positive integer, got "${value}"`);
  return Number(value);
}

/** Builds a TaskSpec document from `exec` flags, so flags go through the same schema as files. */
export function taskSpecFromFlags(flags: ExecFlags, cwd: string): TaskSpec {
  const sources = [flags.path, flags.git, flags.github, flags.gitlab].filter((value) => value !== undefined);
  if (sources.length === 0) throw usage('one of --path <repo>, --git <url>, --github <owner/name> or --gitlab <group/project> is required');
  if (sources.length > 1) throw usage('--path, --git, --github and --gitlab cannot be used together');
  if (flags.prompt === undefined || flags.prompt.trim() === '') throw usage('--prompt <text> is required');
  const ref = flags.ref !== undefined ? { ref: flags.ref } : {};
  const workspace =
    flags.path !== undefined
      ? { source: 'local' as const, path: resolvePath(cwd, flags.path), ...ref }
      : flags.github !== undefined
        ? { source: 'github' as const, repo: flags.github, ...ref }
        : flags.gitlab !== undefined
          ? { source: 'gitlab' as const, project: flags.gitlab, ...ref }
          : { source: 'git' as const, url: flags.git ?? '', ...ref };
  // --delivery github|gitlab opens a pull/merge request on that forge's workspace; --wait-ci waits for its CI.
  if (flags.delivery !== 'local' && flags.delivery !== workspace.source) {
    throw usage(`--delivery ${flags.delivery} needs --${flags.delivery} ${flags.delivery === 'github' ? '<owner/name>' : '<group/project>'} as the workspace`);
  }
  if (flags.waitCi && flags.delivery === 'local') throw usage('--wait-ci needs --delivery github or gitlab (CI runs on the pull/merge request)');
  const delivery = flags.delivery === 'local' ? {} : { pr: { create: true }, ci: { wait: flags.waitCi === true } };
  const limits: Record<string, unknown> = {};
  if (flags.maxIterations !== undefined) limits['maxIterations'] = positiveInt('--max-iterations', flags.maxIterations);
  if (flags.timeout !== undefined) limits['maxWallClock'] = flags.timeout;
  if (flags.idleTimeout !== undefined) limits['idleTimeout'] = flags.idleTimeout;
  const input: TaskSpecInput = {
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'cli-exec' },
    spec: {
      goal: { prompt: flags.prompt },
      convergence: { ...(flags.strategy !== undefined && { strategy: flags.strategy }), limits },
      execution: {
        workspace,
        agent: {
          driver: flags.agent,
          ...(flags.agentCommand !== undefined && { command: flags.agentCommand }),
          ...(flags.model !== undefined && { model: flags.model }),
        },
      },
      delivery,
    },
  } as TaskSpecInput;
  return parseTaskSpec(input);
}

/** Reads a TaskSpec YAML file; a relative local workspace path is relative to the file's directory. */
export async function taskSpecFromFile(file: string, cwd: string): Promise<TaskSpec> {
  const path = resolvePath(cwd, file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new AgentGateError('AG_ERR_CLI_USAGE', `cannot read task spec ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
  const spec = parseTaskSpecYaml(text, file);
  const ws = spec.spec.execution.workspace;
  if (ws.source === 'local' && !isAbsolute(ws.path)) ws.path = resolvePath(dirname(path), ws.path);
  return spec;
}

/**
 * Exit code for an error raised before or instead of a run: invalid input or configuration (the
 * catalogue's 400 class) is 2; anything else (a store conflict, a held lease, an internal error) is 1.
 */
export function exitCodeForError(error: AgentGateError): number {
  return ERROR_CATALOGUE[error.code].status === 400 ? EXIT.invalid : EXIT.failed;
}

export function exitCodeForOutcome(outcome: RunOutcome): number {
  if (outcome.state === 'succeeded') return EXIT.succeeded;
  if (outcome.state === 'canceled') return EXIT.canceled;
  const code = outcome.error?.code;
  if (code !== undefined && code in ERROR_CATALOGUE && ERROR_CATALOGUE[code as keyof typeof ERROR_CATALOGUE].status === 400) return EXIT.invalid;
  return EXIT.failed;
}

/** The outcome as shown: `branch` is null when the run left none (no snapshot commit reached the repository). */
export type ShownOutcome = Omit<RunOutcome, 'branch'> & { branch: string | null };

export function outcomeJson(outcome: ShownOutcome, warnings: readonly string[] = []): string {
  const body: Record<string, unknown> = {
    workOrderId: outcome.workOrderId,
    runId: outcome.runId,
    state: outcome.state,
    result: outcome.result,
    iterations: outcome.iterations,
    branch: outcome.branch,
  };
  if (outcome.prUrl !== undefined) body['prUrl'] = outcome.prUrl;
  if (outcome.error) body['error'] = { code: outcome.error.code, message: outcome.error.message };
  if (outcome.unverified) body['unverified'] = true;
  if (warnings.length > 0) body['warnings'] = [...warnings];
  body['usage'] = outcome.usage;
  return JSON.stringify(body);
}

/** What the CLI learnt of a local workspace before the run: the gate plan as printed, and the source it read. */
interface PlanPreview {
  text: string;
  /** The resolved source, handed to the engine (`StartOptions.workspaceSource`); absent when it did not resolve. */
  source?: PreparedSource;
}

/**
 * The gate plan as printed before the run starts, so the user sees what the agent will be judged by (and
 * where it came from) before paying for it: its lines, or why it is not shown. Local repositories only
 * (undefined otherwise): a remote's plan is known once it is fetched (`agentgate gates` shows it for a
 * local clone). Never rejects, so it never fails the run.
 *
 * The repository is resolved the way the engine resolves it (`inspectLocalRepository`), and the engine is
 * given that source, so the run starts from the commit whose plan was shown without resolving it again.
 * The engine loads the plan again (while it creates the worktree) and reports any error properly; for the
 * same commit that costs no git process: the plan read here is in the plan cache (`gates/loader.ts`), keyed
 * by the object directory and the commit. A source that does not resolve is not handed over: the engine
 * resolves it itself and fails the run with the precise error.
 */
async function previewGatePlan(spec: ResolvedTaskSpec, signal: AbortSignal): Promise<PlanPreview | undefined> {
  if (spec.workspace.source !== 'local') return undefined;
  let source: PreparedSource | undefined;
  try {
    source = await inspectLocalRepository(spec.workspace, signal);
    const plan = await loadGatePlan({
      worktreePath: source.repoPath,
      baseSha: source.baseSha,
      signal,
      objectStore: source.objectsDir,
      ...(spec.verify !== undefined && { inline: spec.verify }),
    });
    return { text: `${formatGatePlan(plan).map((line) => sanitizeForTerminal(line)).join('\n')}\n`, source };
  } catch (error) {
    const classified = toAgentGateError(error, 'AG_ERR_PHASE_VERIFY');
    return { text: `gate plan: not shown (${classified.code}: ${terminalText(classified.message)})\n`, ...(source !== undefined && { source }) };
  }
}

/**
 * Runs a resolved spec in-process and returns the exit code.
 *
 * Start-up order: the repository is resolved and the gate plan read (git processes) while the runtime opens
 * the store, reconciles and reaps stale worktrees, and printed after them, so neither waits for the other.
 * Reconciliation and reaping stay in order: a worktree is only reaped once its interrupted run was closed.
 */
export async function runSpec(spec: ResolvedTaskSpec, flags: { json?: boolean; verbose?: boolean }, io: CliIo, config: AgentGateConfig): Promise<number> {
  const planRead = new AbortController();
  const planPreview = previewGatePlan(spec, AbortSignal.any([planRead.signal, AbortSignal.timeout(30_000)]));
  let runtime: LocalRuntime;
  try {
    runtime = await createRuntime({ config, baseEnv: io.env, metrics: false });
  } catch (error) {
    // No run: stop reading the plan rather than keep a git process alive for nothing.
    planRead.abort();
    await planPreview;
    throw error;
  }
  try {
    const reaped = await runtime.reapStaleWorkspaces();
    if (reaped.length > 0) io.stderr.write(`removed ${reaped.length} worktree(s) left behind by interrupted runs\n`);
  } catch (error) {
    // Not fatal for this run: it gets its own worktree. Reported, never hidden.
    const classified = toAgentGateError(error, 'AG_ERR_WORKSPACE_CLEANUP');
    io.stderr.write(`warning ${classified.code}: ${terminalText(classified.message)}\n`);
  }
  const preview = await planPreview;
  if (preview !== undefined) io.stderr.write(preview.text);
  const display = new ProgressDisplay({
    stream: io.stderr,
    clock: systemClock,
    maxIterations: spec.convergence.limits.maxIterations,
    ...(flags.verbose !== undefined && { verbose: flags.verbose }),
  });
  // Subscribe before starting, so the display sees the run's first event.
  const runId = randomUUID();
  const unsubscribe = runtime.hub.on((event) => {
    if (event.runId === runId) display.handle(event);
  });
  let started: StartedRun;
  try {
    started = await runtime.engine.start(spec, { runId, ...(preview?.source !== undefined && { workspaceSource: preview.source }) });
  } catch (error) {
    display.stop();
    unsubscribe();
    await runtime.close();
    throw error;
  }
  // First Ctrl-C: cancel cleanly (SIGTERM to the agent's and gates' process groups, then the run ends
  // canceled and its worktree is removed). Second: SIGKILL those groups now; the run still ends canceled.
  // Third: exit at once (reconciliation at the next start closes the run).
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts += 1;
    if (interrupts === 1) {
      io.stderr.write('\ncanceling run (Ctrl-C again to kill its processes now)…\n');
      runtime.engine.cancel(started.runId, 'canceled by Ctrl-C');
    } else if (interrupts === 2) {
      io.stderr.write(`killing ${killAllProcessGroups('SIGKILL')} process group(s) of the run (Ctrl-C again to exit at once)…\n`);
    } else {
      killAllProcessGroups('SIGKILL');
      process.exit(EXIT.canceled);
    }
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    const outcome = await started.done;
    display.stop();
    // Workspace warnings (uncommitted changes ignored …) are recorded with the run; the user sees them here.
    const warnings = (await runtime.repos.runs.get(started.runId))?.meta.warnings ?? [];
    // A run whose snapshots never reached the repository has no branch (execution/run-branch.ts): none is named.
    const shown: ShownOutcome = outcome.branch === '' ? { ...outcome, branch: null } : outcome;
    if (flags.json) io.stdout.write(`${outcomeJson(shown, warnings)}\n`);
    io.stderr.write(summaryLine(shown));
    for (const warning of warnings) io.stderr.write(`  warning: ${terminalText(warning)}\n`);
    return exitCodeForOutcome(outcome);
  } catch (error) {
    // The run exists: whatever went wrong, the JSON line names it so the caller can look it up.
    display.stop();
    const classified = toAgentGateError(error, 'AG_ERR_INTERNAL');
    io.stderr.write(`error ${classified.code}: ${terminalText(classified.message)}\n`);
    if (flags.json) {
      io.stdout.write(`${JSON.stringify({ workOrderId: started.workOrderId, runId: started.runId, error: { code: classified.code, message: classified.message } })}\n`);
    }
    return exitCodeForError(classified);
  } finally {
    display.stop();
    unsubscribe();
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await runtime.close();
  }
}

/**
 * Text from the agent, a gate or the repository (error messages quote stderr and verify.yaml) made safe
 * for the terminal; a multi-line message keeps its lines, indented so none can pass for a line of ours.
 */
function terminalText(untrusted: string): string {
  return sanitizeForTerminal(untrusted, { newlines: 'keep' }).replace(/\n/g, '\n    ');
}

function summaryLine(outcome: ShownOutcome): string {
  const head = `run ${outcome.runId} ${outcome.state}${outcome.result ? ` (${outcome.result})` : ''} after ${outcome.iterations} iteration(s)`;
  const error = outcome.error ? `\n  ${outcome.error.code}: ${terminalText(outcome.error.message)}` : '';
  const unverified = outcome.unverified ? '\n  WARNING: unverified — no verify.yaml and no test command was found; nothing was checked' : '';
  const branch = outcome.branch === null ? 'no branch (no iteration changed anything)' : `branch ${sanitizeForTerminal(outcome.branch)}`;
  return `${head}; ${branch}${error}${unverified}\n`;
}

/** Shared driver of both commands: config → spec → run, with every error mapped to an exit code. */
export async function runCommand(io: CliIo, build: () => Promise<TaskSpec> | TaskSpec, flags: { json?: boolean; verbose?: boolean }): Promise<number> {
  try {
    const config = loadConfig(io.env);
    const spec = resolveTaskSpec(await build());
    return await runSpec(spec, flags, io, config);
  } catch (error) {
    const classified = toAgentGateError(error, 'AG_ERR_INTERNAL');
    io.stderr.write(`error ${classified.code}: ${terminalText(classified.message)}\n`);
    if (flags.json) io.stdout.write(`${JSON.stringify({ error: { code: classified.code, message: classified.message } })}\n`);
    return exitCodeForError(classified);
  }
}
