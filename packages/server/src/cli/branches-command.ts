/**
 * `agentgate branches prune --path <repo> [--older-than 7d] [--result failed|canceled|all] [--dry-run]`:
 * removes the run branches (`agentgate/<runId>`) of finished runs from the user's repository, so they do
 * not pile up. A branch is removed only when its run is known to this AgentGate home and has finished
 * (never a running or queued run), finished longer ago than `--older-than`, matches `--result`, and is
 * not the branch checked out in the repository. Deletion is compare-and-delete (`update-ref -d <ref>
 * <sha>`), so a branch that moved since it was listed stays.
 *
 * `--result failed` (the default) means finished but neither succeeded nor canceled; `all` includes
 * succeeded runs, whose branch may be the result the user still wants.
 */
import { resolve as resolvePath } from 'node:path';
import type { Command } from 'commander';
import { AgentGateError, toAgentGateError } from '../errors.js';
import { isTerminalState } from '../orchestrator/state-machine.js';
import { loadConfig } from '../schemas/config.js';
import { openRepositories } from '../store/open.js';
import type { StoredRun } from '../store/types.js';
import { sanitizeForTerminal } from '../util/terminal.js';
import { runGit, runGitTrimmed } from '../workspace/git.js';
import { EXIT, exitCodeForError, type CliIo } from './run-command.js';

export const PRUNE_RESULTS = ['failed', 'canceled', 'all'] as const;
export type PruneResult = (typeof PRUNE_RESULTS)[number];

export interface PruneFlags {
  path?: string;
  olderThan?: string;
  result?: string;
  prefix?: string;
  dryRun?: boolean;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** `7d`, `12h`, `30m`, `0` … → milliseconds. */
export function parseAge(text: string): number {
  const match = /^(\d+)\s*([smhdw]?)$/.exec(text.trim());
  if (match === null) throw new AgentGateError('AG_ERR_CLI_USAGE', `--older-than: expected a duration like 7d, 12h or 30m, got "${text}"`);
  const unit = (match[2] === '' || match[2] === undefined ? 'd' : match[2]) as keyof typeof UNIT_MS;
  return Number(match[1]) * UNIT_MS[unit];
}

function matchesResult(run: StoredRun, wanted: PruneResult): boolean {
  switch (wanted) {
    case 'all':
      return true;
    case 'canceled':
      return run.state === 'canceled';
    case 'failed':
      return run.state === 'failed';
    default: {
      const unreachable: never = wanted;
      return unreachable;
    }
  }
}

/** Why a branch is kept, or undefined when it is to be removed. */
export function keepReason(run: StoredRun | null, wanted: PruneResult, cutoff: number): string | undefined {
  if (run === null) return 'no run of that id in this AgentGate home';
  if (!isTerminalState(run.state)) return `its run is ${run.state}`;
  if (!matchesResult(run, wanted)) return `its run ${run.state}${run.result === null ? '' : ` (${run.result})`}`;
  const finished = Date.parse(run.completedAt ?? run.updatedAt);
  if (Number.isFinite(finished) && finished > cutoff) return 'its run finished too recently';
  return undefined;
}

export async function pruneBranches(flags: PruneFlags, io: CliIo, now: number = Date.now()): Promise<number> {
  const signal = new AbortController().signal;
  try {
    if (flags.path === undefined) throw new AgentGateError('AG_ERR_CLI_USAGE', '--path <repo> is required');
    const wanted = flags.result ?? 'failed';
    if (!(PRUNE_RESULTS as readonly string[]).includes(wanted)) throw new AgentGateError('AG_ERR_CLI_USAGE', `--result: expected one of ${PRUNE_RESULTS.join(', ')}, got "${wanted}"`);
    const cutoff = now - parseAge(flags.olderThan ?? '7d');
    const prefix = flags.prefix ?? 'agentgate/';
    const repo = resolvePath(io.cwd, flags.path);
    const git = (args: string[], what: string) => ({ cwd: repo, args, signal, failAs: 'AG_ERR_WORKSPACE_SETUP' as const, what, hardened: true });
    const listed = await runGit(git(['for-each-ref', '--format=%(objectname) %(refname)', `refs/heads/${prefix}`], 'list the run branches'));
    const current = await runGitTrimmed(git(['symbolic-ref', '--quiet', 'HEAD'], 'read the current branch')).catch(() => '');
    const config = loadConfig(io.env);
    const repos = await openRepositories({ home: config.home, ...(config.databaseUrl !== undefined && { databaseUrl: config.databaseUrl }) });
    let removed = 0;
    try {
      for (const line of listed.split('\n').filter((l) => l.trim() !== '')) {
        const space = line.indexOf(' ');
        const sha = line.slice(0, space);
        const ref = line.slice(space + 1);
        const branch = ref.slice('refs/heads/'.length);
        const runId = branch.slice(prefix.length);
        let reason = ref === current ? 'it is checked out' : keepReason(await repos.runs.get(runId), wanted as PruneResult, cutoff);
        if (reason === undefined && flags.dryRun !== true) {
          await runGit(git(['update-ref', '-m', 'agentgate: prune run branch', '-d', ref, sha], `delete ${branch}`)).catch(() => {
            reason = 'it moved while pruning';
          });
        }
        if (reason === undefined) {
          removed += 1;
          io.stdout.write(`${flags.dryRun === true ? 'would remove' : 'removed'} ${sanitizeForTerminal(branch)} (was ${sha.slice(0, 12)})\n`);
        } else {
          io.stderr.write(`kept ${sanitizeForTerminal(branch)}: ${reason}\n`);
        }
      }
    } finally {
      await repos.close();
    }
    io.stderr.write(`${flags.dryRun === true ? 'would remove' : 'removed'} ${removed} run branch(es)\n`);
    return EXIT.succeeded;
  } catch (error) {
    const classified = toAgentGateError(error, 'AG_ERR_INTERNAL');
    io.stderr.write(`error ${classified.code}: ${sanitizeForTerminal(classified.message)}\n`);
    return exitCodeForError(classified);
  }
}

export function registerBranchesCommand(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const branches = program.command('branches').description('run branches (agentgate/<runId>) in a local repository');
  branches
    .command('prune')
    .description('remove the run branches of finished runs (never of running ones) from a repository')
    .option('--path <repo>', 'the local repository holding the run branches')
    .option('--older-than <age>', 'only runs that finished longer ago than this (e.g. 7d, 12h, 0)', '7d')
    .option('--result <which>', 'failed (default), canceled, or all finished runs (including succeeded)', 'failed')
    .option('--prefix <prefix>', 'branch prefix (delivery.git.branchPrefix)', 'agentgate/')
    .option('--dry-run', 'list what would be removed')
    .action(async (flags: PruneFlags) => {
      setExit(await pruneBranches(flags, io));
    });
}
