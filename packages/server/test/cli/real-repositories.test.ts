/**
 * A JavaScript repository the way real ones look (issue 11): a pnpm lockfile, a test that uses a
 * dependency, the package manager pinned in `packageManager`, and a CI workflow that runs
 * `corepack enable` before `pnpm install` and `pnpm test`. Everything real: the CLI as a child process,
 * git, corepack downloading the pinned pnpm from the registry, pnpm installing from it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';
import { probeBwrap } from '../../src/util/sandbox-policy.js';

/** A pnpm other than AgentGate's own (9.15.9), so the test can tell whose ran the gates. */
const PINNED_PNPM = '9.12.0';

/** Without the variables `pnpm test` gave this test process (AgentGate must not need them removed, but the fixture's pnpm must not see them). */
const cleanEnv: Record<string, string> = Object.fromEntries(
  Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !/^(npm_|PNPM_|INIT_CWD$)/i.test(e[0])),
);

const PACKAGE_JSON = `${JSON.stringify(
  { name: 'parity', version: '1.0.0', private: true, packageManager: `pnpm@${PINNED_PNPM}`, scripts: { test: 'node test.js' }, dependencies: { 'is-odd': '3.0.1' } },
  null,
  2,
)}\n`;

const PARITY_BUGGY = `const isOdd = require('is-odd');\nexports.parity = (n) => (isOdd(n) ? 'even' : 'odd');\n`;
const PARITY_FIXED = `const isOdd = require('is-odd');\nexports.parity = (n) => (isOdd(n) ? 'odd' : 'even');\n`;

/** Prints which pnpm ran it and where is-odd came from, so the test can check both in the gate log. */
const TEST_JS = `const { parity } = require('./parity.js');
console.log('ran by', process.env.npm_config_user_agent);
console.log('is-odd from', require.resolve('is-odd'));
if (parity(3) !== 'odd' || parity(4) !== 'even') { console.error('parity is wrong: parity(3) = ' + parity(3)); process.exit(1); }
console.log('parity ok');
`;

const WORKFLOW = `name: CI
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with: { node-version: 20 }
      - run: corepack enable
      - run: pnpm install --frozen-lockfile
      - name: Test
        run: pnpm test
`;

const FIX_AGENT = `cat > parity.js <<'EOF'\n${PARITY_FIXED}EOF`;

/** Names, types and modification times of a directory's entries: what `corepack enable` would change. */
function listing(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const stat = lstatSync(join(dir, name));
      return `${name} ${stat.isSymbolicLink() ? 'link' : stat.isDirectory() ? 'dir' : 'file'} ${stat.mtimeMs}`;
    });
}

interface SetupFigures {
  /** Sum of the setup steps' durations, from the run's `gate_checked` events. */
  setupMs: number;
  messages: string[];
}

async function setupOf(home: string, runId: string): Promise<SetupFigures> {
  const { events } = await readRun(home, runId);
  const setup = events.filter((e) => e.type === 'gate_checked' && e.data['level'] === 'setup');
  return {
    setupMs: setup.reduce((sum, e) => sum + Number(e.data['durationMs']), 0),
    messages: setup.map((e) => String(e.data['message'] ?? '')),
  };
}

/** Every file under `dir` whose content contains `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (current: string): void => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const full = join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && readFileSync(full, 'utf8').includes(needle)) out.push(full);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

describe('a pnpm repository whose CI runs corepack enable', () => {
  let scratch: string;
  let lockfile: string;
  let repo: TempRepo;

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'agentgate-real-js-'));
    const lockDir = join(scratch, 'lock');
    mkdirSync(lockDir);
    writeFileSync(join(lockDir, 'package.json'), PACKAGE_JSON);
    execFileSync('npx', ['-y', `pnpm@${PINNED_PNPM}`, 'install', '--lockfile-only', '--ignore-scripts'], { cwd: lockDir, env: cleanEnv, stdio: 'ignore' });
    lockfile = readFileSync(join(lockDir, 'pnpm-lock.yaml'), 'utf8');
    repo = makeRepo(
      { 'package.json': PACKAGE_JSON, 'pnpm-lock.yaml': lockfile, 'parity.js': PARITY_BUGGY, 'test.js': TEST_JS, '.github/workflows/ci.yml': WORKFLOW, '.gitignore': 'node_modules/\n' },
      { example: false },
    );
  }, 180_000);

  afterAll(() => {
    repo.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('is fixed by the agent with the repository’s own pnpm and dependencies, the second run reuses the prepared environment, and the machine is unchanged', async () => {
    const machineDirs = [...new Set(['/usr/bin', '/usr/local/bin', dirname(process.execPath)])];
    const before = machineDirs.map(listing);

    const plan = await runCli(['gates', '--path', repo.repo], { env: { AGENTGATE_HOME: repo.home } });
    expect(plan.code).toBe(0);
    // The plan names the test job's steps, with corepack instead of shims on the machine.
    expect(plan.stdout + plan.stderr).toContain('corepack pnpm install --frozen-lockfile');
    expect(plan.stdout + plan.stderr).toContain('.github/workflows/ci.yml');

    const agent = writeAgent(repo.root, 'fix', FIX_AGENT);
    // This machine's npm registry is a caching proxy that serves package metadata without the signatures
    // corepack verifies by default; COREPACK_INTEGRITY_KEYS=0 is corepack's documented switch for that case.
    const env = { AGENTGATE_HOME: repo.home, COREPACK_INTEGRITY_KEYS: '0' };
    const exec = () => runCli(['exec', '--path', repo.repo, '--prompt', 'Fix parity', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json'], { env });

    const first = await exec();
    expect(first.code, first.stderr).toBe(0);
    expect(first.json?.['result']).toBe('passed');
    const firstRun = String(first.json?.['runId']);
    const firstSetup = await setupOf(repo.home, firstRun);
    expect(firstSetup.messages.join('\n')).not.toMatch(/restored from the environment cache/);

    // The gates ran the pinned pnpm (not AgentGate's) against the dependency installed in the run's worktree.
    const logs = filesContaining(join(repo.home, 'runs', firstRun), 'parity ok');
    expect(logs.length).toBeGreaterThan(0);
    const log = readFileSync(logs[0] ?? '', 'utf8');
    expect(log).toContain(`pnpm/${PINNED_PNPM}`);
    expect(log).toMatch(new RegExp(`is-odd from ${join(repo.home, 'worktrees', firstRun).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/node_modules/`));

    const second = await exec();
    expect(second.code, second.stderr).toBe(0);
    const secondSetup = await setupOf(repo.home, String(second.json?.['runId']));
    expect(secondSetup.messages.join('\n')).toMatch(/restored from the environment cache/);
    // In the bubblewrap sandbox (the default where it works) the pinned pnpm comes back with node_modules,
    // so the gates do not download it again into the run's empty sandbox home.
    if (probeBwrap().available) expect(secondSetup.messages.join('\n')).toContain('~/.cache/node/corepack/v1');
    console.log(`real JS repository: first setup ${firstSetup.setupMs} ms, second setup ${secondSetup.setupMs} ms`);
    // The hit links ~1,100 files of pnpm besides node_modules; the install downloaded pnpm and the packages.
    expect(secondSetup.setupMs).toBeLessThan(firstSetup.setupMs * 0.35);

    // corepack enable was never run: no pnpm/yarn shims next to node or in /usr/bin, nothing else changed there.
    expect(machineDirs.map(listing)).toEqual(before);
    // The user's checkout is untouched: no node_modules, the branch of each run holds the fix.
    expect(existsSync(join(repo.repo, 'node_modules'))).toBe(false);
    expect(git(repo.repo, 'status', '--porcelain')).toBe('');
    expect(git(repo.repo, 'show', `agentgate/${firstRun}:parity.js`)).toBe(PARITY_FIXED.trimEnd());
  }, 600_000);
});
