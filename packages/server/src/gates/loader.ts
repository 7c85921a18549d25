/**
 * Finds the gate plan of a run (SPEC 6).
 *
 * Security decision: the plan is read from the run's **base commit** (`git cat-file blob <baseSha>:<path>`),
 * never from the working tree. The agent edits the working tree; if the gates were read from there, an
 * agent could pass by deleting a test gate from verify.yaml or by rewriting the package.json `test`
 * script it was meant to satisfy. Reading the plan from the commit the run started from means the gates
 * are the ones the team wrote, whatever the agent does; editing verify.yaml is additionally reported as
 * tampering by the L0 contracts gate.
 *
 * Precedence: an inline plan (`spec.verify` of the TaskSpec) → `verify.yaml` → `.agentgate/verify.yaml`
 * → commands detected from the base commit (see detect.ts) → none (the run is unverified).
 *
 * Cost: both verify.yaml locations are looked up and read with one git process (`readCommitPaths`). A
 * plan read from a repository's own object directory is kept for the life of the process, per (object
 * directory, full commit id) — see {@link LoadGatePlanOptions.objectStore}: `agentgate exec` shows the plan
 * before the run and the engine reads the same commit again a moment later, and a server runs many tasks
 * on the same base commit. A commit id names its content (the commit, hence its tree, hence every file
 * below it), so a second read of the same id from the same object directory can only give the same plan.
 */
import { AgentGateError } from '../errors.js';
import { abortError } from '../util/abort.js';
import { parseVerifyConfigYaml, VERIFY_CONFIG_FILE_NAMES } from '../schemas/verify-config.js';
import type { VerifyConfig } from '../schemas/verify-config.js';
import type { Clock } from '../util/clock.js';
import { detectGatePlan } from './detect.js';
import type { GateOrigin, RepoReader } from './detect.js';
import { listCommitFiles, readCommitFile, readCommitPaths } from './git.js';
import type { GitQueryOptions } from './git.js';
import { findRunGit } from '../workspace/isolated-git.js';

export type VerifyConfigFileName = (typeof VERIFY_CONFIG_FILE_NAMES)[number];

/** The gate plan of one run and where it came from (`source` is what the VerificationReport records). */
export type GatePlan =
  | { source: VerifyConfigFileName; config: VerifyConfig; /** Repository-relative path of the file read. */ path: VerifyConfigFileName }
  | { source: 'inline'; config: VerifyConfig }
  | {
      source: 'detected';
      config: VerifyConfig;
      /** Files the commands were detected from. */
      detectedFrom: string[];
      /** Where each setup step and gate came from (file, job, step or section). */
      origins: GateOrigin[];
      notes: string[];
    }
  | { source: 'none'; /** Why nothing was detected, for the run record. */ notes: string[] };

export interface LoadGatePlanOptions {
  worktreePath: string;
  /** The commit the run started from; the plan is read from it, not from the working tree. */
  baseSha: string;
  signal: AbortSignal;
  clock?: Clock;
  /** The TaskSpec's inline `spec.verify`; it wins over any file. */
  inline?: VerifyConfig;
  /**
   * The real path of the object directory git reads in `worktreePath` (`PreparedSource.objectsDir`, or
   * `realpath(<git-common-dir>/objects)`). Given, a plan read there is cached per (object directory, full
   * commit id) for this process, and a later call with the same pair gets it without running git. Not
   * used for a run workspace (that read goes through AgentGate's git directory of the run), nor for an
   * abbreviated commit id. Failures are never cached.
   */
  objectStore?: string;
}

/** A full or abbreviated object name. Anything else (a ref, an option-like `-x`) is refused. */
const SHA = /^[0-9a-f]{4,64}$/i;

/** Refuses a base commit that is not an object name, so it can never be read as a git option. */
export function assertBaseSha(baseSha: string): void {
  if (!SHA.test(baseSha)) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `invalid base commit ${JSON.stringify(baseSha.slice(0, 80))}: expected a commit sha`);
}

/** A {@link RepoReader} over the files of one commit. */
export async function commitReader(sha: string, options: GitQueryOptions): Promise<RepoReader> {
  assertBaseSha(sha);
  const entries = await listCommitFiles(sha, options);
  return {
    files: entries.map((entry) => entry.path),
    read: (path) => readCommitFile(sha, path, options),
  };
}

/**
 * Loads the plan as described in the module comment.
 *
 * @throws AgentGateError `AG_ERR_VERIFY_CONFIG_INVALID` (message `<file>:<line>: <path>: <reason>`) for an
 *   invalid verify.yaml, `AG_ERR_PHASE_VERIFY` when git cannot read the base commit, `AG_ERR_RUN_CANCELED`
 *   when `signal` aborted.
 */
export async function loadGatePlan(options: LoadGatePlanOptions): Promise<GatePlan> {
  if (options.inline !== undefined) return { source: 'inline', config: options.inline };
  assertBaseSha(options.baseSha);
  if (options.signal.aborted) throw abortError(options.signal, 'read the gate plan');
  const plain: GitQueryOptions = { cwd: options.worktreePath, signal: options.signal, ...(options.clock === undefined ? {} : { clock: options.clock }) };
  // In a run workspace, the objects are read through AgentGate's own git directory: the agent's `.git`
  // could hold objects of its own making under the base commit's names.
  const run = await findRunGit(options.worktreePath);
  const key = run === undefined ? planCacheKey(options) : undefined;
  const cached = key === undefined ? undefined : planCache.get(key);
  if (key !== undefined && cached !== undefined) {
    // Most recently used last: the oldest entry is the one dropped when the cache is full.
    planCache.delete(key);
    planCache.set(key, cached);
    return structuredClone(cached);
  }
  const plan = await readGatePlan(options.baseSha, run === undefined ? plain : { ...plain, isolated: run });
  if (key !== undefined) {
    planCache.set(key, structuredClone(plan));
    for (const oldest of planCache.keys()) {
      if (planCache.size <= PLAN_CACHE_ENTRIES) break;
      planCache.delete(oldest);
    }
  }
  return plan;
}

/** Plans read from commits, by {@link planCacheKey}; at most {@link PLAN_CACHE_ENTRIES}, least recently used dropped first. */
const planCache = new Map<string, GatePlan>();
const PLAN_CACHE_ENTRIES = 64;
const FULL_COMMIT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** `<object directory>\0<commit id>`, or undefined when the read must not be cached (see `objectStore`). */
function planCacheKey(options: LoadGatePlanOptions): string | undefined {
  const sha = options.baseSha.toLowerCase();
  if (options.objectStore === undefined || !FULL_COMMIT_ID.test(sha)) return undefined;
  return `${options.objectStore}\0${sha}`;
}

/** Forgets every cached plan (tests). */
export function clearGatePlanCache(): void {
  planCache.clear();
}

/** The plan of commit `sha` as the module comment describes it, read through `git`. */
async function readGatePlan(sha: string, git: GitQueryOptions): Promise<Exclude<GatePlan, { source: 'inline' }>> {
  const found = await readCommitPaths(sha, VERIFY_CONFIG_FILE_NAMES, git);
  for (const name of VERIFY_CONFIG_FILE_NAMES) {
    const entry = found.get(name);
    if (entry === undefined) continue;
    if (entry.kind !== 'file') {
      throw new AgentGateError('AG_ERR_VERIFY_CONFIG_INVALID', `${name}: must be a regular file in the base commit (found ${entry.kind === 'symlink' ? 'a symlink' : `a ${entry.kind}`})`, {
        details: { file: name },
      });
    }
    return { source: name, path: name, config: parseVerifyConfigYaml(entry.text, name) };
  }

  const detection = await detectGatePlan(await commitReader(sha, git));
  if (detection.plan === undefined) return { source: 'none', notes: detection.notes };
  const { config, detectedFrom, origins } = detection.plan;
  return { source: 'detected', config, detectedFrom, origins, notes: detection.notes };
}

/**
 * A short, plain description of the plan for the agent's prompt, so it knows what it will be judged by
 * (and that protected files must stay untouched) before the first verification.
 */
export function describeGatePlan(plan: GatePlan): string {
  if (plan.source === 'none') return 'No verification gates were found for this repository; the run will be recorded as unverified.';
  const origin = plan.source === 'detected' ? `detected from ${plan.detectedFrom.join(', ')}` : plan.source === 'inline' ? 'given inline with the task' : `from ${plan.path}`;
  const { contracts, tests, blackbox } = plan.config;
  const lines = [`Your change is accepted only when these gates pass (${origin}):`];
  if (contracts.requiredFiles.length > 0) lines.push(`- required files: ${contracts.requiredFiles.join(', ')}`);
  if (contracts.forbiddenPatterns.length > 0) lines.push(`- forbidden files: ${contracts.forbiddenPatterns.join(', ')}`);
  lines.push(`- do not modify: ${[...VERIFY_CONFIG_FILE_NAMES, ...contracts.protectedPaths].join(', ')}`);
  for (const test of tests) lines.push(`- ${test.name}: \`${test.command}\``);
  for (const check of blackbox) lines.push(`- ${check.name} (black-box): \`${check.command}\``);
  return lines.join('\n');
}

/**
 * The whole plan as lines for a person (`agentgate gates`, the start of `exec`): where it came from, the
 * setup steps, the gates with their commands and origins, and the protected paths.
 */
export function formatGatePlan(plan: GatePlan): string[] {
  if (plan.source === 'none') return ['gate plan: none — no verify.yaml and no test command found; a run would be unverified', ...plan.notes.map((note) => `  note: ${note}`)];
  const origin = (kind: GateOrigin['kind'], name: string): string => {
    if (plan.source !== 'detected') return plan.source === 'inline' ? 'inline' : plan.path;
    return plan.origins.find((o) => o.kind === kind && o.name === name)?.from ?? plan.detectedFrom.join(', ');
  };
  const head = plan.source === 'detected' ? `detected from ${plan.detectedFrom.join(', ')}` : plan.source === 'inline' ? 'inline in the task' : plan.path;
  const { environment, contracts, tests, blackbox } = plan.config;
  const lines = [`gate plan: ${head}`];
  lines.push(environment.setup.length === 0 ? 'setup: none' : 'setup:');
  for (const step of environment.setup) lines.push(`  ${step.name}: ${step.command}    (from ${origin('setup', step.name)})`);
  lines.push(tests.length + blackbox.length === 0 ? 'gates: none besides the contracts' : 'gates:');
  for (const test of tests) lines.push(`  ${test.name}: ${test.command}    (from ${origin('gate', test.name)})`);
  for (const check of blackbox) lines.push(`  ${check.name} (black-box): ${check.command}    (from ${origin('gate', check.name)})`);
  const protectedPaths = [...VERIFY_CONFIG_FILE_NAMES, ...contracts.protectedPaths, ...(plan.source === 'detected' ? plan.detectedFrom : [])];
  lines.push(`protected paths: ${protectedPaths.join(', ')}`);
  if (contracts.requiredFiles.length > 0) lines.push(`required files: ${contracts.requiredFiles.join(', ')}`);
  if (contracts.forbiddenPatterns.length > 0) lines.push(`forbidden files: ${contracts.forbiddenPatterns.join(', ')}`);
  if (plan.source === 'detected') for (const note of plan.notes) lines.push(`  note: ${note}`);
  return lines;
}
