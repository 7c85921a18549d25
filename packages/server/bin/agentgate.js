#!/usr/bin/env node
/**
 * The `agentgate` command. Runs, in order of preference:
 *
 * 1. the bundled CLI `dist/cli/agentgate.cjs` (written by `pnpm build`, scripts/bundle-cli.mjs) with a V8
 *    code cache, so a command does not parse and compile again the code it ran last time;
 * 2. the compiled modules `dist/cli/main.js` (a build without the bundle);
 * 3. the TypeScript sources through tsx (a checkout that was never built).
 *
 * The code cache (docs/performance.md "Start-up"): one file per command name, Node version and bundle in
 * `$AGENTGATE_HOME/code-cache/` (default `~/.agentgate/code-cache/`), written when the command exits if it
 * was missing or V8 rejected it (another Node version, another build). It is trusted like everything else
 * in the home — a sandboxed agent cannot see the home at all (docs/security.md). `AGENTGATE_CODE_CACHE=off`
 * runs the bundle without it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';

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
  const cacheFile = codeCacheFile(file);
  const cachedData = cacheFile === undefined ? undefined : readCodeCache(cacheFile);
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData: cachedData ?? undefined,
    importModuleDynamically: vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  if (cacheFile !== undefined && cachedData !== null && (cachedData === undefined || script.cachedDataRejected === true)) {
    // Written at exit, so the cache holds the functions this command compiled while it ran, not only the
    // top level. `exit` listeners run synchronously, after the CLI has decided its exit code.
    process.once('exit', () => writeCodeCache(cacheFile, script));
  }
  const require = createRequire(file);
  const module = { exports: {}, id: file, filename: file, loaded: false, children: [], paths: [] };
  script.runInThisContext()(module.exports, require, module, file, dirname(file));
}

/**
 * `$AGENTGATE_HOME/code-cache/<command>-<bundle size>-<bundle mtime>-<node version>-<arch>.v8`, or undefined
 * when the cache is turned off. The command part is the first argument when it looks like a command name
 * (`exec`, `serve`, …), else `cli`: a user's typo never names a file.
 */
function codeCacheFile(file) {
  if (process.env.AGENTGATE_CODE_CACHE === 'off') return undefined;
  const configured = process.env.AGENTGATE_HOME;
  const home = resolve(configured !== undefined && configured.trim() !== '' ? configured : join(homedir(), '.agentgate'));
  const first = process.argv[2] ?? '';
  const command = /^[a-z][a-z-]{0,23}$/.test(first) ? first : 'cli';
  const { size, mtimeMs } = statSync(file);
  return join(home, 'code-cache', `${command}-${size}-${Math.trunc(mtimeMs)}-${process.version}-${process.arch}.v8`);
}

/**
 * The cache's bytes; undefined when there is none yet; null when it cannot be read (reported: the command
 * runs without it, and does not try to write it either).
 */
function readCodeCache(path) {
  try {
    return readFileSync(path);
  } catch (error) {
    if (error.code === 'ENOENT') return undefined;
    process.stderr.write(`agentgate: could not read the code cache ${path}: ${error.message}\n`);
    return null;
  }
}

/**
 * Replaces the command's cache (and removes that command's caches of other builds or Node versions).
 * A home that is read-only, full or not ours only costs the next start the compile time, so those errors
 * end here; any other error is reported, without changing the command's exit code.
 */
function writeCodeCache(path, script) {
  const dir = dirname(path);
  const name = path.slice(dir.length + 1);
  const prefix = `${name.slice(0, name.indexOf('-') + 1)}`;
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(temporary, script.createCachedData(), { mode: 0o600 });
    renameSync(temporary, path);
    for (const other of readdirSync(dir)) {
      if (other !== name && other.startsWith(prefix) && other.endsWith('.v8')) rmSync(join(dir, other), { force: true });
    }
  } catch (error) {
    rmSync(temporary, { force: true });
    if (!['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT'].includes(error.code)) {
      process.stderr.write(`agentgate: could not write the code cache ${path}: ${error.message}\n`);
    }
  }
}
