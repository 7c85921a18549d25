/**
 * Brings a used worktree back to "nothing but verified files of its base commit", using the manifest
 * AgentGate recorded when it last made the worktree equal to that commit (`pool-manifest.ts`).
 *
 * - {@link scrubForPool} runs when a run ends, before the worktree enters the pool: it removes everything
 *   not in the manifest (new, ignored and untracked files, `node_modules`, nested repositories, the agent's
 *   `.git`, FIFOs, sockets, symlinks) and every tracked path whose status changed, so an idle slot holds at
 *   most the bytes of its base commit (the pool's disk bound counts them).
 * - {@link scrubIntoWorkspace} runs when a slot is reused, into the next run's workspace path. It checks
 *   every path again (the guarantee never rests on the pool's own bookkeeping) and rebuilds every directory
 *   whose status changed: a fresh directory takes the verified subdirectories, and the old one goes with all
 *   its files. A directory's extended attributes, default ACL or inode flags are invisible to `stat`, but
 *   setting them changes its ctime, so a directory the agent touched is never carried over — only its
 *   verified subdirectories are. The root is always rebuilt: it was renamed, which changes its ctime.
 *
 * Nothing here follows a symlink or opens a file: entries are `lstat`ed, renamed, unlinked or removed.
 * A file that is a hard link to a file elsewhere is unlinked, never written through.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, renameSync, unlinkSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { removeTree } from './isolated-git.js';
import { Pace, isDirectoryKind, joinRelative, lstatExact, matchesEntry, readdirRepairing, type TreeManifest } from './pool-manifest.js';

export interface PoolScrubResult {
  /** Bytes of the files left in the worktree (all verified files of the base commit). */
  bytes: number;
  /** Directories AgentGate changed itself (an entry removed) that were verified unchanged before: re-record them. */
  changedByScrub: string[];
}

/**
 * Removes from the worktree `root` everything the manifest does not vouch for. Directories are not rebuilt
 * here (the reuse does that); a directory that was unchanged and lost an untrusted file is reported in
 * `changedByScrub` so the caller can re-record it.
 */
export async function scrubForPool(root: string, manifest: TreeManifest): Promise<PoolScrubResult> {
  assertRealDirectory(root);
  const pace = new Pace();
  const changedByScrub: string[] = [];
  let bytes = 0;

  const visit = async (dir: string, absolute: string, unchanged: boolean): Promise<void> => {
    // A changed directory may have been made read-only by the agent: entries can only be removed from it
    // when it is writable again (it is rebuilt when reused anyway).
    if (!unchanged) chmodSync(absolute, 0o700);
    let removed = false;
    for (const dirent of unchanged ? readdirSync(absolute, { withFileTypes: true }) : readdirRepairing(absolute)) {
      if (pace.due()) await pace.yield();
      const file = path.join(absolute, dirent.name);
      const relative = joinRelative(dir, dirent.name);
      // A name that is not valid UTF-8 comes back with U+FFFD in it and names nothing: it could not be
      // removed by that name (rm's `force` would silently skip it). Such a worktree is not pooled; the
      // caller removes it whole.
      if (dirent.name.includes('\uFFFD') && lstatExact(file) === undefined) {
        throw new AgentGateError('AG_ERR_WORKSPACE_CLEANUP', `${relative}: a file name that is not valid UTF-8; the worktree is not reused`, { details: { path: relative } });
      }
      const entry = manifest.child(dir, dirent.name);
      const stats = entry === undefined ? undefined : lstatExact(file);
      if (entry === undefined || stats === undefined) {
        await removeEntry(file, dirent);
        removed = true;
      } else if (isDirectoryKind(entry.kind)) {
        if (stats.isDirectory()) {
          await visit(relative, file, matchesEntry(entry, stats));
        } else {
          await removeEntry(file, dirent);
          removed = true;
        }
      } else if (matchesEntry(entry, stats)) {
        bytes += stats.size;
      } else {
        await removeEntry(file, dirent);
        removed = true;
      }
    }
    if (removed && unchanged && dir !== '') changedByScrub.push(dir);
  };
  await visit('', root, false);
  return { bytes, changedByScrub };
}

/**
 * Builds the workspace `target` (which must not exist) from the pooled worktree `source`: verified
 * subdirectories are moved over (a changed one is rebuilt), verified files stay in them, and everything
 * else is left in `source` for the caller to remove. Root files are not carried over: the checkout writes
 * them again.
 */
export async function scrubIntoWorkspace(source: string, target: string, manifest: TreeManifest): Promise<void> {
  assertRealDirectory(source);
  const pace = new Pace();
  mkdirSync(target);
  const pending: Array<{ dir: string; absolute: string; unchanged: boolean }> = [];
  for (const moved of moveVerifiedDirectories(manifest, '', source, target)) pending.push({ dir: moved.relative, absolute: path.join(target, moved.name), unchanged: moved.unchanged });

  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { dir, absolute, unchanged } = next;
    if (pace.due()) await pace.yield();
    if (!unchanged) {
      // It may be read-only or unreadable (`chmod 000`): its verified subdirectories must be moved out of it.
      chmodSync(absolute, 0o700);
      const fresh = path.join(path.dirname(absolute), `.agentgate-rebuild-${randomBytes(6).toString('hex')}`);
      mkdirSync(fresh);
      const moved = moveVerifiedDirectories(manifest, dir, absolute, fresh);
      await removeTree(absolute);
      renameSync(fresh, absolute);
      for (const child of moved) pending.push({ dir: child.relative, absolute: path.join(absolute, child.name), unchanged: child.unchanged });
      continue;
    }
    for (const dirent of readdirSync(absolute, { withFileTypes: true })) {
      if (pace.due()) await pace.yield();
      const file = path.join(absolute, dirent.name);
      const entry = manifest.child(dir, dirent.name);
      const stats = entry === undefined ? undefined : lstatExact(file);
      if (entry === undefined || stats === undefined) {
        // Cannot happen in a directory whose ctime is unchanged; removed all the same.
        await removeEntry(file, dirent);
      } else if (isDirectoryKind(entry.kind)) {
        if (stats.isDirectory()) pending.push({ dir: joinRelative(dir, dirent.name), absolute: file, unchanged: matchesEntry(entry, stats) });
        else await removeEntry(file, dirent);
      } else if (!matchesEntry(entry, stats)) {
        await removeEntry(file, dirent);
      }
    }
  }
}

/**
 * Moves the subdirectories of `from` the manifest lists into `to`, deciding for each — before the move,
 * which changes its ctime — whether it is unchanged. A changed one is made writable so it can be moved
 * (moving a directory rewrites its `..`) and emptied.
 */
function moveVerifiedDirectories(manifest: TreeManifest, dir: string, from: string, to: string): Array<{ name: string; relative: string; unchanged: boolean }> {
  const moved: Array<{ name: string; relative: string; unchanged: boolean }> = [];
  for (const dirent of readdirRepairing(from)) {
    const entry = manifest.child(dir, dirent.name);
    if (entry === undefined || !isDirectoryKind(entry.kind) || !dirent.isDirectory()) continue;
    const file = path.join(from, dirent.name);
    const stats = lstatExact(file);
    if (stats === undefined || !stats.isDirectory()) continue;
    const unchanged = matchesEntry(entry, stats);
    if (!unchanged) chmodSync(file, 0o700);
    renameSync(file, path.join(to, dirent.name));
    moved.push({ name: dirent.name, relative: joinRelative(dir, dirent.name), unchanged });
  }
  return moved;
}

/** A worktree root that is a symlink (or anything but a directory) is never walked: its target is not ours. */
function assertRealDirectory(root: string): void {
  if (lstatExact(root)?.isDirectory() !== true) throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `${root} is not a directory`);
}

/** Removes one entry without following it: a directory recursively (read-only parts included), anything else unlinked. */
async function removeEntry(file: string, dirent: Dirent): Promise<void> {
  if (dirent.isDirectory()) await removeTree(file);
  else unlinkSync(file);
}
