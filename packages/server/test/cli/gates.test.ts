import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { REPO_ROOT, git, makeRepo, userTreeState, type TempRepo } from '../helpers/git-repo.js';

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

function setup(files: Record<string, string>): TempRepo {
  const r = makeRepo(files, { example: false });
  repos.push(r);
  return r;
}

const PYPROJECT = `[project]
name = "calc"
version = "0.1.0"

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["src"]
`;

describe('agentgate gates', () => {
  describe('without --run', () => {
    it('prints the plan with where each gate came from, and leaves the repository untouched', async () => {
      const r = setup({
        'pyproject.toml': PYPROJECT,
        'src/calc/__init__.py': 'def add(a, b):\n    return a + b\n',
        'tests/test_calc.py': 'from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n',
        '.github/workflows/docs.yml': 'name: Docs\non: [push]\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: mkdocs build\n',
      });
      const before = userTreeState(r.repo);
      const res = await runCli(['gates', '--path', r.repo]);
      expect(res.code).toBe(0);
      expect(res.stdout).toContain('gate plan: detected from pyproject.toml');
      expect(res.stdout).toMatch(/^ {2}pytest: pytest {4}\(from pyproject\.toml \[tool\.pytest\]\)$/m);
      expect(res.stdout).toMatch(/^protected paths: verify\.yaml, \.agentgate\/verify\.yaml, pyproject\.toml$/m);
      expect(res.stdout).toContain('docs.yml: skipped, a docs, benchmark or release workflow');
      expect(userTreeState(r.repo)).toEqual(before);
    });

    it('exits 2 without --path', async () => {
      const res = await runCli(['gates']);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('--path <repo> is required');
    });
  });

  describe('with --run', () => {
    const leakCheck = [
      'env | grep -E "^(npm_|PNPM_|pnpm_|INIT_CWD=)" && exit 1',
      `case ":$PATH:" in *":${join(REPO_ROOT, 'node_modules', '.bin')}:"*|*":${join(REPO_ROOT, 'packages', 'server', 'node_modules', '.bin')}:"*|*node-gyp-bin*) echo "leaked PATH: $PATH"; exit 1;; esac`,
      'echo "PATH=$PATH"',
    ].join('\n');
    const verifyYaml = (extra: string): string =>
      `version: "1"\ntests:\n  - name: clean-env\n    command: |\n${leakCheck
        .split('\n')
        .map((line) => `      ${line}`)
        .join('\n')}\n${extra}`;

    it("runs setup and gates on the current commit in a clean environment, without AgentGate's package-manager variables or .bin directories", async () => {
      const r = setup({ 'verify.yaml': verifyYaml('') });
      const before = userTreeState(r.repo);
      const leaky = {
        npm_config_reporter: 'silent',
        npm_package_name: 'agentgate-monorepo',
        npm_lifecycle_event: 'test',
        npm_execpath: '/usr/lib/pnpm/bin/pnpm.cjs',
        PNPM_SCRIPT_SRC_DIR: REPO_ROOT,
        INIT_CWD: REPO_ROOT,
        PATH: [join(REPO_ROOT, 'packages', 'server', 'node_modules', '.bin'), join(REPO_ROOT, 'node_modules', '.bin'), '/opt/pnpm/dist/node-gyp-bin', process.env['PATH'] ?? ''].join(':'),
      };
      // TMPDIR inside the test's own directory: the kept logs of `--run` go away with it.
      const res = await runCli(['gates', '--path', r.repo, '--run'], { env: { ...leaky, TMPDIR: r.root } });
      expect(res.stdout).toMatch(/^PASS L1 clean-env \d+ms$/m);
      expect(res.stdout).toContain('passed: ');
      expect(res.code).toBe(0);
      expect(userTreeState(r.repo)).toEqual(before);
      expect(git(r.repo, 'branch', '--list', 'agentgate/*')).toBe('');
    });

    it('exits 1 and names the failing gate when the base is red', async () => {
      const r = setup({ 'verify.yaml': verifyYaml('  - name: red\n    command: echo "expected 3, got 4" >&2; exit 1\n') });
      const res = await runCli(['gates', '--path', r.repo, '--run'], { env: { TMPDIR: r.root } });
      expect(res.stdout).toMatch(/^PASS L1 clean-env/m);
      expect(res.stdout).toMatch(/^FAIL L1 red \d+ms — .*\(log: .*iteration-1-gate-red\.log\)$/m);
      expect(res.code).toBe(1);
    });
  });
});
