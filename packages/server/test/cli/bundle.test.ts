/**
 * The bundled CLI as the built package runs it (issue 12, start-up): `scripts/bundle-cli.mjs` writes one
 * CommonJS file and `bin/agentgate.js` runs it with a V8 code cache per command in
 * `$AGENTGATE_HOME/code-cache/`. Built here into a package directory of the test's own (its package.json,
 * bin and dist/cli, node_modules linked to the real one), so the test never reads or changes the
 * repository's `dist/`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENTS, REPO_ROOT, agentOutput, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';

const SERVER = join(REPO_ROOT, 'packages', 'server');
const VERSION = (JSON.parse(readFileSync(join(SERVER, 'package.json'), 'utf8')) as { version: string }).version;

let pkg: string;
let bin: string;
const repos: TempRepo[] = [];

beforeAll(() => {
  pkg = mkdtempSync(join(tmpdir(), 'agentgate-bundle-'));
  mkdirSync(join(pkg, 'bin'));
  mkdirSync(join(pkg, 'dist', 'cli'), { recursive: true });
  copyFileSync(join(SERVER, 'package.json'), join(pkg, 'package.json'));
  copyFileSync(join(SERVER, 'bin', 'agentgate.js'), join(pkg, 'bin', 'agentgate.js'));
  symlinkSync(join(SERVER, 'node_modules'), join(pkg, 'node_modules'));
  execFileSync(process.execPath, [join(SERVER, 'scripts', 'bundle-cli.mjs'), join(pkg, 'dist', 'cli', 'agentgate.cjs')], { stdio: 'pipe' });
  bin = join(pkg, 'bin', 'agentgate.js');
}, 120_000);

afterAll(() => {
  for (const r of repos.splice(0)) r.cleanup();
  rmSync(pkg, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function agentgate(args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function setup(): TempRepo {
  const r = makeRepo();
  repos.push(r);
  return r;
}

function exec(r: TempRepo, env: Record<string, string> = {}): Promise<Result> {
  const agent = writeAgent(r.root, 'agent', AGENTS.failThenPass);
  return agentgate(['exec', '--path', r.repo, '--prompt', 'Implement multiply', '--agent', 'command', '--agent-command', `sh ${agent}`, '--sandbox', 'none', '--json'], { AGENTGATE_HOME: r.home, ...env });
}

function cacheFiles(home: string): string[] {
  const dir = join(home, 'code-cache');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

describe('the bundled CLI', () => {
  it('is one ASCII file that names none of the server-only packages it leaves out', () => {
    const text = readFileSync(join(pkg, 'dist', 'cli', 'agentgate.cjs'));
    expect(text.every((byte) => byte < 0x80)).toBe(true);
    const source = text.toString('latin1');
    expect(source.startsWith('#!')).toBe(false);
    // Kept external (loaded from node_modules when used), so not bundled: their own sources are absent.
    expect(source).not.toMatch(/node_modules\/\.pnpm\/fastify@/);
    expect(source).toMatch(/require\("fastify"\)/);
    // The run path is inside.
    expect(source).toMatch(/node_modules\/\.pnpm\/zod@/);
  });

  it('answers --version and --help, and writes a code cache for them', async () => {
    const home = mkdtempSync(join(tmpdir(), 'agentgate-bundle-home-'));
    try {
      const version = await agentgate(['--version'], { AGENTGATE_HOME: home });
      expect(version).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
      const help = await agentgate(['--help'], { AGENTGATE_HOME: home });
      expect(help.code).toBe(0);
      for (const name of ['exec', 'serve', 'worker', 'gates', 'cache']) expect(help.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
      expect(cacheFiles(home)).toEqual([expect.stringMatching(new RegExp(`^cli-\\d+-\\d+-${process.version.replace(/\./g, '\\.')}-${process.arch}\\.v8$`))]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('runs a fail-then-pass exec; the second run reuses the cache the first one wrote', async () => {
    const r = setup();
    const first = await exec(r);
    expect(first.code, first.stderr).toBe(0);
    const outcome = JSON.parse(first.stdout.trim()) as { runId: string; state: string; iterations: number; branch: string };
    expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
    expect(git(r.repo, 'show', `${outcome.branch}:src/math.js`)).toContain('return a * b');
    expect(agentOutput((await readRun(r.home, outcome.runId)).events)).toContain('attempt 2');
    const [cache] = cacheFiles(r.home);
    expect(cache).toMatch(/^exec-/);
    const written = statSync(join(r.home, 'code-cache', cache ?? ''));

    const second = await exec(r);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout.trim())).toMatchObject({ state: 'succeeded', iterations: 2 });
    // Accepted by V8, so not written again.
    expect(cacheFiles(r.home)).toEqual([cache]);
    const after = statSync(join(r.home, 'code-cache', cache ?? ''));
    expect({ ino: after.ino, mtimeMs: after.mtimeMs }).toEqual({ ino: written.ino, mtimeMs: written.mtimeMs });
  });

  it('recompiles over a corrupt cache, runs correctly and replaces the cache', async () => {
    const r = setup();
    const dir = join(r.home, 'code-cache');
    mkdirSync(dir, { recursive: true });
    const stamp = statSync(join(pkg, 'dist', 'cli', 'agentgate.cjs'));
    const name = `exec-${stamp.size}-${Math.trunc(stamp.mtimeMs)}-${process.version}-${process.arch}.v8`;
    writeFileSync(join(dir, name), Buffer.alloc(4096, 0x5a));
    writeFileSync(join(dir, `exec-1-1-v0.0.0-${process.arch}.v8`), 'an older build');
    const res = await exec(r);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout.trim())).toMatchObject({ state: 'succeeded', iterations: 2 });
    expect(cacheFiles(r.home)).toEqual([name]);
    expect(readFileSync(join(dir, name)).equals(Buffer.alloc(4096, 0x5a))).toBe(false);
  });

  it('runs without a cache when AGENTGATE_CODE_CACHE=off, or when the home cannot be written', async () => {
    const r = setup();
    const off = await exec(r, { AGENTGATE_CODE_CACHE: 'off' });
    expect(off.code, off.stderr).toBe(0);
    expect(existsSync(join(r.home, 'code-cache'))).toBe(false);

    // A file where the cache directory should be: the cache can be neither read nor written (ENOTDIR is
    // not one of the expected conditions, so it is reported), and the command still succeeds.
    writeFileSync(join(r.home, 'code-cache'), 'not a directory');
    const blocked = await exec(r);
    expect(blocked.code, blocked.stderr).toBe(0);
    expect(JSON.parse(blocked.stdout.trim())).toMatchObject({ state: 'succeeded' });
    expect(blocked.stderr).toContain('could not read the code cache');
    expect(blocked.stderr).not.toContain('could not write the code cache');
  });

  it('starts the server, whose packages stay outside the bundle', async () => {
    const home = mkdtempSync(join(tmpdir(), 'agentgate-bundle-serve-'));
    const child = spawn(process.execPath, [bin, 'serve', '--port', '0'], { env: { ...process.env, AGENTGATE_HOME: home, AGENTGATE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let stderr = '';
        const timer = setTimeout(() => reject(new Error(`serve did not start within 60 s:\n${stderr}`)), 60_000);
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
          stderr += chunk;
          const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
          if (match?.[1] !== undefined) {
            clearTimeout(timer);
            resolve(match[1]);
          }
        });
        child.on('exit', (code) => reject(new Error(`serve exited with ${String(code)}:\n${stderr}`)));
      });
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(200);
      const queue = await fetch(`${url}/api/v1/queue`);
      expect(queue.status).toBe(200);
      expect(await queue.json()).toMatchObject({ success: true, data: { running: 0 } });
      const metrics = await fetch(`${url}/metrics`);
      expect(await metrics.text()).toMatch(/^# HELP /m);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('close', resolve));
      rmSync(home, { recursive: true, force: true });
    }
  });
});
