/**
 * The few read-only git queries the gates need (reading the gate plan from the base commit, listing
 * changed and untracked files). They run through {@link runProcess} rather than simple-git so they share
 * its guarantees: an AbortSignal, a timeout and no orphaned child.
 *
 * Every query runs with the hardened environment of `workspace/isolated-git.ts` (no inherited `GIT_*`,
 * no system or global config, hooks, attributes file and fsmonitor off), and — given `isolated` — against
 * AgentGate's own git directory and index of the run rather than anything in the workspace's `.git`.
 */
import { abortError } from '../util/abort.js';
import { AgentGateError, reportsDiskFull } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { runProcess } from '../util/process.js';
import { gateEnv } from '../util/secrets.js';
import { isolatedConfigArgs, isolatedGitEnv, type IsolatedGit } from '../workspace/isolated-git.js';

/** A git query that takes longer than this on a local worktree is stuck (a lock, a hung filter). */
const GIT_TIMEOUT_MS = 60_000;

/** Listings of a 20,000-file repository fit comfortably; anything larger is cut rather than buffered. */
const GIT_OUTPUT_BYTES = 16 * 1024 * 1024;

export interface GitQueryOptions {
  cwd: string;
  signal: AbortSignal;
  clock?: Clock;
  /** Extra environment for this query. */
  env?: Record<string, string>;
  /** Query AgentGate's own git state of the run (git directory, index, work tree) instead of `cwd`'s repository. */
  isolated?: IsolatedGit;
  /** Written to git's stdin. */
  stdin?: string;
  /** Exit codes that mean success for this query (default: only 0; `check-ignore` exits 1 for "none"). */
  okExitCodes?: readonly number[];
  /** Return stdout byte for byte, one latin1 character per byte (for binary output such as `cat-file --batch`). */
  binary?: boolean;
}

/**
 * Runs `git <args>` in `cwd` and returns stdout, or throws a classified error: `AG_ERR_RUN_CANCELED` when
 * `signal` aborted it, `AG_ERR_PHASE_VERIFY` for anything else (the gates cannot be evaluated).
 *
 * `GIT_OPTIONAL_LOCKS=0` keeps the queries from refreshing the index, so they never race the snapshot
 * phase's own git commands for `index.lock`.
 */
export async function gitQuery(args: readonly string[], options: GitQueryOptions): Promise<string> {
  // Replace refs, an fsmonitor, hooks, attributes and config are state the agent can write; the gates trust none.
  const env = { ...isolatedGitEnv(gateEnv(process.env), options.isolated), GIT_OPTIONAL_LOCKS: '0', LC_ALL: 'C', ...options.env };
  const result = await runProcess({
    command: 'git',
    args: [...isolatedConfigArgs(), ...args],
    cwd: options.isolated?.workTree ?? options.cwd,
    env,
    signal: options.signal,
    timeoutMs: GIT_TIMEOUT_MS,
    tailBytes: GIT_OUTPUT_BYTES,
    ...(options.binary === true && { stdoutEncoding: 'latin1' as const }),
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  const what = `git ${args.join(' ')}`;
  switch (result.outcome) {
    case 'exited':
      if (result.exitCode !== null && (options.okExitCodes ?? [0]).includes(result.exitCode)) {
        if (result.stdout.length >= GIT_OUTPUT_BYTES) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${what} produced more output than the gates can inspect`);
        return result.stdout;
      }
      throw new AgentGateError(reportsDiskFull(result.stderr) ? 'AG_ERR_DISK_FULL' : 'AG_ERR_PHASE_VERIFY', `${what} failed with exit code ${String(result.exitCode)}: ${result.stderr.trim().slice(-500)}`, {
        details: { args: [...args], exitCode: result.exitCode },
      });
    case 'aborted':
      throw abortError(options.signal, what);
    case 'timeout':
    case 'idle_timeout':
      throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${what} timed out after ${GIT_TIMEOUT_MS / 1000}s`);
    case 'spawn_error':
      throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${what} could not start: ${result.error?.message ?? 'unknown error'}`, { cause: result.error });
    default: {
      const unreachable: never = result.outcome;
      throw new AgentGateError('AG_ERR_INTERNAL', `unknown process outcome ${String(unreachable)}`);
    }
  }
}

/** Splits NUL-separated git output (`-z`) into its non-empty entries. */
export function splitNul(text: string): string[] {
  return text.split('\0').filter((entry) => entry.length > 0);
}

/** One entry of `git ls-tree`: mode, object type and path. */
export interface TreeEntry {
  mode: string;
  type: string;
  path: string;
}

/** Parses `git ls-tree -z` output (`<mode> <type> <object>\t<path>` entries). */
export function parseLsTree(stdout: string): TreeEntry[] {
  return splitNul(stdout).flatMap((entry) => {
    const tab = entry.indexOf('\t');
    const [mode, type] = entry.slice(0, tab).split(' ');
    return tab === -1 || mode === undefined || type === undefined ? [] : [{ mode, type, path: entry.slice(tab + 1) }];
  });
}

/**
 * Every regular file (and symlink) of `sha`, recursively, as repository-relative paths. Used to read the
 * gate plan and detect commands from the run's base commit rather than from the agent's working tree.
 */
export async function listCommitFiles(sha: string, options: GitQueryOptions): Promise<TreeEntry[]> {
  return parseLsTree(await gitQuery(['ls-tree', '-r', '-z', '--full-tree', sha], options)).filter((e) => e.type === 'blob');
}

/** The content of `path` at `sha` (`git cat-file blob`, so no textconv or filters run). */
export async function readCommitFile(sha: string, filePath: string, options: GitQueryOptions): Promise<string> {
  return gitQuery(['cat-file', 'blob', `${sha}:${filePath}`], options);
}

/** What a path of a commit is: a regular file with its text, or another kind of entry. */
export type CommitPath = { kind: 'file'; text: string } | { kind: 'symlink' } | { kind: 'tree' } | { kind: 'commit' };

/** One answer of `git cat-file --batch`: the object, or undefined for a name that resolves to none. */
interface BatchObject {
  oid: string;
  type: string;
  content: Buffer;
}

/**
 * The objects named by `names` (`<rev>`, `<rev>:<path>`, `<rev>^{tree}`), in order, from one
 * `git cat-file --batch` (raw content: no textconv, filters or conversions); undefined for a name that
 * resolves to nothing.
 *
 * @throws AgentGateError `AG_ERR_PHASE_VERIFY` for a name git calls ambiguous or output it cannot have written.
 */
async function readObjects(names: readonly string[], options: GitQueryOptions): Promise<Array<BatchObject | undefined>> {
  // One name per line: a line break in a name would make it two requests.
  if (names.some((name) => /[\n\r]/.test(name))) throw new AgentGateError('AG_ERR_PHASE_VERIFY', 'an object name for git cat-file contains a line break');
  const out = Buffer.from(await gitQuery(['cat-file', '--batch'], { ...options, binary: true, stdin: names.map((name) => `${name}\n`).join('') }), 'latin1');
  const malformed = (): AgentGateError => new AgentGateError('AG_ERR_PHASE_VERIFY', 'git cat-file --batch printed output that does not match its requests');
  const objects: Array<BatchObject | undefined> = [];
  let at = 0;
  for (const name of names) {
    const end = out.indexOf(0x0a, at);
    if (end === -1) throw malformed();
    const header = out.toString('latin1', at, end);
    at = end + 1;
    if (header === `${name} missing`) {
      objects.push(undefined);
      continue;
    }
    if (header === `${name} ambiguous`) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `${name} is ambiguous in this repository`);
    const match = /^([0-9a-f]{40}|[0-9a-f]{64}) ([a-z]+) (\d+)$/.exec(header);
    const size = Number(match?.[3]);
    if (match === null || !Number.isSafeInteger(size) || at + size + 1 > out.length || out[at + size] !== 0x0a) throw malformed();
    objects.push({ oid: match[1] ?? '', type: match[2] ?? '', content: out.subarray(at, at + size) });
    at += size + 1;
  }
  if (at !== out.length) throw malformed();
  return objects;
}

/** The entries of a raw tree object (`<octal mode> <name>\0<binary object id>`…), by name. */
function parseTree(content: Buffer, idBytes: number): Map<string, { mode: number; oid: string }> {
  const entries = new Map<string, { mode: number; oid: string }>();
  let at = 0;
  while (at < content.length) {
    const space = content.indexOf(0x20, at);
    const nul = space === -1 ? -1 : content.indexOf(0x00, space + 1);
    if (nul === -1 || nul + 1 + idBytes > content.length) throw new AgentGateError('AG_ERR_PHASE_VERIFY', 'git printed a tree object AgentGate cannot parse');
    // Names are compared with ASCII paths: latin1 keeps every byte, so only the same bytes compare equal.
    entries.set(content.toString('latin1', space + 1, nul), { mode: Number.parseInt(content.toString('latin1', at, space), 8), oid: content.toString('hex', nul + 1, nul + 1 + idBytes) });
    at = nul + 1 + idBytes;
  }
  return entries;
}

/** The kind of a tree entry from its mode, as `git ls-tree` reports it. */
function entryKind(mode: number): Exclude<CommitPath['kind'], 'file'> | 'blob' {
  switch (mode & 0o170000) {
    case 0o040000:
      return 'tree';
    case 0o120000:
      return 'symlink';
    case 0o160000:
      return 'commit';
    default:
      return 'blob';
  }
}

/**
 * A few paths of commit `sha` — what each one is and, for a regular file, its content (UTF-8) — in one
 * git process (`cat-file --batch` fed the root tree, every directory on the way and each path) instead of
 * an `ls-tree` and a `cat-file` per file. Entries are judged by their mode in their parent tree, as
 * `ls-tree` would: a symlink is reported as one, never followed, and a submodule (gitlink) is a `commit`.
 * Paths that do not exist (or lie below something that is not a directory) are absent from the result.
 *
 * @throws AgentGateError `AG_ERR_PHASE_VERIFY` when `sha` names no commit or tree here.
 */
export async function readCommitPaths(sha: string, paths: readonly string[], options: GitQueryOptions): Promise<Map<string, CommitPath>> {
  const dirs = [...new Set(paths.flatMap((p) => p.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))))];
  const [root, ...rest] = await readObjects([`${sha}^{tree}`, ...dirs.map((dir) => `${sha}:${dir}`), ...paths.map((p) => `${sha}:${p}`)], options);
  if (root?.type !== 'tree') throw new AgentGateError('AG_ERR_PHASE_VERIFY', `cannot read the tree of commit ${sha}: it is not in this repository`);
  const idBytes = root.oid.length / 2;
  const objects = new Map<string, BatchObject | undefined>([...dirs, ...paths].map((name, i) => [name, rest[i]]));
  // A tree is only used when its parent lists it under that name with that id: the answers must agree.
  const trees = new Map<string, Map<string, { mode: number; oid: string }>>([['', parseTree(root.content, idBytes)]]);
  const entryOf = (p: string): { mode: number; oid: string } | undefined => {
    const slash = p.lastIndexOf('/');
    const parent = slash === -1 ? '' : p.slice(0, slash);
    if (!trees.has(parent)) {
      const parentEntry = entryOf(parent);
      const object = objects.get(parent);
      if (parentEntry === undefined || entryKind(parentEntry.mode) !== 'tree') return undefined;
      if (object?.type !== 'tree' || object.oid !== parentEntry.oid) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `git gave two different answers for ${sha}:${parent}`);
      trees.set(parent, parseTree(object.content, idBytes));
    }
    return trees.get(parent)?.get(slash === -1 ? p : p.slice(slash + 1));
  };
  const found = new Map<string, CommitPath>();
  for (const p of paths) {
    const entry = entryOf(p);
    if (entry === undefined) continue;
    const kind = entryKind(entry.mode);
    if (kind !== 'blob') {
      found.set(p, { kind });
      continue;
    }
    const object = objects.get(p);
    if (object?.type !== 'blob' || object.oid !== entry.oid) throw new AgentGateError('AG_ERR_PHASE_VERIFY', `git gave two different answers for ${sha}:${p}`);
    found.set(p, { kind: 'file', text: object.content.toString('utf8') });
  }
  return found;
}
