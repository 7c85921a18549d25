/**
 * Python environments with the real interpreter, real virtualenvs and no package index (PyPI is not
 * reachable here: every install comes from a wheel inside the repository or is already satisfied by the
 * base interpreter, and `PIP_NO_INDEX=1` keeps pip from trying).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeEnvironmentKey, EnvCache } from '../../src/gates/env-cache.js';
import { pythonEnvRoot } from '../../src/gates/python-env.js';
import { planPythonSetup } from '../../src/gates/python-plan.js';
import type { PythonSetupStep } from '../../src/gates/python-plan.js';
import { WORKTREE_PTH } from '../../src/gates/python-project.js';
import { stripWorktreeInstalls } from '../../src/gates/python-strip.js';
import { locatePython, pythonEnvironmentVariables } from '../../src/gates/python-venv.js';
import type { PythonInterpreter } from '../../src/gates/python-venv.js';
import { Verifier } from '../../src/gates/verifier.js';
import { systemClock } from '../../src/util/clock.js';
import { runCli } from '../helpers/cli.js';
import { git as repoGit, makeRepo, userTreeState, writeAgent } from '../helpers/git-repo.js';
import type { TempRepo as CliRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';
import { gateContext, git } from './helpers.js';
import type { TempRepo } from './helpers.js';

/** Builds `calc_helper-1.0-py3-none-any.whl` (a module and a console script) with the interpreter's zipfile. */
const WHEEL_SCRIPT = String.raw`
import base64, hashlib, sys, zipfile
files = {
    "calc_helper/__init__.py": "def double(x):\n    return 2 * x\n\ndef main():\n    print('helper')\n",
    "calc_helper-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: calc-helper\nVersion: 1.0\n",
    "calc_helper-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: agentgate-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "calc_helper-1.0.dist-info/entry_points.txt": "[console_scripts]\ncalc-helper = calc_helper:main\n",
}
record = []
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append("calc_helper-1.0.dist-info/RECORD,,")
    z.writestr("calc_helper-1.0.dist-info/RECORD", "\n".join(record) + "\n")
`;

const WHEEL = 'vendor/calc_helper-1.0-py3-none-any.whl';

const PYPROJECT = `[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "calc"
version = "0.1.0"
dependencies = ["calc-helper"]

[project.optional-dependencies]
test = ["pytest"]

[project.scripts]
calc = "calc:cli"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
`;

const BUGGY = 'def add(a, b):\n    return a - b\n\n\ndef cli():\n    print(add(2, 3))\n';
const FIXED = 'def add(a, b):\n    return a + b\n\n\ndef cli():\n    print(add(2, 3))\n';

const TESTS = `import calc
from calc import add
from calc_helper import double


def test_add():
    assert add(2, 3) == 5


def test_helper_is_installed():
    assert double(add(1, 1)) == 4
`;

const CI_WORKFLOW = `name: CI
on: [push, pull_request]
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: pip install ruff
      - run: ruff check .
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Upgrade pip
        run: python -m pip install --upgrade pip
      - name: Install dependencies
        run: pip install -r requirements-dev.txt
      - name: Install package
        run: pip install -e .
      - name: Run tests
        run: pytest
`;

const DOCS_WORKFLOW = `name: Docs
on: [push, pull_request]
jobs:
  docs:
    runs-on: ubuntu-latest
    steps:
      - run: pip install -e .[docs]
      - run: mkdocs build --strict
`;

const BENCHMARK_WORKFLOW = `name: Benchmark
on: [push]
jobs:
  bench:
    runs-on: ubuntu-latest
    steps:
      - run: pip install -e .[test] pytest-benchmark
      - run: pytest benchmarks --benchmark-only
`;

function pythonFiles(source: string): Record<string, string> {
  return {
    'pyproject.toml': PYPROJECT,
    'requirements-dev.txt': `./${WHEEL}\n`,
    'src/calc/__init__.py': source,
    'tests/test_calc.py': TESTS,
  };
}

function buildWheel(repo: string): void {
  mkdirSync(path.join(repo, 'vendor'), { recursive: true });
  execFileSync('python3', ['-c', WHEEL_SCRIPT, path.join(repo, WHEEL)]);
}

/** Every file of a tree with its type, mode and content hash (or link target): equal means untouched. */
function treeFingerprint(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const file = path.join(dir, name);
      const stats = lstatSync(file);
      const key = path.relative(root, file);
      if (stats.isSymbolicLink()) out[key] = `link ${readlinkSync(file)}`;
      else if (stats.isDirectory()) {
        out[key] = `dir ${(stats.mode & 0o7777).toString(8)}`;
        walk(file);
      } else out[key] = `file ${(stats.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
    }
  };
  walk(root);
  return out;
}

const noIndexEnv = (): Record<string, string | undefined> => ({ ...process.env, PIP_NO_INDEX: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' });

describe('Python environments', () => {
  let scratch: string;
  let python: PythonInterpreter;

  beforeAll(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'agentgate-python-env-'));
    const found = await locatePython({ env: process.env, cwd: scratch, signal: new AbortController().signal, clock: systemClock });
    if (found === undefined) throw new Error('these tests need python3 on PATH');
    python = found;
  });

  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  /** A repository (worktree) with the Python project, the wheel committed, artifacts under `home/runs/<runId>`. */
  function pythonRepo(name: string, files: Record<string, string>): TempRepo {
    const dir = path.join(scratch, name);
    mkdirSync(dir, { recursive: true });
    git(dir, 'init', '-q', '-b', 'main');
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      writeFileSync(path.join(dir, file), content);
    }
    buildWheel(dir);
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', 'base');
    return { root: scratch, dir, artifactsDir: path.join(scratch, 'home', 'runs', name), baseSha: git(dir, 'rev-parse', 'HEAD'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  /** Another run's worktree of the same repository. */
  function runOf(source: TempRepo, runId: string): TempRepo {
    const dir = path.join(scratch, 'worktrees', runId);
    git(scratch, 'clone', '-q', source.dir, dir);
    return { ...source, dir, artifactsDir: path.join(scratch, 'home', 'runs', runId), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }

  describe('planning a setup', () => {
    const steps = (...commands: string[]): PythonSetupStep[] => commands.map((command, i) => ({ name: `step-${i + 1}`, command, timeout: 300 }));

    it('installs the dependencies of the project and links the project itself instead of installing it', async () => {
      const repo = pythonRepo('plan', pythonFiles(BUGGY));
      const plan = await planPythonSetup({ steps: steps('pip install -r requirements-dev.txt', 'pip install -e ".[test]"'), worktreePath: repo.dir, python, signal: new AbortController().signal, clock: systemClock, env: process.env });
      expect(plan.steps.map((s) => s.run)).toEqual(['pip install -r requirements-dev.txt', 'pip install calc-helper pytest']);
      expect(plan.linked).toEqual(['.']);
      expect(plan.cacheable).toEqual({ ok: true, keyFiles: ['pyproject.toml', 'requirements-dev.txt', WHEEL] });
    });

    it('keeps an install it cannot read, or of a project with dynamic dependencies, as written and does not cache it', async () => {
      const repo = pythonRepo('plan-dynamic', { ...pythonFiles(BUGGY), 'pyproject.toml': PYPROJECT.replace('dependencies = ["calc-helper"]', 'dynamic = ["dependencies"]') });
      const plan = await planPythonSetup({ steps: steps('pip install -e .', 'pip install -r requirements-dev.txt && make'), worktreePath: repo.dir, python, signal: new AbortController().signal, clock: systemClock, env: process.env });
      expect(plan.steps.map((s) => s.run)).toEqual(['pip install -e .', 'pip install -r requirements-dev.txt && make']);
      expect(plan.steps[0]?.notes.join()).toMatch(/dependencies are dynamic/);
      expect(plan.linked).toEqual([]);
      expect(plan.cacheable).toMatchObject({ ok: false, reason: expect.stringMatching(/does not read/) as unknown });
    });

    it('keys the entry by the requirement files: a changed requirements file is another key, an unrelated file is not', async () => {
      const repo = pythonRepo('key', pythonFiles(BUGGY));
      const key = async (): Promise<string> => {
        const setup = steps('pip install -r requirements-dev.txt', 'pip install -e .');
        const plan = await planPythonSetup({ steps: setup, worktreePath: repo.dir, python, signal: new AbortController().signal, clock: systemClock, env: process.env });
        if (!plan.cacheable.ok) throw new Error(plan.cacheable.reason);
        const computed = await computeEnvironmentKey({ kind: 'python', worktreePath: repo.dir, baseSha: repo.baseSha, steps: setup, platform: python.version, files: plan.cacheable.keyFiles, signal: new AbortController().signal, clock: systemClock });
        return computed.key;
      };
      const first = await key();
      writeFileSync(path.join(repo.dir, 'README.md'), '# calc\n');
      expect(await key()).toBe(first);
      writeFileSync(path.join(repo.dir, 'requirements-dev.txt'), `./${WHEEL}\npytest\n`);
      const changed = await key();
      expect(changed).not.toBe(first);
      writeFileSync(path.join(repo.dir, 'requirements-dev.txt'), `./${WHEEL}\n`);
      expect(await key()).toBe(first);
    });
  });

  describe('the environment of setup and gates', () => {
    it("puts the run's virtualenv first and takes every other virtualenv, PYTHONPATH and user installs away", () => {
      const userVenv = path.join(scratch, 'env-vars', 'user-venv');
      const otherVenv = path.join(scratch, 'env-vars', 'other');
      for (const dir of [userVenv, otherVenv]) {
        mkdirSync(path.join(dir, 'bin'), { recursive: true });
        writeFileSync(path.join(dir, 'pyvenv.cfg'), 'home = /usr/bin\n');
      }
      const runVenv = path.join(scratch, 'env-vars', 'run', 'venv');
      const env = pythonEnvironmentVariables(
        { PATH: `${userVenv}/bin:/usr/local/bin:${otherVenv}/bin:/usr/bin`, VIRTUAL_ENV: userVenv, PYTHONPATH: '/home/user/calc/src', PIP_USER: '1', HOME: '/home/user' },
        runVenv,
      );
      expect(env).toEqual({
        PATH: `${runVenv}/bin:/usr/local/bin:/usr/bin`,
        VIRTUAL_ENV: runVenv,
        UV_PROJECT_ENVIRONMENT: runVenv,
        PYTHONNOUSERSITE: '1',
        PYTHONDONTWRITEBYTECODE: '1',
        PIP_DISABLE_PIP_VERSION_CHECK: '1',
        HOME: '/home/user',
      });
    });

    it('takes out what a setup installed from the worktree anyway, keeping its metadata, scripts and everything else', async () => {
      const worktree = path.join(scratch, 'strip', 'worktree');
      const venv = path.join(scratch, 'strip', 'venv');
      const site = path.join(venv, 'lib', 'python3.11', 'site-packages');
      const put = (relative: string, content: string): void => {
        mkdirSync(path.dirname(path.join(venv, relative)), { recursive: true });
        writeFileSync(path.join(venv, relative), content);
      };
      mkdirSync(path.join(worktree, 'plugins', 'extra'), { recursive: true });
      const sp = 'lib/python3.11/site-packages';
      // A setuptools editable install of the root (`pip install -e .` with dynamic metadata) …
      put(`${sp}/calc-0.1.0.dist-info/direct_url.json`, JSON.stringify({ url: `file://${worktree}`, dir_info: { editable: true } }));
      put(`${sp}/calc-0.1.0.dist-info/METADATA`, 'Name: calc\n');
      put(`${sp}/calc-0.1.0.dist-info/RECORD`, ['__editable__.calc-0.1.0.pth,,', '__editable___calc_0_1_0_finder.py,,', '__pycache__/__editable___calc_0_1_0_finder.cpython-311.pyc,,', '../../../bin/calc,,', 'calc-0.1.0.dist-info/METADATA,,'].join('\n'));
      put(`${sp}/__editable__.calc-0.1.0.pth`, 'import __editable___calc_0_1_0_finder; __editable___calc_0_1_0_finder.install()\n');
      put(`${sp}/__editable___calc_0_1_0_finder.py`, `MAPPING = {'calc': '${worktree}/src/calc'}\n`);
      put(`${sp}/__pycache__/__editable___calc_0_1_0_finder.cpython-311.pyc`, 'pyc');
      put('bin/calc', '#!/venv/bin/python\n');
      // … a regular install of a sub-project (`pip install ./plugins/extra`), a legacy egg-link, a path line …
      put(`${sp}/extra-1.0.dist-info/direct_url.json`, JSON.stringify({ url: `file://${worktree}/plugins/extra`, dir_info: {} }));
      put(`${sp}/extra-1.0.dist-info/RECORD`, 'extra/__init__.py,,\nextra-1.0.dist-info/RECORD,,\n');
      put(`${sp}/extra/__init__.py`, '');
      put(`${sp}/legacy.egg-link`, `${worktree}/legacy\n.\n`);
      put(`${sp}/easy-install.pth`, `${worktree}/legacy\n/opt/elsewhere\n`);
      // … and what was installed from an index or a wheel, which stays.
      put(`${sp}/calc_helper-1.0.dist-info/direct_url.json`, JSON.stringify({ url: `file://${worktree}/vendor/calc_helper-1.0-py3-none-any.whl`, archive_info: {} }));
      put(`${sp}/calc_helper/__init__.py`, '');

      expect(await stripWorktreeInstalls(venv, worktree)).toEqual(['.', 'legacy', 'plugins/extra']);
      const left = Object.keys(treeFingerprint(site)).filter((f) => !statSync(path.join(site, f)).isDirectory()).sort();
      expect(left).toEqual([
        'calc-0.1.0.dist-info/METADATA',
        'calc-0.1.0.dist-info/RECORD',
        'calc-0.1.0.dist-info/direct_url.json',
        'calc_helper-1.0.dist-info/direct_url.json',
        'calc_helper/__init__.py',
        'easy-install.pth',
        'extra-1.0.dist-info/RECORD',
        'extra-1.0.dist-info/direct_url.json',
      ]);
      expect(readFileSync(path.join(site, 'easy-install.pth'), 'utf8')).toBe('/opt/elsewhere\n');
      expect(readFileSync(path.join(venv, 'bin', 'calc'), 'utf8')).toBe('#!/venv/bin/python\n');
    });

    it('fails the setup with what it looked for when a Python install finds no interpreter', async () => {
      const repo = pythonRepo('no-python', { ...pythonFiles(FIXED), 'verify.yaml': 'version: "1"\nenvironment:\n  setup:\n    - { name: deps, command: pip install -r requirements-dev.txt }\ntests:\n  - { name: pytest, command: pytest }\n' });
      const empty = path.join(scratch, 'empty-bin');
      mkdirSync(empty, { recursive: true });
      const result = await new Verifier({ envCache: false }).setup(gateContext(repo, { env: { PATH: empty } }));
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.error.code).toBe('AG_ERR_GATE_SETUP_FAILED');
      expect(result.error.message).toBe(`setup step deps installs Python packages (pip install -r requirements-dev.txt), but no Python interpreter was found: looked for python3 and python on PATH (${empty})`);
    });
  });

  describe('a second run with the same requirements', () => {
    it('materialises the stored virtualenv at its own path: its python and its scripts are the run\'s', async () => {
      const verify = `version: "1"
environment:
  setup:
    - { name: deps, command: pip install -r requirements-dev.txt }
    - { name: package, command: "pip install -e .[test]" }
tests:
  - { name: pytest, command: pytest -q -p no:cacheprovider }
  - { name: console-script, command: calc }
`;
      const source = pythonRepo('cache-source', { ...pythonFiles(FIXED), 'verify.yaml': verify });
      const cache = new EnvCache({ root: path.join(scratch, 'home', 'env-cache'), clock: systemClock });
      const verifier = new Verifier({ envCache: cache });
      const first = runOf(source, 'run-1');
      const setup1 = await verifier.setup(gateContext(first, { env: noIndexEnv() }));
      expect(setup1.ok).toBe(true);
      expect(setup1.cache).toMatchObject({ status: 'miss', kind: 'python', stored: true, dirs: ['venv'] });
      const verified1 = await verifier.verify(gateContext(first, { env: noIndexEnv() }));
      expect(verified1.ok && verified1.report.gates.filter((g) => g.level === 'L1').map((g) => [g.name, g.passed])).toEqual([['pytest', true], ['console-script', true]]);

      const second = runOf(source, 'run-2');
      const setup2 = await verifier.setup(gateContext(second, { env: noIndexEnv() }));
      expect(setup2.ok).toBe(true);
      expect(setup2.cache).toMatchObject({ status: 'hit', kind: 'python' });
      expect(setup2.results.map((r) => r.message)).toEqual([
        expect.stringMatching(/^restored from the environment cache/),
        expect.stringMatching(/^restored from the environment cache/),
        expect.stringMatching(/AgentGate's virtualenv .* the worktree's src on sys\.path/),
      ]);

      const venv = path.join(pythonEnvRoot(second.artifactsDir), 'venv');
      const firstVenv = path.join(pythonEnvRoot(first.artifactsDir), 'venv');
      const prefix = execFileSync(path.join(venv, 'bin', 'python'), ['-c', 'import sys; print(sys.prefix)'], { encoding: 'utf8' }).trim();
      expect(prefix).toBe(venv);
      // Every script's interpreter is this run's virtualenv (pip wrote calc-helper in run 1's; pytest comes from the base).
      const scripts = readdirSync(path.join(venv, 'bin')).filter((name) => !name.startsWith('python') && !name.startsWith('activate') && !name.startsWith('Activate'));
      expect(scripts).toEqual(expect.arrayContaining(['calc', 'calc-helper', 'pip', 'pytest']));
      for (const name of scripts) {
        const text = readFileSync(path.join(venv, 'bin', name), 'utf8');
        expect(text.split('\n')[0], name).toMatch(new RegExp(`^#!${venv}/bin/python|^#!/bin/sh$`));
        expect(text, name).not.toContain(firstVenv);
      }
      expect(readFileSync(path.join(venv, 'pyvenv.cfg'), 'utf8')).not.toContain(firstVenv);
      // The dependency came from the cache: linked (shared inode), sealed; the project itself is the worktree's.
      const helper = execFileSync(path.join(venv, 'bin', 'python'), ['-c', 'import calc_helper, calc; print(calc_helper.__file__); print(calc.__file__)'], { encoding: 'utf8' }).trim().split('\n');
      expect(helper[0]?.startsWith(`${venv}/lib/`)).toBe(true);
      expect(statSync(helper[0] ?? '').nlink).toBeGreaterThan(1);
      expect(statSync(helper[0] ?? '').mode & 0o222).toBe(0);
      expect(helper[1]).toBe(path.join(second.dir, 'src', 'calc', '__init__.py'));
      expect(readFileSync(path.join(path.dirname(path.dirname(helper[0] ?? '')), WORKTREE_PTH), 'utf8')).toBe(`${path.join(second.dir, 'src')}\n`);

      const verified2 = await verifier.verify(gateContext(second, { env: noIndexEnv() }));
      expect(verified2.ok && verified2.report.passed).toBe(true);
      // Nothing of the environment landed in the worktree.
      expect(git(second.dir, 'status', '--porcelain', '--ignored')).toBe('');
      const entries = await cache.list();
      expect(entries.map((e) => [e.kind, e.python?.linked])).toEqual([['python', ['.']]]);
    }, 120_000);
  });
});

describe('agentgate with a Python repository (src layout, pytest in pyproject.toml, a multi-job CI workflow, docs and benchmark workflows)', () => {
  const repos: CliRepo[] = [];
  afterAll(() => {
    for (const r of repos.splice(0)) r.cleanup();
  });

  /** The user's own environment: a virtualenv with their checkout installed editable, first on PATH. */
  function userEnvironment(r: CliRepo): { venv: string; env: Record<string, string> } {
    const venv = path.join(r.root, 'user-venv');
    execFileSync('python3', ['-m', 'venv', '--without-pip', '--system-site-packages', venv]);
    const lib = path.join(venv, 'lib');
    const sitePackages = path.join(lib, readdirSync(lib).find((name) => name.startsWith('python')) ?? 'python3', 'site-packages');
    // What `pip install -r requirements-dev.txt` and `pip install -e .` of the checkout leave behind, and a
    // pytest that runs this virtualenv's python.
    mkdirSync(path.join(sitePackages, 'calc_helper'));
    writeFileSync(path.join(sitePackages, 'calc_helper', '__init__.py'), 'def double(x):\n    return 2 * x\n');
    writeFileSync(path.join(sitePackages, '__editable__.calc-0.1.0.pth'), `${path.join(r.repo, 'src')}\n`);
    mkdirSync(path.join(sitePackages, 'calc-0.1.0.dist-info'));
    writeFileSync(path.join(sitePackages, 'calc-0.1.0.dist-info', 'METADATA'), 'Metadata-Version: 2.1\nName: calc\nVersion: 0.1.0\n');
    writeFileSync(path.join(venv, 'bin', 'pytest'), `#!${venv}/bin/python\nimport sys\nfrom pytest import console_main\nsys.exit(console_main())\n`, { mode: 0o755 });
    return { venv, env: { PATH: `${venv}/bin:${process.env['PATH'] ?? ''}`, VIRTUAL_ENV: venv, PIP_NO_INDEX: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' } };
  }

  it('detects pytest, runs it on the worktree\'s code in its own virtualenv, caches it, and leaves the user\'s environment untouched', async () => {
    const r = makeRepo(
      {
        ...pythonFiles(BUGGY),
        '.github/workflows/ci.yml': CI_WORKFLOW,
        '.github/workflows/docs.yml': DOCS_WORKFLOW,
        '.github/workflows/benchmark.yml': BENCHMARK_WORKFLOW,
      },
      { example: false },
    );
    repos.push(r);
    buildWheel(r.repo);
    repoGit(r.repo, 'add', '-A');
    repoGit(r.repo, 'commit', '-q', '-m', 'vendor the helper wheel');
    const user = userEnvironment(r);

    // The trap: in the user's environment, pytest imports the user's checkout (which has the bug).
    let trap = '';
    try {
      execFileSync('pytest', ['-q', '-p', 'no:cacheprovider'], { cwd: r.repo, env: { ...process.env, ...user.env, PYTHONDONTWRITEBYTECODE: '1' }, encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      trap = String((error as { stdout?: string }).stdout);
    }
    expect(trap).toMatch(/assert -1 == 5/);
    const userBefore = treeFingerprint(user.venv);
    const treeBefore = userTreeState(r.repo);

    const gates = await runCli(['gates', '--path', r.repo], { env: { AGENTGATE_HOME: r.home, ...user.env } });
    expect(gates.code).toBe(0);
    expect(gates.stdout).toContain('gate plan: detected from .github/workflows/ci.yml');
    expect(gates.stdout).toMatch(/gates:\n {2}Run tests: pytest {4}\(from \.github\/workflows\/ci\.yml, job "test", step "Run tests"\)/);
    expect(gates.stdout).toContain('  Install dependencies: pip install -r requirements-dev.txt');
    expect(gates.stdout).toContain('  Install package: pip install -e .');
    expect(gates.stdout).not.toMatch(/Upgrade pip:/);
    expect(gates.stdout).toMatch(/`python -m pip install --upgrade pip` dropped/);
    expect(gates.stdout).toContain('.github/workflows/docs.yml: skipped, a docs, benchmark or release workflow');
    expect(gates.stdout).toContain('.github/workflows/benchmark.yml: skipped, a docs, benchmark or release workflow');

    const agent = writeAgent(r.root, 'fix', `cat > src/calc/__init__.py <<'PY'\n${FIXED}PY`);
    const exec = (): ReturnType<typeof runCli> =>
      runCli(['exec', '--path', r.repo, '--prompt', 'Fix add in src/calc', '--agent', 'command', '--agent-command', `sh ${agent}`, '--json'], { env: { AGENTGATE_HOME: r.home, ...user.env } });

    const first = await exec();
    expect(first.stderr).not.toMatch(/AG_ERR/);
    expect(first.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
    const firstId = String(first.json?.['runId']);
    const firstRun = await readRun(r.home, firstId);
    const setupEvents = (events: typeof firstRun.events): Array<{ gate: string; message: string }> =>
      events.filter((e) => e.type === 'gate_checked' && e.data['level'] === 'setup').map((e) => ({ gate: String(e.data['gate']), message: String(e.data['message'] ?? '') }));
    expect(setupEvents(firstRun.events).map((e) => e.gate)).toEqual(['Install dependencies', 'Install package', 'python-environment']);
    expect(setupEvents(firstRun.events)[1]?.message).toBe("in AgentGate's virtualenv; ran as `pip install calc-helper`; .: calc is linked from the worktree, not installed; only its 1 dependency is installed");
    expect(setupEvents(firstRun.events)[2]?.message).toContain(`the virtualenv on PATH (${user.venv}) is not used`);
    const pytest = firstRun.events.find((e) => e.type === 'gate_checked' && e.data['gate'] === 'Run tests');
    expect(pytest?.data['passed']).toBe(true);

    const second = await exec();
    expect(second.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
    const secondRun = await readRun(r.home, String(second.json?.['runId']));
    const restored = setupEvents(secondRun.events);
    expect(restored.slice(0, 2).map((e) => e.message)).toEqual([expect.stringMatching(/^restored from the environment cache/), expect.stringMatching(/^restored from the environment cache/)]);

    // The run branch holds the fix and nothing of the environment; the user's checkout still has the bug.
    expect(repoGit(r.repo, 'show', `agentgate/${firstId}:src/calc/__init__.py`)).toContain('a + b');
    const files = (ref: string): string[] => repoGit(r.repo, 'ls-tree', '-r', '--name-only', ref).split('\n');
    expect(files(`agentgate/${firstId}`)).toEqual(files('main'));
    expect(readFileSync(path.join(r.repo, 'src/calc/__init__.py'), 'utf8')).toContain('a - b');
    expect(userTreeState(r.repo)).toEqual(treeBefore);
    expect(treeFingerprint(user.venv)).toEqual(userBefore);

    const listed = await runCli(['cache', 'ls', '--json'], { env: { AGENTGATE_HOME: r.home } });
    expect((JSON.parse(listed.stdout) as Array<{ kind: string }>).map((e) => e.kind)).toEqual(['python']);
    const table = await runCli(['cache', 'ls'], { env: { AGENTGATE_HOME: r.home } });
    expect(table.stdout).toMatch(/ python /);
  }, 240_000);
});
