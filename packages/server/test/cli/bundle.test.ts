/**
 * The bundled CLI as the built package runs it (issue 12, start-up): `scripts/bundle-cli.mjs` writes one
 * CommonJS file and `bin/agentgate.js` runs it with a V8 code cache per command in
 * `$AGENTGATE_HOME/code-cache/`. Built once here; each test gets a package directory of its own (its
 * package.json, bin and dist/cli, node_modules linked to the real one), so the tests never read or change
 * the repository's `dist/`. Every process runs without `NODE_PATH` — a pnpm `.bin` shim (vitest's) sets
 * one that would find packages an installed `agentgate` cannot.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AGENTS, REPO_ROOT, agentOutput, git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';

const SERVER = join(REPO_ROOT, 'packages', 'server');
const VERSION = (JSON.parse(readFileSync(join(SERVER, 'package.json'), 'utf8')) as { version: string }).version;
const DESCRIPTION = 'Run coding agents against a git repository until your gates pass';
/** The modification time npm gives every file it installs. */
const NPM_MTIME = new Date('1985-10-26T08:15:00Z');

let root: string;
let bundle: string;
let bin: string;
const repos: TempRepo[] = [];

/** A package directory with bin/agentgate.js and the bundle (`edit` applied to its text), mtime as npm leaves it. */
function makePackage(name: string, edit: (text: string) => string = (text) => text): string {
  const pkg = join(root, name);
  mkdirSync(join(pkg, 'bin'), { recursive: true });
  mkdirSync(join(pkg, 'dist', 'cli'), { recursive: true });
  copyFileSync(join(SERVER, 'package.json'), join(pkg, 'package.json'));
  copyFileSync(join(SERVER, 'bin', 'agentgate.js'), join(pkg, 'bin', 'agentgate.js'));
  symlinkSync(join(SERVER, 'node_modules'), join(pkg, 'node_modules'));
  writeFileSync(join(pkg, 'dist', 'cli', 'agentgate.cjs'), edit(bundle), 'latin1');
  utimesSync(join(pkg, 'dist', 'cli', 'agentgate.cjs'), NPM_MTIME, NPM_MTIME);
  return join(pkg, 'bin', 'agentgate.js');
}

/** The environment of a user's shell: this one without the NODE_PATH of pnpm's shim. */
function userEnv(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...extra };
  delete env['NODE_PATH'];
  return env;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'agentgate-bundle-'));
  chmodSync(root, 0o755);
  execFileSync(process.execPath, [join(SERVER, 'scripts', 'bundle-cli.mjs'), join(root, 'agentgate.cjs')], { stdio: 'pipe' });
  bundle = readFileSync(join(root, 'agentgate.cjs'), 'latin1');
  bin = makePackage('package');
}, 120_000);

afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function agentgate(args: string[], env: Record<string, string>, program = bin): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [program, ...args], { env: userEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
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

/** The name the launcher gives `command`'s cache of this bundle. */
function cacheName(command: string): string {
  const id = /^\/\/ agentgate-bundle sha256=([0-9a-f]{64})\n/.exec(bundle)?.[1] ?? '';
  return `${command}-${id.slice(0, 16)}-${process.version}-${process.arch}.v8`;
}

describe('the bundle', () => {
  it('is one strict ASCII file named by its content, leaving out the server-only packages', () => {
    const bytes = Buffer.from(bundle, 'latin1');
    expect(bytes.every((byte) => byte < 0x80)).toBe(true);
    const [first = '', second = ''] = bundle.split('\n');
    const body = bundle.slice(first.length + 1);
    expect(first).toBe(`// agentgate-bundle sha256=${createHashHex(body)}`);
    expect(second).toBe('"use strict";');
    expect(bundle).not.toMatch(/node_modules\/\.pnpm\/fastify@/);
    expect(bundle).toMatch(/require\("fastify"\)/);
    expect(bundle).toMatch(/node_modules\/\.pnpm\/zod@/);
  });

  it('requires only packages the server package itself can resolve', () => {
    const required = new Set([...bundle.matchAll(/\brequire\("([^"]+)"\)/g)].map((match) => match[1] ?? ''));
    const fromPackage = createRequire(join(SERVER, 'dist', 'cli', 'agentgate.cjs'));
    const unresolved = [...required].filter((name) => {
      if (name.startsWith('node:')) return false;
      try {
        fromPackage.resolve(name, { paths: [join(SERVER, 'dist', 'cli')] });
        return false;
      } catch {
        return true;
      }
    });
    expect(required.size).toBeGreaterThan(5);
    expect(unresolved).toEqual([]);
  });

  it("gives every command of the CLI's help a cache of its own", async () => {
    const help = await agentgate(['--help'], { AGENTGATE_HOME: join(root, 'help-home') });
    const commands = [...help.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((match) => match[1]);
    const launcher = readFileSync(join(SERVER, 'bin', 'agentgate.js'), 'utf8');
    const listed = /const COMMANDS = new Set\(\[([^\]]*)\]\)/.exec(launcher)?.[1] ?? '';
    expect(commands.length).toBeGreaterThan(8);
    for (const command of commands) expect(listed).toContain(`'${command}'`);
  });
});

/** sha256 hex of a latin1 string, as scripts/bundle-cli.mjs names the bundle's content. */
function createHashHex(text: string): string {
  return createHash('sha256').update(Buffer.from(text, 'latin1')).digest('hex');
}

describe('the bundled CLI', () => {
  it('answers --version and --help, and writes a code cache for them', async () => {
    const home = mkdtempSync(join(root, 'home-'));
    const version = await agentgate(['--version'], { AGENTGATE_HOME: home });
    expect(version).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    const help = await agentgate(['--help'], { AGENTGATE_HOME: home });
    expect(help.code).toBe(0);
    for (const name of ['exec', 'serve', 'worker', 'gates', 'cache']) expect(help.stdout).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    expect(cacheFiles(home)).toEqual([cacheName('cli')]);
    // A typo gets no file of its own.
    expect((await agentgate(['exce'], { AGENTGATE_HOME: home })).code).toBe(2);
    expect(cacheFiles(home)).toEqual([cacheName('cli')]);
  });

  it('runs a fail-then-pass exec; the second run reuses the cache the first one wrote', async () => {
    const r = setup();
    const first = await exec(r);
    expect(first.code, first.stderr).toBe(0);
    const outcome = JSON.parse(first.stdout.trim()) as { runId: string; state: string; iterations: number; branch: string };
    expect(outcome).toMatchObject({ state: 'succeeded', iterations: 2 });
    expect(git(r.repo, 'show', `${outcome.branch}:src/math.js`)).toContain('return a * b');
    expect(agentOutput((await readRun(r.home, outcome.runId)).events)).toContain('attempt 2');
    expect(cacheFiles(r.home)).toEqual([cacheName('exec')]);
    const written = statSync(join(r.home, 'code-cache', cacheName('exec')));
    expect(written.mode & 0o077).toBe(0);

    const second = await exec(r);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout.trim())).toMatchObject({ state: 'succeeded', iterations: 2 });
    // Accepted by V8, so not written again.
    expect(cacheFiles(r.home)).toEqual([cacheName('exec')]);
    const after = statSync(join(r.home, 'code-cache', cacheName('exec')));
    expect({ ino: after.ino, mtimeMs: after.mtimeMs }).toEqual({ ino: written.ino, mtimeMs: written.mtimeMs });
  });

  it('recompiles over a corrupt cache, runs correctly and replaces it, removing caches of other builds', async () => {
    const r = setup();
    const dir = join(r.home, 'code-cache');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, cacheName('exec')), Buffer.alloc(4096, 0x5a), { mode: 0o600 });
    writeFileSync(join(dir, `exec-0000000000000000-v0.0.0-${process.arch}.v8`), 'an older build');
    const res = await exec(r);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout.trim())).toMatchObject({ state: 'succeeded', iterations: 2 });
    expect(cacheFiles(r.home)).toEqual([cacheName('exec')]);
    expect(readFileSync(join(dir, cacheName('exec'))).equals(Buffer.alloc(4096, 0x5a))).toBe(false);
  });

  it('never runs the cache of another bundle of the same size and modification time', async () => {
    const home = mkdtempSync(join(root, 'home-'));
    const replacement = 'Another description, of exactly the same length as the old one'.padEnd(DESCRIPTION.length, '!');
    expect(replacement.length).toBe(DESCRIPTION.length);
    // Rebuilt as the bundle script would: the first line names the new content.
    const older = makePackage('older', (text) => {
      const body = text.slice(text.indexOf('\n') + 1).replace(DESCRIPTION, replacement);
      return `// agentgate-bundle sha256=${createHashHex(body)}\n${body}`;
    });
    const newer = makePackage('newer');
    expect((await agentgate(['--help'], { AGENTGATE_HOME: home }, older)).stdout).toContain(replacement);
    expect((await agentgate(['--help'], { AGENTGATE_HOME: home }, newer)).stdout).toContain(DESCRIPTION);
  });

  it('keeps the cache in the home the CLI uses for AGENTGATE_HOME=~/…, never below the current directory', async () => {
    const userHome = mkdtempSync(join(root, 'user-'));
    const cwd = mkdtempSync(join(root, 'cwd-'));
    const res = spawnSync(process.execPath, [bin, '--version'], { cwd, env: userEnv({ HOME: userHome, AGENTGATE_HOME: '~/agentgate-home' }), encoding: 'utf8' });
    expect(res.status).toBe(0);
    expect(existsSync(join(cwd, '~'))).toBe(false);
    expect(readdirSync(join(userHome, 'agentgate-home', 'code-cache'))).toEqual([cacheName('cli')]);
  });

  it('refuses a cache that others can write or that is a symlink, and still runs', async () => {
    const home = mkdtempSync(join(root, 'home-'));
    expect((await agentgate(['--version'], { AGENTGATE_HOME: home })).code).toBe(0);
    const file = join(home, 'code-cache', cacheName('cli'));
    chmodSync(file, 0o666);
    const shared = await agentgate(['--version'], { AGENTGATE_HOME: home });
    expect(shared).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    expect(shared.stderr).toContain('not using the code cache');

    rmSync(file);
    const elsewhere = join(root, `planted-${Date.now()}.v8`);
    writeFileSync(elsewhere, Buffer.alloc(64, 1), { mode: 0o600 });
    symlinkSync(elsewhere, file);
    const linked = await agentgate(['--version'], { AGENTGATE_HOME: home });
    expect(linked).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    expect(linked.stderr).toContain('not using the code cache');
  });

  it('runs without a cache when AGENTGATE_CODE_CACHE=off, or when the home cannot hold one', async () => {
    const r = setup();
    const off = await exec(r, { AGENTGATE_CODE_CACHE: 'off' });
    expect(off.code, off.stderr).toBe(0);
    expect(existsSync(join(r.home, 'code-cache'))).toBe(false);

    // A file where the cache directory should be: the cache can be neither read nor written (reported),
    // and the command still succeeds.
    writeFileSync(join(r.home, 'code-cache'), 'not a directory');
    const blocked = await exec(r);
    expect(blocked.code, blocked.stderr).toBe(0);
    expect(JSON.parse(blocked.stdout.trim())).toMatchObject({ state: 'succeeded' });
    expect(blocked.stderr).toContain('not using the code cache');
    expect(blocked.stderr).not.toContain('could not write the code cache');
  });

  it.runIf(process.getuid?.() === 0 && existsSync('/usr/bin/setpriv'))('answers --version without HOME and without a passwd entry', () => {
    const pkg = makePackage('nohome');
    const env = userEnv({});
    delete env['HOME'];
    delete env['AGENTGATE_HOME'];
    const res = spawnSync('/usr/bin/setpriv', ['--reuid', '54321', '--regid', '54321', '--clear-groups', process.execPath, pkg, '--version'], { cwd: '/', env, encoding: 'utf8' });
    expect({ status: res.status, stdout: res.stdout, stderr: res.stderr }).toEqual({ status: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  it('starts the server, whose packages stay outside the bundle', async () => {
    const home = mkdtempSync(join(root, 'serve-'));
    const child = spawn(process.execPath, [bin, 'serve', '--port', '0'], { env: userEnv({ AGENTGATE_HOME: home, AGENTGATE_LOG_LEVEL: 'warn' }), stdio: ['ignore', 'ignore', 'pipe'] });
    const closed = new Promise((resolve) => child.once('close', resolve));
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
        child.on('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`serve exited with ${String(code)}:\n${stderr}`));
        });
      });
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const queue = await fetch(`${url}/api/v1/queue`);
      expect(await queue.json()).toMatchObject({ success: true, data: { running: 0 } });
      const openapi = (await (await fetch(`${url}/docs/json`)).json()) as { paths?: Record<string, unknown> };
      expect(Object.keys(openapi.paths ?? {})).toContain('/api/v1/work-orders');
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^# HELP /m);
    } finally {
      child.kill('SIGTERM');
      await closed;
    }
  }, 90_000);
});
