/**
 * AgentGate's Python virtualenvs, one per run (docs/gates.md "Python environments"): finding the real
 * interpreter behind the `python3` on PATH, creating the virtualenv, giving it the interpreter's tools,
 * and the environment setup steps and gates run with.
 *
 * python-strip.ts takes the project itself out of the virtualenv again; python-project.ts reads the
 * projects' metadata and links the worktree's packages in instead.
 *
 * The invariant: the gates of a run import the run's worktree, never the user's checkout. A user's
 * activated virtualenv (where `pip install -e .` put their checkout) is never the base of ours, its
 * `bin` is taken off PATH, and `~/.local` is not visible (`PYTHONNOUSERSITE`). The base interpreter's own
 * site-packages stay visible (`--system-site-packages`) so its tools (pytest) work without an index;
 * the worktree's package comes first on `sys.path` anyway (the virtualenv's `.pth` files are read before
 * the base's).
 */
import { constants as fsConstants, existsSync, readFileSync, statSync } from 'node:fs';
import { access, lstat, mkdir, open, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { abortError } from '../util/abort.js';
import { AgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { runProcess } from '../util/process.js';
import { gateEnv } from '../util/secrets.js';
import type { Env } from '../util/secrets.js';
import { shellQuote } from './python-commands.js';

/** A probe, a venv creation or a metadata read that takes longer than this is stuck. */
const PYTHON_TOOL_TIMEOUT_MS = 120_000;

/** Linux refuses longer shebang lines (BINPRM_BUF_SIZE); pip switches to a `/bin/sh` trampoline beyond it. */
const MAX_SHEBANG = 127;

/** Scripts of the base interpreter larger than this are not Python entry points. */
const MAX_SCRIPT_BYTES = 1024 * 1024;

/** The interpreter a run's virtualenv is made from. */
export interface PythonInterpreter {
  /** What was found on PATH (a virtualenv's python, a pyenv shim, /usr/bin/python3 …). */
  found: string;
  /** The base interpreter, symlinks resolved: never a virtualenv. */
  executable: string;
  /** Where the base was found before resolving (its directory holds its scripts). */
  unresolved: string;
  version: string;
  /** `3.11`. */
  majorMinor: string;
  implementation: string;
  /** The virtualenv that was on PATH and was not used as the base. */
  skippedVenv?: string;
}

interface Probe {
  executable: string;
  baseExecutable: string;
  version: string;
  implementation: string;
  major: number;
  minor: number;
}

/** `-I -S -B`: no environment variables, no site-packages (no `.pth` code runs), no bytecode written. */
const PROBE_SCRIPT =
  'import json, platform, sys; print(json.dumps({"executable": sys.executable, "base_executable": getattr(sys, "_base_executable", "") or "", "version": platform.python_version(), "implementation": sys.implementation.name, "major": sys.version_info[0], "minor": sys.version_info[1]}))';

export interface ToolOptions {
  cwd: string;
  env: Record<string, string>;
  signal: AbortSignal;
  clock: Clock;
  /** What the command does, for errors (`create the virtualenv`). */
  what: string;
}

/** Runs one of AgentGate's own Python commands (not a setup step) and returns its stdout. */
export async function runTool(file: string, args: readonly string[], options: ToolOptions): Promise<string> {
  const result = await runProcess({ command: file, args, cwd: options.cwd, env: options.env, signal: options.signal, clock: options.clock, timeoutMs: PYTHON_TOOL_TIMEOUT_MS, tailBytes: 4 * 1024 * 1024 });
  switch (result.outcome) {
    case 'exited':
      if (result.exitCode === 0) return result.stdout;
      throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: ${options.what} failed with exit code ${String(result.exitCode)} (${file}): ${result.stderr.trim().slice(-800)}`, {
        details: { command: [file, ...args].join(' '), exitCode: result.exitCode },
      });
    case 'aborted':
      throw abortError(options.signal, options.what);
    case 'timeout':
    case 'idle_timeout':
      throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: ${options.what} timed out after ${PYTHON_TOOL_TIMEOUT_MS / 1000}s (${file})`);
    case 'spawn_error':
      throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: cannot ${options.what}: ${file} could not start: ${result.error?.message ?? 'unknown error'}`, { cause: result.error });
    default: {
      const unreachable: never = result.outcome;
      throw new AgentGateError('AG_ERR_INTERNAL', `unknown process outcome ${String(unreachable)}`);
    }
  }
}

function isExecutableFile(file: string): boolean {
  try {
    const stats = statSync(file);
    return stats.isFile() && (stats.mode & 0o111) !== 0;
  } catch {
    // Missing or unreadable: not a candidate, which is the answer.
    return false;
  }
}

/** The first `python3`, else `python`, on `PATH`. */
export function findPythonOnPath(pathValue: string | undefined): string | undefined {
  const dirs = (pathValue ?? '').split(path.delimiter).filter((dir) => dir !== '' && path.isAbsolute(dir));
  for (const name of ['python3', 'python']) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

/** The virtualenv `executable` belongs to (its `pyvenv.cfg` next to it or one level up), with the base's `home`. */
export function virtualenvOf(executable: string): { dir: string; home: string | undefined } | undefined {
  for (const dir of [path.dirname(executable), path.dirname(path.dirname(executable))]) {
    const cfg = path.join(dir, 'pyvenv.cfg');
    if (!existsSync(cfg)) continue;
    const home = /^\s*home\s*=\s*(.+?)\s*$/m.exec(readFileSync(cfg, 'utf8'))?.[1];
    return { dir, home };
  }
  return undefined;
}

async function probe(file: string, options: Omit<ToolOptions, 'what'>): Promise<Probe> {
  const stdout = await runTool(file, ['-I', '-S', '-B', '-c', PROBE_SCRIPT], { ...options, what: `ask ${file} what it is` });
  let value: unknown;
  try {
    value = JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch (error) {
    throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: ${file} did not answer like a Python interpreter: ${stdout.trim().slice(0, 200)}`, { cause: error });
  }
  if (typeof value !== 'object' || value === null) throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: ${file} did not answer like a Python interpreter`);
  const v = value as Record<string, unknown>;
  const { executable, base_executable: baseExecutable, version, implementation, major, minor } = v;
  if (typeof executable !== 'string' || typeof version !== 'string' || typeof implementation !== 'string' || typeof major !== 'number' || typeof minor !== 'number') {
    throw new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `Python environment: ${file} did not answer like a Python interpreter`);
  }
  return { executable, baseExecutable: typeof baseExecutable === 'string' ? baseExecutable : '', version, implementation, major, minor };
}

/**
 * The base interpreter behind the `python3` (else `python`) on the gates' PATH, or undefined when there
 * is none. When that is a virtualenv's — the user's activated one — its base is used instead, found
 * through `pyvenv.cfg` (`home`), exactly how Python itself finds it; the virtualenv's site-packages, where
 * the user's checkout may be installed, are never visible to the run.
 *
 * @throws AgentGateError `AG_ERR_GATE_SETUP_FAILED` when the interpreter does not run or a virtualenv's base is gone.
 */
export async function locatePython(input: { env: Env; cwd: string; signal: AbortSignal; clock: Clock }): Promise<PythonInterpreter | undefined> {
  const found = findPythonOnPath(input.env['PATH']);
  if (found === undefined) return undefined;
  const options = { cwd: input.cwd, env: gateEnv(input.env), signal: input.signal, clock: input.clock };
  let current = await probe(found, options);
  let skippedVenv: string | undefined;
  for (let hops = 0; ; hops += 1) {
    const venv = virtualenvOf(current.executable);
    if (venv === undefined) break;
    skippedVenv ??= venv.dir;
    const home = venv.home;
    const candidates = [
      ...(current.baseExecutable !== '' && !current.baseExecutable.startsWith(`${venv.dir}/`) ? [current.baseExecutable] : []),
      ...(home === undefined ? [] : [`python${current.major}.${current.minor}`, `python${current.major}`, 'python'].map((name) => path.join(home, name))),
    ];
    const base = candidates.find(isExecutableFile);
    if (base === undefined || hops >= 3) {
      throw new AgentGateError(
        'AG_ERR_GATE_SETUP_FAILED',
        `Python environment: the python on PATH (${found}) belongs to the virtualenv ${venv.dir}, and its base interpreter was not found (looked for ${candidates.join(', ') || `home = in ${venv.dir}/pyvenv.cfg`})`,
      );
    }
    current = await probe(base, options);
  }
  return {
    found,
    executable: await realpath(current.executable),
    unresolved: current.executable,
    version: current.version,
    majorMinor: `${current.major}.${current.minor}`,
    implementation: current.implementation,
    ...(skippedVenv === undefined ? {} : { skippedVenv }),
  };
}

/** `<base> -I -m venv --without-pip --system-site-packages <dir>` (pip comes from the base; see {@link addTools}). */
export async function createVirtualenv(python: PythonInterpreter, dir: string, options: { signal: AbortSignal; clock: Clock; env: Env }): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
  await runTool(python.executable, ['-I', '-m', 'venv', '--without-pip', '--system-site-packages', dir], {
    cwd: path.dirname(dir),
    env: gateEnv(options.env),
    signal: options.signal,
    clock: options.clock,
    what: `create the virtualenv ${dir}`,
  });
}

/** The first line of a script running `interpreter` with `args`: a `#!` line, or pip's `/bin/sh` trampoline when too long. */
export function scriptShebang(interpreter: string, args: string): string {
  const line = `#!${interpreter}${args}`;
  if (line.length <= MAX_SHEBANG && !/\s/.test(interpreter)) return line;
  return `#!/bin/sh\n'''exec' ${shellQuote(interpreter)}${args} "$0" "$@"\n' '''`;
}

/** `lib/python3.X/site-packages` (or PyPy's) of a virtualenv. */
export async function sitePackagesDirs(venv: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(path.join(venv, 'lib'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names
    .filter((name) => /^(python|pypy)\d/.test(name))
    .map((name) => path.join(venv, 'lib', name, 'site-packages'))
    .filter((dir) => existsSync(dir));
}

async function firstLine(file: string): Promise<string | undefined> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(512);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, bytesRead).toString('utf8');
    const end = text.indexOf('\n');
    return end === -1 ? undefined : text.slice(0, end);
  } finally {
    await handle.close();
  }
}

/**
 * Gives the virtualenv the base interpreter's scripts (pytest, tox, pip … — whatever its own `bin` holds
 * with a shebang naming it), rewritten to run the virtualenv's python: a plain virtualenv would leave
 * `pytest` on PATH running the base interpreter, which sees neither the virtualenv nor the worktree.
 * Adds `pip`/`pip3`/`pipX.Y` (running `python -m pip`) when the base has none, so a `pip install` never
 * falls through to another Python's pip. Existing files are kept. Returns the files written with their
 * inodes, so a later store leaves out those still unchanged (they are made again for every run).
 */
export async function addTools(venv: string, python: PythonInterpreter): Promise<Map<string, number>> {
  const written = new Map<string, number>();
  const bin = path.join(venv, 'bin');
  const interpreter = path.join(bin, 'python');
  const write = async (name: string, content: string): Promise<void> => {
    const target = path.join(bin, name);
    if (existsSync(target)) return;
    await writeFile(target, content, { mode: 0o755 });
    written.set(target, (await lstat(target)).ino);
  };
  const sourceDirs = [...new Set([path.dirname(python.executable), path.dirname(python.unresolved)])];
  for (const dir of sourceDirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'EACCES') continue;
      throw error;
    }
    for (const name of names.sort()) {
      if (/^python/.test(name) || name.startsWith('.')) continue;
      const file = path.join(dir, name);
      const script = await baseScript(file, python.executable);
      if (script !== undefined) await write(name, `${scriptShebang(interpreter, script.args)}\n${script.body}`);
    }
  }
  for (const name of ['pip', 'pip3', `pip${python.majorMinor}`]) await write(name, `#!/bin/sh\nexec ${shellQuote(interpreter)} -m pip "$@"\n`);
  return written;
}

/** A script of the base interpreter's `bin` that runs the base itself: its shebang arguments and the rest of it. */
async function baseScript(file: string, baseExecutable: string): Promise<{ args: string; body: string } | undefined> {
  let stats;
  try {
    stats = await stat(file);
  } catch (error) {
    // A dangling symlink in someone's bin directory is not a tool.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (!stats.isFile() || stats.size > MAX_SCRIPT_BYTES || (stats.mode & 0o111) === 0) return undefined;
  try {
    await access(file, fsConstants.R_OK);
  } catch {
    // Executable but unreadable (setuid helpers): not a Python script we could copy.
    return undefined;
  }
  const line = await firstLine(file);
  const match = line === undefined ? null : /^#!\s*(\S+)(.*)$/.exec(line);
  if (match?.[1] === undefined) return undefined;
  let target: string;
  try {
    target = await realpath(match[1]);
  } catch {
    // The shebang names a missing interpreter: not the base's script.
    return undefined;
  }
  if (target !== baseExecutable) return undefined;
  const content = await readFile(file, 'utf8');
  return { args: (match[2] ?? '').trimEnd(), body: content.slice(content.indexOf('\n') + 1) };
}

// ---------------------------------------------------------------------------------------------------
// The environment of setup steps and gates.

/** Variables that would send imports or installs elsewhere than the run's virtualenv and worktree. */
const CLEARED_VARIABLES = ['PYTHONPATH', 'PYTHONHOME', 'PYTHONUSERBASE', 'PYTHONEXECUTABLE', '__PYVENV_LAUNCHER__', 'PIP_USER', 'PIP_TARGET', 'PIP_PREFIX', 'PIP_ROOT', 'CONDA_PREFIX', 'CONDA_DEFAULT_ENV'];

/** A PATH entry that is some virtualenv's `bin` (a `pyvenv.cfg` next to it). */
function isVirtualenvBin(entry: string): boolean {
  return path.basename(entry) === 'bin' && existsSync(path.join(entry, '..', 'pyvenv.cfg'));
}

/**
 * The environment of setup steps and gates of a run with a Python environment: the virtualenv's `bin`
 * first on PATH and every other virtualenv's `bin` (the user's activated one) off it, `VIRTUAL_ENV`
 * (uv and poetry install into it: `UV_PROJECT_ENVIRONMENT` too), `PYTHONNOUSERSITE=1` (no `~/.local`),
 * `PYTHONDONTWRITEBYTECODE=1` (no `__pycache__` in the worktree, where it would be snapshotted as the
 * agent's change), pip's version check off; `PYTHONPATH`, `PYTHONHOME`, `PIP_USER`/`PIP_TARGET`/… removed.
 */
export function pythonEnvironmentVariables(base: Env, venv: string): Env {
  const out: Env = { ...base };
  const bin = path.join(venv, 'bin');
  const active = base['VIRTUAL_ENV'];
  const activeBin = active === undefined || active.trim() === '' ? undefined : path.resolve(active, 'bin');
  const kept = (base['PATH'] ?? '').split(path.delimiter).filter((entry) => entry !== '' && path.resolve(entry) !== activeBin && !isVirtualenvBin(entry));
  out['PATH'] = [bin, ...kept].join(path.delimiter);
  for (const name of CLEARED_VARIABLES) delete out[name];
  out['VIRTUAL_ENV'] = venv;
  out['UV_PROJECT_ENVIRONMENT'] = venv;
  out['PYTHONNOUSERSITE'] = '1';
  out['PYTHONDONTWRITEBYTECODE'] = '1';
  out['PIP_DISABLE_PIP_VERSION_CHECK'] = '1';
  return out;
}
