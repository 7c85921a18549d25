#!/usr/bin/env node
/**
 * The `agentgate` command line (SPEC 12). Exit codes: 0 succeeded, 1 failed, 2 invalid input or
 * configuration, 130 canceled.
 *
 * Start-up: this module loads commander, node built-ins and the sandbox mode names — nothing else. Each
 * command's module, and with it zod, yaml, pino, prom-client, fastify, better-sqlite3 and the runtime, is
 * imported when that command runs or its own help is asked for, so `--version` and `--help` answer in the
 * time Node takes to start (scripts/bench/startup.ts, docs/performance.md). Until its module is loaded, a
 * command is a placeholder holding what the top-level help shows of it ({@link COMMAND_MODULES}).
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Help, Option } from 'commander';
import type { TaskSpec } from '../schemas/task-spec.js';
import { isSandboxMode, SANDBOX_ENV, SANDBOX_MODES } from '../util/sandbox-policy.js';
import type * as RunPath from './run-command.js';
import type { CliIo, EXIT as RUN_EXIT, ExecFlags } from './run-command.js';

/** The package version, read once from package.json next to src/ and dist/. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The exit codes decided here: the values of run-command's `EXIT` (the compiler checks they are equal). */
const EXIT = { succeeded: 0, failed: 1, invalid: 2 } as const satisfies Pick<typeof RUN_EXIT, 'succeeded' | 'failed' | 'invalid'>;

const SANDBOX_HELP = 'run agents and gates in bubblewrap: auto (when it works here, else warn), bwrap (required), none (default: $AGENTGATE_SANDBOX, else auto)';

/** Commander's own rendering, for the commands that are not placeholders. */
const DEFAULT_HELP = new Help();

type RegisterCommands = (program: Command, io: CliIo, setExit: (code: number) => void) => void;

/** What the top-level help shows of a command: its term (name, `[options]`, arguments) and description. */
export interface CommandSummary {
  readonly term: string;
  readonly description: string;
}

/**
 * The commands defined in modules of their own, in the order the help lists them. A module is imported
 * only when one of its commands is the one being run (or `help`ed); the summaries stand in for the other
 * commands and must equal what the modules define (test/cli/startup.test.ts compares them).
 */
export const COMMAND_MODULES: ReadonlyArray<{ readonly commands: readonly CommandSummary[]; readonly load: () => Promise<RegisterCommands> }> = [
  {
    commands: [{ term: 'serve [options]', description: 'start the HTTP API and the work-order queue' }],
    load: async () => (await import('./serve-command.js')).registerServeCommand,
  },
  {
    commands: [{ term: 'worker [options]', description: 'run queued work orders from the shared store, without the HTTP API' }],
    load: async () => (await import('./worker-command.js')).registerWorkerCommand,
  },
  {
    commands: [
      { term: 'submit [options] [taskspec]', description: 'submit a TaskSpec YAML file, or a task from flags (as exec), to the server' },
      { term: 'status [options] <id>', description: 'show a work order (with its runs) or a run' },
      { term: 'list [options]', description: 'list work orders, newest first' },
      { term: 'cancel [options] <workOrderId>', description: 'cancel a queued or running work order' },
      { term: 'events [options] <runId>', description: "print a run's events; --follow streams them live like exec" },
    ],
    load: async () => (await import('./client-commands.js')).registerClientCommands,
  },
  {
    commands: [{ term: 'cache', description: 'the environment cache of setup steps (installed dependencies: node_modules, Python virtualenvs)' }],
    load: async () => (await import('./cache-command.js')).registerCacheCommand,
  },
  {
    commands: [
      {
        term: 'gates [options]',
        description: 'show the gate plan of a repository (setup, gates, protected paths, sources); --run executes it on the current commit without an agent',
      },
    ],
    load: async () => (await import('./gates-command.js')).registerGatesCommand,
  },
  {
    commands: [{ term: 'branches', description: 'run branches (agentgate/<runId>) in a local repository' }],
    load: async () => (await import('./branches-command.js')).registerBranchesCommand,
  },
];

/** The commands `exec` and `task run` need: the run path (schemas, runtime, store), loaded on first use. */
async function loadRunPath(): Promise<typeof RunPath> {
  // Before the schemas are built: a one-shot command parses each of them a few times, which costs less
  // interpreted than through the parser zod would otherwise generate and compile for each object schema
  // (measured ~10 ms per `exec`). The server and the worker keep zod's default.
  (await import('zod')).config({ jitless: true });
  const [runPath] = await Promise.all([import('./run-command.js'), killProcessGroupsOnExit()]);
  return runPath;
}

let exitHook: Promise<void> | undefined;

/**
 * Whatever ends this process, no agent or gate process it started may outlive it. Installed with the
 * first command module: only they start processes (and they load `util/process.js` anyway).
 */
function killProcessGroupsOnExit(): Promise<void> {
  exitHook ??= import('../util/process.js').then(({ killAllProcessGroups }) => {
    // First among the exit listeners: the launcher's code-cache write (bin/agentgate.js) must not delay it.
    process.prependListener('exit', () => killAllProcessGroups('SIGKILL'));
  });
  return exitHook;
}

/**
 * The command `argv` names — the first argument that is not an option (the program itself has only
 * `--version` and `--help`, which take no value), or the command `help` is asked about.
 */
export function commandNamed(argv: readonly string[]): string | undefined {
  const words = argv.filter((arg) => !arg.startsWith('-'));
  return words[0] === 'help' ? words[1] : words[0];
}

/**
 * Applies `--sandbox` (over the spec's `execution.sandbox.mode`, over `AGENTGATE_SANDBOX`) to the spec,
 * checks it can be honoured here (`bwrap` without a working bubblewrap: AG_ERR_CONFIG_INVALID, exit 2),
 * and prints the sandbox warning of `auto` without bubblewrap (the engine applies the policy to the
 * run's processes and records the warning in `run_started`).
 */
export async function applySandboxChoice(spec: TaskSpec, flag: string | undefined, io: CliIo): Promise<TaskSpec> {
  const [{ resolveSandboxPolicy }, { assertSandboxAvailable, sandboxWarnings }] = await Promise.all([import('../schemas/resolve.js'), import('../util/sandbox.js')]);
  const configured = io.env[SANDBOX_ENV]?.trim();
  const chosen = { ...spec.spec.execution.sandbox, ...(isSandboxMode(flag) && { mode: flag }) };
  const policy = resolveSandboxPolicy(chosen, isSandboxMode(configured) ? configured : undefined);
  assertSandboxAvailable(policy, io.env);
  spec.spec.execution.sandbox = policy;
  for (const warning of sandboxWarnings(policy, io.env)) io.stderr.write(`warning: ${warning}\n`);
  return spec;
}

/**
 * The `agentgate` program. `registered` are the modules of {@link COMMAND_MODULES} whose real commands are
 * added (loaded by the caller); the commands of the others are placeholders, which only the top-level help
 * and commander's "unknown command" suggestions ever see.
 */
export function buildProgram(io: CliIo, setExit: (code: number) => void, registered: ReadonlyMap<number, RegisterCommands> = new Map()): Command {
  const placeholders = new Map<Command, string>();
  const program = new Command('agentgate')
    .description('Run coding agents against a git repository until your gates pass')
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .configureHelp({ subcommandTerm: (command) => placeholders.get(command) ?? DEFAULT_HELP.subcommandTerm(command) })
    .showHelpAfterError('(run agentgate --help for usage)');

  program
    .command('exec')
    .description('run a task in-process on a local repository (--path) or a git remote (--git)')
    .option('--path <repo>', 'local git repository (never modified in place; the run uses a worktree)')
    .option('--git <url>', 'git remote to clone (cached) and work on')
    .option('--github <owner/name>', 'GitHub repository to work on (needs AGENTGATE_GITHUB_TOKEN)')
    .option('--gitlab <group/project>', 'GitLab project to work on (needs AGENTGATE_GITLAB_TOKEN)')
    .option('--ref <ref>', 'start from this ref instead of HEAD / the default branch')
    .option('--prompt <text>', 'the task for the agent')
    .addOption(new Option('--agent <driver>', 'agent driver').choices(['command', 'claude-code', 'codex']).default('claude-code'))
    .option('--agent-command <shell>', 'shell command of the command agent')
    .option('--model <name>', 'model for claude-code / codex')
    .option('--max-iterations <n>', 'maximum build → verify iterations (default 3)')
    .option('--timeout <duration>', 'wall clock for the whole run, e.g. 10m (default 1h)')
    .option('--idle-timeout <duration>', 'kill an agent silent for this long (default 10m)')
    .addOption(new Option('--strategy <name>', 'convergence strategy').choices(['fixed', 'hybrid', 'ralph', 'manual']))
    .addOption(new Option('--delivery <kind>', 'how to deliver the result').choices(['local', 'github', 'gitlab']).default('local'))
    .option('--wait-ci', 'wait for CI after opening the PR/MR (with --delivery github|gitlab); CI failures become feedback')
    .option('--json', 'print one final JSON line on stdout (progress stays on stderr)')
    .option('--verbose', 'print every agent output line')
    .addOption(new Option('--sandbox <mode>', SANDBOX_HELP).choices(SANDBOX_MODES))
    .action(async (flags: ExecFlags & { sandbox?: string }) => {
      const run = await loadRunPath();
      setExit(await run.runCommand(io, () => applySandboxChoice(run.taskSpecFromFlags(flags, io.cwd), flags.sandbox, io), flags));
    });

  const task = program.command('task').description('TaskSpec files');
  task
    .command('run <file>')
    .description('run a TaskSpec (agentgate.io/v1) YAML file in-process')
    .option('--json', 'print one final JSON line on stdout')
    .option('--verbose', 'print every agent output line')
    .addOption(new Option('--sandbox <mode>', SANDBOX_HELP).choices(SANDBOX_MODES))
    .action(async (file: string, flags: { json?: boolean; verbose?: boolean; sandbox?: string }) => {
      const run = await loadRunPath();
      setExit(await run.runCommand(io, async () => applySandboxChoice(await run.taskSpecFromFile(file, io.cwd), flags.sandbox, io), flags));
    });

  COMMAND_MODULES.forEach((module, index) => {
    const register = registered.get(index);
    if (register !== undefined) {
      register(program, io, setExit);
      return;
    }
    for (const summary of module.commands) {
      const [name = ''] = summary.term.split(' ');
      placeholders.set(program.command(name).description(summary.description), summary.term);
    }
  });

  return program;
}

/** Parses argv and runs; resolves to the process exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let code: number = EXIT.succeeded;
  const named = commandNamed(argv);
  const index = COMMAND_MODULES.findIndex((module) => module.commands.some((command) => command.term.split(' ')[0] === named));
  const registered = new Map<number, RegisterCommands>();
  const module = COMMAND_MODULES[index];
  if (module !== undefined) {
    const [register] = await Promise.all([module.load(), killProcessGroupsOnExit()]);
    registered.set(index, register);
  }
  const program = buildProgram(
    io,
    (c) => {
      code = c;
    },
    registered,
  );
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version are successful exits; every other parse error is invalid input.
      if (error.exitCode === 0) return EXIT.succeeded;
      // With --json, stdout still carries exactly one JSON line, as for every other invalid input.
      if (argv.includes('--json')) io.stdout.write(`${JSON.stringify({ error: { code: 'AG_ERR_CLI_USAGE', message: error.message } })}\n`);
      return EXIT.invalid;
    }
    throw error;
  }
  return code;
}

const invokedDirectly = process.argv[1] !== undefined && /(?:^|[\\/])(?:main\.[jt]s|agentgate(?:\.js)?)$/.test(process.argv[1]);
if (invokedDirectly) {
  // `pnpm agentgate …` (and `pnpm agentgate:dev …`) run from the repository root; relative paths mean the
  // caller's directory.
  const viaScript = process.env['npm_lifecycle_event'] === 'agentgate' || process.env['npm_lifecycle_event'] === 'agentgate:dev';
  const cwd = viaScript && process.env['INIT_CWD'] ? process.env['INIT_CWD'] : process.cwd();
  const io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd };
  main(process.argv.slice(2), io).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`agentgate: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}
