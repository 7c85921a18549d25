import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, realpath, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { changesOf, composeFromBase, parseDiffOutput, parseNumstat } from '../../src/workspace/diff-output.js';
import { Snapshotter, type SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import type { SnapshotResult, TreeChange, Workspace } from '../../src/workspace/types.js';
import { TempDirs, git, initRepo, liveSignal } from './helpers.js';

const temp = new TempDirs();

function expectOk(outcome: SnapshotOutcome): SnapshotResult {
  if (!outcome.ok) throw new Error(`expected a snapshot, got ${outcome.error.code}: ${outcome.error.message}`);
  return outcome.snapshot;
}

/** What `git diff-tree -r --name-status --no-renames` says changed between two commits (tamper detection's own query). */
function diffTree(repo: string, from: string, to: string): TreeChange[] {
  const fields = execFileSync('git', ['diff-tree', '-r', '-z', '--name-status', '--no-renames', from, to, '--'], { cwd: repo, encoding: 'utf8' }).split('\0').slice(0, -1);
  const changes: TreeChange[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const status = fields[i] ?? '';
    changes.push({ path: fields[i + 1] ?? '', change: status.startsWith('A') ? 'added' : status.startsWith('D') ? 'deleted' : 'modified' });
  }
  return changes;
}

function expectFailure(outcome: SnapshotOutcome): AgentGateError {
  if (outcome.ok) throw new Error('expected the snapshot to fail');
  expect(outcome.error).toBeInstanceOf(AgentGateError);
  return outcome.error;
}

describe('Snapshotter', () => {
  let repo: string;
  let artifacts: string;
  let ws: Workspace;
  const snapshotter = new Snapshotter();
  const snap = (iteration: number, extra: { previousSha?: string; signal?: AbortSignal } = {}): Promise<SnapshotOutcome> =>
    snapshotter.snapshot({ workspace: ws, iteration, artifactsDir: artifacts, signal: extra.signal ?? liveSignal(), ...(extra.previousSha ? { previousSha: extra.previousSha } : {}) });

  beforeEach(async () => {
    const root = await realpath(await temp.make());
    const home = path.join(root, 'home');
    repo = await initRepo(path.join(root, 'repo'));
    artifacts = path.join(home, 'runs', 'run-1');
    ws = await new WorkspaceManager({ home }).acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
  });

  afterEach(() => temp.cleanup());

  describe('when the agent changed files', () => {
    let snapshot: SnapshotResult;

    beforeEach(async () => {
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'one\n2\nthree\nfour\n');
      await writeFile(path.join(ws.path, 'src', 'new.txt'), 'hello\n');
      await rm(path.join(ws.path, 'README.md'));
      snapshot = expectOk(await snap(1));
    });

    it('commits everything on the run branch as `agentgate: iteration <n>` by AgentGate, and the user’s repository has it', () => {
      expect(git(repo, 'log', '-1', '--format=%s|%an <%ae>|%cn <%ce>', 'agentgate/run-1')).toBe(
        'agentgate: iteration 1|AgentGate <agentgate@localhost>|AgentGate <agentgate@localhost>',
      );
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(snapshot.sha);
      expect(git(repo, 'rev-parse', 'agentgate/run-1~1')).toBe(ws.baseSha);
      expect(git(ws.gitDir, 'rev-parse', 'refs/heads/agentgate/run-1')).toBe(snapshot.sha);
    });

    it('reports the sha and tree sha git reports', () => {
      expect(snapshot.treeSha).toBe(git(repo, 'rev-parse', `${snapshot.sha}^{tree}`));
      expect(snapshot.uncaptured).toEqual([]);
    });

    it('leaves the agent’s own repository alone: its HEAD, branch and index are the agent’s', () => {
      expect(git(ws.path, 'rev-parse', 'HEAD')).toBe(ws.baseSha);
      expect(git(ws.path, 'status', '--porcelain').split('\n').sort()).toEqual([' D README.md', ' M src/app.txt', '?? src/new.txt']);
    });

    it('counts files, insertions and deletions of the iteration', () => {
      expect(snapshot).toMatchObject({ iteration: 1, noChange: false, filesChanged: 3, insertions: 3, deletions: 2 });
      expect(git(repo, 'diff', '--shortstat', ws.baseSha, snapshot.sha)).toBe(' 3 files changed, 3 insertions(+), 2 deletions(-)');
    });

    it('lists the files changed since the base commit', () => {
      expect([...snapshot.changedFiles].sort()).toEqual(['README.md', 'src/app.txt', 'src/new.txt']);
    });

    it('writes the patch against the base commit to iteration-<n>.patch, and it applies', async () => {
      expect(snapshot.patchPath).toBe(path.join(artifacts, 'iteration-1.patch'));
      const patch = await readFile(snapshot.patchPath, 'utf8');
      expect(patch).toContain('diff --git a/src/new.txt b/src/new.txt');
      expect(patch).toContain('+hello');
      expect(patch).toContain('deleted file mode');
      const check = await initRepo(path.join(path.dirname(repo), 'check'));
      git(check, 'apply', '--index', snapshot.patchPath);
      expect(git(check, 'write-tree')).toBe(snapshot.treeSha);
    });

    it('keeps the patch byte-exact for files that are not UTF-8', async () => {
      const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]);
      await writeFile(path.join(ws.path, 'latin1.txt'), latin1);
      const second = expectOk(await snap(2));
      const check = await initRepo(path.join(path.dirname(repo), 'check-bytes'));
      git(check, 'apply', '--index', second.patchPath);
      expect(await readFile(path.join(check, 'latin1.txt'))).toEqual(latin1);
    });

    it('measures the next iteration on its own and the patch cumulatively', async () => {
      await writeFile(path.join(ws.path, 'src', 'new.txt'), 'hello\nworld\n');
      const second = expectOk(await snap(2));
      expect(second).toMatchObject({ iteration: 2, noChange: false, filesChanged: 1, insertions: 1, deletions: 0 });
      expect([...second.changedFiles].sort()).toEqual(['README.md', 'src/app.txt', 'src/new.txt']);
      const patch = await readFile(path.join(artifacts, 'iteration-2.patch'), 'utf8');
      expect(patch).toContain('+world');
      expect(patch).toContain('diff --git a/README.md b/README.md');
      expect(git(repo, 'log', '--format=%s', '-2', 'agentgate/run-1')).toBe('agentgate: iteration 2\nagentgate: iteration 1');
    });
  });

  describe('when the agent changed nothing', () => {
    it('records no commit, flags noChange, and the repository gets no branch', async () => {
      const snapshot = expectOk(await snap(1));
      expect(snapshot).toMatchObject({ noChange: true, committed: false, sha: ws.baseSha, filesChanged: 0, insertions: 0, deletions: 0, changedFiles: [] });
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
      expect(snapshot.treeSha).toBe(git(repo, 'rev-parse', `${ws.baseSha}^{tree}`));
      expect(await readFile(snapshot.patchPath, 'utf8')).toBe('');
    });

    it("with emptyIterations: 'commit', records an empty commit flagged noChange", async () => {
      const outcome = await new Snapshotter({ emptyIterations: 'commit' }).snapshot({ workspace: ws, iteration: 1, artifactsDir: artifacts, signal: liveSignal() });
      const snapshot = expectOk(outcome);
      expect(snapshot).toMatchObject({ noChange: true, committed: true, filesChanged: 0 });
      expect(snapshot.sha).not.toBe(ws.baseSha);
      expect(git(repo, 'log', '-1', '--format=%s', 'agentgate/run-1')).toBe('agentgate: iteration 1');
    });

    it('flags a later iteration that repeats the previous tree, with the cumulative changes kept', async () => {
      await writeFile(path.join(ws.path, 'added.txt'), 'x\n');
      const first = expectOk(await snap(1));
      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ noChange: true, filesChanged: 0, changedFiles: ['added.txt'], treeSha: first.treeSha });
    });
  });

  describe('what counts as a change (one `git status` decides whether anything is staged at all)', () => {
    it('an edit that keeps the size and puts the old modification time back is still recorded', async () => {
      const file = path.join(ws.path, 'src', 'app.txt');
      const before = await stat(file);
      await writeFile(file, 'ONE\nTWO\nTHREE\n');
      await utimes(file, before.atime, before.mtime);
      const snapshot = expectOk(await snap(1));
      expect(snapshot).toMatchObject({ noChange: false, committed: true, changedFiles: ['src/app.txt'] });
      expect(git(repo, 'show', `${snapshot.sha}:src/app.txt`)).toBe('ONE\nTWO\nTHREE');
    });

    it('edits and deletions of tracked files alone are committed by the commit itself, and the index keeps them', async () => {
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'edited\n');
      await rm(path.join(ws.path, 'README.md'));
      const first = expectOk(await snap(1));
      expect(first).toMatchObject({ committed: true, noChange: false, filesChanged: 2, changedFiles: ['README.md', 'src/app.txt'] });
      expect(git(repo, 'show', `${first.sha}:src/app.txt`)).toBe('edited');
      expect(git(repo, 'ls-tree', '--name-only', first.sha, 'README.md')).toBe('');
      // AgentGate's index now holds that commit: the next iteration, with nothing new, changes nothing.
      expect(git(ws.gitDir, '--work-tree', ws.path, 'diff-index', '--cached', '--name-only', first.sha)).toBe('');
      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ sha: first.sha, committed: false, noChange: true });
    });

    it('a mode change alone is recorded', async () => {
      await chmod(path.join(ws.path, 'src', 'app.txt'), 0o755);
      const snapshot = expectOk(await snap(1));
      expect(snapshot).toMatchObject({ noChange: false, committed: true, changedFiles: ['src/app.txt'] });
      expect(git(repo, 'ls-tree', snapshot.sha, 'src/app.txt')).toMatch(/^100755 /);
    });

    it('a file deleted and written back identical, an empty directory and an ignored file are no change', async () => {
      await writeFile(path.join(ws.path, '.gitignore'), 'build/\n');
      const first = expectOk(await snap(1));
      await rm(path.join(ws.path, 'README.md'));
      await writeFile(path.join(ws.path, 'README.md'), '# fixture\n');
      await mkdir(path.join(ws.path, 'empty'));
      await mkdir(path.join(ws.path, 'build'));
      await writeFile(path.join(ws.path, 'build', 'out.bin'), 'ignored\n');
      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ noChange: true, committed: false, sha: first.sha, treeSha: first.treeSha, changedFiles: ['.gitignore'] });
    });

    it('a nested repository whose name is not valid UTF-8 fails the snapshot instead of being recorded as a gitlink', async () => {
      await mkdir(path.join(ws.path, 'vendored'));
      git(path.join(ws.path, 'vendored'), 'init', '--quiet');
      await writeFile(path.join(ws.path, 'vendored', 'lib.txt'), 'lib\n');
      git(path.join(ws.path, 'vendored'), 'add', 'lib.txt');
      git(path.join(ws.path, 'vendored'), 'commit', '--quiet', '-m', 'nested');
      renameSync(path.join(ws.path, 'vendored'), Buffer.concat([Buffer.from(`${ws.path}/tests`), Buffer.from([0xff])]));
      const error = expectFailure(await snap(1));
      expect(error.code).toBe('AG_ERR_PHASE_SNAPSHOT');
      expect(error.message).toContain('nested repository whose name is not valid UTF-8 ("tests\uFFFD")');
      expect(git(repo, 'branch', '--list', 'agentgate/*')).toBe('');
      // A name that really holds U+FFFD is an ordinary nested repository: left out and reported.
      renameSync(Buffer.concat([Buffer.from(`${ws.path}/tests`), Buffer.from([0xff])]), path.join(ws.path, 'tests\uFFFD'));
      expect(expectOk(await snap(1))).toMatchObject({ committed: false, uncaptured: ['tests\uFFFD'] });
    });

    it('a nested repository alone is reported and not recorded', async () => {
      await mkdir(path.join(ws.path, 'vendored'));
      git(path.join(ws.path, 'vendored'), 'init', '--quiet');
      await writeFile(path.join(ws.path, 'vendored', 'lib.txt'), 'lib\n');
      const snapshot = expectOk(await snap(1));
      expect(snapshot).toMatchObject({ noChange: true, committed: false, uncaptured: ['vendored'] });
    });
  });

  it('a base commit with a submodule: a repository the agent made in its directory never runs a filter as AgentGate', async () => {
    const root = await realpath(await temp.make());
    const base = await initRepo(path.join(root, 'repo'));
    git(base, 'update-index', '--add', '--cacheinfo', `160000,${git(base, 'rev-parse', 'HEAD')},lib/b`);
    git(base, 'commit', '--quiet', '-m', 'a submodule');
    const workspace = await new WorkspaceManager({ home: path.join(root, 'home') }).acquire({ source: 'local', path: base }, { runId: 'run-2', signal: liveSignal() });
    const marker = path.join(root, 'filter-ran');
    // The agent's repository in the submodule's directory, with a clean filter of its own for a file whose
    // stat data looks stale (so a status would run the filter to compare it) ...
    const sub = path.join(workspace.path, 'lib', 'b');
    await mkdir(sub, { recursive: true });
    git(sub, 'init', '--quiet');
    await writeFile(path.join(sub, '.gitattributes'), 'a filter=evil\n');
    await writeFile(path.join(sub, 'a'), 'a\n');
    git(sub, 'add', 'a', '.gitattributes');
    git(sub, 'commit', '--quiet', '-m', 'agent');
    git(sub, 'config', 'filter.evil.clean', `sh -c 'touch ${marker}; cat'`);
    await utimes(path.join(sub, 'a'), new Date('2001-01-01'), new Date('2001-01-01'));
    // ... and a nested repository elsewhere, so status lists something while the staged tree stays the base's.
    await mkdir(path.join(workspace.path, 'nested'));
    git(path.join(workspace.path, 'nested'), 'init', '--quiet');
    const snapshots = new Snapshotter();
    const first = expectOk(await snapshots.snapshot({ workspace, iteration: 1, artifactsDir: path.join(root, 'artifacts'), signal: liveSignal() }));
    const second = expectOk(await snapshots.snapshot({ workspace, iteration: 2, artifactsDir: path.join(root, 'artifacts'), signal: liveSignal(), previousSha: first.sha }));
    expect(second).toMatchObject({ uncaptured: ['lib/b', 'nested'] });
    await expect(stat(marker)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  describe('what the previous snapshot left (remembered, so the next iteration runs no rev-parse)', () => {
    it('each iteration is measured against the one before; a different previousSha is measured against that commit', async () => {
      const file = path.join(ws.path, 'src', 'app.txt');
      await writeFile(file, 'first\n');
      const first = expectOk(await snap(1));
      await writeFile(path.join(ws.path, 'second.txt'), 'second\n');
      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ noChange: false, committed: true, filesChanged: 1, insertions: 1, changedFiles: ['second.txt', 'src/app.txt'] });
      expect(git(repo, 'rev-parse', `${second.sha}^`)).toBe(first.sha);
      expect(second.treeSha).toBe(git(repo, 'rev-parse', `${second.sha}^{tree}`));
      // Nothing new: the remembered snapshot is the answer, sha and tree alike.
      const third = expectOk(await snap(3, { previousSha: second.sha }));
      expect(third).toMatchObject({ noChange: true, committed: false, sha: second.sha, treeSha: second.treeSha });
      // Measured against an older snapshot than the one remembered: git is asked, and both changes count.
      await writeFile(path.join(ws.path, 'third.txt'), 'third\n');
      const fourth = expectOk(await snap(4, { previousSha: first.sha }));
      expect(fourth).toMatchObject({ noChange: false, committed: true, filesChanged: 2, insertions: 2 });
      expect(git(repo, 'rev-parse', `${fourth.sha}^`)).toBe(second.sha);
    });

    it('a branch moved behind AgentGate’s back is not taken for the remembered snapshot: the work tree is what is recorded', async () => {
      await writeFile(path.join(ws.path, 'bad.txt'), 'backdoor\n');
      const first = expectOk(await snap(1));
      await rm(path.join(ws.path, 'bad.txt'));
      await writeFile(path.join(ws.path, 'good.txt'), 'clean\n');
      // An agent without a sandbox commits exactly its work tree in AgentGate's git directory and moves the
      // run branch there, hoping the next snapshot keeps reporting the first one.
      const env = {
        ...process.env,
        GIT_DIR: ws.gitDir,
        GIT_WORK_TREE: ws.path,
        GIT_INDEX_FILE: path.join(path.dirname(ws.gitDir), 'agent-index'),
        GIT_AUTHOR_NAME: 'agent',
        GIT_AUTHOR_EMAIL: 'agent@example.com',
        GIT_COMMITTER_NAME: 'agent',
        GIT_COMMITTER_EMAIL: 'agent@example.com',
      };
      const agentGit = (...args: string[]): string => execFileSync('git', args, { env, encoding: 'utf8' }).trim();
      agentGit('read-tree', 'HEAD');
      agentGit('add', '--all');
      const tree = agentGit('write-tree');
      const moved = agentGit('commit-tree', tree, '-p', ws.baseSha, '-m', 'agent');
      agentGit('update-ref', `refs/heads/${ws.branch}`, moved);
      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second.treeSha).toBe(tree);
      expect(second.sha).toBe(moved);
      expect(second.sha).not.toBe(first.sha);
    });

    it('the first snapshot is measured against the base tree the checkout read, unless the branch moved before it', async () => {
      expect(ws.baseTree).toBe(git(repo, 'rev-parse', `${ws.baseSha}^{tree}`));
      // An agent without a sandbox commits its work tree in AgentGate's git directory before the first
      // snapshot and moves the run branch there: git, not the checkout's record, says what HEAD is.
      await writeFile(path.join(ws.path, 'bad.txt'), 'backdoor\n');
      const env = { ...process.env, GIT_DIR: ws.gitDir, GIT_WORK_TREE: ws.path, GIT_INDEX_FILE: path.join(path.dirname(ws.gitDir), 'agent-index') };
      const agentGit = (...args: string[]): string => execFileSync('git', args, { env, encoding: 'utf8' }).trim();
      agentGit('read-tree', 'HEAD');
      agentGit('add', '--all');
      const tree = agentGit('write-tree');
      const moved = agentGit('-c', 'user.name=agent', '-c', 'user.email=agent@example.com', 'commit-tree', tree, '-p', ws.baseSha, '-m', 'agent');
      agentGit('update-ref', `refs/heads/${ws.branch}`, moved);
      const first = expectOk(await snap(1));
      expect(first).toMatchObject({ sha: moved, treeSha: tree, changedFiles: ['bad.txt'] });
    });

    it('a snapshot made by another Snapshotter in between is not mistaken for the remembered one', async () => {
      await writeFile(path.join(ws.path, 'one.txt'), 'one\n');
      const first = expectOk(await snap(1));
      await writeFile(path.join(ws.path, 'two.txt'), 'two\n');
      const second = expectOk(await new Snapshotter().snapshot({ workspace: ws, iteration: 2, artifactsDir: artifacts, signal: liveSignal(), previousSha: first.sha }));
      // This Snapshotter remembers `first`, but HEAD moved to `second`: the previousSha given says so.
      await writeFile(path.join(ws.path, 'three.txt'), 'three\n');
      const third = expectOk(await snap(3, { previousSha: second.sha }));
      expect(third).toMatchObject({ noChange: false, committed: true, filesChanged: 1, changedFiles: ['one.txt', 'three.txt', 'two.txt'] });
      expect(git(repo, 'rev-parse', `${third.sha}^`)).toBe(second.sha);
    });
  });

  describe('changes from the base, as tamper detection needs them', () => {
    /** Names a parser could mistake for a record: a numstat line, a raw line, a status letter, a tab. */
    const tricky = ['1\t2\tlooks-like-numstat', ':100644 100644 abc def M', 'M', 'tab\there.txt'];

    it('lists exactly what diff-tree lists between the base and each snapshot, with the kind of change', async () => {
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'changed\n');
      await rm(path.join(ws.path, 'README.md'));
      await chmod(path.join(ws.path, 'src', 'app.txt'), 0o755);
      for (const name of tricky) await writeFile(path.join(ws.path, name), `${name}\n`);
      const first = await snap(1);
      if (!first.ok) throw first.error;
      expect(first.changesFromBase).toEqual(diffTree(repo, ws.baseSha, first.snapshot.sha));
      expect(first.changesFromBase).toContainEqual({ path: 'README.md', change: 'deleted' });
      expect(first.changesFromBase).toContainEqual({ path: '1\t2\tlooks-like-numstat', change: 'added' });
      expect(first.snapshot.changedFiles).toEqual(first.changesFromBase.map((change) => change.path));
      expect(first.snapshot).toMatchObject({ filesChanged: 2 + tricky.length, insertions: 1 + tricky.length });

      // Iteration 2: one change undone, a file turned into a symlink, another added.
      await writeFile(path.join(ws.path, 'README.md'), '# fixture\n');
      await rm(path.join(ws.path, 'M'));
      await symlink('README.md', path.join(ws.path, 'M'));
      await writeFile(path.join(ws.path, 'later.txt'), 'later\n');
      const second = await snap(2, { previousSha: first.snapshot.sha });
      if (!second.ok) throw second.error;
      expect(second.changesFromBase).toEqual(diffTree(repo, ws.baseSha, second.snapshot.sha));
      expect(second.changesFromBase.map((change) => change.path)).not.toContain('README.md');
      expect(second.snapshot.filesChanged).toBe(3);
    });

    it('composed from the previous snapshot and the iteration, equal to diff-tree over random iterations', async () => {
      // Paths that overlap as file and directory, sort around '/', are not ASCII, hold U+FFFD, or are not
      // UTF-8 at all (the bytes 0xfe and 0xff after `bad-`, which read alike from git's output).
      const names = ['a.txt', 'a-b.txt', 'a/x.txt', 'a/y/z.txt', 'README.md', 'src/app.txt', 'é.txt', 'src', 'real-\uFFFD.txt', 'bad-\xfe', 'bad-\xff'];
      const op = fc.record({ kind: fc.constantFrom('write', 'delete', 'chmod', 'symlink'), name: fc.constantFrom(...names), content: fc.constantFrom('one\ntwo\nthree\n', '# fixture\n', 'other\n') });
      // An iteration may change nothing, and may be given the previous snapshot or not.
      const iteration = fc.record({ ops: fc.array(op, { maxLength: 4 }), namePrevious: fc.boolean() });
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(iteration, { minLength: 2, maxLength: 5 }), async (iterations) => {
          run += 1;
          const workspace = await new WorkspaceManager({ home: path.join(path.dirname(repo), `home-${run}`) }).acquire({ source: 'local', path: repo }, { runId: `prop-${run}`, signal: liveSignal() });
          const snapshotter = new Snapshotter();
          let previousSha: string | undefined;
          for (const [index, { ops, namePrevious }] of iterations.entries()) {
            for (const { kind, name, content } of ops) {
              const file: string | Buffer = name.startsWith('bad-') ? Buffer.concat([Buffer.from(path.join(workspace.path, 'bad-')), Buffer.from([name.endsWith('\xfe') ? 0xfe : 0xff])]) : path.join(workspace.path, name);
              // Whatever is in the way (a file where a directory is needed, or the reverse) goes first.
              for (let parent = path.dirname(file.toString()); typeof file === 'string' && parent !== workspace.path; parent = path.dirname(parent)) {
                if ((await lstat(parent).catch(() => undefined))?.isDirectory() === false) await rm(parent, { force: true });
              }
              if (kind !== 'chmod') await rm(file, { recursive: true, force: true });
              if (kind === 'chmod' && (await stat(file).catch(() => undefined))?.isFile() === true) await chmod(file, 0o755);
              if (typeof file === 'string' && (kind === 'write' || kind === 'symlink')) await mkdir(path.dirname(file), { recursive: true });
              if (kind === 'write') await writeFile(file, content);
              if (kind === 'symlink') await symlink('elsewhere', file);
            }
            const given = namePrevious ? previousSha : undefined;
            const outcome = await snapshotter.snapshot({ workspace, iteration: index + 1, artifactsDir: path.join(path.dirname(repo), `artifacts-${run}`), signal: liveSignal(), ...(given !== undefined && { previousSha: given }) });
            if (!outcome.ok) throw outcome.error;
            expect(outcome.changesFromBase).toEqual(diffTree(repo, workspace.baseSha, outcome.snapshot.sha));
            expect(outcome.snapshot.changedFiles).toEqual(outcome.changesFromBase.map((change) => change.path));
            previousSha = outcome.snapshot.sha;
          }
        }),
        { numRuns: 15 },
      );
    }, 180_000);

    it('two names that differ only in bytes that are not UTF-8 (read alike) are never merged: a later iteration still lists the one left', async () => {
      const name = (byte: number): Buffer => Buffer.concat([Buffer.from(path.join(ws.path, 'tests', 'test_')), Buffer.from([byte]), Buffer.from('.py')]);
      await mkdir(path.join(ws.path, 'tests'));
      await writeFile(name(0xfe), 'assert True\n');
      await writeFile(name(0xff), 'assert True\n');
      const first = await snap(1);
      if (!first.ok) throw first.error;
      expect(first.changesFromBase).toEqual(diffTree(repo, ws.baseSha, first.snapshot.sha));
      await rm(name(0xff));
      const second = await snap(2, { previousSha: first.snapshot.sha });
      if (!second.ok) throw second.error;
      expect(second.changesFromBase).toEqual([{ path: 'tests/test_\uFFFD.py', change: 'added' }]);
      expect(second.changesFromBase).toEqual(diffTree(repo, ws.baseSha, second.snapshot.sha));
    });

    it('an iteration back at the base tree: no changes, an empty patch, and still a commit of its own', async () => {
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'changed\n');
      const first = expectOk(await snap(1));
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'one\ntwo\nthree\n');
      const outcome = await snap(2, { previousSha: first.sha });
      if (!outcome.ok) throw outcome.error;
      const second = outcome.snapshot;
      expect(outcome.changesFromBase).toEqual([]);
      expect(second).toMatchObject({ committed: true, noChange: false, changedFiles: [], filesChanged: 1, insertions: 3, deletions: 1 });
      expect(second.treeSha).toBe(git(repo, 'rev-parse', `${ws.baseSha}^{tree}`));
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(second.sha);
      expect(await readFile(second.patchPath, 'utf8')).toBe('');
      expect(git(repo, 'diff', ws.baseSha, second.sha)).toBe('');
    });

    it('an iteration that changed nothing reports no changes without asking git for a diff', async () => {
      const outcome = await snap(1);
      if (!outcome.ok) throw outcome.error;
      expect(outcome.changesFromBase).toEqual([]);
      expect(outcome.snapshot).toMatchObject({ committed: false, noChange: true, sha: ws.baseSha, changedFiles: [] });
    });
  });

  describe('when the agent committed its work itself or switched branches', () => {
    it('measures against the previous snapshot, so the work still counts', async () => {
      await writeFile(path.join(ws.path, 'first.txt'), 'first iteration\n');
      const first = expectOk(await snap(1));
      await writeFile(path.join(ws.path, 'agent.txt'), 'committed by the agent\n');
      git(ws.path, 'add', 'agent.txt');
      git(ws.path, 'commit', '--quiet', '-m', 'agent commit');

      const second = expectOk(await snap(2, { previousSha: first.sha }));
      expect(second).toMatchObject({ noChange: false, filesChanged: 1, insertions: 1, changedFiles: ['agent.txt', 'first.txt'] });
      expect(git(repo, 'log', '--format=%s', 'agentgate/run-1', `^${ws.baseSha}`)).toBe('agentgate: iteration 2\nagentgate: iteration 1');
    });

    it('records the files whatever branch the agent’s repository is on', async () => {
      git(ws.path, 'checkout', '--quiet', '-b', 'elsewhere');
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      const snapshot = expectOk(await snap(1));
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(snapshot.sha);
      expect(git(repo, 'show', 'agentgate/run-1:x.txt')).toBe('x');
      expect(git(repo, 'branch', '--list', 'elsewhere')).toBe('');
    });

    it('does not depend on the agent’s .git at all', async () => {
      await rm(path.join(ws.path, '.git'), { recursive: true });
      await writeFile(path.join(ws.path, '.git'), 'not a gitdir line\n');
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      expect(expectOk(await snap(1)).changedFiles).toEqual(['x.txt']);
    });
  });

  it('is not blocked by a pre-commit hook or the user’s signing configuration', async () => {
    const hook = path.join(repo, '.git', 'hooks', 'pre-commit');
    await mkdir(path.dirname(hook), { recursive: true });
    await writeFile(hook, '#!/bin/sh\necho blocked >&2\nexit 1\n');
    await chmod(hook, 0o755);
    git(repo, 'config', 'commit.gpgSign', 'true');
    git(repo, 'config', 'gpg.program', '/bin/false');
    await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
    expectOk(await snap(1));
  });

  it('uses the AgentGate identity even when GIT_AUTHOR_* is set in the environment', async () => {
    const saved = { name: process.env['GIT_AUTHOR_NAME'], email: process.env['GIT_COMMITTER_EMAIL'] };
    process.env['GIT_AUTHOR_NAME'] = 'Somebody Else';
    process.env['GIT_COMMITTER_EMAIL'] = 'else@example.com';
    try {
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      expectOk(await snap(1));
    } finally {
      if (saved.name === undefined) delete process.env['GIT_AUTHOR_NAME'];
      else process.env['GIT_AUTHOR_NAME'] = saved.name;
      if (saved.email === undefined) delete process.env['GIT_COMMITTER_EMAIL'];
      else process.env['GIT_COMMITTER_EMAIL'] = saved.email;
    }
    expect(git(repo, 'log', '-1', '--format=%an|%ce', 'agentgate/run-1')).toBe('AgentGate|agentgate@localhost');
  });

  describe('in the background (the patch and the publication run on, as the engine verifies meanwhile)', () => {
    const background = (iteration: number): Promise<SnapshotOutcome> => snapshotter.snapshot({ workspace: ws, iteration, artifactsDir: artifacts, signal: liveSignal(), background: true });
    const settledOf = async (outcome: SnapshotOutcome): Promise<{ snapshot: SnapshotResult; failed: AgentGateError | undefined }> => {
      if (!outcome.ok) throw new Error(`expected a snapshot, got ${outcome.error.code}: ${outcome.error.message}`);
      return { snapshot: outcome.snapshot, failed: await outcome.settled };
    };
    // A stale lock on the run branch in the user's repository: `update-ref` there fails, the commit does not.
    const lockBranch = async (): Promise<string> => {
      const lock = path.join(repo, '.git', 'refs', 'heads', 'agentgate', 'run-1.lock');
      await mkdir(path.dirname(lock), { recursive: true });
      await writeFile(lock, '');
      return lock;
    };

    it('settles with the patch written and the branch in the repository', async () => {
      await writeFile(path.join(ws.path, 'src', 'app.txt'), 'one\n2\nthree\n');
      const { snapshot, failed } = await settledOf(await background(1));
      expect(failed).toBeUndefined();
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(snapshot.sha);
      expect(await readFile(snapshot.patchPath, 'utf8')).toContain('+2');
    });

    it('reports a failed publication through `settled`, where a snapshot in the foreground fails; the next one publishes both commits', async () => {
      const lock = await lockBranch();
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');
      const first = await settledOf(await background(1));
      expect(first.failed?.code).toBe('AG_ERR_PHASE_SNAPSHOT');
      expect(first.failed?.message).toMatch(/run-1\.lock/);
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');

      await writeFile(path.join(ws.path, 'y.txt'), 'y\n');
      const foreground = expectFailure(await snap(2));
      expect(foreground.code).toBe('AG_ERR_PHASE_SNAPSHOT');
      expect(foreground.message).toMatch(/run-1\.lock/);

      await rm(lock);
      await writeFile(path.join(ws.path, 'z.txt'), 'z\n');
      const third = await settledOf(await background(3));
      expect(third.failed).toBeUndefined();
      expect(git(repo, 'log', '--format=%s', 'agentgate/run-1')).toBe('agentgate: iteration 3\nagentgate: iteration 2\nagentgate: iteration 1\ninitial');
      expect(git(repo, 'show', 'agentgate/run-1:x.txt')).toBe('x');
      expect(git(repo, 'fsck', '--strict', '--no-dangling')).toBe('');
    });

    it('a second snapshot waits for the first one’s publication: the branch moves in order', async () => {
      // A large object that does not compress: the first publication is still copying it while the second snapshot starts.
      await writeFile(path.join(ws.path, 'a.bin'), randomBytes(16 * 1024 * 1024));
      const first = await background(1);
      const order: string[] = [];
      if (first.ok) void first.settled.then(() => order.push('first settled'));
      await writeFile(path.join(ws.path, 'b.txt'), 'b\n');
      const second = await background(2);
      order.push('second returned');
      expect(order).toEqual(['first settled', 'second returned']);
      const [one, two] = [await settledOf(first), await settledOf(second)];
      expect([one.failed, two.failed]).toEqual([undefined, undefined]);
      expect(git(repo, 'rev-parse', 'agentgate/run-1')).toBe(two.snapshot.sha);
      expect(git(repo, 'rev-parse', 'agentgate/run-1~1')).toBe(one.snapshot.sha);
    });
  });

  describe('failures', () => {
    it('returns AG_ERR_PHASE_SNAPSHOT when git cannot take the index lock', async () => {
      await writeFile(`${ws.indexFile}.lock`, '');
      await writeFile(path.join(ws.path, 'x.txt'), 'x\n');

      const error = expectFailure(await snap(1));
      expect(error.code).toBe('AG_ERR_PHASE_SNAPSHOT');
      expect(error.cause).toBeInstanceOf(Error);
      expect(error.message).toMatch(/index\.lock/);
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
    });

    it('returns AG_ERR_PHASE_SNAPSHOT when AgentGate’s git directory is gone', async () => {
      await rm(ws.gitDir, { recursive: true });
      expect(expectFailure(await snap(1)).code).toBe('AG_ERR_PHASE_SNAPSHOT');
    });

    it('returns AG_ERR_PHASE_SNAPSHOT when the patch cannot be written', async () => {
      artifacts = path.join(path.dirname(repo), 'not-a-directory');
      await writeFile(artifacts, 'a file where the artifacts directory should be');
      expect(expectFailure(await snap(1)).code).toBe('AG_ERR_PHASE_SNAPSHOT');
    });

    it('reports cancellation, not a snapshot failure, when the run was canceled', async () => {
      const controller = new AbortController();
      controller.abort(new AgentGateError('AG_ERR_RUN_CANCELED', 'user canceled'));
      const error = expectFailure(await snap(1, { signal: controller.signal }));
      expect(error.code).toBe('AG_ERR_RUN_CANCELED');
      expect(git(repo, 'for-each-ref', 'refs/heads/agentgate/')).toBe('');
    });

    it('rejects an invalid iteration number', async () => {
      expect(expectFailure(await snap(0)).code).toBe('AG_ERR_PHASE_SNAPSHOT');
    });
  });
});

describe('Snapshotter with submodules whose parent directory the agent replaced', () => {
  let repo: string;
  let artifacts: string;
  let ws: Workspace;
  let gitlink: string;
  const snap = (iteration: number): Promise<SnapshotOutcome> => new Snapshotter().snapshot({ workspace: ws, iteration, artifactsDir: artifacts, signal: liveSignal() });
  /** `<mode> <type> <path>` of every entry of a commit's tree. */
  const entries = (sha: string): string[] => git(repo, 'ls-tree', '-r', sha).split('\n').map((line) => line.replace(/ [0-9a-f]{40}\t/, ' '));

  beforeEach(async () => {
    const root = await realpath(await temp.make());
    const home = path.join(root, 'home');
    repo = await initRepo(path.join(root, 'repo'));
    gitlink = git(repo, 'rev-parse', 'HEAD');
    // Two submodules, one below the other's parent: lib/a/mod and lib/b.
    await mkdir(path.join(repo, 'lib', 'a', 'mod'), { recursive: true });
    await writeFile(path.join(repo, 'lib', 'a', 'keep.txt'), 'kept\n');
    git(repo, 'add', 'lib/a/keep.txt');
    git(repo, 'update-index', '--add', '--cacheinfo', `160000,${gitlink},lib/a/mod`, '--cacheinfo', `160000,${gitlink},lib/b`);
    git(repo, 'commit', '--quiet', '-m', 'submodules');
    artifacts = path.join(home, 'runs', 'run-1');
    ws = await new WorkspaceManager({ home }).acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
  });

  afterEach(() => temp.cleanup());

  it('records a symlink that replaced the directory holding a submodule, and the submodule gone, as git add --all did', async () => {
    await rm(path.join(ws.path, 'lib', 'a'), { recursive: true });
    await mkdir(path.join(ws.path, 'elsewhere', 'mod'), { recursive: true });
    await writeFile(path.join(ws.path, 'elsewhere', 'mod', 'file.txt'), 'behind the link\n');
    await symlink('../elsewhere', path.join(ws.path, 'lib', 'a'));
    const snapshot = expectOk(await snap(1));
    expect(entries(snapshot.sha)).toEqual(['100644 blob README.md', '100644 blob elsewhere/mod/file.txt', '120000 blob lib/a', '160000 commit lib/b', '100644 blob src/app.txt']);
    expect(snapshot.uncaptured).toEqual([]);
    expect(diffTree(repo, ws.baseSha, snapshot.sha)).toEqual([
      { path: 'elsewhere/mod/file.txt', change: 'added' },
      { path: 'lib/a', change: 'added' },
      { path: 'lib/a/keep.txt', change: 'deleted' },
      { path: 'lib/a/mod', change: 'deleted' },
    ]);
    // The next snapshot finds no submodule there in the index: nothing to drop, nothing changed.
    expect(expectOk(await snap(2)).noChange).toBe(true);
  });

  it('records a file that replaced that directory, and the link turned back into the directory', async () => {
    await rm(path.join(ws.path, 'lib'), { recursive: true });
    await writeFile(path.join(ws.path, 'lib'), 'a file now\n');
    expect(entries(expectOk(await snap(1)).sha)).toEqual(['100644 blob README.md', '100644 blob lib', '100644 blob src/app.txt']);

    await rm(path.join(ws.path, 'lib'));
    await mkdir(path.join(ws.path, 'real', 'mod'), { recursive: true });
    await writeFile(path.join(ws.path, 'real', 'keep.txt'), 'kept\n');
    await mkdir(path.join(ws.path, 'lib'));
    await symlink('../real', path.join(ws.path, 'lib', 'a'));
    expect(entries(expectOk(await snap(2)).sha)).toEqual(['100644 blob README.md', '120000 blob lib/a', '100644 blob real/keep.txt', '100644 blob src/app.txt']);
  });
});

describe('parseNumstat', () => {
  it('sums text changes and counts binary files without line counts', () => {
    expect(parseNumstat('3\t1\ta.txt\x000\t2\tb.txt\x00-\t-\timage.png\x00')).toEqual({ filesChanged: 3, insertions: 3, deletions: 3, paths: ['a.txt', 'b.txt', 'image.png'] });
    expect(parseNumstat('')).toEqual({ filesChanged: 0, insertions: 0, deletions: 0, paths: [] });
  });
});

describe('parseDiffOutput', () => {
  it('reads --raw and --numstat records in order, so a path is never taken for a record', () => {
    const raw = ':100644 100644 1111111 2222222 M\x001\t2\tlooks-like-numstat\x00:000000 100644 0000000 3333333 A\x00M\x00:100644 000000 4444444 0000000 D\x00gone\x00';
    const numstat = '1\t1\t1\t2\tlooks-like-numstat\x002\t0\tM\x000\t3\tgone\x00';
    expect(parseDiffOutput(raw + numstat)).toEqual({
      changes: [
        { path: '1\t2\tlooks-like-numstat', change: 'modified' },
        { path: 'M', change: 'added' },
        { path: 'gone', change: 'deleted' },
      ],
      raw: [
        { path: '1\t2\tlooks-like-numstat', old: { mode: '100644', id: '1111111' }, new: { mode: '100644', id: '2222222' } },
        { path: 'M', old: { mode: '000000', id: '0000000' }, new: { mode: '100644', id: '3333333' } },
        { path: 'gone', old: { mode: '100644', id: '4444444' }, new: { mode: '000000', id: '0000000' } },
      ],
      filesChanged: 3,
      insertions: 3,
      deletions: 4,
      paths: ['1\t2\tlooks-like-numstat', 'M', 'gone'],
    });
  });

  it('reads --name-status records', () => {
    expect(parseDiffOutput('M\x00a\x00T\x00link\x00A\x00:odd\x00').changes).toEqual([
      { path: 'a', change: 'modified' },
      { path: 'link', change: 'modified' },
      { path: ':odd', change: 'added' },
    ]);
  });
});

describe('composeFromBase and changesOf', () => {
  const side = (mode: string, id: string): { mode: string; id: string } => ({ mode, id });
  const none = side('000000', '0000');

  it('keeps each path’s base entry, takes the new one from the step, and drops a path back at its base', () => {
    const fromBase = new Map([
      ['a', { path: 'a', old: side('100644', 'a0'), new: side('100644', 'a1') }],
      ['b', { path: 'b', old: none, new: side('100644', 'b1') }],
    ]);
    const composed = composeFromBase(fromBase, [
      { path: 'a', old: side('100644', 'a1'), new: side('100644', 'a0') }, // undone
      { path: 'b', old: side('100644', 'b1'), new: side('100755', 'b1') }, // still new, now executable
      { path: 'c', old: side('100644', 'c0'), new: none }, // deleted for the first time
    ]);
    expect(composed === undefined ? undefined : [...composed.values()]).toEqual([
      { path: 'b', old: none, new: side('100755', 'b1') },
      { path: 'c', old: side('100644', 'c0'), new: none },
    ]);
    expect(changesOf(composed ?? new Map())).toEqual([
      { path: 'b', change: 'added' },
      { path: 'c', change: 'deleted' },
    ]);
  });

  it('refuses a step that does not start where the changes from the base end', () => {
    const fromBase = new Map([['a', { path: 'a', old: side('100644', 'a0'), new: side('100644', 'a1') }]]);
    expect(composeFromBase(fromBase, [{ path: 'a', old: side('100644', 'a2'), new: side('100644', 'a3') }])).toBeUndefined();
  });

  it('lists paths in git’s order: bytes of the UTF-8 name, so a directory’s files follow a name with a lower byte than /', () => {
    const added = (p: string): [string, { path: string; old: { mode: string; id: string }; new: { mode: string; id: string } }] => [p, { path: p, old: none, new: side('100644', '1') }];
    const order = changesOf(new Map(['a/b', 'é', 'a', 'a-b', 'a0', 'z', '\u{1F600}', '\uFF21'].map(added))).map((change) => change.path);
    expect(order).toEqual(['a', 'a-b', 'a/b', 'a0', 'z', 'é', '\uFF21', '\u{1F600}']);
  });
});
