/**
 * Gate detection for repositories without verify.yaml (SPEC 6).
 *
 * Kept in one file (over 400 lines) on purpose: the detection order below is one ranking and every source
 * (workflows, package scripts, Python, Cargo, Go, Makefile) is a rung of it; together the order reads in one place.
 *
 * A team that has not written verify.yaml has usually told us how it checks code elsewhere: in its CI
 * workflow or its package scripts. Detection turns those into a plan so the run is still verified, and
 * when nothing is found the run is recorded as `unverified` instead of passing silently.
 *
 * Order, first match wins:
 * 1. GitHub Actions: `.github/workflows/*.yml|*.yaml` triggered by `push` or `pull_request` whose file or
 *    `name:` does not say docs, benchmark, release, publish, deploy or pages. In each, the **test job** is
 *    the first job (on Linux, without `services:` or `container:`) with a step that runs a test runner
 *    (`pytest`, `tox`, `nox`, `npm test`, `go test`, `cargo test`, `make test` …); a matrix is reduced to
 *    one cell (a Linux `os`, the last value of every other key, or the first `include:` entry) and its
 *    `${{ matrix.* }}` references substituted. The job's `run:` steps become gates, in order. Skipped:
 *    `uses:` steps, steps with `if:`, a non-POSIX `shell:`, or another `${{ … }}` expression (we cannot
 *    evaluate them), steps that publish, deploy or touch the system (`sudo`, `apt-get`, `npm publish`,
 *    `git push` …) and steps that only `echo`. Dependency installs (`npm ci`, `pnpm install`, `pip install`
 *    …) become `environment.setup` steps, because the tests cannot run without them. `corepack enable`
 *    (which writes shims next to the machine's `node`) is dropped; pnpm and yarn then run as `corepack pnpm`
 *    / `corepack yarn`, the repository's pinned version, without installing anything outside the run.
 *    `pip install --upgrade pip` is dropped too (Python setups run in AgentGate's virtualenv, with the
 *    interpreter's pip; python-env.ts).
 *    A workflow without a test job (lint only, docs, benchmarks) contributes nothing.
 * 2. Otherwise every ecosystem found at the repository root contributes (its language-native configuration):
 *    - package.json scripts `typecheck`, `lint`, `test` (in that order; npm's placeholder test script is
 *      ignored), run with the package manager named by `packageManager` or the lockfile (pnpm, yarn, npm),
 *      with an install step as setup;
 *    - pytest (`pytest.ini`, `[tool.pytest…]` in pyproject.toml, `[tool:pytest]` in setup.cfg, `[pytest]`
 *      in tox.ini, `conftest.py`, or `test_*.py` / `*_test.py` under `tests/` or `test/`) → `pytest`;
 *      without those, `[tool.tox]` in pyproject.toml or a tox.ini → `tox`, a `noxfile.py` → `nox`;
 *    - `Cargo.toml` → `cargo test`;
 *    - `go.mod` → `go test ./...`;
 *    - and only when none of these was found, a Makefile with a `test:` target → `make test`.
 * Every setup step and gate carries the file (and job, step or section) it came from (`origins`).
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

/** Where one detected setup step or gate came from, for `agentgate gates` and the run record. */
export interface GateOrigin {
  kind: 'setup' | 'gate';
  /** The step's or gate's name in the plan. */
  name: string;
  /** e.g. `.github/workflows/test.yml, job "test", step "Run tests"` or `pyproject.toml [tool.pytest]`. */
  from: string;
}

export interface DetectedPlan {
  config: VerifyConfig;
  /** One entry per setup step and gate, in plan order. */
  origins: GateOrigin[];
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
  /** Where it came from (see {@link GateOrigin}). */
  origin: string;
}

interface Draft {
  setup: DraftStep[];
  tests: DraftStep[];
  from: string[];
}

const WORKFLOW_FILE = /^\.github\/workflows\/[^/]+\.ya?ml$/;

/** Dependency installation: needed before tests, so it becomes a setup step rather than a gate. */
const INSTALL =
  /^(npm (ci|install|i)|pnpm (install|i)|yarn install|bun install|pip3?(\.\d+)? install|python(3(\.\d+)?)? -m pip install|poetry install|pipenv install|uv sync|uv pip install|bundle install|go mod download|cargo fetch|corepack enable)(\s|$)/;

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

/** A workflow that is about something else than testing the code, judged by its file name or `name:`. */
const UNRELATED_WORKFLOW = /(^|[^a-z])(docs?|documentation|bench(mark)?s?|release|publish|deploy|pages|gh-pages)([^a-z]|$)/i;

/** A command line that runs the project's tests: what identifies the test job of a workflow. */
const TEST_RUNNER =
  /(^|[\s;&|(])((python3? -m )?pytest|tox|nox|(npm|pnpm|yarn|bun)( run)? test|npx (vitest|jest|mocha|ava)|vitest|jest|mocha|go test|cargo (test|nextest)|make (test|check)|ctest|rspec|(bundle exec )?rake test|phpunit)(\s|$|:)/;

type MatrixCell = Record<string, string>;

function scalar(value: unknown): string | undefined {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
}

/**
 * One cell of a job's matrix: a Linux `os` when the key looks like one, the last (usually newest) value of
 * every other key; with only `include:`, its first entry. Undefined values are left unresolved.
 */
function matrixCell(strategy: unknown): MatrixCell {
  const cell: MatrixCell = {};
  const matrix = isRecord(strategy) ? strategy.matrix : undefined;
  if (!isRecord(matrix)) return cell;
  for (const [key, values] of Object.entries(matrix)) {
    if (key === 'include' || key === 'exclude' || !Array.isArray(values)) continue;
    const options = values.map(scalar).filter((v): v is string => v !== undefined);
    const linux = options.find((v) => /ubuntu|linux/i.test(v));
    const chosen = linux ?? options.at(-1);
    if (chosen !== undefined) cell[key] = chosen;
  }
  const include = Array.isArray(matrix.include) ? matrix.include[0] : undefined;
  if (Object.keys(cell).length === 0 && isRecord(include)) {
    for (const [key, value] of Object.entries(include)) {
      const text = scalar(value);
      if (text !== undefined) cell[key] = text;
    }
  }
  return cell;
}

/** Replaces `${{ matrix.key }}` with the cell's value; other expressions stay (and the step is skipped). */
function substituteMatrix(text: string, cell: MatrixCell): string {
  return text.replace(/\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}/g, (whole, key: string) => cell[key] ?? whole);
}

/** `pnpm …` / `yarn …` at the start of a command line → `corepack pnpm …`: the pinned version, no shims installed. */
function viaCorepack(command: string): string {
  return command.replace(/(^|\n|&&\s*|;\s*|\|\|\s*)(pnpm|yarn)(?=\s|$)/g, '$1corepack $2');
}

const COREPACK_ENABLE = /^corepack enable(\s|$)/;

/**
 * Commands that change the machine outside the workspace: a global package install (`npm i -g`,
 * `npm install --global`, combined flags such as `-fg`, `pnpm add -g`, `yarn global add`) or
 * `corepack enable` (shims next to the machine's node). They are dropped from a step, also from the
 * middle of an `a && b` chain; what the repository needs from them comes from corepack (pinned pnpm/yarn)
 * or the environment cache.
 */
const MACHINE_CHANGE = [
  COREPACK_ENABLE,
  /^npm\s+(?:i|install|add)\b.*\s(?:--global|-[A-Za-z]*g[A-Za-z]*)(?:\s|$)/,
  /^pnpm\s+(?:add|i|install)\b.*\s(?:--global|-g)(?:\s|$)/,
  /^yarn\s+global\s+add\b/,
];

/** Splits a command line at `&&` (outside quotes it is a plain token in CI scripts) into its commands. */
function chainParts(line: string): string[] {
  return line.split(/\s*&&\s*/).filter((part) => part !== '');
}

function changesMachine(command: string): boolean {
  return MACHINE_CHANGE.some((pattern) => pattern.test(command));
}

/** The line without its machine-changing commands (undefined when nothing is left), and what was dropped. */
function withoutMachineChanges(line: string): { kept: string | undefined; dropped: string[] } {
  const parts = chainParts(line);
  const dropped = parts.filter(changesMachine);
  if (dropped.length === 0) return { kept: line, dropped };
  const kept = parts.filter((part) => !changesMachine(part));
  return { kept: kept.length === 0 ? undefined : kept.join(' && '), dropped };
}

/**
 * `python -m pip install --upgrade pip` (and the `pip install -U pip` forms): it upgrades the installer,
 * installs nothing the tests use, and needs the index every run. Setup runs in AgentGate's virtualenv
 * with the interpreter's own pip (docs/gates.md "Python environments"), so it is dropped.
 */
const PIP_SELF_UPGRADE = /^(python(3(\.\d+)?)? -m pip|pip3?(\.\d+)?) install(\s+-[-A-Za-z]+)*\s+["']?pip["']?(\s+-[-A-Za-z]+)*$/;

function jobDraft(file: string, jobId: string, job: Record<string, unknown>, notes: string[]): { draft: Draft; runsTests: boolean } {
  const cell = matrixCell(job.strategy);
  const draft: Draft = { setup: [], tests: [], from: [file] };
  const steps: unknown[] = Array.isArray(job.steps) ? job.steps : [];
  const usesCorepack = steps.some(
    (step) => isRecord(step) && typeof step.run === 'string' && commandLines(step.run).some((line) => chainParts(line).some((part) => COREPACK_ENABLE.test(part))),
  );
  let runsTests = false;
  for (const [index, step] of steps.entries()) {
    if (!isRecord(step) || typeof step.run !== 'string' || step.uses !== undefined) continue;
    const label = typeof step.name === 'string' && step.name.trim() !== '' ? substituteMatrix(step.name.trim(), cell) : undefined;
    const origin = `${file}, job "${jobId}", step ${label === undefined ? index + 1 : `"${label}"`}`;
    const where = `${file}: job "${jobId}", step ${label === undefined ? index + 1 : `"${label}"`}`;
    const run = substituteMatrix(step.run.trim(), cell);
    let lines = commandLines(run);
    const rawDir = step['working-directory'];
    const dir = typeof rawDir === 'string' ? substituteMatrix(rawDir, cell) : rawDir;
    const skip = skipReason(step, run, lines, dir);
    if (skip !== undefined) {
      if (skip !== '') notes.push(`${where} skipped, ${skip}`);
      continue;
    }
    let body = run;
    if (lines.some((line) => PIP_SELF_UPGRADE.test(line))) {
      notes.push(`${where}: \`${lines.find((line) => PIP_SELF_UPGRADE.test(line)) ?? 'pip install --upgrade pip'}\` dropped (setup runs in AgentGate's virtualenv with the interpreter's own pip)`);
      lines = lines.filter((line) => !PIP_SELF_UPGRADE.test(line));
      if (lines.length === 0) continue;
      body = lines.join('\n');
    }
    const cleaned = lines.map(withoutMachineChanges);
    const dropped = cleaned.flatMap((line) => line.dropped);
    if (dropped.length > 0) {
      for (const command of dropped) {
        notes.push(
          COREPACK_ENABLE.test(command)
            ? `${where}: \`corepack enable\` dropped (it writes shims next to the machine's node); pnpm and yarn run as \`corepack pnpm\` / \`corepack yarn\``
            : `${where}: \`${command}\` dropped (a global install changes the machine outside the workspace)`,
        );
      }
      lines = cleaned.flatMap((line) => (line.kept === undefined ? [] : [line.kept]));
      if (lines.length === 0) continue;
      body = lines.join('\n');
    }
    if (usesCorepack) body = viaCorepack(body);
    const command = typeof dir === 'string' && dir.trim() !== '' ? `cd ${shellQuote(dir.trim())} && ${body}` : body;
    const minutes = step['timeout-minutes'];
    const timeout = typeof minutes === 'number' && Number.isFinite(minutes) && minutes > 0 ? Math.ceil(minutes * 60) : undefined;
    const entry: DraftStep = { name: label ?? (lines[0] ?? run).slice(0, 60), command, origin, ...(timeout === undefined ? {} : { timeout }) };
    if (lines.every(isInstall)) draft.setup.push(entry);
    else {
      draft.tests.push(entry);
      if (lines.some((line) => TEST_RUNNER.test(line))) runsTests = true;
    }
  }
  const cellText = Object.entries(cell).map(([k, v]) => `${k}=${v}`).join(', ');
  if (runsTests && cellText !== '') notes.push(`${file}: job "${jobId}": matrix reduced to one cell (${cellText})`);
  return { draft, runsTests };
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
  const base = file.slice(file.lastIndexOf('/') + 1).replace(/\.ya?ml$/, '');
  const title = typeof doc.name === 'string' ? doc.name : '';
  if (UNRELATED_WORKFLOW.test(base) || UNRELATED_WORKFLOW.test(title)) {
    notes.push(`${file}: skipped, a docs, benchmark or release workflow, not the test suite`);
    return undefined;
  }
  const jobs = isRecord(doc.jobs) ? Object.entries(doc.jobs) : [];
  const unusable: string[] = [];
  for (const [jobId, job] of jobs) {
    if (!isRecord(job)) continue;
    const runsOn = typeof job['runs-on'] === 'string' ? substituteMatrix(job['runs-on'], matrixCell(job.strategy)) : job['runs-on'];
    if (job.services !== undefined || job.container !== undefined || !runsOnLinux(runsOn)) {
      unusable.push(jobId);
      continue;
    }
    const jobNotes: string[] = [];
    const { draft, runsTests } = jobDraft(file, jobId, job, jobNotes);
    if (!runsTests) continue;
    notes.push(...jobNotes);
    const others = jobs.map(([id]) => id).filter((id) => id !== jobId);
    if (others.length > 0) notes.push(`${file}: job "${jobId}" runs the tests; other jobs not used (${others.join(', ')})`);
    return draft;
  }
  const reason = unusable.length > 0 ? `no job runs tests on Linux without services or a container (needing them: ${unusable.join(', ')})` : 'no job runs a test command';
  notes.push(`${file}: skipped, ${reason}`);
  return undefined;
}

type PackageManager = 'pnpm' | 'yarn' | 'npm';

/**
 * The repository's package manager and its install command. A pinned pnpm or yarn (`packageManager`) runs
 * through corepack (`corepack pnpm`), so the pinned version is used and nothing is installed on the machine.
 */
function packageManager(pkg: Record<string, unknown>, files: ReadonlySet<string>): { name: PackageManager; run: string; install: string; why: string } {
  const found = packageManagerChoice(pkg, files);
  const declared = typeof pkg.packageManager === 'string' ? pkg.packageManager : '';
  const pinned = found.name !== 'npm' && declared.startsWith(`${found.name}@`);
  const run = pinned ? `corepack ${found.name}` : found.name;
  const why = declared !== '' ? `packageManager ${declared}` : files.has('pnpm-lock.yaml') ? 'pnpm-lock.yaml' : files.has('yarn.lock') ? 'yarn.lock' : 'npm by default';
  return { name: found.name, run, install: pinned ? `corepack ${found.install}` : found.install, why };
}

function packageManagerChoice(pkg: Record<string, unknown>, files: ReadonlySet<string>): { name: PackageManager; install: string } {
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
    tests.push({ name: script, command: `${pm.run} run ${script}`, origin: `package.json scripts.${script} (${pm.name}, from ${pm.why})` });
  }
  if (tests.length === 0) return undefined;
  return { setup: [{ name: 'install', command: pm.install, origin: `package.json (${pm.name}, from ${pm.why})` }], tests, from: ['package.json'] };
}

const PYTEST_TEST_FILE = /^(tests?)\/(.+\/)?(test_[^/]*|[^/]*_test)\.py$/;

async function python(repo: RepoReader, files: ReadonlySet<string>): Promise<Draft | undefined> {
  const marker = async (file: string, pattern: RegExp): Promise<boolean> => files.has(file) && pattern.test(await repo.read(file));
  const found = (name: string, command: string, from: string, origin: string): Draft => ({ setup: [], tests: [{ name, command, origin }], from: [from] });
  if (files.has('pytest.ini')) return found('pytest', 'pytest', 'pytest.ini', 'pytest.ini');
  if (await marker('pyproject.toml', /^\[tool\.pytest/m)) return found('pytest', 'pytest', 'pyproject.toml', 'pyproject.toml [tool.pytest]');
  if (await marker('setup.cfg', /^\[tool:pytest\]/m)) return found('pytest', 'pytest', 'setup.cfg', 'setup.cfg [tool:pytest]');
  if (await marker('tox.ini', /^\[pytest\]/m)) return found('pytest', 'pytest', 'tox.ini', 'tox.ini [pytest]');
  if (files.has('conftest.py')) return found('pytest', 'pytest', 'conftest.py', 'conftest.py');
  if (await marker('pyproject.toml', /^\[tool\.tox/m)) return found('tox', 'tox', 'pyproject.toml', 'pyproject.toml [tool.tox]');
  if (files.has('tox.ini')) return found('tox', 'tox', 'tox.ini', 'tox.ini');
  if (files.has('noxfile.py')) return found('nox', 'nox', 'noxfile.py', 'noxfile.py');
  const testFile = repo.files.find((file) => PYTEST_TEST_FILE.test(file));
  return testFile === undefined ? undefined : found('pytest', 'pytest', testFile, `${testFile} (a pytest-style test file)`);
}

function merge(drafts: readonly Draft[]): Draft {
  const out: Draft = { setup: [], tests: [], from: [] };
  const add = (list: DraftStep[], step: DraftStep): void => {
    if (list.some((existing) => existing.command === step.command)) return;
    let name = step.name;
    for (let n = 2; list.some((existing) => existing.name === name); n += 1) name = `${step.name}-${n}`;
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
  const plain = (step: DraftStep): Omit<DraftStep, 'origin'> => {
    const { origin: _origin, ...rest } = step;
    return rest;
  };
  const config = parseVerifyConfig({ environment: { setup: draft.setup.map(plain) }, tests: draft.tests.map(plain) });
  const origins: GateOrigin[] = [
    ...draft.setup.map((step): GateOrigin => ({ kind: 'setup', name: step.name, from: step.origin })),
    ...draft.tests.map((step): GateOrigin => ({ kind: 'gate', name: step.name, from: step.origin })),
  ];
  return { config, origins, detectedFrom: draft.from };
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
  const py = await python(repo, files);
  if (py !== undefined) ecosystems.push(py);
  if (files.has('Cargo.toml')) ecosystems.push({ setup: [], tests: [{ name: 'cargo-test', command: 'cargo test', origin: 'Cargo.toml' }], from: ['Cargo.toml'] });
  if (files.has('go.mod')) ecosystems.push({ setup: [], tests: [{ name: 'go-test', command: 'go test ./...', origin: 'go.mod' }], from: ['go.mod'] });
  if (ecosystems.length === 0 && files.has('Makefile') && /^test\s*:/m.test(await repo.read('Makefile'))) {
    ecosystems.push({ setup: [], tests: [{ name: 'make-test', command: 'make test', origin: 'Makefile target test' }], from: ['Makefile'] });
  }
  if (ecosystems.length === 0) return { plan: undefined, notes };
  return { plan: toPlan(merge(ecosystems)), notes };
}
