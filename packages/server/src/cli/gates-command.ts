/**
 * `agentgate gates --path <repo> [--run]`: shows the gate plan of a repository's current commit (setup,
 * gates, protected paths, and where each came from) before anyone pays for an agent, and with `--run`
 * executes it on that commit without an agent, so a user can check that the base is red for the right
 * reason. The user's repository is only read: `--run` works in a throwaway clone under the temp directory.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import type { Command } from 'commander';
import { AgentGateError, toAgentGateError } from '../errors.js';
import { gitQuery } from '../gates/git.js';
import { formatGatePlan, loadGatePlan } from '../gates/loader.js';
import { removePythonEnvironment } from '../gates/python-env.js';
import type { GateResult } from '../gates/types.js';
import { Verifier } from '../gates/verifier.js';
import { systemClock } from '../util/clock.js';
import { sanitizeForTerminal } from '../util/terminal.js';
import { EXIT, exitCodeForError, type CliIo } from './run-command.js';

export interface GatesFlags {
  path?: string;
  ref?: string;
  run?: boolean;
}

function resultLine(result: GateResult): string {
  const verdict = result.skipped === true ? 'SKIP' : result.passed ? 'PASS' : 'FAIL';
  const why = result.passed || result.message === undefined ? '' : ` — ${result.message}`;
  const log = result.passed || result.logPath === undefined ? '' : ` (log: ${result.logPath})`;
  return sanitizeForTerminal(`${verdict} ${result.level} ${result.name} ${result.durationMs}ms${why}${log}`);
}

/** Prints the plan and, with `run`, executes it; resolves to the exit code (0 passed, 1 failed, 2 invalid). */
export async function gatesCommand(flags: GatesFlags, io: CliIo, signal: AbortSignal = new AbortController().signal): Promise<number> {
  try {
    if (flags.path === undefined) throw new AgentGateError('AG_ERR_CLI_USAGE', '--path <repo> is required');
    const repo = resolvePath(io.cwd, flags.path);
    const baseSha = (await gitQuery(['rev-parse', '--verify', '--end-of-options', `${flags.ref ?? 'HEAD'}^{commit}`], { cwd: repo, signal })).trim();
    const plan = await loadGatePlan({ worktreePath: repo, baseSha, signal, clock: systemClock });
    io.stdout.write(`commit: ${baseSha}\n`);
    for (const line of formatGatePlan(plan)) io.stdout.write(`${sanitizeForTerminal(line)}\n`);
    if (flags.run !== true) return EXIT.succeeded;
    if (plan.source === 'none') {
      io.stderr.write('nothing to run: no gates were found\n');
      return EXIT.failed;
    }

    const scratch = await mkdtemp(join(tmpdir(), 'agentgate-gates-'));
    const worktreePath = join(scratch, 'checkout');
    const artifactsDir = join(scratch, 'logs');
    try {
      // A shared clone borrows the objects (nothing copied) and leaves the user's repository untouched.
      await gitQuery(['clone', '--quiet', '--shared', '--no-checkout', '--', repo, worktreePath], { cwd: scratch, signal });
      await gitQuery(['checkout', '--quiet', '--detach', baseSha], { cwd: worktreePath, signal });
      const verifier = new Verifier();
      const ctx = { worktreePath, baseSha, iteration: 1, artifactsDir, signal, clock: systemClock, plan, env: io.env };
      io.stderr.write(`running the plan on ${baseSha.slice(0, 12)} in ${worktreePath}\n`);
      const setup = await verifier.setup(ctx);
      for (const result of setup.results) io.stdout.write(`${resultLine(result)}\n`);
      if (!setup.ok) {
        io.stderr.write(`error ${setup.error.code}: ${sanitizeForTerminal(setup.error.message)}\n`);
        return setup.cancelled ? EXIT.canceled : EXIT.failed;
      }
      const verified = await verifier.verify(ctx);
      if (!verified.ok) {
        io.stderr.write(`error ${verified.error.code}: ${sanitizeForTerminal(verified.error.message)}\n`);
        return verified.cancelled ? EXIT.canceled : EXIT.failed;
      }
      for (const result of verified.report.gates) io.stdout.write(`${resultLine(result)}\n`);
      io.stdout.write(`${verified.report.passed ? 'passed' : 'failed'}: ${verified.report.gates.filter((g) => g.passed).length}/${verified.report.gates.length} gates\n`);
      return verified.report.passed ? EXIT.succeeded : EXIT.failed;
    } finally {
      // The logs named in FAIL lines are kept; the checkout and its Python virtualenv go.
      await rm(worktreePath, { recursive: true, force: true });
      await removePythonEnvironment(artifactsDir);
    }
  } catch (error) {
    const classified = toAgentGateError(error, 'AG_ERR_INTERNAL');
    io.stderr.write(`error ${classified.code}: ${sanitizeForTerminal(classified.message)}\n`);
    return exitCodeForError(classified);
  }
}

export function registerGatesCommand(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('gates')
    .description('show the gate plan of a repository (setup, gates, protected paths, sources); --run executes it on the current commit without an agent')
    .option('--path <repo>', 'local git repository (only read)')
    .option('--ref <ref>', 'use this commit instead of HEAD')
    .option('--run', 'run the setup and the gates on that commit (exit 0 when they pass, 1 when not)')
    .action(async (flags: GatesFlags) => {
      const controller = new AbortController();
      const onSigint = (): void => controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'canceled by Ctrl-C'));
      process.on('SIGINT', onSigint);
      try {
        setExit(await gatesCommand(flags, io, controller.signal));
      } finally {
        process.off('SIGINT', onSigint);
      }
    });
}
