/**
 * L0 gates: the contracts of verify.yaml (SPEC 6), checked before any command runs.
 *
 * - `required-files`: every entry exists in the worktree (a glob entry needs at least one match).
 * - `forbidden-patterns`: no tracked or untracked, non-ignored file matches a pattern (`**\/.env`).
 * - `protected-paths`: tamper detection. Every file the agent changed relative to the base commit —
 *   modified, added (tracked or untracked), deleted, renamed (seen as delete + add) — is matched against
 *   `protectedPaths` and against the always-protected files (both verify.yaml locations and the black-box
 *   stdin fixtures). An agent that "fixes" a failing test by editing the test, or loosens verify.yaml,
 *   fails here with the file named, however green its tests are. So does a symlink the agent added or
 *   changed where a protected pattern could match below it (`test/link -> ../spec` under
 *   `test/**\/*.test.js`): a test command follows it to files no pattern checks (`symlinks.ts`).
 *
 * Globs use picomatch with `dot: true`, so `**\/.env` matches `.env` and `config/.env`. Files ignored by
 * `.gitignore` are not considered (build output and node_modules would otherwise dominate); protect
 * `.gitignore` itself if an agent hiding files from the check is a concern.
 *
 * Every query goes through AgentGate's own git state of the run (`workspace/isolated-git.ts`): its git
 * directory, its index (the last snapshot's, so unchanged files are not re-read) and a hardened
 * environment, with the workspace as the work tree only. Nothing in the agent's `.git` — its index and
 * skip-worktree bits, `info/exclude`, replace refs, config, filters, attributes — is consulted, and the
 * attributes of the work tree cannot select a filter or change bytes. A directory that is not a run
 * workspace (tests, tools) gets a scratch git directory of the same kind. Submodules (gitlinks): every diff
 * reports one whose commit moved, whatever a `.gitmodules` the agent wrote says (`ignore = all` would hide
 * it otherwise), and a protected submodule directory that holds anything counts as modified; git never
 * runs inside a submodule. Below a submodule path or a nested repository, where git lists nothing, the
 * files are listed without git and matched against the protected patterns (`hidden-files.ts`).
 *
 * Cost. Given the iteration's snapshot commit ({@link SnapshotRef}; the verify phase passes it), the
 * tamper check compares the base commit's tree with the snapshot's tree — no file of the work tree is
 * read for that, and no git process runs for it when the snapshot phase already listed those changes
 * (`SnapshotRef.changesFromBase`) — and looks at the work tree only below the protected patterns (edits made after the
 * snapshot, and files the snapshot left out: ignored ones, nested repositories). Without a snapshot the
 * work tree is compared with the base commit through an index: the run's own index has the stat data of
 * its last snapshot, so only changed files are read; a scratch index (a directory that is not a run
 * workspace) has none — nothing trustworthy could supply it, the repository's own index being the
 * agent's — so git reads every file once. Callers that know a commit of the tree pass it.
 *
 * The listing of what changed — the snapshot's tree diff, the work tree after it, untracked and ignored
 * files, what git cannot list, symlinks — is `changed-files.ts`; the gates here judge it.
 */
import picomatch from 'picomatch';
import type { VerifyConfig } from '../schemas/verify-config.js';
import type { Clock } from '../util/clock.js';
import { exists, listChangedFiles, listWorktreeFiles, resolveInside, withIsolatedGit, type ChangedFile, type SnapshotRef } from './changed-files.js';
import type { GitQueryOptions } from './git.js';
import { protectedMatcher } from './hidden-files.js';
import { describeSymlink } from './symlinks.js';
import type { Diagnostic, GateResult } from './types.js';

export { listChangedFiles, listWorktreeFiles, resolveInside, withIsolatedGit } from './changed-files.js';
export type { ChangeKind, ChangedFile, SnapshotRef } from './changed-files.js';

/** How many offending files a gate message lists before "and N more" (all of them go to diagnostics). */
const FILES_IN_MESSAGE = 5;

export interface ContractsInput {
  worktreePath: string;
  baseSha: string;
  contracts: VerifyConfig['contracts'];
  /** Exact repository-relative paths that are protected whatever the config says, with the reason shown. */
  alwaysProtected: ReadonlyArray<{ path: string; reason: string }>;
  /**
   * The snapshot of the tree being checked, when there is one: the tamper check then compares trees
   * (see the module comment). Without it the work tree is compared with the base commit file by file.
   */
  snapshot?: SnapshotRef;
  signal: AbortSignal;
  clock: Clock;
}


/** The L0 gate names, stable for events, reports and feedback. */
export const CONTRACT_GATES = {
  requiredFiles: 'required-files',
  forbiddenPatterns: 'forbidden-patterns',
  protectedPaths: 'protected-paths',
} as const;


function summarise(items: readonly string[]): string {
  const shown = items.slice(0, FILES_IN_MESSAGE).join(', ');
  return items.length > FILES_IN_MESSAGE ? `${shown} and ${items.length - FILES_IN_MESSAGE} more` : shown;
}

function result(name: string, started: number, clock: Clock, failure: { message: string; diagnostics: Diagnostic[] } | undefined): GateResult {
  const base = { name, level: 'L0' as const, durationMs: clock.now() - started };
  return failure === undefined ? { ...base, passed: true, diagnostics: [] } : { ...base, passed: false, message: failure.message, diagnostics: failure.diagnostics };
}

async function requiredFiles(input: ContractsInput, files: () => Promise<string[]>): Promise<GateResult> {
  const started = input.clock.now();
  const missing: string[] = [];
  for (const entry of input.contracts.requiredFiles) {
    if (picomatch.scan(entry).isGlob) {
      const match = picomatch(entry, { dot: true });
      if (!(await files()).some((file) => match(file))) missing.push(entry);
    } else if (!(await exists(resolveInside(input.worktreePath, entry)))) {
      missing.push(entry);
    }
  }
  if (missing.length === 0) return result(CONTRACT_GATES.requiredFiles, started, input.clock, undefined);
  return result(CONTRACT_GATES.requiredFiles, started, input.clock, {
    message: `missing required file${missing.length === 1 ? '' : 's'}: ${summarise(missing)}`,
    diagnostics: missing.map((file) => ({ tool: 'generic', file, message: 'required file is missing (contracts.requiredFiles)' })),
  });
}

async function forbiddenPatterns(input: ContractsInput, files: () => Promise<string[]>): Promise<GateResult> {
  const started = input.clock.now();
  const patterns = input.contracts.forbiddenPatterns;
  const found: Array<{ file: string; pattern: string }> = [];
  const matchers = patterns.map((pattern) => ({ pattern, match: picomatch(pattern, { dot: true }) }));
  for (const file of await files()) {
    const hit = matchers.find((m) => m.match(file));
    // The index can still list a file the working tree no longer has; only files that exist count.
    if (hit !== undefined && (await exists(resolveInside(input.worktreePath, file)))) found.push({ file, pattern: hit.pattern });
  }
  if (found.length === 0) return result(CONTRACT_GATES.forbiddenPatterns, started, input.clock, undefined);
  return result(CONTRACT_GATES.forbiddenPatterns, started, input.clock, {
    message: `forbidden file${found.length === 1 ? '' : 's'} present: ${summarise(found.map((f) => `${f.file} (${f.pattern})`))}`,
    diagnostics: found.map((f) => ({ tool: 'generic', file: f.file, message: `file matches forbidden pattern ${f.pattern} (contracts.forbiddenPatterns); remove it` })),
  });
}

async function protectedPaths(input: ContractsInput, git: GitQueryOptions): Promise<GateResult> {
  const started = input.clock.now();
  const matchers = input.contracts.protectedPaths.map((pattern) => ({ pattern, match: protectedMatcher(pattern) }));
  const violations: Array<{ file: string; summary: string; detail: string }> = [];
  const patterns = [...input.contracts.protectedPaths, ...input.alwaysProtected.map((p) => p.path)];
  const reason = (pattern: string): string => input.alwaysProtected.find((p) => p.path === pattern)?.reason ?? `protectedPaths: ${pattern}`;
  const asFile = (file: ChangedFile, why: string): (typeof violations)[number] => ({
    file: file.path,
    summary: `${file.change} protected file ${file.path} (${why})`,
    detail: `protected file ${file.change} (${why}); restore it to the base commit's version`,
  });
  for (const file of await listChangedFiles(input.baseSha, git, patterns, input.snapshot?.commit, input.snapshot?.changesFromBase)) {
    const fixed = input.alwaysProtected.find((p) => p.path === file.path);
    const hit = fixed === undefined ? matchers.find((m) => m.match(file.path)) : undefined;
    if (fixed !== undefined) violations.push(asFile(file, fixed.reason));
    else if (hit !== undefined) violations.push(asFile(file, `protectedPaths: ${hit.pattern}`));
    else if (file.protectedBy !== undefined && file.symlink !== undefined) violations.push({ file: file.path, ...describeSymlink(file, reason(file.protectedBy)) });
    else if (file.protectedBy !== undefined) {
      // A directory git lists nothing below, too large, deep or unreadable to list here: the pattern may match files in it.
      violations.push(asFile(file, `${reason(file.protectedBy)}, which may match files in this directory: it could not be listed whole`));
    }
  }
  if (violations.length === 0) return result(CONTRACT_GATES.protectedPaths, started, input.clock, undefined);
  const [first] = violations;
  const more = violations.length > 1 ? ` and ${violations.length - 1} more` : '';
  return result(CONTRACT_GATES.protectedPaths, started, input.clock, {
    message: first === undefined ? 'tamper' : `tamper: the agent ${first.summary}${more}`,
    diagnostics: violations.map((v) => ({ tool: 'generic', file: v.file, message: v.detail })),
  });
}

/**
 * Runs the L0 gates. `required-files` and `forbidden-patterns` appear only when configured;
 * `protected-paths` always runs, because verify.yaml is protected even without `protectedPaths`.
 *
 * @throws AgentGateError `AG_ERR_PHASE_VERIFY` when git cannot answer, `AG_ERR_RUN_CANCELED` on abort,
 *   `AG_ERR_WORKSPACE_PATH_ESCAPE` for a required file outside the worktree.
 */
export async function checkContracts(input: ContractsInput): Promise<GateResult[]> {
  const { snapshot } = input;
  const options: GitQueryOptions = { cwd: input.worktreePath, signal: input.signal, clock: input.clock, ...(snapshot?.git !== undefined && { isolated: snapshot.git }) };
  return withIsolatedGit(options, snapshot?.commit ?? input.baseSha, async (git) => {
    let listing: Promise<string[]> | undefined;
    const files = (): Promise<string[]> => (listing ??= listWorktreeFiles(git));
    const out: GateResult[] = [];
    if (input.contracts.requiredFiles.length > 0) out.push(await requiredFiles(input, files));
    if (input.contracts.forbiddenPatterns.length > 0) out.push(await forbiddenPatterns(input, files));
    out.push(await protectedPaths(input, git));
    return out;
  });
}
