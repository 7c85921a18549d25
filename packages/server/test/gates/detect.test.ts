import { describe, expect, it } from 'vitest';
import { detectGatePlan } from '../../src/gates/detect.js';
import type { RepoReader } from '../../src/gates/detect.js';

/** The repository as detection sees it: a file list and contents (the loader binds it to the base commit). */
function repo(files: Record<string, string>): RepoReader {
  return {
    files: Object.keys(files),
    read: (path) => Promise.resolve(files[path] ?? ''),
  };
}

const commands = async (files: Record<string, string>) => {
  const { plan } = await detectGatePlan(repo(files));
  return { setup: plan?.config.environment.setup.map((s) => s.command), tests: plan?.config.tests.map((t) => t.command), from: plan?.detectedFrom };
};

const CI_WORKFLOW = `
name: CI
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with: { node-version: 20 }
      - run: npm ci
      - name: Lint
        run: npm run lint
      - name: Unit tests
        run: npm test
        timeout-minutes: 5
      - run: echo done
`;

describe('detectGatePlan', () => {
  describe('from a GitHub Actions workflow', () => {
    it('turns run steps into gates and install steps into setup, skipping uses: steps and echoes', async () => {
      const { plan } = await detectGatePlan(repo({ '.github/workflows/ci.yml': CI_WORKFLOW, 'package.json': '{"scripts":{"test":"vitest"}}' }));
      expect(plan?.detectedFrom).toEqual(['.github/workflows/ci.yml']);
      expect(plan?.config.environment.setup).toEqual([{ name: 'npm ci', command: 'npm ci', timeout: 300 }]);
      expect(plan?.config.tests).toEqual([
        { name: 'Lint', command: 'npm run lint', timeout: 300, expectedExit: 0 },
        { name: 'Unit tests', command: 'npm test', timeout: 300, expectedExit: 0 },
      ]);
    });

    it('takes step timeouts from timeout-minutes', async () => {
      const { plan } = await detectGatePlan(repo({ '.github/workflows/ci.yml': CI_WORKFLOW.replace('timeout-minutes: 5', 'timeout-minutes: 2') }));
      expect(plan?.config.tests.find((t) => t.name === 'Unit tests')?.timeout).toBe(120);
    });

    it('skips conditional, expression, publishing and non-POSIX steps, and says why', async () => {
      const workflow = `
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: cargo test --release
      - run: cargo test --features \${{ matrix.features }}
      - if: github.ref == 'refs/heads/main'
        run: cargo publish
      - run: sudo apt-get install -y libssl-dev
      - shell: pwsh
        run: Get-ChildItem
      - run: npm publish
      - working-directory: web
        run: yarn test
`;
      const { plan, notes } = await detectGatePlan(repo({ '.github/workflows/rust.yaml': workflow }));
      expect(plan?.config.tests.map((t) => t.command)).toEqual(['cargo test --release', "cd 'web' && yarn test"]);
      expect(notes.join('\n')).toMatch(/expression/);
      expect(notes.join('\n')).toMatch(/conditional/);
      expect(notes.join('\n')).toMatch(/publishes, deploys or changes the machine/);
      expect(notes.join('\n')).toMatch(/pwsh is not POSIX/);
    });

    it('ignores workflows without a test job, release workflows and unparsable files, falling back to package scripts', async () => {
      const multiJob = 'on: push\njobs:\n  a: { runs-on: ubuntu-latest, steps: [{ run: make a }] }\n  b: { runs-on: ubuntu-latest, steps: [{ run: make b }] }\n';
      const release = 'on: { release: { types: [published] } }\njobs:\n  r: { runs-on: ubuntu-latest, steps: [{ run: make dist }] }\n';
      const result = await detectGatePlan(
        repo({ '.github/workflows/a.yml': multiJob, '.github/workflows/b.yml': release, '.github/workflows/c.yml': 'on: [push\n', 'package.json': '{"scripts":{"test":"node --test"}}' }),
      );
      expect(result.plan?.detectedFrom).toEqual(['package.json']);
      expect(result.notes).toEqual([
        '.github/workflows/a.yml: skipped, no job runs a test command',
        '.github/workflows/b.yml: skipped, not triggered by push or pull_request',
        expect.stringMatching(/^\.github\/workflows\/c\.yml: skipped, not valid YAML/),
      ]);
    });

    it('ignores jobs on Windows or with service containers', async () => {
      const windows = 'on: push\njobs:\n  t: { runs-on: windows-latest, steps: [{ run: npm test }] }\n';
      const services = 'on: push\njobs:\n  t: { runs-on: ubuntu-latest, services: { db: { image: postgres } }, steps: [{ run: npm test }] }\n';
      expect((await detectGatePlan(repo({ '.github/workflows/w.yml': windows, '.github/workflows/s.yml': services }))).plan).toBeUndefined();
    });
  });

  describe('from package.json', () => {
    it('runs typecheck, lint and test in that order with pnpm when pnpm-lock.yaml exists', async () => {
      const pkg = JSON.stringify({ scripts: { test: 'vitest run', lint: 'eslint .', typecheck: 'tsc --noEmit', build: 'tsc' } });
      expect(await commands({ 'package.json': pkg, 'pnpm-lock.yaml': '' })).toEqual({
        setup: ['pnpm install --frozen-lockfile'],
        tests: ['pnpm run typecheck', 'pnpm run lint', 'pnpm run test'],
        from: ['package.json'],
      });
    });

    it('uses yarn with yarn.lock and npm ci with package-lock.json', async () => {
      const pkg = JSON.stringify({ scripts: { test: 'jest' } });
      expect(await commands({ 'package.json': pkg, 'yarn.lock': '' })).toMatchObject({ setup: ['yarn install --frozen-lockfile'], tests: ['yarn run test'] });
      expect(await commands({ 'package.json': pkg, 'package-lock.json': '{}' })).toMatchObject({ setup: ['npm ci'], tests: ['npm run test'] });
      expect(await commands({ 'package.json': pkg })).toMatchObject({ setup: ['npm install'], tests: ['npm run test'] });
    });

    it('follows the packageManager field over lockfiles', async () => {
      const pkg = JSON.stringify({ packageManager: 'yarn@4.1.0', scripts: { test: 'jest' } });
      // Pinned through corepack: the pinned version runs, and nothing is installed on the machine.
      expect(await commands({ 'package.json': pkg, 'yarn.lock': '', 'package-lock.json': '' })).toMatchObject({ setup: ['corepack yarn install --immutable'], tests: ['corepack yarn run test'] });
    });

    it("skips npm's placeholder test script", async () => {
      const pkg = JSON.stringify({ scripts: { test: 'echo "Error: no test specified" && exit 1' } });
      const result = await detectGatePlan(repo({ 'package.json': pkg }));
      expect(result.plan).toBeUndefined();
      expect(result.notes).toEqual(["package.json: the test script is npm's placeholder; skipped"]);
    });

    it('notes an unparsable package.json instead of failing', async () => {
      const result = await detectGatePlan(repo({ 'package.json': '{ "scripts": ' }));
      expect(result.plan).toBeUndefined();
      expect(result.notes[0]).toMatch(/^package\.json: skipped, not valid JSON/);
    });
  });

  describe('from other ecosystems', () => {
    it.each([
      ['pytest.ini', { 'pytest.ini': '[pytest]\n' }],
      ['pyproject.toml', { 'pyproject.toml': '[project]\nname = "x"\n\n[tool.pytest.ini_options]\naddopts = "-q"\n' }],
      ['setup.cfg', { 'setup.cfg': '[tool:pytest]\ntestpaths = tests\n' }],
      ['tests/unit/test_math.py', { 'tests/unit/test_math.py': 'def test_x(): pass\n', 'src/app.py': '' }],
    ])('detects pytest from %s', async (from, files) => {
      expect(await commands(files)).toEqual({ setup: [], tests: ['pytest'], from: [from] });
    });

    it('does not detect pytest from a pyproject.toml without pytest configuration', async () => {
      expect((await detectGatePlan(repo({ 'pyproject.toml': '[project]\nname = "x"\n' }))).plan).toBeUndefined();
    });

    it('detects cargo test from Cargo.toml and go test from go.mod', async () => {
      expect(await commands({ 'Cargo.toml': '[package]\nname = "x"\n' })).toEqual({ setup: [], tests: ['cargo test'], from: ['Cargo.toml'] });
      expect(await commands({ 'go.mod': 'module example.com/x\n' })).toEqual({ setup: [], tests: ['go test ./...'], from: ['go.mod'] });
    });

    it('combines every ecosystem of a polyglot repository', async () => {
      const result = await commands({ 'package.json': '{"scripts":{"lint":"eslint ."}}', 'go.mod': 'module x\n', 'tests/test_api.py': '' });
      expect(result.tests).toEqual(['npm run lint', 'pytest', 'go test ./...']);
      expect(result.from).toEqual(['package.json', 'tests/test_api.py', 'go.mod']);
    });
  });

  it('finds nothing in a repository without checks', async () => {
    expect(await detectGatePlan(repo({ 'README.md': '# hi', 'src/main.c': 'int main(){}' }))).toEqual({ plan: undefined, notes: [] });
  });

  describe('a Python library with src/ layout, pytest in pyproject.toml, a multi-job test workflow, docs and benchmarks', () => {
    const files = {
      'pyproject.toml': '[project]\nname = "lib"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
      'src/lib/__init__.py': '',
      'tests/test_lib.py': 'def test_x(): pass\n',
      '.github/workflows/docs.yml': 'name: Docs\non: [push, pull_request]\njobs:\n  docs:\n    runs-on: ubuntu-latest\n    steps:\n      - run: pip install -e .[docs]\n      - run: sphinx-build docs docs/_build\n',
      '.github/workflows/benchmark.yml': 'name: Benchmarks\non: [push]\njobs:\n  bench:\n    runs-on: ubuntu-latest\n    steps:\n      - run: python bench/run.py\n',
      '.github/workflows/test.yml': `name: Tests
on: [push, pull_request]
jobs:
  lint:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: ruff check .
  test:
    runs-on: \${{ matrix.os }}
    strategy:
      matrix:
        os: [windows-latest, ubuntu-latest, macos-latest]
        python-version: ["3.9", "3.12"]
    steps:
      - uses: actions/setup-python@v5
        with: { python-version: "\${{ matrix.python-version }}" }
      - name: Install
        run: python -m pip install -e .[test]
      - name: Run tests (py\${{ matrix.python-version }})
        run: pytest -q --junitxml=reports/\${{ matrix.python-version }}.xml
`,
    };

    it('finds the test job by its steps, reduces the matrix to one Linux cell and uses pytest as the gate', async () => {
      const { plan, notes } = await detectGatePlan(repo(files));
      expect(plan?.config.tests.map((t) => t.command)).toEqual(['pytest -q --junitxml=reports/3.12.xml']);
      expect(plan?.config.environment.setup.map((s) => s.command)).toEqual(['python -m pip install -e .[test]']);
      expect(plan?.detectedFrom).toEqual(['.github/workflows/test.yml']);
      expect(plan?.origins).toEqual([
        { kind: 'setup', name: 'Install', from: '.github/workflows/test.yml, job "test", step "Install"' },
        { kind: 'gate', name: 'Run tests (py3.12)', from: '.github/workflows/test.yml, job "test", step "Run tests (py3.12)"' },
      ]);
      expect(notes).toContain('.github/workflows/docs.yml: skipped, a docs, benchmark or release workflow, not the test suite');
      expect(notes).toContain('.github/workflows/benchmark.yml: skipped, a docs, benchmark or release workflow, not the test suite');
      expect(notes).toContain('.github/workflows/test.yml: job "test": matrix reduced to one cell (os=ubuntu-latest, python-version=3.12)');
    });

    it('without the test workflow, uses pytest from pyproject.toml, never the docs or benchmark workflow', async () => {
      const { '.github/workflows/test.yml': _test, ...rest } = files;
      const { plan } = await detectGatePlan(repo(rest));
      expect(plan?.config.tests.map((t) => t.command)).toEqual(['pytest']);
      expect(plan?.origins).toEqual([{ kind: 'gate', name: 'pytest', from: 'pyproject.toml [tool.pytest]' }]);
    });
  });

  describe('language-native configuration', () => {
    it('uses tox, nox or a Makefile test target when nothing more specific exists', async () => {
      expect((await commands({ 'tox.ini': '[tox]\nenvlist = py312\n' })).tests).toEqual(['tox']);
      expect((await commands({ 'pyproject.toml': '[tool.tox]\nlegacy_tox_ini = ""\n' })).tests).toEqual(['tox']);
      expect((await commands({ 'noxfile.py': 'import nox\n' })).tests).toEqual(['nox']);
      expect((await commands({ Makefile: 'build:\n\tcc x.c\ntest: build\n\t./run-tests\n' })).tests).toEqual(['make test']);
      expect((await commands({ Makefile: 'test:\n\tgo test\n', 'go.mod': 'module x\n' })).tests).toEqual(['go test ./...']);
    });

    it('says where package scripts and their package manager came from', async () => {
      const { plan } = await detectGatePlan(repo({ 'package.json': JSON.stringify({ packageManager: 'pnpm@9.1.0', scripts: { test: 'vitest run' } }), 'pnpm-lock.yaml': '' }));
      expect(plan?.config.environment.setup.map((s) => s.command)).toEqual(['corepack pnpm install --frozen-lockfile']);
      expect(plan?.origins).toEqual([
        { kind: 'setup', name: 'install', from: 'package.json (pnpm, from packageManager pnpm@9.1.0)' },
        { kind: 'gate', name: 'test', from: 'package.json scripts.test (pnpm, from packageManager pnpm@9.1.0)' },
      ]);
    });
  });

  describe('corepack in a workflow', () => {
    it('drops `corepack enable` (it writes into the machine) and runs pnpm through corepack instead', async () => {
      const workflow = 'on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: corepack enable\n      - run: pnpm install --frozen-lockfile\n      - run: |\n          pnpm build\n          pnpm test\n';
      const { plan, notes } = await detectGatePlan(repo({ '.github/workflows/ci.yml': workflow }));
      const all = [...(plan?.config.environment.setup ?? []), ...(plan?.config.tests ?? [])].map((s) => s.command);
      expect(all).toEqual(['corepack pnpm install --frozen-lockfile', 'corepack pnpm build\ncorepack pnpm test']);
      expect(all.join('\n')).not.toMatch(/corepack enable/);
      expect(notes.join('\n')).toMatch(/corepack enable` dropped/);
    });

    it('drops global installs, also inside an `&&` chain (unjs/ufo installs corepack globally before enabling it)', async () => {
      const workflow = [
        'on: push',
        'jobs:',
        '  ci:',
        '    runs-on: ubuntu-latest',
        '    steps:',
        '      - run: npm i -fg corepack && corepack enable',
        '      - run: pnpm install',
        '      - run: npm install --global typescript && yarn global add serve && pnpm vitest run',
        '',
      ].join('\n');
      const { plan, notes } = await detectGatePlan(repo({ '.github/workflows/ci.yml': workflow }));
      expect(plan?.config.environment.setup.map((s) => s.command)).toEqual(['corepack pnpm install']);
      expect(plan?.config.tests.map((s) => s.command)).toEqual(['corepack pnpm vitest run']);
      const said = notes.join('\n');
      expect(said).toMatch(/`npm i -fg corepack` dropped \(a global install/);
      expect(said).toMatch(/`npm install --global typescript` dropped/);
      expect(said).toMatch(/`yarn global add serve` dropped/);
      expect(said).toMatch(/corepack enable` dropped/);
    });
  });
});
