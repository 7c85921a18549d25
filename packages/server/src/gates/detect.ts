/**
 * Gate detection for repositories without verify.yaml (SPEC 6).
 *
 * A team that has not written verify.yaml has usually told us how it checks code elsewhere: in its CI
 * workflow or its package scripts. Detection turns those into a plan so the run is still verified, and
 * when nothing is found the run is recorded as `unverified` instead of passing silently.
 *
 * Order, first match wins:
 * 1. GitHub Actions: `.github/workflows/*.yml|*.yaml` triggered by `push` or `pull_request`, with exactly
 *    one job that runs on Linux without `services:` or `container:`. Its `run:` steps become gates, in order.
 *    Skipped: `uses:` steps, steps with `if:`, a non-POSIX `shell:`, or a `${{ … }}` expression (we cannot
 *    evaluate them), steps that publish, deploy or touch the system (`sudo`, `apt-get`, `npm publish`,
 *    `git push` …) and steps that only `echo`. Dependency installs (`npm ci`, `pnpm install`, `pip install`
 *    …) become `environment.setup` steps, because the tests cannot run without them.
 * 2. Otherwise every ecosystem found at the repository root contributes:
 *    - package.json scripts `typecheck`, `lint`, `test` (in that order; npm's placeholder test script is
 *      ignored), run with the package manager named by `packageManager` or the lockfile (pnpm, yarn, npm),
 *      with an install step as setup;
 *    - pytest (`pytest.ini`, `[tool.pytest…]` in pyproject.toml, `[tool:pytest]` in setup.cfg, `[pytest]`
 *      in tox.ini, `conftest.py`, or `test_*.py` / `*_test.py` under `tests/` or `test/`) → `pytest`;
 *    - `Cargo.toml` → `cargo test`;
 *    - `go.mod` → `go test ./...`.
 *
 * Detection only reads files (through {@link RepoReader}, which the loader binds to the base commit); it
 * never runs anything.
 */
import { parse as parseYaml } from 'yaml';
import { parseVerifyConfig } from '../schemas/verify-config.js';
import type { VerifyConfig } from '../schemas/verify-config.js';

/** Read access to one version of the repository. */
export interface RepoReader {
  /** Every file path, relative to the repository root, with forward slashes. */
  readonly files: readonly string[];
  /** The file's text. Only called for paths in {@link files}. */
  read(path: string): Promise<string>;
}

export interface DetectedPlan {
  config: VerifyConfig;
  /** The files the commands came from, e.g. `['.github/workflows/ci.yml']` or `['package.json', 'go.mod']`. */
  detectedFrom: string[];
}

export interface DetectionResult {
  /** Undefined when nothing was found: the run will be recorded as unverified. */
  plan: DetectedPlan | undefined;
  /** Why workflows, steps or files were skipped, so "why was X not run?" has an answer in the run record. */
  notes: string[];
}

interface DraftStep {
  name: string;
  command: string;
  timeout?: number;
}

interface Draft {
  setup: DraftStep[];
  tests: DraftStep[];
  from: string[];
}

const WORKFLOW_FILE = /^\.github\/workflows\/[^/]+\.ya?ml$/;

/** Dependency installation: needed before tests, so it becomes a setup step rather than a gate. */
const INSTALL =
  /^(npm (ci|install|i)|pnpm (install|i)|yarn install|bun install|pip3? install|python3? -m pip install|poetry install|pipenv install|uv sync|uv pip install|bundle install|go mod download|cargo fetch|corepack enable)(\s|$)/;

/** Bare `yarn` (optionally with flags) installs too. */
const YARN_BARE = /^yarn(\s+-\S+)*$/;

function isInstall(line: string): boolean {
  return INSTALL.test(line) || YARN_BARE.test(line);
}

/** Steps that publish, deploy or change the machine: never run as a gate. */
const NOT_A_CHECK =
  /(^|[\s;&|(])(sudo|apt|apt-get|brew|choco|npm publish|pnpm publish|yarn publish|cargo publish|twine upload|docker push|docker login|git push|gh release|gh pr|curl|wget|codecov|coveralls)(\s|$)|\bdeploy\b/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function commandLines(run: string): string[] {
  return run
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

function triggersOnPushOrPr(on: unknown): boolean {
  const wanted = (name: string): boolean => name === 'push' || name === 'pull_request' || name === 'pull_request_target';
  if (typeof on === 'string') return wanted(on);
  if (Array.isArray(on)) return on.some((item) => typeof item === 'string' && wanted(item));
  if (isRecord(on)) return Object.keys(on).some(wanted);
  return false;
}

function runsOnLinux(runsOn: unknown): boolean {
  const text = typeof runsOn === 'string' ? runsOn : Array.isArray(runsOn) ? runsOn.join(' ') : JSON.stringify(runsOn ?? '');
  return !/windows|macos/i.test(text);
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Why a `run:` step is not used ('' = silently, e.g. an echo), or undefined when it is a usable check. */
function skipReason(step: Record<string, unknown>, run: string, lines: readonly string[], dir: unknown): string | undefined {
  if (step.if !== undefined) return 'it is conditional (if:)';
  if (typeof step.shell === 'string' && !/^(bash|sh)\b/.test(step.shell)) return `shell ${step.shell} is not POSIX`;
  if (run.includes('${{') || (typeof dir === 'string' && dir.includes('${{'))) return 'it uses a ${{ }} expression';
  if (lines.length === 0 || lines.every((line) => /^echo\b/.test(line))) return '';
  if (lines.some((line) => NOT_A_CHECK.test(line))) return 'it publishes, deploys or changes the machine';
  return undefined;
}

function workflowSteps(file: string, text: string, notes: string[]): Draft | undefined {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    notes.push(`${file}: skipped, not valid YAML (${error instanceof Error ? error.message.split('\n')[0] : String(error)})`);
    return undefined;
  }
  if (!isRecord(doc)) {
    notes.push(`${file}: skipped, not a workflow`);
    return undefined;
  }
  if (!triggersOnPushOrPr(doc.on)) {
    notes.push(`${file}: skipped, not triggered by push or pull_request`);
    return undefined;
  }
  const jobs = isRecord(doc.jobs) ? Object.entries(doc.jobs) : [];
  const [only] = jobs;
  if (jobs.length !== 1 || only === undefined) {
    notes.push(`${file}: skipped, has ${jobs.length} jobs (only single-job workflows are detected)`);
    return undefined;
  }
  const [jobId, job] = only;
  if (!isRecord(job) || job.services !== undefined || job.container !== undefined || !runsOnLinux(job['runs-on'])) {
    notes.push(`${file}: skipped, job "${jobId}" needs services, a container or a non-Linux runner`);
    return undefined;
  }
  const draft: Draft = { setup: [], tests: [], from: [file] };
  const steps: unknown[] = Array.isArray(job.steps) ? job.steps : [];
  for (const [index, step] of steps.entries()) {
    if (!isRecord(step) || typeof step.run !== 'string' || step.uses !== undefined) continue;
    const label = typeof step.name === 'string' && step.name.trim() !== '' ? step.name.trim() : undefined;
    const where = `${file}: step ${label === undefined ? index + 1 : `"${label}"`}`;
    const run = step.run.trim();
    const lines = commandLines(run);
    const dir = step['working-directory'];
    const skip = skipReason(step, run, lines, dir);
    if (skip !== undefined) {
      if (skip !== '') notes.push(`${where} skipped, ${skip}`);
      continue;
    }
    const command = typeof dir === 'string' && dir.trim() !== '' ? `cd ${shellQuote(dir.trim())} && ${run}` : run;
    const minutes = step['timeout-minutes'];
    const timeout = typeof minutes === 'number' && Number.isFinite(minutes) && minutes > 0 ? Math.ceil(minutes * 60) : undefined;
    const entry: DraftStep = { name: label ?? (lines[0] ?? run).slice(0, 60), command, ...(timeout === undefined ? {} : { timeout }) };
    if (lines.every(isInstall)) draft.setup.push(entry);
    else draft.tests.push(entry);
  }
  if (draft.tests.length === 0) {
    notes.push(`${file}: skipped, no runnable check steps`);
    return undefined;
  }
  return draft;
}

type PackageManager = 'pnpm' | 'yarn' | 'npm';

function packageManager(pkg: Record<string, unknown>, files: ReadonlySet<string>): { name: PackageManager; install: string } {
  const declared = typeof pkg.packageManager === 'string' ? pkg.packageManager : '';
  const yarnBerry = /^yarn@([2-9]|\d{2,})/.test(declared);
  let name: PackageManager = 'npm';
  if (declared.startsWith('pnpm@')) name = 'pnpm';
  else if (declared.startsWith('yarn@')) name = 'yarn';
  else if (declared.startsWith('npm@')) name = 'npm';
  else if (files.has('pnpm-lock.yaml')) name = 'pnpm';
  else if (files.has('yarn.lock')) name = 'yarn';
  switch (name) {
    case 'pnpm':
      return { name, install: files.has('pnpm-lock.yaml') ? 'pnpm install --frozen-lockfile' : 'pnpm install' };
    case 'yarn':
      return { name, install: !files.has('yarn.lock') ? 'yarn install' : yarnBerry ? 'yarn install --immutable' : 'yarn install --frozen-lockfile' };
    case 'npm':
      return { name, install: files.has('package-lock.json') || files.has('npm-shrinkwrap.json') ? 'npm ci' : 'npm install' };
    default: {
      const unreachable: never = name;
      return unreachable;
    }
  }
}

/** npm init's placeholder: running it would always fail, and it tests nothing. */
const NPM_PLACEHOLDER_TEST = /no test specified/;

async function packageScripts(repo: RepoReader, files: ReadonlySet<string>, notes: string[]): Promise<Draft | undefined> {
  if (!files.has('package.json')) return undefined;
  let pkg: unknown;
  try {
    pkg = JSON.parse(await repo.read('package.json'));
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    notes.push(`package.json: skipped, not valid JSON (${error.message})`);
    return undefined;
  }
  if (!isRecord(pkg) || !isRecord(pkg.scripts)) return undefined;
  const scripts = pkg.scripts;
  const pm = packageManager(pkg, files);
  const tests: DraftStep[] = [];
  for (const script of ['typecheck', 'lint', 'test'] as const) {
    const body = scripts[script];
    if (typeof body !== 'string' || body.trim() === '') continue;
    if (script === 'test' && NPM_PLACEHOLDER_TEST.test(body)) {
      notes.push('package.json: the test script is npm\'s placeholder; skipped');
      continue;
    }
    tests.push({ name: script, command: `${pm.name} run ${script}` });
  }
  if (tests.length === 0) return undefined;
  return { setup: [{ name: 'install', command: pm.install }], tests, from: ['package.json'] };
}

const PYTEST_TEST_FILE = /^(tests?)\/(.+\/)?(test_[^/]*|[^/]*_test)\.py$/;

async function pytest(repo: RepoReader, files: ReadonlySet<string>): Promise<Draft | undefined> {
  const marker = async (file: string, pattern: RegExp): Promise<boolean> => files.has(file) && pattern.test(await repo.read(file));
  let from: string | undefined;
  if (files.has('pytest.ini')) from = 'pytest.ini';
  else if (await marker('pyproject.toml', /^\[tool\.pytest/m)) from = 'pyproject.toml';
  else if (await marker('setup.cfg', /^\[tool:pytest\]/m)) from = 'setup.cfg';
  else if (await marker('tox.ini', /^\[pytest\]/m)) from = 'tox.ini';
  else if (files.has('conftest.py')) from = 'conftest.py';
  else from = repo.files.find((file) => PYTEST_TEST_FILE.test(file));
  return from === undefined ? undefined : { setup: [], tests: [{ name: 'pytest', command: 'pytest' }], from: [from] };
}

function merge(drafts: readonly Draft[]): Draft {
  const out: Draft = { setup: [], tests: [], from: [] };
  const add = (list: DraftStep[], step: DraftStep): void => {
    if (list.some((s) => s.command === step.command)) return;
    let name = step.name;
    for (let n = 2; list.some((s) => s.name === name); n += 1) name = `${step.name}-${n}`;
    list.push({ ...step, name });
  };
  for (const draft of drafts) {
    for (const step of draft.setup) add(out.setup, step);
    for (const step of draft.tests) add(out.tests, step);
    out.from.push(...draft.from);
  }
  return out;
}

function toPlan(draft: Draft): DetectedPlan {
  const config = parseVerifyConfig({ environment: { setup: draft.setup }, tests: draft.tests });
  return { config, detectedFrom: draft.from };
}

/**
 * Detects a gate plan from the repository, or returns `plan: undefined` (the run will be unverified).
 * `notes` explains every workflow, step or file that was looked at and skipped.
 */
export async function detectGatePlan(repo: RepoReader): Promise<DetectionResult> {
  const notes: string[] = [];
  const files = new Set(repo.files);

  const workflows: Draft[] = [];
  for (const file of [...repo.files].filter((f) => WORKFLOW_FILE.test(f)).sort()) {
    const draft = workflowSteps(file, await repo.read(file), notes);
    if (draft !== undefined) workflows.push(draft);
  }
  if (workflows.length > 0) return { plan: toPlan(merge(workflows)), notes };

  const ecosystems: Draft[] = [];
  const node = await packageScripts(repo, files, notes);
  if (node !== undefined) ecosystems.push(node);
  const python = await pytest(repo, files);
  if (python !== undefined) ecosystems.push(python);
  if (files.has('Cargo.toml')) ecosystems.push({ setup: [], tests: [{ name: 'cargo-test', command: 'cargo test' }], from: ['Cargo.toml'] });
  if (files.has('go.mod')) ecosystems.push({ setup: [], tests: [{ name: 'go-test', command: 'go test ./...' }], from: ['go.mod'] });
  if (ecosystems.length === 0) return { plan: undefined, notes };
  return { plan: toPlan(merge(ecosystems)), notes };
}
