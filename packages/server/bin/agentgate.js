#!/usr/bin/env node
/**
 * The `agentgate` command. Runs, in order of preference:
 *
 * 1. the bundled CLI `dist/cli/agentgate.cjs` (written by `pnpm build`, scripts/bundle-cli.mjs) with a V8
 *    code cache, so a command does not parse and compile again the code it ran last time;
 * 2. the compiled modules `dist/cli/main.js` (a build without the bundle);
 * 3. the TypeScript sources through tsx (a checkout that was never built).
 *
 * The code cache (docs/performance.md "Start-up"): one file per command name, bundle content and Node
 * version in `$AGENTGATE_HOME/code-cache/` (default `~/.agentgate/code-cache/`), written when the command
 * exits if it was missing or V8 rejected it. V8 checks only the source's length, so the bundle's content
 * hash is in the name. The cache is code this process runs: only a file and a directory owned by this user
 * and writable by nobody else are used, never through a symlink; a sandboxed agent cannot see the home at
 * all (docs/security.md). `AGENTGATE_CODE_CACHE=off` runs the bundle without it.
 */
import { closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';

/** The commands that get a cache file of their own; anything else (options only, a typo) shares `cli`. */
const COMMANDS = new Set(['exec', 'task', 'serve', 'worker', 'submit', 'status', 'list', 'cancel', 'events', 'cache', 'gates', 'branches', 'help']);

const here = dirname(fileURLToPath(import.meta.url));
const bundle = join(here, '..', 'dist', 'cli', 'agentgate.cjs');
const built = join(here, '..', 'dist', 'cli', 'main.js');

if (existsSync(bundle)) {
  runBundle(bundle);
} else if (existsSync(built)) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(here, '..', 'src', 'cli', 'main.ts')).href);
}

/** Compiles and runs the bundle as a CommonJS module, with the command's code cache when there is one. */
function runBundle(file) {
  const source = readFileSync(file, 'latin1'); // ASCII by construction (scripts/bundle-cli.mjs)
  const cacheFile = codeCacheFile(source);
  const cachedData = cacheFile === undefined ? undefined : readCodeCache(cacheFile);
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData: cachedData ?? undefined,
    importModuleDynamically: vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  if (cacheFile !== undefined && cachedData !== null && (cachedData === undefined || script.cachedDataRejected === true)) {
    // Written at exit, so the cache holds the functions this command compiled while it ran, not only the
    // top level. `exit` listeners run synchronously, after the CLI has decided its exit code; the CLI's
    // own exit listener (killing its agents' process groups) is prepended, so it runs first.
    process.once('exit', () => writeCodeCache(cacheFile, script));
  }
  const require = createRequire(file);
  const module = { exports: {}, id: file, filename: file, loaded: false, children: [], paths: [] };
  script.runInThisContext()(module.exports, require, module, file, dirname(file));
}

/**
 * `<home>/code-cache/<command>-<bundle sha256, 16 hex>-<node version>-<arch>.v8`, or undefined when the
 * cache is turned off or there is no home to keep it in. `<home>` is `$AGENTGATE_HOME` with `~` expanded
 * as the CLI's configuration does (schemas/config.ts), else `~/.agentgate`; a command's `--home` flag
 * does not move the cache.
 */
function codeCacheFile(source) {
  if (process.env.AGENTGATE_CODE_CACHE === 'off') return undefined;
  const id = /^\/\/ agentgate-bundle sha256=([0-9a-f]{64})\n/.exec(source)?.[1];
  const home = agentGateHome();
  if (id === undefined || home === undefined) return undefined;
  const first = process.argv[2] ?? '';
  const command = COMMANDS.has(first) ? first : 'cli';
  return join(home, 'code-cache', `${command}-${id.slice(0, 16)}-${process.version}-${process.arch}.v8`);
}

/** The AgentGate home as schemas/config.ts resolves it; undefined when neither it nor a user home is known. */
function agentGateHome() {
  let userHome = process.env.HOME;
  if (userHome === undefined || userHome.trim() === '') {
    try {
      userHome = homedir();
    } catch {
      userHome = undefined; // no HOME and no passwd entry (an arbitrary-uid container): no cache
    }
  }
  const configured = process.env.AGENTGATE_HOME;
  let home = configured !== undefined && configured.trim() !== '' ? configured : '~/.agentgate';
  if (home === '~' || home.startsWith('~/')) {
    if (userHome === undefined) return undefined;
    home = join(userHome, home.slice(1));
  }
  return resolve(home);
}

/**
 * Whether `stats` are of something only this user can have written: owned by the current user, not
 * writable by group or others. A cache is code this process will run.
 */
function ownedPrivately(stats) {
  return (process.getuid === undefined || stats.uid === process.getuid()) && (stats.mode & 0o022) === 0;
}

/**
 * The cache's bytes; undefined when there is none yet; null when it cannot or must not be used (reported:
 * the command runs without it, and does not write it either). Refused: a cache directory or file that is
 * a symlink, not ours or writable by others, or a file that is not a regular file.
 */
function readCodeCache(path) {
  try {
    const dir = lstatSync(dirname(path));
    if (!dir.isDirectory() || !ownedPrivately(dir)) return refuse(path, 'its directory is not a private directory of this user');
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const stats = fstatSync(fd);
      if (!stats.isFile() || !ownedPrivately(stats)) return refuse(path, 'it is not a private file of this user');
      return readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if (error.code === 'ENOENT') return undefined;
    if (error.code === 'ELOOP') return refuse(path, 'it is a symlink');
    process.stderr.write(`agentgate: could not read the code cache ${path}: ${error.message}\n`);
    return null;
  }
}

function refuse(path, why) {
  process.stderr.write(`agentgate: not using the code cache ${path}: ${why}\n`);
  return null;
}

/**
 * Replaces the command's cache (and removes that command's caches of other builds or Node versions).
 * A home that is read-only, full or not ours only costs the next start the compile time, so those errors
 * end here; any other error is reported, without changing the command's exit code.
 */
function writeCodeCache(path, script) {
  const dir = dirname(path);
  const name = path.slice(dir.length + 1);
  const prefix = name.slice(0, name.indexOf('-') + 1);
  const temporary = join(dir, `.${name}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`); // created exclusively (`wx`)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(temporary, script.createCachedData(), { mode: 0o600, flag: 'wx' });
    renameSync(temporary, path);
    for (const other of readdirSync(dir)) {
      if (other !== name && other.startsWith(prefix) && other.endsWith('.v8')) rmSync(join(dir, other), { force: true });
    }
  } catch (error) {
    try {
      rmSync(temporary, { force: true });
    } catch (cleanup) {
      process.stderr.write(`agentgate: could not remove ${temporary}: ${cleanup.message}\n`);
    }
    if (!['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT'].includes(error.code)) {
      process.stderr.write(`agentgate: could not write the code cache ${path}: ${error.message}\n`);
    }
  }
}
