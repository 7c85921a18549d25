/**
 * Publishing the run branch (SPEC 4, 8): after a snapshot commit, the repository the run belongs to (the
 * user's repository, or the cached clone of a remote) gets the commit's new objects and
 * `refs/heads/<branch>`.
 *
 * AgentGate's git directory of the run borrows that repository's objects (`objects/info/alternates`), so
 * what a snapshot adds is exactly the loose objects `git add` and `git commit` wrote into the run's own
 * `objects/`. They are copied over and the branch is moved by one `git update-ref` — one process, where a
 * `git fetch` costs six (`fetch`, a shell, `upload-pack`, `pack-objects`, `unpack-objects`, `rev-list`)
 * for the same few objects. The copy checks what fetch's transfer checks: every object is inflated and
 * hashed before it is put in place, its name must be the hash of its content, its header a known type with
 * the right size, its zlib stream the whole file. An object whose bytes do not hold what its name says
 * stops the publication with nothing moved (AG_ERR_PHASE_SNAPSHOT). Objects are written as git writes
 * them: a temporary file in the object's directory, then a rename, so a reader never sees half an object;
 * the ref moves only after every object is in place. As with `fetch` in git's default configuration
 * (`core.fsync` leaves loose objects out), loose objects are not fsynced.
 *
 * `git fetch` still publishes when the copy would not do what git does:
 * - the run's git directory holds a pack (nothing AgentGate runs writes one, but git may for very large
 *   files), a fanout directory that is not a real directory, or an alternate other than the repository's
 *   object directory; or the workspace record does not name that directory (`Workspace.objectsDir`);
 * - the repository looks shared (`core.sharedRepository`: its `objects` directory is setgid or writable by
 *   group or others): git would set permissions on new directories and files that a plain copy does not;
 * - its layout is not `<git dir>/objects` with a `HEAD` beside it (an object directory linked elsewhere);
 * - the run branch is checked out in one of its worktrees — `fetch` refuses to move it, and so must we.
 *
 * Kept in one file (over 400 lines) on purpose: the copy and the checks it relies on (reading, inflating and
 * hashing a loose object, and the commit-tree read that shares them) must stay the same code, side by side.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, constants, createReadStream, createWriteStream, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflate, inflateSync } from 'node:zlib';
import { AgentGateError } from '../errors.js';
import { canceledError, runGit } from './git.js';
import { objectFormatOf, type ObjectFormat } from './isolated-git.js';
import type { Workspace } from './types.js';

/** How the branch reached the repository. */
export type PublishMethod = 'copied' | 'fetched';

/** Loose objects at most this large (compressed) are read and inflated in one piece; larger ones are streamed. */
const WHOLE_READ_LIMIT = 1024 * 1024;
/** The inflated size a whole read may reach before the object is streamed instead. */
const WHOLE_INFLATE_LIMIT = 16 * 1024 * 1024;
/** The longest the synchronous copy of small objects holds the event loop before it lets it turn. */
const YIELD_EVERY_MS = 8;

/**
 * Brings `sha` (the run branch's new commit in AgentGate's git directory) and `refs/heads/<branch>` into
 * `workspace.repoPath`: by copying the run's new loose objects and one `update-ref`, or by `git fetch` when
 * a copy would not match git (see the module comment).
 *
 * @throws AG_ERR_PHASE_SNAPSHOT (a corrupt object, a failed copy or ref update); the cancellation reason.
 */
export async function publishRunBranch(workspace: Workspace, sha: string, signal: AbortSignal): Promise<PublishMethod> {
  const target = workspace.objectsDir;
  const fanout = target === undefined ? undefined : await copyableFanout(workspace, target);
  if (target === undefined || fanout === undefined) {
    await fetchRunBranch(workspace, signal);
    return 'fetched';
  }
  // Listing and small copies are synchronous calls: a few microseconds each, where a round trip through
  // libuv's thread pool costs tens (measured: 223 new objects of a 20,000-file snapshot took 100–150 ms to
  // list and 50–85 ms to copy that way). One after another: after a failure nothing is still writing. The
  // event loop gets a turn every few milliseconds, so timers, other runs and a cancel are not held up.
  const pending = missingObjects(path.join(workspace.gitDir, 'objects'), fanout, target, objectFormatOf(workspace.baseSha));
  const made = new Set<string>();
  let turn = performance.now();
  const canceled = (): AgentGateError => canceledError(signal, `publish the run branch ${workspace.branch}`);
  for (const object of pending) {
    if (performance.now() - turn > YIELD_EVERY_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      turn = performance.now();
    }
    if (signal.aborted) throw canceled();
    await copyObject(object, target, made);
  }
  if (signal.aborted) throw canceled();
  await runGit({
    cwd: workspace.repoPath,
    args: ['update-ref', '-m', `agentgate: snapshot of run ${workspace.runId}`, `refs/heads/${workspace.branch}`, sha],
    signal,
    failAs: 'AG_ERR_PHASE_SNAPSHOT',
    what: `move the run branch ${workspace.branch} in ${workspace.repoPath}`,
    hardened: true,
  });
  return 'copied';
}

/**
 * Brings the run branch from AgentGate's git directory into the repository (`workspace.repoPath`): a
 * `git fetch` run there, with hooks off and no inherited git environment, that writes exactly one ref,
 * `refs/heads/<branch>` (no FETCH_HEAD, no tags, no submodules, no automatic maintenance). The objects
 * arrive through git's own transfer, which checks them.
 *
 * @throws AG_ERR_PHASE_SNAPSHOT.
 */
export async function fetchRunBranch(workspace: Workspace, signal: AbortSignal): Promise<void> {
  const ref = `refs/heads/${workspace.branch}`;
  await runGit({
    cwd: workspace.repoPath,
    args: ['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', '--no-auto-maintenance', '--no-show-forced-updates', workspace.gitDir, `+${ref}:${ref}`],
    signal,
    failAs: 'AG_ERR_PHASE_SNAPSHOT',
    what: `fetch the run branch ${workspace.branch} into ${workspace.repoPath}`,
    hardened: true,
  });
}

/**
 * The fanout directories (`objects/<2 hex>`) of the run's git directory when a copy into `target` does what
 * git does; undefined when publishing must go through `git fetch` (the cases of the module comment).
 */
async function copyableFanout(workspace: Workspace, target: string): Promise<string[] | undefined> {
  const own = path.join(workspace.gitDir, 'objects');
  // What `git add` wrote is what the copy takes only when the run's objects are real directories below
  // `objects/` and the repository is the only other object store git could find an object in: a fanout
  // directory linked elsewhere, or one more alternate, lets git write or find an object the listing never
  // sees — the branch would name objects the repository lacks. AgentGate writes that alternates file;
  // only an unsandboxed agent could change it or link a directory.
  const [entries, alternates, packs] = await Promise.all([
    readdir(own, { withFileTypes: true }),
    readFile(path.join(own, 'info', 'alternates'), 'utf8').catch(ignoreMissing(undefined)),
    readdir(path.join(own, 'pack')).catch(ignoreMissing([])),
  ]);
  const fanout = entries.filter((entry) => /^[0-9a-f]{2}$/.test(entry.name));
  if (packs.some((name) => name.endsWith('.pack')) || alternates !== `${target}\n` || fanout.some((entry) => !entry.isDirectory())) return undefined;
  const objects = await lstat(target).catch(ignoreMissing(undefined));
  if (objects === undefined || !objects.isDirectory() || (objects.mode & 0o2022) !== 0) return undefined;
  const gitDir = path.dirname(target);
  const head = await lstat(path.join(gitDir, 'HEAD')).catch(ignoreMissing(undefined));
  if (head === undefined || !head.isFile()) return undefined;
  const linked = await readdir(path.join(gitDir, 'worktrees')).catch(ignoreMissing([]));
  const heads = [path.join(gitDir, 'HEAD'), ...linked.map((name) => path.join(gitDir, 'worktrees', name, 'HEAD'))];
  const checkedOut = `ref: refs/heads/${workspace.branch}`;
  const contents = await Promise.all(heads.map((file) => readFile(file, 'utf8').catch(ignoreMissing(''))));
  return contents.some((text) => text.trim() === checkedOut) ? undefined : fanout.map((entry) => entry.name);
}

/** A loose object of the run's git directory that the repository does not have as a loose object yet. */
interface LooseObject {
  id: string;
  file: string;
}

/**
 * The loose objects in the `fanout` directories of `source` (`<2 hex>/<38 hex>`, or `<62 hex>` in a SHA-256
 * repository) that `target` does not hold loose. A name of the other format is nothing git would ever read
 * there (only an agent without a sandbox could have put it), so it is not copied.
 */
function missingObjects(source: string, fanout: readonly string[], target: string, format: ObjectFormat): LooseObject[] {
  const name = format === 'sha1' ? /^[0-9a-f]{38}$/ : /^[0-9a-f]{62}$/;
  return fanout
    .flatMap((dir) =>
      readdirSync(path.join(source, dir))
        .filter((entry) => name.test(entry))
        .map((name): LooseObject => ({ id: `${dir}${name}`, file: path.join(source, dir, name) })),
    )
    .filter((object) => !present(objectPath(target, object.id)));
}

/** Whether anything is at `file` (ENOENT and ENOTDIR: nothing). */
function present(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch (error) {
    return ignoreMissing(false)(error);
  }
}

function objectPath(objectsDir: string, id: string): string {
  return path.join(objectsDir, id.slice(0, 2), id.slice(2));
}

/**
 * Copies one loose object into `target`: read whole and checked in memory when it is small (the bytes that
 * are checked are the bytes written), else streamed to a temporary file and checked there; either way
 * written beside its final place and then renamed into place. Git writes only regular files there: the
 * source is opened without following a symlink and without blocking, and read only if what was opened is a
 * regular file — a symlink or FIFO an unsandboxed agent planted (even after the listing) stops the
 * publication instead of being followed or holding the copy (and the event loop, or a thread of the pool)
 * forever.
 *
 * @throws AG_ERR_PHASE_SNAPSHOT.
 */
async function copyObject(object: LooseObject, target: string, made: Set<string>): Promise<void> {
  const final = objectPath(target, object.id);
  const dir = path.dirname(final);
  const temporary = path.join(dir, `tmp_obj_agentgate_${randomBytes(8).toString('hex')}`);
  try {
    if (!made.has(dir)) mkdirSync(dir, { recursive: true });
    made.add(dir);
    const small = readSmallObject(object);
    if (small instanceof Buffer) {
      writeFileSync(temporary, small, { flag: 'wx', mode: 0o444 });
    } else {
      const source = await open(object.file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(notRegular(object.id));
      try {
        if (!(await source.stat()).isFile()) throw new ObjectCheck(object.id).corrupt('it is not a regular file');
        await pipeline(source.createReadStream({ autoClose: false }), createWriteStream(temporary, { flags: 'wx', mode: 0o444 }));
      } finally {
        await source.close();
      }
      await verifyLooseObject(temporary, object.id, small === 'inflates too large' ? 'stream' : 'whole if small');
    }
    renameSync(temporary, final);
  } catch (error) {
    try {
      rmSync(temporary, { force: true });
    } catch {
      // Nothing was written there (its directory could not be made): the failure below is the one to report.
    }
    if (error instanceof AgentGateError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `Could not copy object ${object.id} into ${target}: ${reason}`, { cause: error });
  }
}

/**
 * The bytes of a loose object of at most {@link WHOLE_READ_LIMIT} bytes that inflates whole, checked (see
 * {@link checkWhole}); for a larger one, which is streamed instead, whether it was too large to read or
 * to inflate whole. Exactly the size `fstat` gave is read: a file that grows meanwhile is refused.
 *
 * @throws AG_ERR_PHASE_SNAPSHOT for one that is not a regular file, changes while it is read, or is not
 *   what its name says.
 */
function readSmallObject(object: LooseObject): Buffer | 'too large to read' | 'inflates too large' {
  let fd: number;
  try {
    fd = openSync(object.file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return notRegular(object.id)(error);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) throw new ObjectCheck(object.id).corrupt('it is not a regular file');
    if (info.size > WHOLE_READ_LIMIT) return 'too large to read';
    const compressed = Buffer.alloc(info.size + 1);
    let read = 0;
    for (let got = -1; got !== 0 && read < compressed.length; read += got) got = readSync(fd, compressed, read, compressed.length - read, read);
    if (read !== info.size) throw new ObjectCheck(object.id).corrupt('it changed while it was read');
    const bytes = compressed.subarray(0, read);
    return checkWhole(bytes, object.id) === undefined ? 'inflates too large' : bytes;
  } finally {
    closeSync(fd);
  }
}

/** A handler for a failed open of an object: O_NOFOLLOW refuses a symlink with ELOOP, which is a corrupt object. */
function notRegular(id: string): (error: unknown) => never {
  return (error: unknown) => {
    throw typeof error === 'object' && error !== null && 'code' in error && error.code === 'ELOOP' ? new ObjectCheck(id).corrupt('it is not a regular file') : error;
  };
}

/**
 * Checks a whole loose object read into memory as {@link verifyLooseObject} checks a file: its inflated
 * content when it holds the object `id`; undefined when it inflates to more than a whole inflate may hold
 * (stream it instead).
 *
 * @throws AG_ERR_PHASE_SNAPSHOT naming the object and what is wrong with it.
 */
function checkWhole(compressed: Buffer, id: string): Buffer | undefined {
  const check = new ObjectCheck(id);
  let inflated: { buffer: Buffer; consumed: number };
  try {
    inflated = inflateWhole(compressed);
  } catch (error) {
    if (isTooLarge(error)) return undefined;
    throw check.corrupt(`its zlib stream is broken (${error instanceof Error ? error.message : String(error)})`);
  }
  check.push(inflated.buffer);
  if (inflated.consumed !== compressed.length) throw check.corrupt(`${compressed.length - inflated.consumed} bytes follow its zlib stream`);
  check.finish();
  return inflated.buffer;
}

/**
 * Checks that the loose object file `file` holds the object `id`: one zlib stream that is the whole file,
 * inflating to `<blob|tree|commit|tag> <size>\0` and exactly `size` bytes, whose SHA-1 (40-hex ids) or
 * SHA-256 (64-hex ids) is `id`. A small file is read and inflated whole unless `how` is `'stream'` (the
 * caller already saw it inflate past what a whole read may hold).
 *
 * @throws AG_ERR_PHASE_SNAPSHOT naming the object and what is wrong with it.
 */
export async function verifyLooseObject(file: string, id: string, how: 'whole if small' | 'stream' = 'whole if small'): Promise<void> {
  const { size } = await stat(file);
  if (how === 'whole if small' && size <= WHOLE_READ_LIMIT && checkWhole(await readFile(file), id) !== undefined) return;
  const check = new ObjectCheck(id);
  const inflater = createInflate();
  try {
    await pipeline(
      createReadStream(file),
      inflater,
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          try {
            check.push(chunk);
            done();
          } catch (error) {
            done(error instanceof Error ? error : new Error(String(error)));
          }
        },
      }),
    );
  } catch (error) {
    if (error instanceof AgentGateError) throw error;
    throw check.corrupt(`its zlib stream is broken (${error instanceof Error ? error.message : String(error)})`);
  }
  const consumed = inflater.bytesWritten;
  if (consumed !== size) throw check.corrupt(`${size - consumed} bytes follow its zlib stream`);
  check.finish();
}

/** A loose commit object is read whole only up to this size (compressed); a larger one is left to git. */
const COMMIT_READ_LIMIT = 64 * 1024;

/**
 * The tree of the commit `id`, read from its loose object in `objectsDir` (where `git commit` just wrote it)
 * and checked as a copy is: a regular file opened without following a symlink, one zlib stream that is the
 * whole file, a `commit` header with the right size, content that hashes to `id`. Undefined — the caller
 * asks git instead — when the object is not there loose, not a commit, or fails any check.
 */
export async function readLooseCommitTree(objectsDir: string, id: string): Promise<string | undefined> {
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(id)) return undefined;
  let compressed: Buffer;
  try {
    const file = await open(objectPath(objectsDir, id), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const info = await file.stat();
      if (!info.isFile() || info.size > COMMIT_READ_LIMIT) return undefined;
      compressed = await file.readFile();
    } finally {
      await file.close();
    }
  } catch {
    return undefined; // missing, a symlink, unreadable: git answers instead
  }
  try {
    const buffer = checkWhole(compressed, id);
    const match = buffer === undefined ? null : /^commit [0-9]+\0tree ([0-9a-f]{40}|[0-9a-f]{64})\n/.exec(buffer.subarray(0, 200).toString('latin1'));
    return match?.[1]?.length === id.length ? match[1] : undefined;
  } catch {
    return undefined; // not what its name says: git answers instead (and publishing refuses the object)
  }
}

/**
 * Inflates a whole loose object read into memory (at most {@link WHOLE_INFLATE_LIMIT} bytes out), with how many
 * compressed bytes its zlib stream took: fewer than the file holds means bytes follow the stream.
 */
function inflateWhole(compressed: Buffer): { buffer: Buffer; consumed: number } {
  // `info` makes zlib return its engine too, whose `bytesWritten` is the compressed bytes it consumed.
  const { buffer, engine } = inflateSync(compressed, { info: true, maxOutputLength: WHOLE_INFLATE_LIMIT }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
  return { buffer, consumed: engine.bytesWritten };
}

function isTooLarge(error: unknown): boolean {
  return error instanceof RangeError || (typeof error === 'object' && error !== null && 'code' in error && error.code === 'ERR_BUFFER_TOO_LARGE');
}

/** Parses and hashes an inflated loose object as it arrives. */
class ObjectCheck {
  private readonly hash: Hash;
  private header: Buffer | undefined = Buffer.alloc(0);
  private expected = 0;
  private received = 0;

  constructor(private readonly id: string) {
    this.hash = createHash(id.length === 40 ? 'sha1' : 'sha256');
  }

  push(chunk: Buffer): void {
    this.hash.update(chunk);
    if (this.header === undefined) {
      this.received += chunk.length;
      return;
    }
    const joined = Buffer.concat([this.header, chunk]);
    const end = joined.indexOf(0);
    if (end < 0) {
      if (joined.length > 32) throw this.corrupt('its header is not a git object header');
      this.header = joined;
      return;
    }
    const match = /^(?:blob|tree|commit|tag) (0|[1-9][0-9]{0,15})$/.exec(joined.subarray(0, end).toString('latin1'));
    if (match === null) throw this.corrupt('its header is not a git object header');
    this.expected = Number(match[1]);
    this.header = undefined;
    this.received = joined.length - end - 1;
  }

  finish(): void {
    if (this.header !== undefined) throw this.corrupt('it ends inside its header');
    if (this.received !== this.expected) throw this.corrupt(`it holds ${this.received} bytes where its header says ${this.expected}`);
    const actual = this.hash.digest('hex');
    if (actual !== this.id) throw this.corrupt(`its content hashes to ${actual}`);
  }

  corrupt(why: string): AgentGateError {
    return new AgentGateError('AG_ERR_PHASE_SNAPSHOT', `The run's git directory holds a corrupt object ${this.id}: ${why}; the run branch was not published`, {
      retryable: false,
      details: { object: this.id },
    });
  }
}

/** A handler for a promise's rejection that turns ENOENT into `fallback` and rethrows anything else. */
function ignoreMissing<T>(fallback: T): (error: unknown) => T {
  return (error: unknown) => {
    if (typeof error === 'object' && error !== null && 'code' in error && (error.code === 'ENOENT' || error.code === 'ENOTDIR')) return fallback;
    throw error;
  };
}
