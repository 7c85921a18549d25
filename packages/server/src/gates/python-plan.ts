/**
 * Planning a run's Python setup (python-env.ts runs it; docs/gates.md "Python environments"): whether a
 * plan needs a Python environment at all, the setup's installs read (python-commands.ts) and installs of
 * the worktree's own projects rewritten to install only their dependencies (step 2 of python-env.ts's
 * module comment), and whether the result may be cached, with the requirement and project files that key
 * it. It reads files and the projects' metadata (python-project.ts); it runs no setup command and makes
 * no virtualenv.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../util/clock.js';
import type { Env } from '../util/secrets.js';
import { findKeyFiles } from './env-cache.js';
import type { SetupStepLike } from './env-cache.js';
import type { PipArguments } from './python-commands.js';
import {
  canonicalName,
  classifyInstall,
  commandLines,
  formatPipLine,
  mentionsPythonInstall,
  mentionsPythonTool,
  parsePipArguments,
  requirementName,
  shellWords,
} from './python-commands.js';
import { isProject, readProjects } from './python-project.js';
import type { ProjectInfo } from './python-project.js';
import type { PythonInterpreter } from './python-venv.js';

/** A setup step as the plan has it. */
export interface PythonSetupStep extends SetupStepLike {
  timeout: number;
}

/** One setup step as it will run: `run` undefined when nothing is left to install (only the project itself). */
export interface PreparedStep {
  step: PythonSetupStep;
  run: string | undefined;
  /** What was changed and why, for the step's result. */
  notes: string[];
}

export interface PythonSetupPlan {
  steps: PreparedStep[];
  /** Worktree-relative project directories linked instead of installed. */
  linked: string[];
  cacheable: { ok: true; keyFiles: string[] } | { ok: false; reason: string };
}

/** Files whose content decides what a Python install produces. */
const PYTHON_KEY_FILES = new Set(['pyproject.toml', 'setup.py', 'setup.cfg', 'poetry.lock', 'uv.lock', 'pdm.lock', 'Pipfile', 'Pipfile.lock']);

function isPythonKeyFile(relative: string, name: string): boolean {
  if (PYTHON_KEY_FILES.has(name)) return true;
  if (/requirements.*\.(txt|in)$/i.test(name) || /^constraints.*\.(txt|in)$/i.test(name)) return true;
  return relative.split('/').slice(0, -1).includes('requirements') && /\.(txt|in)$/.test(name);
}

function isInsideOrSame(candidate: string, root: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/**
 * Whether a plan's setup and gates need a Python environment: a setup step installs Python packages, or
 * the repository is a Python project (pyproject.toml, setup.py, setup.cfg, requirements.txt at its root)
 * and a setup step or gate runs Python tooling (pytest, python, tox …).
 */
export function needsPythonEnvironment(commands: { setup: readonly SetupStepLike[]; gates: readonly { command: string }[] }, worktreePath: string): boolean {
  if (commands.setup.some((step) => mentionsPythonInstall(step.command))) return true;
  if (![...commands.setup, ...commands.gates].some((c) => mentionsPythonTool(c.command))) return false;
  return ['pyproject.toml', 'setup.py', 'setup.cfg', 'requirements.txt'].some((file) => existsSync(path.join(worktreePath, file)));
}

/**
 * Requirement files named by `-r`/`-c`, followed into the requirement files and local archives they name
 * (worktree-relative, added to `found`); a reason when one is outside the repository.
 */
async function referencedFiles(file: string, worktree: string, found: Set<string>, visited = new Set<string>(), depth = 0): Promise<string | undefined> {
  if (!isInsideOrSame(file, worktree)) return `it reads ${file}, outside the repository`;
  found.add(path.relative(worktree, file));
  if (visited.has(file) || depth >= 5) return undefined;
  visited.add(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    // pip reports a missing requirements file itself; the key records it as missing.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
    throw error;
  }
  for (const line of text.split('\n')) {
    const nested = /^\s*(?:-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)/.exec(line)?.[1];
    if (nested !== undefined) {
      const reason = await referencedFiles(path.resolve(path.dirname(file), nested), worktree, found, visited, depth + 1);
      if (reason !== undefined) return reason;
      continue;
    }
    // A local archive (`./vendor/x.whl`): pip reads it relative to the working directory, the worktree.
    const archive = /^\s*(?:-e\s+|--editable[=\s]+)?(\S+\.(?:whl|tar\.gz|tgz|zip|tar\.bz2))\s*(?:[;#].*)?$/.exec(line)?.[1];
    if (archive === undefined || archive.includes('://')) continue;
    const local = path.resolve(worktree, archive);
    if (!isInsideOrSame(local, worktree)) return `it installs ${archive}, outside the repository`;
    found.add(path.relative(worktree, local));
  }
  return undefined;
}

/**
 * The dependencies `pip install <project>[extras]` would install, when pyproject.toml declares them
 * statically (PEP 621), with the project's own extras (`calc[test]` inside `calc[dev]`) expanded.
 */
export function staticRequirements(info: ProjectInfo | undefined, extras: readonly string[]): { ok: true; name: string; requirements: string[] } | { ok: false; reason: string } {
  if (info?.error !== undefined) return { ok: false, reason: info.error };
  const project = info?.project;
  if (project === undefined || project.name === null) return { ok: false, reason: 'no [project] name in pyproject.toml' };
  if (project.dynamic.includes('dependencies')) return { ok: false, reason: 'its dependencies are dynamic' };
  if (extras.length > 0 && project.dynamic.includes('optional-dependencies')) return { ok: false, reason: 'its optional dependencies are dynamic' };
  if (project.version === null) return { ok: false, reason: 'its version is dynamic' };
  const own = canonicalName(project.name);
  const requirements: string[] = [];
  const seen = new Set<string>();
  const add = (list: readonly string[]): string | undefined => {
    for (const requirement of list) {
      if (requirement.trim().startsWith('-')) return `a dependency looks like an option (${requirement})`;
      const parsed = requirementName(requirement);
      if (parsed !== undefined && canonicalName(parsed.name) === own) {
        for (const extra of parsed.extras) {
          if (seen.has(extra)) continue;
          seen.add(extra);
          const reason = add(project.optional[extra] ?? []);
          if (reason !== undefined) return reason;
        }
        continue;
      }
      if (!requirements.includes(requirement)) requirements.push(requirement);
    }
    return undefined;
  };
  const reason = add([...project.dependencies, ...extras.map((extra) => `${project.name ?? ''}[${extra}]`)]);
  if (reason !== undefined) return { ok: false, reason };
  return { ok: true, name: project.name, requirements };
}

/**
 * Reads the setup's Python installs (python-commands.ts), rewrites installs of the worktree's own
 * projects to their dependencies (see the module comment), and decides whether the result may be cached:
 * every line a plain pip/uv/poetry install, nothing installed outside the virtualenv or from outside the
 * repository. The key files are every requirement and project file of the repository plus the files the
 * commands name.
 */
export async function planPythonSetup(input: { steps: readonly PythonSetupStep[]; worktreePath: string; python: PythonInterpreter; signal: AbortSignal; clock: Clock; env: Env }): Promise<PythonSetupPlan> {
  const worktree = path.resolve(input.worktreePath);
  type Parsed = { line: string; install?: { head: string[]; parsed: PipArguments }; reason?: string };
  const parsedSteps = input.steps.map((step) =>
    commandLines(step.command).map((line): Parsed => {
      const words = shellWords(line);
      if (words === undefined) return { line, reason: `setup step ${step.name} has a line AgentGate does not read (${line})` };
      const install = classifyInstall(words);
      if (install === undefined) return { line, reason: `setup step ${step.name} runs something else than a Python install (${line})` };
      if (install.tool === 'pipenv') return { line, reason: `setup step ${step.name} uses pipenv, which keeps its own lock and environment files` };
      // uv and poetry install the project too: it is taken out again afterwards (stripWorktreeInstalls).
      if (install.tool === 'uv-sync' || install.tool === 'poetry') return { line };
      const parsed = parsePipArguments(install.args);
      if (parsed === undefined) return { line, reason: `setup step ${step.name} has an option without its value (${line})` };
      return { line, install: { head: install.head, parsed } };
    }),
  );
  const projectDirs = new Set<string>();
  for (const lines of parsedSteps) {
    for (const { install } of lines) {
      for (const target of install?.parsed.targets ?? []) {
        if (target.kind !== 'path') continue;
        const dir = path.resolve(worktree, target.path);
        if (isInsideOrSame(dir, worktree) && existsSync(dir) && !/\.(whl|tar\.gz|tgz|zip|tar\.bz2)$/.test(dir)) projectDirs.add(dir);
      }
    }
  }
  const infos = await readProjects(input.python, [...projectDirs], input);

  const linked = new Set<string>();
  const keyFiles = new Set(await findKeyFiles(worktree, isPythonKeyFile));
  let uncacheable: string | undefined;
  const steps: PreparedStep[] = [];
  for (const [index, step] of input.steps.entries()) {
    const out: string[] = [];
    const notes: string[] = [];
    let changed = false;
    for (const { line, install, reason } of parsedSteps[index] ?? []) {
      if (reason !== undefined) uncacheable ??= reason;
      if (install === undefined) {
        out.push(line);
        continue;
      }
      const { parsed, head } = install;
      if (parsed.elsewhere.length > 0) uncacheable ??= `setup step ${step.name} installs outside the virtualenv (${parsed.elsewhere.join(', ')})`;
      for (const file of [...parsed.requirementFiles, ...parsed.constraintFiles]) {
        const outside = await referencedFiles(path.resolve(worktree, file), worktree, keyFiles);
        if (outside !== undefined) uncacheable ??= `setup step ${step.name}: ${outside}`;
      }
      const targets: string[] = [];
      let lineChanged = false;
      for (const target of parsed.targets) {
        if (target.kind === 'requirement') {
          targets.push(target.text);
          continue;
        }
        const asWritten = target.editable ? ['-e', target.text] : [target.text];
        const dir = path.resolve(worktree, target.path);
        if (!isInsideOrSame(dir, worktree)) {
          uncacheable ??= `setup step ${step.name} installs ${target.text}, outside the repository`;
          targets.push(...asWritten);
          continue;
        }
        const info = infos.get(dir);
        if (!isProject(info)) {
          // An archive (or anything else) inside the repository: installed as it is, its content keyed.
          keyFiles.add(path.relative(worktree, dir));
          targets.push(...asWritten);
          continue;
        }
        const relative = path.relative(worktree, dir) || '.';
        const requirements = staticRequirements(info, target.extras);
        if (!requirements.ok) {
          notes.push(`${target.text} is installed as written (${requirements.reason}), then replaced by a link to the worktree`);
          targets.push(...asWritten);
          continue;
        }
        linked.add(relative);
        lineChanged = true;
        targets.push(...requirements.requirements);
        const where = relative === '.' ? '' : ` (${relative})`;
        const count = requirements.requirements.length;
        notes.push(`${target.text}: ${requirements.name} is linked from the worktree${where}, not installed; ${count === 0 ? 'it declares no dependencies' : `only its ${count} dependenc${count === 1 ? 'y is' : 'ies are'} installed`}`);
      }
      if (!lineChanged) {
        out.push(line);
        continue;
      }
      changed = true;
      const rewritten = formatPipLine(head, parsed, targets);
      if (rewritten !== undefined) out.push(rewritten);
    }
    steps.push({ step, run: out.length === 0 ? undefined : changed ? out.join('\n') : step.command, notes });
  }
  return {
    steps,
    linked: [...linked].sort(),
    cacheable: input.steps.length === 0 ? { ok: false, reason: 'no setup steps' } : uncacheable === undefined ? { ok: true, keyFiles: [...keyFiles].sort() } : { ok: false, reason: uncacheable },
  };
}
