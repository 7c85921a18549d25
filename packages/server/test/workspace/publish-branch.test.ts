/**
 * Publishing the run branch into the user's repository (`publish-branch.ts`): the snapshot's new loose
 * objects are verified and copied, then one `update-ref` moves the branch; `git fetch` takes over where a
 * copy would not do what git does. Real repositories, real git; corrupt objects are planted in AgentGate's
 * git directory of the run as an agent without a sandbox could.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, copyFile, lstat, mkdir, readdir, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { publishRunBranch, readLooseCommitTree, verifyLooseObject } from '../../src/workspace/publish-branch.js';
import type { Workspace } from '../../src/workspace/types.js';
import { TempDirs, git, initRepo, liveSignal, snapshotOf } from './helpers.js';

const temp = new TempDirs();

/** A commit in AgentGate's git directory of the run holding the workspace's files, as a snapshot makes one. */
function commitInRunGitDir(ws: Workspace, message: string): string {
  const own = ['--git-dir', ws.gitDir, '--work-tree', ws.path];
  git(ws.path, ...own, 'add', '--all');
  git(ws.path, ...own, 'commit', '--quiet', '--allow-empty', '-m', message);
  return git(ws.path, ...own, 'rev-parse', 'HEAD');
}

/** Writes a loose object with exactly these inflated bytes (header included) into `objectsDir`; returns its id. */
async function plantObject(objectsDir: string, inflated: Buffer, options: { id?: string; trailing?: Buffer } = {}): Promise<string> {
  const id = options.id ?? createHash('sha1').update(inflated).digest('hex');
  await mkdir(path.join(objectsDir, id.slice(0, 2)), { recursive: true });
  await writeFile(path.join(objectsDir, id.slice(0, 2), id.slice(2)), Buffer.concat([deflateSync(inflated), options.trailing ?? Buffer.alloc(0)]));
  return id;
}

function blob(content: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`blob ${content.length}\0`), content]);
}

async function expectRejected(promise: Promise<unknown>, message: RegExp): Promise<AgentGateError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AgentGateError);
  const classified = error as AgentGateError;
  expect(classified.code).toBe('AG_ERR_PHASE_SNAPSHOT');
  expect(classified.message).toMatch(message);
  return classified;
}

/** Leftover temporary files of a copy in the repository's object directory. */
async function temporaries(objectsDir: string): Promise<string[]> {
  const fanout = (await readdir(objectsDir)).filter((name) => /^[0-9a-f]{2}$/.test(name));
  const names = await Promise.all(fanout.map(async (dir) => (await readdir(path.join(objectsDir, dir))).filter((name) => name.startsWith('tmp_obj_'))));
  return names.flat();
}

describe('publishing the run branch', () => {
  let repo: string;
  let ws: Workspace;
  let objectsDir: string;

  beforeEach(async () => {
    const root = await realpath(await temp.make());
    repo = await initRepo(path.join(root, 'repo'));
    ws = await new WorkspaceManager({ home: path.join(root, 'home'), pool: false }).acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
    objectsDir = path.join(repo, '.git', 'objects');
  });

  afterEach(() => temp.cleanup());

  it('copies the snapshot’s new objects and moves the branch with update-ref: the repository is whole (fsck)', async () => {
    expect(ws.objectsDir).toBe(objectsDir);
    await writeFile(path.join(ws.path, 'src', 'app.txt'), 'changed\n');
    await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
    const sha = commitInRunGitDir(ws, 'one');
    await expect(publishRunBranch(ws, sha, liveSignal())).resolves.toBe('copied');
    expect(git(repo, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(sha);
    expect(git(repo, 'show', 'agentgate/run-1:new.txt')).toBe('new');
    git(repo, 'fsck', '--strict', '--no-dangling');
    // The reflog says who moved the branch; the user's branch and work tree are untouched.
    expect(git(repo, 'reflog', 'show', '--format=%gs', 'agentgate/run-1')).toBe('agentgate: snapshot of run run-1');
    expect(git(repo, 'symbolic-ref', 'HEAD')).toBe('refs/heads/main');
    expect(git(repo, 'status', '--porcelain')).toBe('');
    expect(await temporaries(objectsDir)).toEqual([]);

    // The next snapshot copies only what is new; objects already there are not rewritten.
    const commitFile = path.join(objectsDir, sha.slice(0, 2), sha.slice(2));
    const before = await lstat(commitFile);
    await writeFile(path.join(ws.path, 'new.txt'), 'newer\n');
    const second = commitInRunGitDir(ws, 'two');
    await expect(publishRunBranch(ws, second, liveSignal())).resolves.toBe('copied');
    expect(git(repo, 'rev-parse', 'agentgate/run-1~1')).toBe(sha);
    expect((await lstat(commitFile)).ino).toBe(before.ino);
    expect((await stat(commitFile)).mode & 0o777).toBe(0o444);
    git(repo, 'fsck', '--strict', '--no-dangling');
  });

  it('an object named in the other object format is nothing git would read there: it is not copied', async () => {
    const content = blob(Buffer.from('planted by an agent without a sandbox\n'));
    const id = createHash('sha256').update(content).digest('hex');
    await plantObject(path.join(ws.gitDir, 'objects'), content, { id });
    await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
    const sha = commitInRunGitDir(ws, 'one');
    await expect(publishRunBranch(ws, sha, liveSignal())).resolves.toBe('copied');
    expect(git(repo, 'show', 'agentgate/run-1:new.txt')).toBe('new');
    await expect(lstat(path.join(objectsDir, id.slice(0, 2), id.slice(2)))).rejects.toMatchObject({ code: 'ENOENT' });
    git(repo, 'fsck', '--strict', '--no-dangling');
  });

  it('a snapshot through the snapshotter reaches the repository the same way', async () => {
    await writeFile(path.join(ws.path, 'src', 'app.txt'), 'changed\n');
    const sha = await snapshotOf(ws);
    expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(sha);
    expect(git(repo, 'reflog', 'show', '--format=%gs', 'agentgate/run-1')).toBe('agentgate: snapshot of run run-1');
  });

  it('the tree of a snapshot commit is read from its loose object only when the object is what its name says', async () => {
    await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
    const sha = commitInRunGitDir(ws, 'one');
    const own = path.join(ws.gitDir, 'objects');
    const tree = git(ws.path, '--git-dir', ws.gitDir, 'rev-parse', `${sha}^{tree}`);
    await expect(readLooseCommitTree(own, sha)).resolves.toBe(tree);
    // Not a commit (the tree itself), not there, not an object id: git is asked instead.
    await expect(readLooseCommitTree(own, tree)).resolves.toBeUndefined();
    await expect(readLooseCommitTree(own, createHash('sha1').update('nothing').digest('hex'))).resolves.toBeUndefined();
    await expect(readLooseCommitTree(own, '../../HEAD')).resolves.toBeUndefined();
    // A commit object whose bytes were replaced (an unsandboxed agent naming another tree) fails the hash.
    const file = path.join(own, sha.slice(0, 2), sha.slice(2));
    const genuine = path.join(path.dirname(ws.gitDir), 'genuine-commit');
    await copyFile(file, genuine);
    const forgedBody = Buffer.from(`tree ${'1'.repeat(40)}\nauthor a <a> 0 +0000\ncommitter a <a> 0 +0000\n\nforged\n`);
    await chmod(file, 0o644);
    await writeFile(file, deflateSync(Buffer.concat([Buffer.from(`commit ${forgedBody.length}\0`), forgedBody])));
    await expect(readLooseCommitTree(own, sha)).resolves.toBeUndefined();
    // A symlink in its place is not followed, even to the genuine object.
    await rm(file);
    await symlink(genuine, file);
    await expect(readLooseCommitTree(own, sha)).resolves.toBeUndefined();
  });

  it('an object whose content is not what its name says stops the publication: nothing is moved or left', async () => {
    await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
    const sha = commitInRunGitDir(ws, 'one');
    const forged = await plantObject(path.join(ws.gitDir, 'objects'), blob(Buffer.from('evil\n')), { id: createHash('sha1').update('something else').digest('hex') });
    const error = await expectRejected(publishRunBranch(ws, sha, liveSignal()), new RegExp(`corrupt object ${forged}: its content hashes to [0-9a-f]{40}; the run branch was not published`));
    expect(error.details).toMatchObject({ object: forged });
    expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
    await expect(lstat(path.join(objectsDir, forged.slice(0, 2), forged.slice(2)))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await temporaries(objectsDir)).toEqual([]);
  });

  it('a cancel during a long copy is seen before the branch moves: the event loop gets its turns', async () => {
    const own = path.join(ws.gitDir, 'objects');
    const sha = commitInRunGitDir(ws, 'one');
    for (let i = 0; i < 2000; i += 1) await plantObject(own, blob(Buffer.from(`object ${i}\n`)));
    const controller = new AbortController();
    // Copying 2,000 objects takes far longer than this timer; it can only fire if the copy lets it.
    setTimeout(() => controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'canceled by the test')), 5);
    const error = await publishRunBranch(ws, sha, controller.signal).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toMatchObject({ code: 'AG_ERR_RUN_CANCELED' });
    expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
    expect(await temporaries(objectsDir)).toEqual([]);
  });

  it('a file where the repository needs a fanout directory fails the copy as a snapshot error', async () => {
    const own = path.join(ws.gitDir, 'objects');
    const sha = commitInRunGitDir(ws, 'one');
    // An object whose fanout directory the repository does not have yet.
    const taken = new Set(await readdir(objectsDir));
    let content = Buffer.alloc(0);
    for (let i = 0; content.length === 0 || taken.has(createHash('sha1').update(blob(content)).digest('hex').slice(0, 2)); i += 1) content = Buffer.from(`free ${i}\n`);
    const id = await plantObject(own, blob(content));
    await writeFile(path.join(objectsDir, id.slice(0, 2)), 'not a directory');
    // The first object of that fanout directory to be copied fails (the run's own commit may share it).
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), new RegExp(`Could not copy object ${id.slice(0, 2)}[0-9a-f]{38} into`));
    expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
  });

  it('a header that lies about the size, an unknown type, or bytes after the zlib stream are refused', async () => {
    const own = path.join(ws.gitDir, 'objects');
    const sha = commitInRunGitDir(ws, 'one');
    const short = await plantObject(own, Buffer.from('blob 5\0hello!'));
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), new RegExp(`corrupt object ${short}: it holds 6 bytes where its header says 5`));
    await rm(path.join(own, short.slice(0, 2), short.slice(2)));

    const unknown = await plantObject(own, Buffer.from('bolb 3\0abc'));
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), new RegExp(`corrupt object ${unknown}: its header is not a git object header`));
    await rm(path.join(own, unknown.slice(0, 2), unknown.slice(2)));

    const trailing = await plantObject(own, blob(Buffer.from('abc')), { trailing: Buffer.from('garbage') });
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), new RegExp(`corrupt object ${trailing}: 7 bytes follow its zlib stream`));
    await rm(path.join(own, trailing.slice(0, 2), trailing.slice(2)));

    await mkdir(path.join(own, 'ab'), { recursive: true });
    await writeFile(path.join(own, 'ab', 'c'.repeat(38)), 'not zlib at all');
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), /corrupt object abc{38}: its zlib stream is broken/);
    await rm(path.join(own, 'ab', 'c'.repeat(38)));

    // A symlink or a FIFO under an object's name is never followed or read (a copy would block on a FIFO).
    await symlink('/dev/zero', path.join(own, 'ab', 'd'.repeat(38)));
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), /corrupt object abd{38}: it is not a regular file/);
    await rm(path.join(own, 'ab', 'd'.repeat(38)));
    execFileSync('mkfifo', [path.join(own, 'ab', 'e'.repeat(38))]);
    await expectRejected(publishRunBranch(ws, sha, liveSignal()), /corrupt object abe{38}: it is not a regular file/);
    expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
  });

  it('large objects are streamed: 1.5 MB that do not compress, and 20 MB of zeros that inflate past the whole-read limit', async () => {
    const own = path.join(ws.gitDir, 'objects');
    const random = Buffer.from(Array.from({ length: 1_500_000 }, (_, i) => (i * 2654435761) >>> 24));
    const zeros = Buffer.alloc(20 * 1024 * 1024);
    const ids = [await plantObject(own, blob(random)), await plantObject(own, blob(zeros))];
    for (const id of ids) await expect(verifyLooseObject(path.join(own, id.slice(0, 2), id.slice(2)), id)).resolves.toBeUndefined();
    const sha = commitInRunGitDir(ws, 'one');
    await expect(publishRunBranch(ws, sha, liveSignal())).resolves.toBe('copied');
    expect(git(repo, 'cat-file', '-s', ids[0] ?? '')).toBe(String(random.length));
    expect(git(repo, 'cat-file', '-s', ids[1] ?? '')).toBe(String(zeros.length));
    // A stream whose content hash is wrong is refused just the same.
    const forged = await plantObject(own, blob(zeros.subarray(1)), { id: createHash('sha1').update('x').digest('hex') });
    await expectRejected(verifyLooseObject(path.join(own, forged.slice(0, 2), forged.slice(2)), forged), /its content hashes to/);
    const trailing = await plantObject(own, blob(random.subarray(1)), { trailing: Buffer.from('garbage') });
    await expectRejected(verifyLooseObject(path.join(own, trailing.slice(0, 2), trailing.slice(2)), trailing), /7 bytes follow its zlib stream/);
  });

  describe('git fetch publishes instead', () => {
    /** Snapshots `new.txt` holding `content`: published by fetch, and the repository's branch is whole. */
    async function expectFetchedWhole(content: string): Promise<void> {
      await writeFile(path.join(ws.path, 'new.txt'), content);
      const sha = commitInRunGitDir(ws, 'one');
      await expect(publishRunBranch(ws, sha, liveSignal())).resolves.toBe('fetched');
      expect(git(repo, 'show', 'agentgate/run-1:new.txt')).toBe(content.trim());
      git(repo, 'fsck', '--no-dangling');
    }

    it('when the run’s git directory holds a pack', async () => {
      await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
      const sha = commitInRunGitDir(ws, 'one');
      git(ws.path, '--git-dir', ws.gitDir, 'repack', '-q', '-d');
      expect((await readdir(path.join(ws.gitDir, 'objects', 'pack'))).some((name) => name.endsWith('.pack'))).toBe(true);
      await expect(publishRunBranch(ws, sha, liveSignal())).resolves.toBe('fetched');
      expect(git(repo, 'show', 'agentgate/run-1:new.txt')).toBe('new');
    });

    it('when a fanout directory of the run’s objects is a symlink: git wrote the blob where the listing never looks', async () => {
      const content = 'only in the linked directory\n';
      const blobId = execFileSync('git', ['hash-object', '--stdin'], { input: content, encoding: 'utf8' }).trim();
      const elsewhere = path.join(path.dirname(repo), 'elsewhere');
      await mkdir(elsewhere);
      await symlink(elsewhere, path.join(ws.gitDir, 'objects', blobId.slice(0, 2)));
      await expectFetchedWhole(content);
    });

    it('when the run’s git directory has another alternate: git found the blob there and wrote nothing', async () => {
      const content = 'only in another repository\n';
      const other = await initRepo(path.join(path.dirname(repo), 'other'));
      execFileSync('git', ['hash-object', '-w', '--stdin'], { cwd: other, input: content });
      await appendFile(path.join(ws.gitDir, 'objects', 'info', 'alternates'), `${path.join(other, '.git', 'objects')}\n`);
      await expectFetchedWhole(content);
    });

    it('when the repository is shared (its object directory is setgid and group-writable)', async () => {
      git(repo, 'config', 'core.sharedRepository', 'group');
      await chmod(objectsDir, 0o2775);
      await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
      const sha = commitInRunGitDir(ws, 'one');
      await expect(publishRunBranch(ws, sha, liveSignal())).resolves.toBe('fetched');
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(sha);
    });

    it('when the workspace record does not name the object directory', async () => {
      const sha = commitInRunGitDir(ws, 'one');
      const { objectsDir: _, ...older } = ws;
      await expect(publishRunBranch(older, sha, liveSignal())).resolves.toBe('fetched');
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(sha);
    });

    it('when the run branch is checked out in a worktree of the repository — and fetch refuses to move it', async () => {
      const first = commitInRunGitDir(ws, 'one');
      await publishRunBranch(ws, first, liveSignal());
      git(repo, 'worktree', 'add', '--quiet', path.join(path.dirname(repo), 'checked-out'), 'agentgate/run-1');
      await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
      const second = commitInRunGitDir(ws, 'two');
      await expectRejected(publishRunBranch(ws, second, liveSignal()), /fetch the run branch agentgate\/run-1/);
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(first);
    });
  });

  it('a canceled publication moves nothing', async () => {
    await writeFile(path.join(ws.path, 'new.txt'), 'new\n');
    const sha = commitInRunGitDir(ws, 'one');
    const controller = new AbortController();
    controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'canceled by the test'));
    await expect(publishRunBranch(ws, sha, controller.signal)).rejects.toMatchObject({ code: 'AG_ERR_RUN_CANCELED' });
    expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
  });
});
