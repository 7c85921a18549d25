/**
 * The worktree pool: a finished run's worktree is reused by the next run of the same repository, and
 * nothing an agent left in it — new, ignored or modified files (even with the mtime put back), unreadable
 * directories, symlinks and hard links to the outside, FIFOs, nested repositories, its own `.git` — reaches
 * that next run. Each reused worktree is compared, entry by entry and byte by byte, with a fresh checkout
 * of the same commit made without the pool.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { ManualClock } from '../../src/util/clock.js';
import { WorkspaceManager, type WorkspaceManagerOptions } from '../../src/workspace/manager.js';
import { matchesEntry, recordManifest, statKey, type TreeManifest } from '../../src/workspace/pool-manifest.js';
import { scrubForPool, scrubIntoWorkspace } from '../../src/workspace/pool-scrub.js';
import { Snapshotter } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';
import { commandTask, type CommandTaskOptions } from '../helpers/tasks.js';
import { TempDirs, git, liveSignal } from './helpers.js';
import { effectiveSandbox } from '../../src/util/sandbox-policy.js';

const temp = new TempDirs();

/** Every entry below `dir` except the root's `.git`: kind, permission bits, and content hash or link target. Never follows a link. */
function treeOf(dir: string): string[] {
  const out: string[] = [];
  const walk = (current: string, prefix: string): void => {
    for (const name of readdirSync(current).sort()) {
      if (prefix === '' && name === '.git') continue;
      const full = path.join(current, name);
      const stats = lstatSync(full);
      const mode = (stats.mode & 0o7777).toString(8);
      if (stats.isDirectory()) {
        out.push(`${prefix}${name}/ dir ${mode}`);
        walk(full, `${prefix}${name}/`);
      } else if (stats.isSymbolicLink()) {
        out.push(`${prefix}${name} -> ${readlinkSync(full)}`);
      } else if (stats.isFile()) {
        out.push(`${prefix}${name} file ${mode} links=${stats.nlink} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`);
      } else {
        out.push(`${prefix}${name} special`);
      }
    }
  };
  walk(dir, '');
  return out;
}

/** The idle slots of the pool (directories not starting with a dot), over all repositories. */
function idleSlots(home: string): string[] {
  const root = path.join(home, 'worktrees', '.pool');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((key) => readdirSync(path.join(root, key)).filter((name) => !name.startsWith('.')).map((name) => path.join(root, key, name)));
}

/** Everything in the pool directory of all repositories (slots and dot-named state). */
function poolEntries(home: string): string[] {
  const root = path.join(home, 'worktrees', '.pool');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((key) => readdirSync(path.join(root, key)));
}

/** Changes `file`'s content keeping its size, then puts its mtime (nanoseconds) and atime back, as an agent hiding an edit would. */
function editHidingTimes(file: string, content: string, scratch: string): void {
  const reference = path.join(scratch, `times-${path.basename(file)}`);
  const before = lstatSync(file, { bigint: true });
  execFileSync('touch', ['-r', file, reference]);
  writeFileSync(file, content);
  execFileSync('touch', ['-r', reference, file]);
  const after = lstatSync(file, { bigint: true });
  expect([after.size, after.mtimeNs]).toEqual([before.size, before.mtimeNs]);
  expect(after.ctimeNs).not.toBe(before.ctimeNs);
}

/** Sets `user.planted` on `file` (python3's os.setxattr: Node has no xattr API); false where that is not possible. */
function setUserXattr(file: string): boolean {
  try {
    execFileSync('python3', ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.planted", b"x")', file], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // No python3, or a file system without user xattrs: the case cannot be set up here.
    if (error instanceof Error) return false;
    throw error;
  }
}

function listUserXattrs(file: string): string[] {
  return JSON.parse(execFileSync('python3', ['-c', 'import os, sys, json; print(json.dumps(os.listxattr(sys.argv[1])))', file], { encoding: 'utf8' })) as string[];
}

function inode(file: string): number {
  return statSync(file).ino;
}

describe('WorktreePool', () => {
  let root: string;
  let home: string;
  let repo: string;
  let outside: string;
  let manager: WorkspaceManager;
  let fresh: WorkspaceManager;
  let runs = 0;
  /** What the pool logged: a reuse that fell back to a fresh checkout says so here. */
  let warnings: string[];

  const manage = (options: Partial<WorkspaceManagerOptions> = {}): WorkspaceManager =>
    new WorkspaceManager({ home, logger: { warn: (_fields, message) => warnings.push(message), debug: () => undefined }, ...options });
  const acquire = (using: WorkspaceManager = manager, ref?: string): Promise<Workspace> => {
    runs += 1;
    return using.acquire({ source: 'local', path: repo, ...(ref !== undefined && { ref }) }, { runId: `run-${runs}`, signal: liveSignal() });
  };
  const release = (ws: Workspace, using: WorkspaceManager = manager): Promise<void> => using.release(ws, { signal: liveSignal() });
  /** The tree of a fresh, pool-less checkout of `ref`, made in another home. */
  const freshTree = async (ref?: string): Promise<string[]> => {
    runs += 1;
    const ws = await fresh.acquire({ source: 'local', path: repo, ...(ref !== undefined && { ref }) }, { runId: `fresh-${runs}`, signal: liveSignal() });
    const tree = treeOf(ws.path);
    await fresh.release(ws, { signal: liveSignal() });
    return tree;
  };

  beforeEach(async () => {
    root = await realpath(await temp.make('agentgate-pool-'));
    home = path.join(root, 'home');
    repo = path.join(root, 'repo');
    outside = path.join(root, 'outside');
    await mkdir(path.join(repo, 'src', 'lib'), { recursive: true });
    await mkdir(path.join(repo, 'docs'), { recursive: true });
    await mkdir(path.join(repo, 'pkg', 'deep'), { recursive: true });
    await mkdir(outside, { recursive: true });
    await writeFile(path.join(repo, 'pkg', 'deep', 'kept.txt'), 'kept\n');
    await mkdir(path.join(repo, 'data'));
    await writeFile(path.join(repo, 'data', 'table.csv'), 'a,b\n1,2\n');
    await mkdir(path.join(repo, 'conf'));
    await writeFile(path.join(repo, 'conf', 'settings.ini'), '[x]\n');
    await writeFile(path.join(repo, 'README.md'), '# fixture\n');
    await writeFile(path.join(repo, '.gitignore'), 'node_modules/\n.env\n*.log\n');
    await writeFile(path.join(repo, 'src', 'app.txt'), 'one\ntwo\nthree\n');
    await writeFile(path.join(repo, 'src', 'lib', 'util.txt'), 'util\n');
    await writeFile(path.join(repo, 'src', 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
    await writeFile(path.join(repo, 'docs', 'guide.md'), 'guide\n');
    await symlink('../README.md', path.join(repo, 'docs', 'readme-link'));
    git(repo, 'init', '--quiet', '--initial-branch=main');
    git(repo, 'add', '--all');
    git(repo, 'commit', '--quiet', '-m', 'base');
    // A submodule path (gitlink): checked out as an empty directory.
    git(repo, 'update-index', '--add', '--cacheinfo', `160000,${git(repo, 'rev-parse', 'HEAD')},vendor-sub`);
    git(repo, 'commit', '--quiet', '-m', 'submodule');
    await writeFile(path.join(outside, 'secret.txt'), 'outside secret\n');
    warnings = [];
    manager = manage();
    fresh = new WorkspaceManager({ home: path.join(root, 'fresh-home'), pool: false });
  });

  afterEach(async () => {
    expect(warnings).toEqual([]);
    // Undo chmod 000 left by a test so the temp dirs can be removed.
    execFileSync('chmod', ['-R', 'u+rwx', root]);
    await temp.cleanup();
  });

  describe('when a run ends', () => {
    it('keeps its worktree as an idle slot, without the agent’s .git or AgentGate’s git directory, and the next run reuses it', async () => {
      const first = await acquire();
      const untouched = inode(path.join(first.path, 'src', 'lib', 'util.txt'));
      await release(first);

      expect(existsSync(first.path)).toBe(false);
      expect(existsSync(first.gitDir)).toBe(false);
      const [slot] = idleSlots(home);
      expect(idleSlots(home)).toHaveLength(1);
      expect(existsSync(path.join(slot ?? '', 'tree', '.git'))).toBe(false);

      const second = await acquire();
      expect(second.path).toBe(path.join(home, 'worktrees', 'run-2'));
      expect(inode(path.join(second.path, 'src', 'lib', 'util.txt'))).toBe(untouched);
      expect(idleSlots(home)).toEqual([]);
      expect(treeOf(second.path)).toEqual(await freshTree());
      // The agent gets a repository of its own again: HEAD on its branch, a clean status, no trace of run-1.
      expect(git(second.path, 'symbolic-ref', 'HEAD')).toBe('refs/heads/agentgate/run-2');
      expect(git(second.path, 'status', '--porcelain', '--ignored')).toBe('');
      expect(git(second.path, 'for-each-ref', '--format=%(refname)')).toBe('refs/heads/agentgate/run-2');
      expect(git(second.gitDir, 'for-each-ref', '--format=%(refname)')).toBe('refs/heads/agentgate/run-2');
    });

    it('does not reuse a slot for a repository of the other object format at the same path', async () => {
      const first = await acquire();
      const untouched = inode(path.join(first.path, 'src', 'lib', 'util.txt'));
      await release(first);
      expect(idleSlots(home)).toHaveLength(1);
      // The repository is made again as SHA-256 with the same files: a slot's SHA-1 index means nothing to it.
      await rm(path.join(repo, '.git'), { recursive: true, force: true });
      git(repo, 'init', '--quiet', '--initial-branch=main', '--object-format=sha256');
      git(repo, 'add', '--all');
      git(repo, 'commit', '--quiet', '-m', 'base, sha-256');

      const second = await acquire();
      expect(second.baseSha).toMatch(/^[0-9a-f]{64}$/);
      expect(inode(path.join(second.path, 'src', 'lib', 'util.txt'))).not.toBe(untouched);
      expect(idleSlots(home)).toHaveLength(1);
      expect(treeOf(second.path)).toEqual(await freshTree());
      expect(git(second.path, 'status', '--porcelain', '--ignored')).toBe('');
    });

    it('bounds the idle slots per repository, keeping the most recent ones', async () => {
      const workspaces = await Promise.all([acquire(), acquire(), acquire()]);
      for (const ws of workspaces) await release(ws);
      expect(idleSlots(home)).toHaveLength(2);
      expect(poolEntries(home).filter((name) => name.startsWith('.'))).toEqual([]);
    });

    it('bounds the idle slots over all repositories', async () => {
      manager = manage({ pool: { maxIdle: 1 } });
      const other = path.join(root, 'other-repo');
      await mkdir(other);
      await writeFile(path.join(other, 'x.txt'), 'x\n');
      git(other, 'init', '--quiet', '--initial-branch=main');
      git(other, 'add', '--all');
      git(other, 'commit', '--quiet', '-m', 'other');
      const mine = await acquire();
      const theirs = await manager.acquire({ source: 'local', path: other }, { runId: 'other-run', signal: liveSignal() });
      await release(mine);
      await release(theirs);
      const slots = idleSlots(home);
      expect(slots).toHaveLength(1);
      expect(readdirSync(path.join(slots[0] ?? '', 'tree'))).toEqual(['x.txt']);
    });

    it('does not keep a worktree larger than the disk bound', async () => {
      manager = manage({ pool: { maxIdleBytes: 10 } });
      await release(await acquire());
      expect(idleSlots(home)).toEqual([]);
      expect(readdirSync(path.join(home, 'worktrees'))).toEqual(['.pool']);
    });

    it('does not keep a worktree holding a name that is not valid UTF-8 (it could not be scrubbed by name)', async () => {
      manager = manage();
      const ws = await acquire();
      // A directory named with a 0xff byte, holding data: read back as a string, its name names nothing.
      const bad = Buffer.concat([Buffer.from(`${ws.path}/evil`), Buffer.from([0xff])]);
      mkdirSync(bad);
      writeFileSync(Buffer.concat([bad, Buffer.from('/payload')]), 'x'.repeat(4096));
      await release(ws);
      expect(idleSlots(home)).toEqual([]);
      expect(readdirSync(path.join(home, 'worktrees')).filter((name) => name !== '.pool')).toEqual([]);
      // Logged, not hidden: the release fell back to removing the worktree whole.
      expect(warnings).toEqual(['worktree not pooled; removing it']);
      warnings.length = 0;
    });

    it('removes a worktree holding directories nested deeper than PATH_MAX, pooled or not', async () => {
      for (const options of [{ pool: false as const }, {}]) {
        manager = manage(options);
        const ws = await acquire();
        // 2,500 levels of `nest/` is over 12,000 bytes of path: Node's rm cannot walk it by absolute path.
        execFileSync('python3', ['-c', "import os\nfor _ in range(2500):\n    os.mkdir('nest'); os.chdir('nest')\nopen('leaf', 'w').write('x')"], { cwd: ws.path });
        await release(ws);
        expect(existsSync(ws.path)).toBe(false);
        // Pooled, the slot was scrubbed of the chain; unpooled, nothing is left at all.
        const slots = idleSlots(home);
        expect(slots).toHaveLength('pool' in options ? 0 : 1);
        for (const slot of slots) expect(execFileSync('find', [slot, '-name', 'nest'], { encoding: 'utf8' })).toBe('');
        expect(warnings).toEqual([]);
      }
    });

    it('deletes slots idle longer than the TTL, at reuse and when stale state is reaped', async () => {
      const clock = new ManualClock();
      manager = manage({ clock, pool: { idleTtlMs: 60_000 } });
      const first = await acquire();
      const untouched = inode(path.join(first.path, 'src', 'lib', 'util.txt'));
      await release(first);
      await clock.advance(60_001);
      await manager.reapStale({ isLive: () => false, signal: liveSignal() });
      expect(idleSlots(home)).toEqual([]);

      const second = await acquire();
      await release(second);
      await clock.advance(60_001);
      const third = await acquire();
      expect(inode(path.join(third.path, 'src', 'lib', 'util.txt'))).not.toBe(untouched);
      expect(poolEntries(home).filter((name) => name.startsWith('.evict') || !name.startsWith('.'))).toEqual([]);
      expect(treeOf(third.path)).toEqual(await freshTree());
    });
  });

  describe('when the agent leaves things behind', () => {
    let reused: Workspace;
    let kept: number;
    let xattrSet: boolean;

    beforeEach(async () => {
      const ws = await acquire();
      kept = inode(path.join(ws.path, 'pkg', 'deep', 'kept.txt'));
      const w = (...parts: string[]): string => path.join(ws.path, ...parts);
      // New and ignored files, in existing and new directories.
      await writeFile(w('src', 'new.js'), 'export const planted = 1;\n');
      await mkdir(w('node_modules', 'x'), { recursive: true });
      await writeFile(w('node_modules', 'x', 'index.js'), 'module.exports = "planted";\n');
      await writeFile(w('.env'), 'TOKEN=planted\n');
      await writeFile(w('src', 'lib', 'debug.log'), 'planted log\n');
      // A tracked file changed in place with its size and mtime put back.
      editHidingTimes(w('src', 'app.txt'), 'ONE\nTWO\nTHREE\n', root);
      // An unreadable directory with a file in it, and an unreadable tracked directory.
      await mkdir(w('hidden'));
      await writeFile(w('hidden', 'inside.txt'), 'planted\n');
      await chmod(w('hidden'), 0o000);
      await chmod(w('docs'), 0o000);
      // Symlinks to the outside: a new one, and one replacing a tracked file.
      await symlink(outside, w('src', 'outside-link'));
      await rm(w('README.md'));
      await symlink(path.join(outside, 'secret.txt'), w('README.md'));
      // A tracked file replaced by a hard link to a file outside the worktree.
      await rm(w('src', 'lib', 'util.txt'));
      linkSync(path.join(outside, 'secret.txt'), w('src', 'lib', 'util.txt'));
      // A FIFO, a nested repository, an executable bit, a tracked directory made read-only.
      execFileSync('mkfifo', [w('src', 'pipe')]);
      await mkdir(w('vendor', 'nested'), { recursive: true });
      git(w('vendor', 'nested'), 'init', '--quiet');
      await writeFile(w('vendor', 'nested', 'file.txt'), 'nested\n');
      await chmod(w('src', 'app.txt'), 0o755);
      await chmod(w('src', 'lib'), 0o555);
      // A hard link from outside to a tracked file (its directory untouched), and an extended attribute on
      // a tracked directory (invisible to stat; only its ctime tells).
      linkSync(w('data', 'table.csv'), path.join(outside, 'grab'));
      xattrSet = setUserXattr(w('conf'));
      // Files inside the submodule path.
      await writeFile(w('vendor-sub', 'planted.txt'), 'planted\n');
      // The agent's own repository: hooks, config, refs and commits.
      await mkdir(w('.git', 'hooks'), { recursive: true });
      await writeFile(w('.git', 'hooks', 'post-checkout'), '#!/bin/sh\ntouch /tmp/agentgate-planted\n', { mode: 0o755 });
      git(ws.path, 'config', 'core.hooksPath', '.git/hooks');
      git(ws.path, 'branch', 'planted-branch');
      await release(ws);
      reused = await acquire();
    });

    it('reuses the slot and the worktree holds exactly the base commit, entry by entry and byte by byte', async () => {
      expect(inode(path.join(reused.path, 'pkg', 'deep', 'kept.txt'))).toBe(kept);
      expect(treeOf(reused.path)).toEqual(await freshTree());
      expect(await readFile(path.join(reused.path, 'src', 'app.txt'), 'utf8')).toBe('one\ntwo\nthree\n');
      for (const planted of ['node_modules', '.env', 'hidden', 'vendor', 'src/new.js', 'src/pipe', 'src/outside-link', 'src/lib/debug.log']) {
        expect(existsSync(path.join(reused.path, planted))).toBe(false);
      }
    });

    it('never wrote through the links: the outside files and directory are unchanged, and share no inode with the worktree', async () => {
      expect(readFileSync(path.join(outside, 'secret.txt'), 'utf8')).toBe('outside secret\n');
      expect(readFileSync(path.join(outside, 'grab'), 'utf8')).toBe('a,b\n1,2\n');
      expect(readdirSync(outside).sort()).toEqual(['grab', 'secret.txt']);
      expect(statSync(path.join(outside, 'secret.txt')).nlink).toBe(1);
      expect(statSync(path.join(outside, 'grab')).nlink).toBe(1);
      expect(inode(path.join(reused.path, 'data', 'table.csv'))).not.toBe(inode(path.join(outside, 'grab')));
    });

    it('rebuilds a directory whose extended attributes the agent changed', () => {
      if (!xattrSet) return;
      expect(listUserXattrs(path.join(reused.path, 'conf'))).toEqual([]);
    });

    it('gives the agent a fresh .git: no hooks, no config of the previous agent, no other branch', async () => {
      expect(existsSync(path.join(reused.path, '.git', 'hooks'))).toBe(false);
      expect(readFileSync(path.join(reused.path, '.git', 'config'), 'utf8')).not.toContain('hooksPath');
      expect(git(reused.path, 'for-each-ref', '--format=%(refname)')).toBe(`refs/heads/${reused.branch}`);
      expect(git(reused.path, 'status', '--porcelain', '--ignored')).toBe('');
    });

    it('snapshots only what the next run changes', async () => {
      await writeFile(path.join(reused.path, 'src', 'mine.txt'), 'mine\n');
      const artifactsDir = path.join(home, 'runs', reused.runId);
      const outcome = await new Snapshotter().snapshot({ workspace: reused, iteration: 1, artifactsDir, signal: liveSignal() });
      if (!outcome.ok) throw outcome.error;
      expect(outcome.snapshot.changedFiles).toEqual(['src/mine.txt']);
      expect(outcome.snapshot.uncaptured).toEqual([]);
      expect(git(repo, 'show', '--stat', '--format=', reused.branch)).toContain('src/mine.txt');
    });
  });

  describe('when a pooled slot is changed while idle', () => {
    it('rewrites the changed file (mtime put back) and drops the added one', async () => {
      const first = await acquire();
      const kept = inode(path.join(first.path, 'pkg', 'deep', 'kept.txt'));
      await release(first);
      const [slot] = idleSlots(home);
      const tree = path.join(slot ?? '', 'tree');
      editHidingTimes(path.join(tree, 'src', 'lib', 'util.txt'), 'UTIL\n', root);
      await writeFile(path.join(tree, 'docs', 'added.md'), 'added\n');
      const reused = await acquire();
      expect(inode(path.join(reused.path, 'pkg', 'deep', 'kept.txt'))).toBe(kept);
      expect(treeOf(reused.path)).toEqual(await freshTree());
    });
  });

  describe('when a pooled slot cannot be reused', () => {
    it('says so in the log and checks out afresh', async () => {
      await release(await acquire());
      const [slot] = idleSlots(home);
      await writeFile(path.join(slot ?? '', 'manifest'), 'not a manifest');
      const next = await acquire();
      expect(warnings.splice(0)).toEqual(['pooled worktree not reused; checking out afresh']);
      expect(treeOf(next.path)).toEqual(await freshTree());
      expect(poolEntries(home)).toEqual([`.run-${next.runId}`]);
    });
  });

  describe('when the next run starts from another commit', () => {
    it('writes only what differs, including a file replaced by a directory and a directory by a file', async () => {
      const first = await acquire();
      const kept = inode(path.join(first.path, 'src', 'run.sh'));
      await release(first);
      const base = git(repo, 'rev-parse', 'HEAD');
      git(repo, 'rm', '--quiet', '-r', 'docs', 'README.md');
      await mkdir(path.join(repo, 'README.md'));
      await writeFile(path.join(repo, 'README.md', 'index.md'), 'now a directory\n');
      await writeFile(path.join(repo, 'docs'), 'now a file\n');
      await writeFile(path.join(repo, 'src', 'app.txt'), 'changed\n');
      git(repo, 'add', '--all');
      git(repo, 'commit', '--quiet', '-m', 'reshape');

      const second = await acquire();
      expect(inode(path.join(second.path, 'src', 'run.sh'))).toBe(kept);
      expect(treeOf(second.path)).toEqual(await freshTree());
      // The base tree the checkout read from the index it wrote over the pooled one is the new commit's.
      expect(second.baseTree).toBe(git(repo, 'rev-parse', 'HEAD^{tree}'));
      await release(second);

      const back = await acquire(manager, base);
      expect(treeOf(back.path)).toEqual(await freshTree(base));
      expect(back.baseTree).toBe(git(repo, 'rev-parse', `${base}^{tree}`));
    });
  });

  describe('when AgentGate crashed', () => {
    it('reuses nothing the run left: its worktree and pool state are reaped, and the next run checks out afresh', async () => {
      const crashed = await acquire();
      const original = inode(path.join(crashed.path, 'src', 'lib', 'util.txt'));
      await writeFile(path.join(crashed.path, 'src', 'planted.txt'), 'planted\n');
      // A restarted process: the crashed run is not live and never released.
      const restarted = manage();
      expect(await restarted.reapStale({ isLive: () => false, signal: liveSignal() })).toEqual([crashed.runId]);
      expect(poolEntries(home)).toEqual([]);
      const next = await acquire(restarted);
      expect(inode(path.join(next.path, 'src', 'lib', 'util.txt'))).not.toBe(original);
      expect(treeOf(next.path)).toEqual(await freshTree());
    });

    it('reaps a slot a crashed process was in the middle of reusing', async () => {
      await release(await acquire());
      const [slot] = idleSlots(home);
      await rename(slot ?? '', path.join(path.dirname(slot ?? ''), '.taken-run-dead'));
      await manage().reapStale({ isLive: () => false, signal: liveSignal() });
      expect(poolEntries(home)).toEqual([]);
    });

    it('keeps the pool state of a run that is still live', async () => {
      const live = await acquire();
      await manage().reapStale({ isLive: (runId) => runId === live.runId, signal: liveSignal() });
      expect(poolEntries(home)).toEqual([`.run-${live.runId}`]);
      await release(live);
      expect(idleSlots(home)).toHaveLength(1);
    });
  });

  describe('when the workspace path is not the run’s own directory', () => {
    it('neither scrubs nor pools it: a symlinked worktree is removed as a link, its target untouched', async () => {
      const ws = await acquire();
      await rm(ws.path, { recursive: true, force: true });
      await symlink(outside, ws.path);
      await release(ws);
      expect(warnings.splice(0)).toEqual(['worktree not pooled; removing it']);
      expect(existsSync(ws.path)).toBe(false);
      expect(readdirSync(outside)).toEqual(['secret.txt']);
      expect(idleSlots(home)).toEqual([]);
    });
  });

  describe('when sandboxed agents run one after another through the engine', () => {
    it('the second reuses the first one’s worktree and sees none of its leftovers, and its branch holds only its own change', async () => {
      const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: home }), logger: silentLogger(), baseEnv: { ...process.env } });
      try {
        const task = (agent: string): ReturnType<typeof commandTask> =>
          commandTask(repo, agent, { limits: { maxIterations: 1 }, extra: { verify: { version: '1', tests: [{ name: 'ok', command: 'true' }] } } as CommandTaskOptions['extra'] });
        const attacker = [
          'mkdir -p node_modules/x && echo planted > node_modules/x/index.js && echo TOKEN=planted > .env',
          "cp -p src/app.txt .git/app.orig && printf 'ONE\\nTWO\\nTHREE\\n' > src/app.txt && touch -r .git/app.orig src/app.txt",
          'mkdir hidden && echo planted > hidden/inside.txt && chmod 000 hidden',
          'ln -s / src/root-link && mkfifo src/pipe',
          'mkdir -p .git/hooks && printf "#!/bin/sh\\ntouch planted-by-hook\\n" > .git/hooks/post-commit && chmod +x .git/hooks/post-commit',
          'git config core.hooksPath .git/hooks',
          'mkdir -p vendor/nested && git -C vendor/nested init -q && echo nested > vendor/nested/file.txt',
        ].join(' && ');
        const first = await runtime.engine.run(task(attacker));
        expect(first.state).toBe('succeeded');
        expect(idleSlots(home)).toHaveLength(1);
        const kept = inode(path.join(idleSlots(home)[0] ?? '', 'tree', 'pkg', 'deep', 'kept.txt'));

        const observer = [
          'stat -c %i pkg/deep/kept.txt > observed.txt',
          'git status --porcelain --ignored --untracked-files=all >> observed.txt',
          'ls -A .git >> observed.txt',
          'cat src/app.txt >> observed.txt',
        ].join(' && ');
        const second = await runtime.engine.run(task(observer));
        expect(second.state).toBe('succeeded');
        const observed = git(repo, 'show', `${second.branch ?? ''}:observed.txt`).split('\n');
        expect(observed[0]).toBe(String(kept));
        // The agent's status: its own new file and nothing else, not even ignored files.
        expect(observed.filter((line) => /^(\?\?|!!| M|M |A )/.test(line))).toEqual(['?? observed.txt']);
        expect(observed).not.toContain('hooks');
        expect(observed.slice(-3)).toEqual(['one', 'two', 'three']);
        expect(git(repo, 'diff', '--name-only', `${second.branch ?? ''}~1`, second.branch ?? '')).toBe('observed.txt');
        expect(existsSync(path.join(repo, 'planted-by-hook'))).toBe(false);
      } finally {
        await runtime.close();
      }
    });
  });

  describe('when the pool is off', () => {
    it('checks out and removes every worktree (WorkspaceManager option)', async () => {
      manager = manage({ pool: false });
      const first = await acquire();
      const original = inode(path.join(first.path, 'src', 'lib', 'util.txt'));
      await release(first);
      expect(existsSync(path.join(home, 'worktrees', '.pool'))).toBe(false);
      const second = await acquire();
      expect(inode(path.join(second.path, 'src', 'lib', 'util.txt'))).not.toBe(original);
    });

    it('reads AGENTGATE_WORKTREE_POOL as on or off and refuses anything else', () => {
      expect(loadConfig({ AGENTGATE_WORKTREE_POOL: 'OFF' }).worktreePool).toBe(false);
      expect(loadConfig({ AGENTGATE_WORKTREE_POOL: 'on' }).worktreePool).toBe(true);
      expect(loadConfig({}).worktreePool).toBeUndefined();
      expect(() => loadConfig({ AGENTGATE_WORKTREE_POOL: 'maybe' })).toThrow('AGENTGATE_WORKTREE_POOL: expected on or off, got "maybe"');
    });

    it('is off for runs of a runtime configured with AGENTGATE_WORKTREE_POOL=off and for unsandboxed runs, and on by default', async () => {
      // Only a sandboxed run's worktree is reused (run-execution.ts): with bwrap missing, `auto` runs unsandboxed.
      const sandboxed = effectiveSandbox({ mode: 'auto', network: true }, process.env).kind !== 'none';
      const cases = [
        ['off', 'auto', false],
        [undefined, 'auto', sandboxed],
        [undefined, 'none', false],
      ] as const;
      for (const [setting, mode, pooled] of cases) {
        const runHome = path.join(root, `home-${setting ?? 'default'}-${mode}`);
        const env = { AGENTGATE_HOME: runHome, ...(setting !== undefined && { AGENTGATE_WORKTREE_POOL: setting }) };
        const runtime = await createRuntime({ config: loadConfig(env), logger: silentLogger(), baseEnv: { ...process.env } });
        try {
          const outcome = await runtime.engine.run(commandTask(repo, 'true', { limits: { maxIterations: 1 }, sandbox: { mode } }));
          expect(outcome.state).not.toBe('running');
        } finally {
          await runtime.close();
        }
        const pool = path.join(runHome, 'worktrees', '.pool');
        const entries = existsSync(pool) ? (await readdir(pool)).flatMap((key) => readdirSync(path.join(pool, key))) : [];
        expect(entries.filter((name) => !name.startsWith('.'))).toHaveLength(pooled ? 1 : 0);
        // A run whose worktree can never be pooled does not use the pool at all: not even a manifest of it is kept.
        if (!pooled) expect(entries).toEqual([]);
      }
    });
  });
});

describe('recordManifest', () => {
  afterEach(() => temp.cleanup());

  it('records statuses a change right after it cannot match, even one that puts size and mtime back', async () => {
    const dir = await realpath(await temp.make('agentgate-manifest-'));
    const tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, 'a'), { recursive: true });
    await writeFile(path.join(tree, 'a', 'f.txt'), 'abc\n');
    const stage = `100644 ${'0'.repeat(40)} 0\ta/f.txt\0`;
    const manifest = await recordManifest({ root: tree, lsFilesStage: stage, stampDir: dir });
    const entry = manifest.entries.get('a/f.txt');
    expect(entry?.key).toBe(statKey(lstatSync(path.join(tree, 'a', 'f.txt'))));
    editHidingTimes(path.join(tree, 'a', 'f.txt'), 'xyz\n', dir);
    expect(entry !== undefined && matchesEntry(entry, lstatSync(path.join(tree, 'a', 'f.txt')))).toBe(false);
  });

  it('refuses a checkout holding an entry the index does not list', async () => {
    const dir = await realpath(await temp.make('agentgate-manifest-'));
    const tree = path.join(dir, 'tree');
    await mkdir(tree);
    await writeFile(path.join(tree, 'stray.txt'), 'stray\n');
    await expect(recordManifest({ root: tree, lsFilesStage: '', stampDir: dir })).rejects.toMatchObject({ code: 'AG_ERR_WORKSPACE_SETUP' });
  });
});

describe('the scrubs', () => {
  let dir: string;
  let tree: string;
  let manifest: TreeManifest;

  /** A tree of three levels with its manifest, as AgentGate records it after a checkout. */
  beforeEach(async () => {
    dir = await realpath(await temp.make('agentgate-scrub-'));
    tree = path.join(dir, 'tree');
    await mkdir(path.join(tree, 'a', 'b'), { recursive: true });
    await mkdir(path.join(tree, 'c'), { recursive: true });
    await writeFile(path.join(tree, 'top.txt'), 'top\n');
    await writeFile(path.join(tree, 'a', 'one.txt'), 'one\n');
    await writeFile(path.join(tree, 'a', 'b', 'two.txt'), 'two\n');
    await writeFile(path.join(tree, 'c', 'three.txt'), 'three\n');
    const oid = '0'.repeat(40);
    const stage = ['top.txt', 'a/one.txt', 'a/b/two.txt', 'c/three.txt'].map((file) => `100644 ${oid} 0\t${file}\0`).join('');
    manifest = await recordManifest({ root: tree, lsFilesStage: stage, stampDir: dir });
  });

  afterEach(() => temp.cleanup());

  it('scrubIntoWorkspace drops a file changed in an untouched directory, carries the verified ones and rebuilds a changed directory', async () => {
    const two = inode(path.join(tree, 'a', 'b', 'two.txt'));
    const dirA = inode(path.join(tree, 'a'));
    editHidingTimes(path.join(tree, 'c', 'three.txt'), 'THREE\n', dir);
    await writeFile(path.join(tree, 'a', 'planted.txt'), 'planted\n');
    const target = path.join(dir, 'target');
    await scrubIntoWorkspace(tree, target, manifest);
    // Root files are never carried over; c/three.txt changed; a/ changed (a new entry) and was rebuilt,
    // keeping its verified subdirectory a/b with its file.
    expect(treeOf(target).map((line) => line.split(' ')[0])).toEqual(['a/', 'a/b/', 'a/b/two.txt', 'c/']);
    expect(inode(path.join(target, 'a', 'b', 'two.txt'))).toBe(two);
    expect(inode(path.join(target, 'a'))).not.toBe(dirA);
    expect(existsSync(path.join(target, 'c', 'three.txt'))).toBe(false);
  });

  it('scrubForPool keeps only verified files, counts their bytes and names the untouched directories it changed', async () => {
    editHidingTimes(path.join(tree, 'a', 'b', 'two.txt'), 'TWO\n', dir);
    await mkdir(path.join(tree, 'c', 'node_modules', 'x'), { recursive: true });
    await writeFile(path.join(tree, 'c', 'node_modules', 'x', 'i.js'), 'planted\n');
    execFileSync('mkfifo', [path.join(tree, 'fifo')]);
    const result = await scrubForPool(tree, manifest);
    expect(treeOf(tree).map((line) => line.split(' ')[0])).toEqual(['a/', 'a/b/', 'a/one.txt', 'c/', 'c/three.txt', 'top.txt']);
    expect(result.bytes).toBe('top\n'.length + 'one\n'.length + 'three\n'.length);
    expect(result.changedByScrub).toEqual(['a/b']);
  });
});
