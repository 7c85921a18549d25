/**
 * `readIndexListing` against git itself: for every index layout it accepts, the listing is byte for byte
 * what `git ls-files -z --stage` prints (decoded as the CLI decodes git's output) and the root tree is
 * `rev-parse HEAD^{tree}`; every layout it does not handle, and every damaged file, gives undefined.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { readIndexListing } from '../../src/workspace/index-file.js';
import { git } from '../helpers/git-repo.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A repository with one commit of `files` (and a symlink, an executable and a gitlink), its index freshly read from that commit. */
function repository(options: { objectFormat?: 'sha256' } = {}): string {
  const repo = mkdtempSync(join(tmpdir(), 'agentgate-index-'));
  dirs.push(repo);
  git(repo, 'init', '-q', ...(options.objectFormat === undefined ? [] : [`--object-format=${options.objectFormat}`]));
  mkdirSync(join(repo, 'src', 'deep', 'er'), { recursive: true });
  for (let i = 0; i < 30; i += 1) writeFileSync(join(repo, 'src', i % 2 === 0 ? '' : 'deep', `file-${'x'.repeat(i)}.txt`), `content ${i}\n`);
  writeFileSync(join(repo, 'src', 'deep', 'er', 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(repo, 'ünïcode name.txt'), 'u\n');
  symlinkSync('src', join(repo, 'link'));
  git(repo, 'add', '-A');
  // A submodule: git records any commit id for a gitlink without looking for it.
  git(repo, 'update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(options.objectFormat === 'sha256' ? 64 : 40)},vendor/lib`);
  git(repo, 'commit', '-q', '-m', 'base');
  readTree(repo);
  return repo;
}

/** What AgentGate's checkout does: a fresh index read from HEAD with `read-tree --reset -u`. */
function readTree(repo: string): void {
  rmSync(join(repo, '.git', 'index'));
  git(repo, 'read-tree', '--reset', '-u', 'HEAD');
}

/** An empty blob written to the repository's objects. */
function emptyBlob(repo: string): string {
  writeFileSync(join(repo, '.git', 'empty'), '');
  return git(repo, 'hash-object', '-w', join(repo, '.git', 'empty'));
}

function lsFilesStage(repo: string): string {
  return execFileSync('git', ['ls-files', '-z', '--stage'], { cwd: repo, encoding: 'utf8' });
}

function index(repo: string): Buffer {
  return readFileSync(join(repo, '.git', 'index'));
}

describe('readIndexListing', () => {
  it('reads a fresh index as ls-files --stage prints it, with the tree it was read from', () => {
    const repo = repository();
    const listing = readIndexListing(index(repo), 20);
    expect(listing?.lsFilesStage).toBe(lsFilesStage(repo));
    expect(listing?.lsFilesStage).toContain('160000 ');
    expect(listing?.lsFilesStage).toContain('120000 ');
    expect(listing?.lsFilesStage).toContain('100755 ');
    expect(listing?.rootTree).toBe(git(repo, 'rev-parse', 'HEAD^{tree}'));
  });

  it('reads SHA-256 repositories with 32-byte ids', () => {
    const repo = repository({ objectFormat: 'sha256' });
    const listing = readIndexListing(index(repo), 32);
    expect(listing?.lsFilesStage).toBe(lsFilesStage(repo));
    expect(listing?.rootTree).toBe(git(repo, 'rev-parse', 'HEAD^{tree}'));
    expect(listing?.rootTree).toHaveLength(64);
  });

  it('reads names longer than the 12-bit length field and names that are not UTF-8 as git output is decoded', () => {
    const repo = repository();
    const blob = emptyBlob(repo);
    const long = `${'d'.repeat(200)}/`.repeat(25) + 'end.txt'; // 5,032 bytes: the length field saturates at 0xFFF
    git(repo, 'update-index', '--add', '--cacheinfo', `100644,${blob},${long}`);
    // A name with a byte that is not UTF-8, added through a NUL-separated list.
    execFileSync('git', ['update-index', '--add', '-z', '--index-info'], { cwd: repo, input: Buffer.concat([Buffer.from(`100644 ${blob}\tbad-`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt\0')]) });
    const listing = readIndexListing(index(repo), 20);
    expect(listing?.lsFilesStage).toBe(lsFilesStage(repo));
    expect(listing?.lsFilesStage).toContain(long);
    // The index changed after it was read from the tree: its cache tree no longer names a root.
    expect(listing?.rootTree).toBeUndefined();
  });

  it('reads version 3 (extended flags) and refuses version 4, a split index and unmerged entries', () => {
    const repo = repository();
    git(repo, 'update-index', '--skip-worktree', 'link');
    expect(index(repo).readUInt32BE(4)).toBe(3);
    expect(readIndexListing(index(repo), 20)?.lsFilesStage).toBe(lsFilesStage(repo));

    readTree(repo);
    git(repo, 'update-index', '--index-version', '4');
    expect(readIndexListing(index(repo), 20)).toBeUndefined();

    readTree(repo);
    git(repo, 'update-index', '--split-index');
    expect(readIndexListing(index(repo), 20)).toBeUndefined();
    git(repo, 'update-index', '--no-split-index');

    readTree(repo);
    const blob = emptyBlob(repo);
    execFileSync('git', ['update-index', '--index-info'], { cwd: repo, input: `100644 ${blob} 2\tconflict.txt\n` });
    expect(lsFilesStage(repo)).toContain(' 2\tconflict.txt');
    expect(readIndexListing(index(repo), 20)).toBeUndefined();
  });

  it('answers undefined, never throws, for a truncated or damaged file', () => {
    const repo = repository();
    const good = index(repo);
    expect(readIndexListing(good.subarray(0, 11), 20)).toBeUndefined();
    expect(readIndexListing(Buffer.from('not an index at all, just text of some length'), 20)).toBeUndefined();
    fc.assert(
      fc.property(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(good.length), (at, byte, length) => {
        const damaged = Buffer.from(good.subarray(0, Math.max(length, 1)));
        if (at < damaged.length) damaged[at] = byte;
        const listing = readIndexListing(damaged, 20);
        // Whatever it answers is either nothing or a listing of whole entries.
        if (listing !== undefined) expect(listing.lsFilesStage.endsWith('\0') || listing.lsFilesStage === '').toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
