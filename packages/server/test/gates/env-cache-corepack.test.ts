/**
 * The environment cache keeps the package manager corepack downloaded into the gates' sandbox home
 * (issue 12, real repositories): a repository pinning pnpm through `packageManager` gets it again in the
 * next run's fresh sandbox home instead of downloading it before its first gate. Real bubblewrap, real
 * corepack and pnpm against the registry; the second run's sandbox has no network, so its gate
 * `corepack pnpm --version` can only answer from the restored copy.
 *
 * `COREPACK_INTEGRITY_KEYS=0`: the registry this machine reaches serves no signatures (docs/performance.md).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvCache, HOME_CACHE_DIRS } from '../../src/gates/env-cache.js';
import { Verifier } from '../../src/gates/verifier.js';
import { probeBwrap, runWithSandboxPolicy } from '../../src/util/sandbox-policy.js';
import type { SandboxPolicy } from '../../src/util/sandbox-policy.js';
import { runSandboxRoot } from '../../src/util/sandbox.js';
import { systemClock } from '../../src/util/clock.js';
import { createRepo, gateContext, git } from './helpers.js';
import type { TempRepo } from './helpers.js';

const PNPM = '9.15.9';

const env: Record<string, string> = {
  ...Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !/^(npm_|PNPM_|INIT_CWD$|COREPACK_HOME$)/i.test(e[0]))),
  COREPACK_INTEGRITY_KEYS: '0',
  COREPACK_ENABLE_DOWNLOAD_PROMPT: '0',
};

const VERIFY_YAML = `version: "1"
environment:
  setup:
    - { name: install, command: corepack pnpm install --frozen-lockfile, timeout: 300 }
tests:
  - { name: test, command: node test.js, timeout: 60 }
  - { name: pnpm, command: corepack pnpm --version, timeout: 60 }
`;

const TEST_JS = `const isOdd = require('is-odd');
if (!isOdd(3) || isOdd(4)) { console.error('is-odd is wrong'); process.exit(1); }
`;

const PACKAGE_JSON = `${JSON.stringify({ name: 'fixture', version: '1.0.0', private: true, packageManager: `pnpm@${PNPM}`, dependencies: { 'is-odd': '3.0.1' } }, null, 2)}\n`;

/** Outside CI a machine without a working bwrap skips this file; CI installs bubblewrap, and there it must run. */
const BWRAP_WORKS = probeBwrap().available;

describe.skipIf(!BWRAP_WORKS && process.env['CI'] !== 'true')('the environment cache and corepack', () => {
  let scratch: string;
  let home: string;
  let repo: TempRepo;

  beforeAll(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'agentgate-env-corepack-'));
    home = path.join(scratch, 'home');
    // A real pnpm-lock.yaml, resolved by the pinned pnpm (downloaded into a scratch corepack home).
    const lock = path.join(scratch, 'lock');
    mkdirSync(lock);
    writeFileSync(path.join(lock, 'package.json'), PACKAGE_JSON);
    execFileSync('corepack', ['pnpm', 'install', '--lockfile-only'], { cwd: lock, env: { ...env, COREPACK_HOME: path.join(scratch, 'corepack') }, stdio: 'ignore' });
    repo = createRepo({ 'verify.yaml': VERIFY_YAML, 'test.js': TEST_JS, 'package.json': PACKAGE_JSON, 'pnpm-lock.yaml': readFileSync(path.join(lock, 'pnpm-lock.yaml'), 'utf8'), '.gitignore': 'node_modules/\n' });
  }, 180_000);

  afterAll(() => {
    repo?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** One run: a fresh clone as its worktree, artifacts under `$AGENTGATE_HOME/runs/<runId>`, setup then verify in `policy`. */
  async function run(runId: string, policy: SandboxPolicy, extraEnv: Record<string, string> = {}) {
    const dir = path.join(scratch, 'worktrees', runId);
    git(scratch, 'clone', '-q', repo.dir, dir);
    const ctx = gateContext({ ...repo, dir, artifactsDir: path.join(home, 'runs', runId) }, { env: { ...env, ...extraEnv } });
    const verifier = new Verifier();
    return runWithSandboxPolicy(policy, async () => {
      const setup = await verifier.setup(ctx);
      const verified = await verifier.verify(ctx);
      return { setup, verified, gateHome: path.join(runSandboxRoot(ctx.artifactsDir, 'gate').root, 'home') };
    });
  }

  it('keeps the pinned pnpm with node_modules and restores it into the next run\'s sandbox home', async () => {
    const first = await run('run-1', { mode: 'bwrap', network: true });
    expect(first.setup.ok).toBe(true);
    expect(first.setup.cache).toMatchObject({ status: 'miss', stored: true, dirs: ['node_modules'] });
    expect(first.verified.ok && first.verified.report.passed).toBe(true);
    const key = first.setup.cache?.status === 'miss' ? first.setup.cache.key : '';
    const entry = await new EnvCache({ root: path.join(home, 'env-cache'), clock: systemClock }).get(key);
    expect(entry?.homeDirs).toEqual([...HOME_CACHE_DIRS]);
    const kept = path.join(home, 'env-cache', key, 'home', '.cache', 'node', 'corepack', 'v1', 'pnpm', PNPM, 'package.json');
    expect((JSON.parse(readFileSync(kept, 'utf8')) as { version: string }).version).toBe(PNPM);
    // Corepack's own state beside v1/ stays the run's.
    expect(existsSync(path.join(home, 'env-cache', key, 'home', '.cache', 'node', 'corepack', 'lastKnownGood.json'))).toBe(false);

    // No network: pnpm can only come from the entry.
    const second = await run('run-2', { mode: 'bwrap', network: false });
    expect(second.setup.ok).toBe(true);
    expect(second.setup.cache).toMatchObject({ status: 'hit', key, dirs: ['node_modules'] });
    expect(second.setup.results[0]?.message).toContain('~/.cache/node/corepack/v1');
    expect(second.verified.ok).toBe(true);
    if (!second.verified.ok) return;
    expect(second.verified.report.gates.map((g) => [g.name, g.passed])).toEqual(expect.arrayContaining([['test', true], ['pnpm', true]]));
    expect(second.setup.cache).toMatchObject({ homeDirs: ['.cache/node/corepack/v1'] });
    const restored = path.join(second.gateHome, '.cache', 'node', 'corepack', 'v1', 'pnpm', PNPM, 'package.json');
    // Linked to the entry's sealed copy, like node_modules; the entry's copy shares no inode with run 1's home.
    expect(statSync(restored).ino).toBe(statSync(kept).ino);
    expect(statSync(kept).mode & 0o222).toBe(0);
    expect(statSync(kept).ino).not.toBe(statSync(path.join(first.gateHome, '.cache', 'node', 'corepack', 'v1', 'pnpm', PNPM, 'package.json')).ino);
  }, 300_000);

  it('restores nothing into a home it does not own: no sandbox, or COREPACK_HOME naming another place', async () => {
    // Without a sandbox the gates use the user's home; corepack goes to a scratch COREPACK_HOME here.
    const third = await run('run-3', { mode: 'none', network: true }, { COREPACK_HOME: path.join(scratch, 'corepack') });
    expect(third.setup.ok).toBe(true);
    expect(third.setup.cache).toMatchObject({ status: 'hit', dirs: ['node_modules'] });
    expect(third.setup.cache).not.toHaveProperty('homeDirs');
    expect(third.setup.results[0]?.message).not.toContain('corepack');
    expect(existsSync(third.gateHome)).toBe(false);

    const fourth = await run('run-4', { mode: 'bwrap', network: true }, { COREPACK_HOME: path.join(scratch, 'corepack') });
    expect(fourth.setup.ok).toBe(true);
    expect(fourth.setup.cache).toMatchObject({ status: 'hit', dirs: ['node_modules'] });
    expect(fourth.setup.cache).not.toHaveProperty('homeDirs');
    expect(existsSync(path.join(fourth.gateHome, '.cache', 'node', 'corepack'))).toBe(false);
  }, 300_000);

  it('goes on without the package manager when restoring it fails, and says so', async () => {
    const entries = path.join(home, 'env-cache');
    const [key] = readdirSync(entries).filter((name) => !name.startsWith('.'));
    // The entry's copy of the home is gone (a disk error, a prune racing the restore).
    rmSync(path.join(entries, key ?? '', 'home'), { recursive: true, force: true });
    const fifth = await run('run-5', { mode: 'bwrap', network: true });
    expect(fifth.setup.ok).toBe(true);
    expect(fifth.setup.cache).toMatchObject({ status: 'hit', dirs: ['node_modules'] });
    expect(fifth.setup.cache).not.toHaveProperty('homeDirs');
    expect(fifth.setup.cache).toHaveProperty('homeError', expect.stringMatching(/~\/\.cache\/node\/corepack\/v1 not restored/));
    expect(fifth.setup.results[0]?.message).toContain('not restored');
    // No partial copy for corepack to take as installed; it downloaded pnpm itself and the gates passed.
    expect(readdirSync(path.join(fifth.gateHome, '.cache', 'node', 'corepack')).filter((name) => name.includes('restoring'))).toEqual([]);
    expect(fifth.verified.ok && fifth.verified.report.passed).toBe(true);
  }, 300_000);
});
