#!/usr/bin/env node
/**
 * The `agentgate` command line (SPEC 12). Exit codes: 0 succeeded, 1 failed, 2 invalid input or
 * configuration, 130 canceled.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { resolveSandboxPolicy } from '../schemas/resolve.js';
import type { TaskSpec } from '../schemas/task-spec.js';
import { killAllProcessGroups } from '../util/process.js';
import { assertSandboxAvailable, isSandboxMode, SANDBOX_ENV, SANDBOX_MODES, sandboxWarnings } from '../util/sandbox.js';
import { registerServeCommand } from './serve-command.js';
import { registerClientCommands } from './client-commands.js';
import { registerCacheCommand } from './cache-command.js';
import { registerGatesCommand } from './gates-command.js';
import { registerBranchesCommand } from './branches-command.js';
import { EXIT, runCommand, taskSpecFromFile, taskSpecFromFlags, type CliIo, type ExecFlags } from './run-command.js';

/** The package version, read once from package.json next to src/ and dist/. */
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const SANDBOX_HELP = 'run agents and gates in bubblewrap: auto (when it works here, else warn), bwrap (required), none (default: $AGENTGATE_SANDBOX, else auto)';

/**
 * Applies `--sandbox` (over the spec's `execution.sandbox.mode`, over `AGENTGATE_SANDBOX`) to the spec,
 * checks it can be honoured here (`bwrap` without a working bubblewrap: AG_ERR_CONFIG_INVALID, exit 2),
 * and prints the sandbox warning of `auto` without bubblewrap (the engine applies the policy to the
 * run's processes and records the warning in `run_started`).
 */
export function applySandboxChoice(spec: TaskSpec, flag: string | undefined, io: CliIo): TaskSpec {
  const configured = io.env[SANDBOX_ENV]?.trim();
  const chosen = { ...spec.spec.execution.sandbox, ...(isSandboxMode(flag) && { mode: flag }) };
  const policy = resolveSandboxPolicy(chosen, isSandboxMode(configured) ? configured : undefined);
  assertSandboxAvailable(policy, io.env);
  spec.spec.execution.sandbox = policy;
  for (const warning of sandboxWarnings(policy, io.env)) io.stderr.write(`warning: ${warning}\n`);
  return spec;
}

export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('agentgate')
    .description('Run coding agents against a git repository until your gates pass')
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
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
      setExit(await runCommand(io, () => applySandboxChoice(taskSpecFromFlags(flags, io.cwd), flags.sandbox, io), flags));
    });

  const task = program.command('task').description('TaskSpec files');
  task
    .command('run <file>')
    .description('run a TaskSpec (agentgate.io/v1) YAML file in-process')
    .option('--json', 'print one final JSON line on stdout')
    .option('--verbose', 'print every agent output line')
    .addOption(new Option('--sandbox <mode>', SANDBOX_HELP).choices(SANDBOX_MODES))
    .action(async (file: string, flags: { json?: boolean; verbose?: boolean; sandbox?: string }) => {
      setExit(await runCommand(io, async () => applySandboxChoice(await taskSpecFromFile(file, io.cwd), flags.sandbox, io), flags));
    });

  registerServeCommand(program, io, setExit);
  registerClientCommands(program, io, setExit);
  registerCacheCommand(program, io, setExit);
  registerGatesCommand(program, io, setExit);
  registerBranchesCommand(program, io, setExit);

  return program;
}

/** Parses argv and runs; resolves to the process exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let code: number = EXIT.succeeded;
  const program = buildProgram(io, (c) => {
    code = c;
  });
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
  // `pnpm agentgate …` runs from the repository root; relative paths mean the caller's directory.
  const cwd = process.env['npm_lifecycle_event'] === 'agentgate' && process.env['INIT_CWD'] ? process.env['INIT_CWD'] : process.cwd();
  const io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd };
  // Whatever ends this process, no agent or gate process it started may outlive it.
  process.on('exit', () => killAllProcessGroups('SIGKILL'));
  main(process.argv.slice(2), io).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`agentgate: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(EXIT.failed);
    },
  );
}
