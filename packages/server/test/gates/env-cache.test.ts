/**
 * The environment cache with a real npm against the registry: a JavaScript repository with a lockfile
 * whose test uses a dependency (`is-odd`), setup `npm ci`.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvCache, HOME_CACHE_DIRS, HOME_DIR_MAX_BYTES, cacheability } from '../../src/gates/env-cache.js';
import { Verifier } from '../../src/gates/verifier.js';
import type { SetupResult } from '../../src/gates/verifier.js';
import { ManualClock, systemClock } from '../../src/util/clock.js';
import { createRepo, gateContext, git } from './helpers.js';
import type { TempRepo } from './helpers.js';

/** AgentGate's own npm/pnpm settings must not reach the fixture's npm (issue 11 item 4 cleans them for real). */
const cleanEnv: Record<string, string> = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !/^(npm_|PNPM_|INIT_CWD$)/i.test(e[0])),
);

const VERIFY_YAML = `version: "1"
environment:
  setup:
    - { name: install, command: npm ci --no-audit --no-fund, timeout: 300 }
tests:
  - { name: test, command: node test.js, timeout: 60 }
`;

const TEST_JS = `const isOdd = require('is-odd');
if (!isOdd(3) || isOdd(4)) { console.error('is-odd is wrong'); process.exit(1); }
console.log('is-odd from', require.resolve('is-odd'));
`;

function packageJson(version: string): string {
  return `${JSON.stringify({ name: 'fixture', version: '1.0.0', private: true, scripts: { test: 'node test.js' }, dependencies: { 'is-odd': version } }, null, 2)}\n`;
}

/** A real package-lock.json for `is-odd@version`, resolved by npm against the registry. */
function lockfileFor(version: string, scratch: string): string {
  const dir = path.join(scratch, `lock-${version}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'package.json'), packageJson(version));
  execFileSync('npm', ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, env: cleanEnv, stdio: 'ignore' });
  return readFileSync(path.join(dir, 'package-lock.json'), 'utf8');
}

describe('the environment cache', () => {
  let scratch: string;
  let home: string;
  let locks: Record<string, string>;
  const repos: TempRepo[] = [];

  beforeAll(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'agentgate-env-cache-'));
    home = path.join(scratch, 'home');
    locks = { '3.0.1': lockfileFor('3.0.1', scratch), '3.0.0': lockfileFor('3.0.0', scratch) };
  }, 120_000);

  afterAll(() => {
    for (const repo of repos) repo.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** One run's worktree: a fresh clone of the same repository, artifacts under `$AGENTGATE_HOME/runs/<runId>`. */
  function runOf(source: TempRepo, runId: string): TempRepo {
    const dir = path.join(scratch, 'worktrees', runId);
    git(scratch, 'clone', '-q', source.dir, dir);
    return { ...source, dir, artifactsDir: path.join(home, 'runs', runId), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  async function setupAndVerify(run: TempRepo): Promise<{ setup: SetupResult; passed: boolean; wallMs: number }> {
    const verifier = new Verifier();
    const ctx = gateContext(run, { env: cleanEnv });
    const started = Date.now();
    const setup = await verifier.setup(ctx);
    const wallMs = Date.now() - started;
    const verified = await verifier.verify(ctx);
    return { setup, passed: verified.ok && verified.report.passed, wallMs };
  }

  function source(version: string): TempRepo {
    const repo = createRepo({ 'verify.yaml': VERIFY_YAML, 'test.js': TEST_JS, 'package.json': packageJson(version), 'package-lock.json': locks[version] ?? '', '.gitignore': 'node_modules/\n' });
    repos.push(repo);
    return repo;
  }

  describe('when a second run has the same lockfile', () => {
    it('restores node_modules without running npm, in a fraction of the first setup', async () => {
      const repo = source('3.0.1');
      const first = await setupAndVerify(runOf(repo, 'run-1'));
      expect(first.setup.ok).toBe(true);
      expect(first.setup.cache).toMatchObject({ status: 'miss', stored: true, dirs: ['node_modules'] });
      expect(first.passed).toBe(true);

      const second = runOf(repo, 'run-2');
      const result = await setupAndVerify(second);
      expect(result.setup.ok).toBe(true);
      expect(result.setup.cache).toMatchObject({ status: 'hit', dirs: ['node_modules'] });
      expect(result.setup.results[0]?.message).toMatch(/restored from the environment cache/);
      // The run's gates use the repository's own dependency, now in its worktree.
      expect(result.passed).toBe(true);
      const installed = path.join(second.dir, 'node_modules', 'is-odd', 'package.json');
      expect((JSON.parse(readFileSync(installed, 'utf8')) as { version: string }).version).toBe('3.0.1');
      expect(statSync(path.join(second.dir, 'node_modules')).isDirectory()).toBe(true);
      // Linked, not symlinked, and sealed against in-place writes.
      expect(statSync(installed).nlink).toBeGreaterThan(1);
      expect(statSync(installed).mode & 0o222).toBe(0);

      const firstMs = first.setup.results[0]?.durationMs ?? 0;
      const secondMs = result.setup.results.reduce((sum, r) => sum + r.durationMs, 0);
      console.log(`env-cache: first setup (npm ci) ${firstMs} ms, wall ${first.wallMs} ms; second setup (hit) ${secondMs} ms, wall ${result.wallMs} ms`);
      expect(secondMs).toBeLessThan(firstMs * 0.15);
      expect(result.wallMs).toBeLessThan(first.wallMs * 0.15);
    }, 240_000);
  });

  describe('when the lockfile changed', () => {
    it('misses and stores a new entry next to the old one', async () => {
      const repo = source('3.0.1');
      const before = await new EnvCache({ root: path.join(home, 'env-cache'), clock: systemClock }).list();
      await setupAndVerify(runOf(repo, 'run-3'));
      writeFileSync(path.join(repo.dir, 'package.json'), packageJson('3.0.0'));
      writeFileSync(path.join(repo.dir, 'package-lock.json'), locks['3.0.0'] ?? '');
      git(repo.dir, 'commit', '-qam', 'older is-odd');
      const changed = runOf(repo, 'run-4');
      const result = await setupAndVerify(changed);
      expect(result.setup.cache).toMatchObject({ status: 'miss', stored: true });
      expect(result.passed).toBe(true);
      const after = await new EnvCache({ root: path.join(home, 'env-cache'), clock: systemClock }).list();
      expect(after.length).toBeGreaterThan(before.length);
      expect(after.map((e) => e.key)).toContain(result.setup.cache?.status === 'miss' ? result.setup.cache.key : 'none');
      const installed = JSON.parse(readFileSync(path.join(changed.dir, 'node_modules', 'is-odd', 'package.json'), 'utf8')) as { version: string };
      expect(installed.version).toBe('3.0.0');
    }, 240_000);
  });

  describe('materialising: hard links against copies', () => {
    it('measures both on the stored entry', async () => {
      const cacheRoot = path.join(home, 'env-cache');
      const [entry] = await new EnvCache({ root: cacheRoot, clock: systemClock }).list();
      if (entry === undefined) throw new Error('no entry: the tests above store one');
      const times: Record<string, number> = {};
      for (const mode of ['hardlink', 'copy'] as const) {
        const target = mkdtempSync(path.join(scratch, `materialize-${mode}-`));
        const cache = new EnvCache({ root: cacheRoot, clock: systemClock, materialize: mode });
        const started = process.hrtime.bigint();
        await cache.materialize(entry, target);
        times[mode] = Number(process.hrtime.bigint() - started) / 1e6;
        expect(existsSync(path.join(target, 'node_modules', 'is-odd', 'index.js'))).toBe(true);
      }
      console.log(`env-cache: ${entry.fileCount} files, ${entry.sizeBytes} bytes: hardlink ${times.hardlink?.toFixed(1)} ms, copy ${times.copy?.toFixed(1)} ms`);
    });
  });
});

describe('EnvCache.prune', () => {
  it('evicts the least recently used entries beyond the size bound', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agentgate-env-prune-'));
    try {
      const clock = new ManualClock();
      const cache = new EnvCache({ root: path.join(root, 'cache'), clock, maxBytes: Number.MAX_SAFE_INTEGER });
      const work = path.join(root, 'work');
      mkdirSync(path.join(work, 'node_modules', 'dep'), { recursive: true });
      writeFileSync(path.join(work, 'node_modules', 'dep', 'index.js'), 'x'.repeat(1000));
      const keys = ['aaaaaaaaaaaa', 'bbbbbbbbbbbb', 'cccccccccccc'];
      for (const key of keys) {
        await cache.store({ key, repository: 'r', commands: ['npm ci'], lockfiles: ['package-lock.json'], dirs: ['node_modules'], worktreePath: work });
        await clock.advance(1000);
      }
      // Using the oldest makes the second one the least recently used.
      const oldest = await cache.get('aaaaaaaaaaaa');
      if (oldest === undefined) throw new Error('entry missing');
      const target = path.join(root, 'target');
      cpSync(work, target, { recursive: true, filter: (p) => !p.includes('node_modules') });
      await cache.materialize(oldest, target);

      expect(await cache.prune({ maxBytes: 2000 })).toEqual(['bbbbbbbbbbbb']);
      expect((await cache.list()).map((e) => e.key)).toEqual(['aaaaaaaaaaaa', 'cccccccccccc']);
      expect(await cache.prune({ maxBytes: 0 })).toEqual(['cccccccccccc', 'aaaaaaaaaaaa']);
      expect(await cache.list()).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('EnvCache home directories', () => {
  const pnpm = path.join('.cache', 'node', 'corepack', 'v1', 'pnpm', '9.0.0', 'bin', 'pnpm.cjs');
  let root: string;
  let cache: EnvCache;
  let work: string;
  const store = (key: string, home: string, dirs: readonly string[] = HOME_CACHE_DIRS) =>
    cache.store({ key, repository: 'r', commands: ['corepack pnpm install'], lockfiles: ['pnpm-lock.yaml'], dirs: ['node_modules'], worktreePath: work, home: { path: home, dirs } });
  /** A sandbox home as a setup leaves it: pnpm downloaded by corepack, and corepack's state file beside v1/. */
  function homeWithPnpm(name: string): string {
    const home = path.join(root, name);
    mkdirSync(path.dirname(path.join(home, pnpm)), { recursive: true });
    writeFileSync(path.join(home, pnpm), 'console.log("9.0.0");\n');
    writeFileSync(path.join(home, '.cache', 'node', 'corepack', 'lastKnownGood.json'), '{}');
    return home;
  }

  beforeAll(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'agentgate-env-home-'));
    cache = new EnvCache({ root: path.join(root, 'cache'), clock: new ManualClock() });
    work = path.join(root, 'work');
    mkdirSync(path.join(work, 'node_modules', 'dep'), { recursive: true });
    writeFileSync(path.join(work, 'node_modules', 'dep', 'index.js'), 'module.exports = 1;\n');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('keeps copies of the home directories that exist and restores them into the home it is given', async () => {
    const runHome = homeWithPnpm('run-home');
    const { meta } = await store('dddddddddddd', runHome, [...HOME_CACHE_DIRS, '.cache/never-made']);
    // Only what exists is kept, and its size counts towards the bound.
    expect(meta.homeDirs).toEqual(['.cache/node/corepack/v1']);
    expect(meta.fileCount).toBe(2);
    expect((await cache.get('dddddddddddd'))?.homeDirs).toEqual(['.cache/node/corepack/v1']);
    // Copied, not linked: a later gate of the storing run owns its home and could make the file writable again.
    const kept = path.join(root, 'cache', 'dddddddddddd', 'home', pnpm);
    expect(statSync(kept).nlink).toBe(1);
    expect(statSync(kept).mode & 0o222).toBe(0);
    expect(statSync(path.join(runHome, pnpm)).mode & 0o200).not.toBe(0);

    const nextHome = path.join(root, 'next-home');
    mkdirSync(nextHome);
    expect(await cache.restoreHome(meta, nextHome)).toEqual(['.cache/node/corepack/v1']);
    expect(readFileSync(path.join(nextHome, pnpm), 'utf8')).toBe('console.log("9.0.0");\n');
    // Restored like node_modules: linked to the entry's sealed copy.
    expect(statSync(path.join(nextHome, pnpm)).ino).toBe(statSync(kept).ino);
    expect(existsSync(path.join(nextHome, '.cache', 'node', 'corepack', 'lastKnownGood.json'))).toBe(false);

    // materialize puts back node_modules only; the home is restoreHome's.
    const bare = path.join(root, 'bare');
    mkdirSync(bare);
    await cache.materialize(meta, bare);
    expect(existsSync(path.join(bare, 'node_modules', 'dep', 'index.js'))).toBe(true);
    expect(existsSync(path.join(bare, '.cache'))).toBe(false);
  });

  it('never reads a home directory through a symlink or a file on the way down, and keeps node_modules', async () => {
    // `.cache` made a link to a directory outside the run (what an install script in the sandbox could do).
    const outside = homeWithPnpm('outside');
    const linked = path.join(root, 'linked-home');
    mkdirSync(linked);
    symlinkSync(path.join(outside, '.cache'), path.join(linked, '.cache'));
    const viaLink = await store('eeeeeeeeeeee', linked);
    expect(viaLink.meta.homeDirs).toBeUndefined();
    expect(viaLink.meta.dirs).toEqual(['node_modules']);
    expect(existsSync(path.join(root, 'cache', 'eeeeeeeeeeee', 'home'))).toBe(false);
    // Nothing outside was sealed or linked.
    expect(statSync(path.join(outside, pnpm)).mode & 0o200).not.toBe(0);
    expect(statSync(path.join(outside, pnpm)).nlink).toBe(1);

    // The last directory a link, and a file where a directory belongs: not kept either, and no error.
    const lastLinked = path.join(root, 'last-linked');
    mkdirSync(path.join(lastLinked, '.cache', 'node', 'corepack'), { recursive: true });
    symlinkSync(path.join(outside, '.cache', 'node', 'corepack', 'v1'), path.join(lastLinked, '.cache', 'node', 'corepack', 'v1'));
    expect((await store('ffffffffffff', lastLinked)).meta.homeDirs).toBeUndefined();
    const fileInTheWay = path.join(root, 'file-in-the-way');
    mkdirSync(path.join(fileInTheWay, '.cache'), { recursive: true });
    writeFileSync(path.join(fileInTheWay, '.cache', 'node'), 'not a directory');
    expect((await store('abababababab', fileInTheWay)).meta.homeDirs).toBeUndefined();
  });

  it('restores into the home itself: a symlink on the way is replaced, what it names is left alone', async () => {
    const meta = await cache.get('dddddddddddd');
    if (meta === undefined) throw new Error('entry missing');
    const elsewhere = path.join(root, 'elsewhere');
    mkdirSync(path.join(elsewhere, 'node', 'corepack', 'v1'), { recursive: true });
    writeFileSync(path.join(elsewhere, 'node', 'corepack', 'v1', 'keep.txt'), 'mine');
    const home = path.join(root, 'home-with-link');
    mkdirSync(home);
    symlinkSync(elsewhere, path.join(home, '.cache'));
    expect(await cache.restoreHome(meta, home)).toEqual(['.cache/node/corepack/v1']);
    expect(lstatSync(path.join(home, '.cache')).isSymbolicLink()).toBe(false);
    expect(readFileSync(path.join(home, pnpm), 'utf8')).toBe('console.log("9.0.0");\n');
    expect(readFileSync(path.join(elsewhere, 'node', 'corepack', 'v1', 'keep.txt'), 'utf8')).toBe('mine');
    expect(existsSync(path.join(elsewhere, 'node', 'corepack', 'v1', 'pnpm'))).toBe(false);
  });

  it('restores a file in the way as a directory, and keeps no home directory holding more than the bound', async () => {
    const meta = await cache.get('dddddddddddd');
    if (meta === undefined) throw new Error('entry missing');
    const home = path.join(root, 'home-with-file');
    mkdirSync(home);
    writeFileSync(path.join(home, '.cache'), 'a file where a directory belongs');
    expect(await cache.restoreHome(meta, home)).toEqual(['.cache/node/corepack/v1']);
    expect(readFileSync(path.join(home, pnpm), 'utf8')).toBe('console.log("9.0.0");\n');
    expect(readdirSync(path.join(home, '.cache', 'node', 'corepack'))).toEqual(['v1']);

    // A sparse file counts at its full size: nothing is copied, node_modules is still kept.
    const big = homeWithPnpm('big-home');
    const filler = path.join(big, '.cache', 'node', 'corepack', 'v1', 'filler');
    writeFileSync(filler, '');
    truncateSync(filler, HOME_DIR_MAX_BYTES + 1);
    const stored = await store('bcbcbcbcbcbc', big);
    expect(stored.meta.homeDirs).toBeUndefined();
    expect(stored.meta.dirs).toEqual(['node_modules']);
  });

  it('materialises node_modules inside the workspace even when a directory on the way is a symlink', async () => {
    const nested = path.join(root, 'nested-work');
    mkdirSync(path.join(nested, 'pkg', 'node_modules', 'dep'), { recursive: true });
    writeFileSync(path.join(nested, 'pkg', 'node_modules', 'dep', 'index.js'), 'module.exports = "entry";\n');
    const { meta } = await cache.store({ key: 'adadadadadad', repository: 'r', commands: ['npm ci'], lockfiles: ['package-lock.json'], dirs: ['pkg/node_modules'], worktreePath: nested });
    // The next run's agent made `pkg` a link to a directory outside its workspace (say, another entry).
    const victim = path.join(root, 'victim');
    mkdirSync(path.join(victim, 'node_modules'), { recursive: true });
    writeFileSync(path.join(victim, 'node_modules', 'keep.js'), 'not yours\n');
    const workspace = path.join(root, 'next-work');
    mkdirSync(workspace);
    symlinkSync(victim, path.join(workspace, 'pkg'));
    await cache.materialize(meta, workspace);
    expect(readFileSync(path.join(victim, 'node_modules', 'keep.js'), 'utf8')).toBe('not yours\n');
    expect(existsSync(path.join(victim, 'node_modules', 'dep'))).toBe(false);
    expect(lstatSync(path.join(workspace, 'pkg')).isSymbolicLink()).toBe(false);
    expect(readFileSync(path.join(workspace, 'pkg', 'node_modules', 'dep', 'index.js'), 'utf8')).toBe('module.exports = "entry";\n');
  });

  it('treats a meta.json naming anything but a directory strictly inside the home or workspace as no entry', async () => {
    const meta = await cache.get('dddddddddddd');
    if (meta === undefined) throw new Error('entry missing');
    const metaFile = path.join(root, 'cache', 'dddddddddddd', 'meta.json');
    for (const bad of [{ homeDirs: ['../../escape'] }, { homeDirs: [''] }, { homeDirs: ['.'] }, { homeDirs: ['.cache//node'] }, { dirs: [''] }, { dirs: ['.'] }]) {
      writeFileSync(metaFile, JSON.stringify({ ...meta, ...bad }));
      expect(await cache.get('dddddddddddd')).toBeUndefined();
    }
    await expect(store('cdcdcdcdcdcd', path.join(root, 'run-home'), ['../outside'])).rejects.toThrow(/not a directory inside the home/);
  });
});

describe('cacheability', () => {
  it('caches only plain package-manager installs with a lockfile and no root install script', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agentgate-env-able-'));
    try {
      writeFileSync(path.join(root, 'package.json'), '{"name":"x"}');
      expect(await cacheability([{ name: 'i', command: 'npm ci' }], root)).toMatchObject({ cacheable: false, reason: 'no lockfile at the repository root' });
      writeFileSync(path.join(root, 'package-lock.json'), '{}');
      expect(await cacheability([{ name: 'i', command: 'npm ci' }], root)).toEqual({ cacheable: true, lockfiles: ['package-lock.json'] });
      expect(await cacheability([{ name: 'i', command: 'pnpm install --frozen-lockfile' }], root)).toMatchObject({ cacheable: true });
      expect(await cacheability([{ name: 'i', command: 'npm ci' }, { name: 'b', command: 'npm run build' }], root)).toMatchObject({ cacheable: false });
      expect(await cacheability([{ name: 'i', command: 'npm ci && rm -rf /' }], root)).toMatchObject({ cacheable: false });
      writeFileSync(path.join(root, 'package.json'), '{"name":"x","scripts":{"postinstall":"node build.js"}}');
      expect(await cacheability([{ name: 'i', command: 'npm ci' }], root)).toMatchObject({ cacheable: false });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
