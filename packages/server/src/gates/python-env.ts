/**
 * Python environments (issue 11 item 1; docs/gates.md "Python environments"): a setup that installs
 * Python packages — or a Python project gated by pytest without any setup — runs in a virtualenv
 * AgentGate makes for the run, never in the user's environment, and its gates import the run's worktree.
 *
 * Per run (the virtualenv lives in the gates' sandbox home, `$AGENTGATE_HOME/sandbox/<runId>/gate/home/
 * .agentgate-python/venv`, so setup and gates can write to it inside bubblewrap and it goes with the run):
 * 1. the base interpreter is found behind the `python3` on PATH (python-venv.ts `locatePython`);
 * 2. an install of the project itself (`pip install -e .[test]`, `pip install ./plugins/x`) is rewritten to
 *    install only its dependencies when pyproject.toml declares them statically — the project is linked
 *    from the worktree instead, so nothing is built and nothing lands in the worktree (`*.egg-info`;
 *    python-plan.ts `planPythonSetup`, which also decides whether the setup may be cached);
 * 3. the environment cache is asked for a virtualenv made by the same commands from the same
 *    requirement and project files with the same interpreter: a hit is materialised (hard links,
 *    scripts and `pyvenv.cfg` rewritten for the new path) and no setup command runs;
 * 4. on a miss the setup runs in a fresh virtualenv; whatever it installed from the worktree anyway
 *    (dynamic metadata, `uv sync`, `poetry install`, an `-e .` inside a requirements file) is taken out
 *    again (python-strip.ts), the rest is stored;
 * 5. the worktree's projects are linked (`.pth`, plus metadata and console scripts), and
 *    `environment.json` records the virtualenv for the gates ({@link pythonGateEnvironment}).
 *
 * This file runs those steps ({@link setupPythonEnvironment}, storing to the cache) and keeps the run's
 * record: reading it, turning it into the gates' environment and removing the run's environment.
 */
import { lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { abortError } from '../util/abort.js';
import { AgentGateError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { runSandboxRoot } from '../util/sandbox.js';
import type { Env } from '../util/secrets.js';
import { computeEnvironmentKey } from './env-cache.js';
import type { EnvCache, EnvCacheOutcome } from './env-cache.js';
import { mentionsPythonInstall } from './python-commands.js';
import { planPythonSetup } from './python-plan.js';
import type { PythonSetupStep } from './python-plan.js';
import { isProject, linkProjects, readProjects } from './python-project.js';
import { stripWorktreeInstalls } from './python-strip.js';
import { addTools, createVirtualenv, locatePython, pythonEnvironmentVariables } from './python-venv.js';
import type { PythonInterpreter } from './python-venv.js';
import type { GateResult } from './types.js';

/** Directory of a run's Python environment, under the gates' sandbox home (see the module comment). */
export const PYTHON_ENV_DIR = '.agentgate-python';

/** Version of `environment.json`. */
const RECORD_VERSION = 1;

/** `<gate sandbox root>/home/.agentgate-python` of the run whose artifacts are `artifactsDir`. */
export function pythonEnvRoot(artifactsDir: string): string {
  return path.join(runSandboxRoot(path.resolve(artifactsDir), 'gate').root, 'home', PYTHON_ENV_DIR);
}

/** What a run's gates need to know about its Python environment (`environment.json`). */
export interface PythonEnvironmentRecord {
  version: number;
  venv: string;
  interpreter: string;
  pythonVersion: string;
  /** Worktree-relative project directories linked into the virtualenv. */
  linked: string[];
  /** What the `.pth` puts on `sys.path` (absolute). */
  importRoots: string[];
}

/** Files of the virtualenv that may name its path (see env-cache.ts `Relocation`). */
function mayNameTheVirtualenv(relative: string): boolean {
  return relative.startsWith('venv/bin/') || relative === 'venv/pyvenv.cfg' || relative.endsWith('.pth');
}

/** The outcome of a Python setup: the verifier's `SetupResult`. */
export type PythonSetupResult =
  | { ok: true; results: GateResult[]; cache?: EnvCacheOutcome }
  | { ok: false; error: AgentGateError; cancelled: boolean; results: GateResult[]; cache?: EnvCacheOutcome };

export interface PythonSetupInput {
  steps: readonly PythonSetupStep[];
  worktreePath: string;
  baseSha: string;
  artifactsDir: string;
  signal: AbortSignal;
  clock: Clock;
  /** The environment setup steps and gates start from. */
  env: Env;
  envCache: EnvCache | undefined;
  /** Runs one setup command with `env` (the verifier's command gate, with its log names). */
  runStep: (step: PythonSetupStep, env: Env) => Promise<{ cancelled: true } | { cancelled: false; result: GateResult }>;
  /** Reports a decided setup result (`gate_checked`). */
  emit: (result: GateResult) => void;
}

/**
 * Runs the setup in the run's Python environment (see the module comment). Undefined when the plan needs
 * no Python environment after all: no interpreter on PATH and no Python install in the setup.
 *
 * @throws AgentGateError `AG_ERR_GATE_SETUP_FAILED` (no interpreter for a Python install, a virtualenv that
 *   cannot be made), or the run's abort reason.
 */
export async function setupPythonEnvironment(input: PythonSetupInput): Promise<PythonSetupResult | undefined> {
  const results: GateResult[] = [];
  const python = await locatePython({ env: input.env, cwd: input.worktreePath, signal: input.signal, clock: input.clock });
  if (python === undefined) {
    const install = input.steps.find((step) => mentionsPythonInstall(step.command));
    if (install === undefined) return undefined;
    throw new AgentGateError(
      'AG_ERR_GATE_SETUP_FAILED',
      `setup step ${install.name} installs Python packages (${install.command}), but no Python interpreter was found: looked for python3 and python on PATH (${input.env['PATH'] ?? ''})`,
      { details: { step: install.name, command: install.command } },
    );
  }
  const root = pythonEnvRoot(input.artifactsDir);
  const venv = path.join(root, 'venv');
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true, mode: 0o700 });
  const plan = await planPythonSetup({ ...input, python });
  const common = { signal: input.signal, clock: input.clock, env: input.env };
  let linked = plan.linked;
  if (input.steps.length === 0) {
    // No setup: the user's own environment had the project installed (editable, usually); the worktree's stands in.
    const infos = await readProjects(python, [path.resolve(input.worktreePath)], common);
    if (isProject(infos.get(path.resolve(input.worktreePath)))) linked = ['.'];
  }

  let cache: EnvCacheOutcome | undefined;
  let pending: { key: string; repository: string; keyFiles: string[] } | undefined;
  if (input.envCache !== undefined && input.steps.length > 0) {
    if (!plan.cacheable.ok) {
      cache = { status: 'bypass', kind: 'python', reason: plan.cacheable.reason };
    } else {
      const { key, repository } = await computeEnvironmentKey({
        kind: 'python',
        worktreePath: input.worktreePath,
        baseSha: input.baseSha,
        steps: input.steps,
        platform: `${process.platform}-${process.arch}-${python.implementation}-${python.version}-${python.executable}`,
        files: plan.cacheable.keyFiles,
        signal: input.signal,
        clock: input.clock,
      });
      const entry = await input.envCache.get(key);
      if (entry?.kind === 'python' && entry.python !== undefined) {
        const started = input.clock.now();
        await input.envCache.materialize(entry, root, { relocate: { from: entry.python.prefix, to: venv, files: mayNameTheVirtualenv } });
        await addTools(venv, python);
        const materializeMs = input.clock.now() - started;
        cache = { status: 'hit', kind: 'python', key, materializeMs, mode: input.envCache.mode, dirs: entry.dirs };
        for (const [index, step] of input.steps.entries()) {
          const result: GateResult = {
            name: step.name,
            level: 'setup',
            passed: true,
            durationMs: index === 0 ? materializeMs : 0,
            command: step.command,
            message: `restored from the environment cache (${key.slice(0, 12)}, Python virtualenv); not run`,
            diagnostics: [],
          };
          results.push(result);
          input.emit(result);
        }
        await finish({ input, python, venv, root, linked: [...new Set([...linked, ...entry.python.linked])].sort(), results, spentMs: 0 });
        return { ok: true, results, cache };
      }
      pending = { key, repository, keyFiles: plan.cacheable.keyFiles };
    }
  }

  const created = input.clock.now();
  await createVirtualenv(python, venv, common);
  const tools = await addTools(venv, python);
  const createMs = input.clock.now() - created;
  const env = pythonEnvironmentVariables(input.env, venv);
  for (const prepared of plan.steps) {
    const { step } = prepared;
    if (input.signal.aborted) return { ok: false, error: abortError(input.signal, 'verify'), cancelled: true, results, ...(cache && { cache }) };
    if (prepared.run === undefined) {
      const result: GateResult = { name: step.name, level: 'setup', passed: true, durationMs: 0, command: step.command, message: `not run: ${prepared.notes.join('; ')}; nothing else to install`, diagnostics: [] };
      results.push(result);
      input.emit(result);
      continue;
    }
    const outcome = await input.runStep({ ...step, command: prepared.run }, env);
    if (outcome.cancelled) return { ok: false, error: abortError(input.signal, 'verify'), cancelled: true, results, ...(cache && { cache }) };
    const result: GateResult = { ...outcome.result, command: step.command };
    const ranAs = prepared.run === step.command ? '' : `ran as \`${prepared.run.replace(/\n/g, '; ')}\``;
    const detail = [ranAs, ...prepared.notes].filter((text) => text !== '').join('; ');
    if (detail !== '') result.message = result.message === undefined ? `in AgentGate's virtualenv; ${detail}` : `${result.message} (${detail})`;
    results.push(result);
    input.emit(result);
    if (!result.passed) {
      return {
        ok: false,
        cancelled: false,
        results,
        ...(cache && { cache }),
        error: new AgentGateError('AG_ERR_GATE_SETUP_FAILED', `setup step ${step.name} failed: ${result.message ?? 'failed'} (log: ${result.logPath ?? 'none'})`, {
          details: { step: step.name, command: step.command, ranAs: prepared.run, exitCode: result.exitCode, timedOut: result.timedOut === true, logPath: result.logPath, outputTail: result.outputTail },
        }),
      };
    }
  }
  const stripped = await stripWorktreeInstalls(venv, input.worktreePath);
  linked = [...new Set([...linked, ...stripped])].sort();
  if (pending !== undefined && input.envCache !== undefined) cache = await store(input.envCache, { input, python, venv, root, pending, linked, tools });
  await finish({ input, python, venv, root, linked, results, spentMs: createMs });
  return { ok: true, results, ...(cache && { cache }) };
}

/** Stores the virtualenv (without the files {@link addTools} wrote, made again per run). A failure costs the next run an install, never this one its setup. */
async function store(
  envCache: EnvCache,
  run: { input: PythonSetupInput; python: PythonInterpreter; venv: string; root: string; pending: { key: string; repository: string; keyFiles: string[] }; linked: string[]; tools: Map<string, number> },
): Promise<EnvCacheOutcome> {
  const { pending } = run;
  try {
    const skip = new Set<string>();
    for (const [file, inode] of run.tools) {
      const stats = await lstat(file).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      });
      if (stats?.ino === inode) skip.add(file);
    }
    const started = run.input.clock.now();
    const { evicted } = await envCache.store({
      key: pending.key,
      repository: pending.repository,
      commands: run.input.steps.map((s) => s.command),
      lockfiles: pending.keyFiles,
      dirs: ['venv'],
      worktreePath: run.root,
      kind: 'python',
      python: { prefix: run.venv, interpreter: run.python.executable, version: run.python.version, linked: run.linked },
      skip,
    });
    return { status: 'miss', kind: 'python', key: pending.key, stored: true, storeMs: run.input.clock.now() - started, dirs: ['venv'], evicted };
  } catch (error) {
    return { status: 'miss', kind: 'python', key: pending.key, stored: false, reason: `storing failed: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** Links the worktree's projects, records the environment for the gates and reports it as a setup result. */
async function finish(run: { input: PythonSetupInput; python: PythonInterpreter; venv: string; root: string; linked: string[]; results: GateResult[]; /** Time spent making the virtualenv before. */ spentMs: number }): Promise<void> {
  const { input, python, venv } = run;
  const started = input.clock.now();
  const importRoots = await linkProjects({ venv, worktreePath: input.worktreePath, linked: run.linked, python, signal: input.signal, clock: input.clock, env: input.env });
  const record: PythonEnvironmentRecord = { version: RECORD_VERSION, venv, interpreter: python.executable, pythonVersion: python.version, linked: run.linked, importRoots };
  const file = path.join(run.root, 'environment.json');
  const temp = `${file}.${randomBytes(4).toString('hex')}`;
  await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`);
  await rename(temp, file);
  const worktree = path.resolve(input.worktreePath);
  const roots = importRoots.map((root) => path.relative(worktree, root) || '.');
  const skipped = python.skippedVenv === undefined ? '' : `; the virtualenv on PATH (${python.skippedVenv}) is not used`;
  const result: GateResult = {
    name: 'python-environment',
    level: 'setup',
    passed: true,
    durationMs: run.spentMs + input.clock.now() - started,
    message: `setup and gates run in AgentGate's virtualenv ${venv} (Python ${python.version} from ${python.executable}, with its site-packages)${skipped}; ${roots.length === 0 ? 'no worktree package linked' : `the worktree's ${roots.join(', ')} on sys.path`}`,
    diagnostics: [],
  };
  run.results.push(result);
  input.emit(result);
}

/**
 * The run's Python environment, as its setup recorded it, or undefined (no Python environment).
 *
 * @throws AgentGateError `AG_ERR_PHASE_VERIFY` when the record exists but is unreadable.
 */
export async function readPythonEnvironment(artifactsDir: string): Promise<PythonEnvironmentRecord | undefined> {
  const file = path.join(pythonEnvRoot(artifactsDir), 'environment.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `the run's Python environment record ${file} is not JSON`, { cause: error });
  }
  const record = value as Partial<PythonEnvironmentRecord> | null;
  if (record === null || typeof record !== 'object' || record.version !== RECORD_VERSION || typeof record.venv !== 'string' || !path.isAbsolute(record.venv)) {
    throw new AgentGateError('AG_ERR_PHASE_VERIFY', `the run's Python environment record ${file} is not one this version wrote`);
  }
  return record as PythonEnvironmentRecord;
}

/** The gates' base environment for a run: with its Python environment when its setup made one. */
export async function pythonGateEnvironment(artifactsDir: string, base: Env): Promise<Env> {
  const record = await readPythonEnvironment(artifactsDir);
  return record === undefined ? base : pythonEnvironmentVariables(base, record.venv);
}

/** Removes the run's Python environment (for callers whose artifacts are not under `$AGENTGATE_HOME/runs`). */
export async function removePythonEnvironment(artifactsDir: string): Promise<void> {
  await rm(pythonEnvRoot(artifactsDir), { recursive: true, force: true });
}
