import { existsSync, rmSync, renameSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkContracts } from '../../src/gates/contracts.js';
import type { ContractsInput } from '../../src/gates/contracts.js';
import { AgentGateError } from '../../src/errors.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import { createRepo, git, snapshot, writeFile } from './helpers.js';
import type { TempRepo } from './helpers.js';

let repo: TempRepo | undefined;
afterEach(() => {
  repo?.cleanup();
  repo = undefined;
});

const ALWAYS = [
  { path: 'verify.yaml', reason: 'the gate plan is always protected' },
  { path: '.agentgate/verify.yaml', reason: 'the gate plan is always protected' },
];

function input(r: TempRepo, contracts: Record<string, unknown>): ContractsInput {
  return {
    worktreePath: r.dir,
    baseSha: r.baseSha,
    contracts: parseVerifyConfig({ contracts }).contracts,
    alwaysProtected: ALWAYS,
    signal: new AbortController().signal,
    clock: systemClock,
  };
}

const BASE = {
  'package.json': '{}',
  'src/math.js': 'export const add = (a, b) => a + b;\n',
  'test/math.test.js': 'assert(add(1, 2) === 3);\n',
  'verify.yaml': 'tests: []\n',
  '.gitignore': 'node_modules/\n.env.local\n',
};

const gate = async (r: TempRepo, contracts: Record<string, unknown>, name: string) => (await checkContracts(input(r, contracts))).find((g) => g.name === name);

describe('L0 contracts', () => {
  describe('protected-paths (tamper detection)', () => {
    it('passes when the agent only changed unprotected files', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, 'src/math.js', 'export const add = (a, b) => b + a;\n');
      snapshot(repo);
      expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ level: 'L0', passed: true });
    });

    it('fails naming the protected test file the agent modified', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, 'test/math.test.js', 'assert(true);\n');
      snapshot(repo);
      const result = await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths');
      expect(result).toMatchObject({
        passed: false,
        message: 'tamper: the agent modified protected file test/math.test.js (protectedPaths: test/**)',
        diagnostics: [{ tool: 'generic', file: 'test/math.test.js' }],
      });
    });

    it('works on a SHA-256 repository (the scratch git directory takes its object format)', async () => {
      repo = createRepo({ ...BASE, 'test/old.test.js': 'y\n' }, { objectFormat: 'sha256' });
      expect(repo.baseSha).toMatch(/^[0-9a-f]{64}$/);
      writeFile(repo.dir, 'src/math.js', 'export const add = (a, b) => b + a;\n');
      snapshot(repo);
      expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ passed: true });
      writeFile(repo.dir, 'test/math.test.js', 'assert(true);\n');
      rmSync(path.join(repo.dir, 'test/old.test.js'));
      const result = await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths');
      expect(result?.diagnostics.map((d) => `${d.file} ${d.message.split(' (')[0]}`).sort()).toEqual([
        'test/math.test.js protected file modified',
        'test/old.test.js protected file deleted',
      ]);
    });

    it('sees uncommitted edits, new untracked files, deletions and renames', async () => {
      repo = createRepo({ ...BASE, 'test/other.test.js': 'x\n', 'test/old.test.js': 'y\n' });
      writeFile(repo.dir, 'test/math.test.js', 'assert(true);\n');
      writeFile(repo.dir, 'test/new.test.js', 'z\n');
      rmSync(path.join(repo.dir, 'test/other.test.js'));
      renameSync(path.join(repo.dir, 'test/old.test.js'), path.join(repo.dir, 'test/renamed.test.js'));
      const result = await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths');
      expect(result?.passed).toBe(false);
      expect(result?.diagnostics.map((d) => `${d.file} ${d.message.split(' (')[0]}`).sort()).toEqual([
        'test/math.test.js protected file modified',
        'test/new.test.js protected file added',
        'test/old.test.js protected file deleted',
        'test/other.test.js protected file deleted',
        'test/renamed.test.js protected file added',
      ]);
      expect(result?.message).toMatch(/ and 4 more$/);
    });

    it('always protects verify.yaml, even without protectedPaths', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, 'verify.yaml', 'tests: []\n# weakened\n');
      snapshot(repo);
      expect(await gate(repo, {}, 'protected-paths')).toMatchObject({
        passed: false,
        message: 'tamper: the agent modified protected file verify.yaml (the gate plan is always protected)',
      });
    });

    it('treats creating .agentgate/verify.yaml as tampering', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, '.agentgate/verify.yaml', 'tests: []\n');
      expect((await gate(repo, {}, 'protected-paths'))?.message).toBe('tamper: the agent added protected file .agentgate/verify.yaml (the gate plan is always protected)');
    });

    describe('when the agent tries to hide its changes from git', () => {
      it('catches an edit marked skip-worktree or assume-unchanged in the worktree index', async () => {
        repo = createRepo(BASE);
        writeFile(repo.dir, 'test/math.test.js', 'assert(true);\n');
        git(repo.dir, 'update-index', '--skip-worktree', 'test/math.test.js');
        expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ passed: false, message: expect.stringContaining('test/math.test.js') });
        git(repo.dir, 'update-index', '--no-skip-worktree', '--assume-unchanged', 'test/math.test.js');
        expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ passed: false, message: expect.stringContaining('test/math.test.js') });
      });

      it('catches a new file under a protected path hidden by a .gitignore the agent added', async () => {
        repo = createRepo(BASE);
        writeFile(repo.dir, 'test/.gitignore', '*\n');
        writeFile(repo.dir, 'test/conftest.py', 'import pytest\n');
        const result = await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths');
        expect(result?.passed).toBe(false);
        expect(result?.diagnostics.map((d) => d.file).sort()).toEqual(['test/.gitignore', 'test/conftest.py']);
      });

      it('catches a new protected file hidden through info/exclude', async () => {
        repo = createRepo(BASE);
        const common = git(repo.dir, 'rev-parse', '--git-common-dir').trim();
        writeFile(path.resolve(repo.dir, common), 'info/exclude', 'test/helper.js\n');
        writeFile(repo.dir, 'test/helper.js', 'globalThis.assert = () => {};\n');
        expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ passed: false, message: expect.stringContaining('test/helper.js') });
      });

      it('catches an edit a clean filter of the repository would "restore", without running the filter', async () => {
        repo = createRepo(BASE);
        const marker = path.join(repo.root, 'filter-ran');
        const original = path.join(repo.root, 'original.js');
        writeFile(repo.root, 'original.js', BASE['test/math.test.js']);
        writeFile(repo.root, 'filter.sh', `#!/bin/sh\ntouch '${marker}'\ncat '${original}'\n`);
        git(repo.dir, 'config', 'filter.x.clean', `sh ${path.join(repo.root, 'filter.sh')}`);
        git(repo.dir, 'config', 'filter.x.required', 'true');
        writeFile(repo.dir, '.gitattributes', 'test/math.test.js filter=x\n');
        writeFile(repo.dir, 'test/math.test.js', 'assert(true);\n');
        expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ passed: false, message: expect.stringContaining('test/math.test.js') });
        expect(existsSync(marker)).toBe(false);
      });

      it('ignores git replace refs that would swap the base commit', async () => {
        repo = createRepo(BASE);
        writeFile(repo.dir, 'test/math.test.js', 'assert(true);\n');
        const fake = snapshot(repo, 'fake base');
        git(repo.dir, 'replace', repo.baseSha, fake);
        expect(await gate(repo, { protectedPaths: ['test/**'] }, 'protected-paths')).toMatchObject({ passed: false, message: expect.stringContaining('test/math.test.js') });
      });
    });

    it('does not look at files ignored by the base commit\'s .gitignore', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, 'node_modules/test/x.js', 'ignored\n');
      expect(await gate(repo, { protectedPaths: ['**/test/**'] }, 'protected-paths')).toMatchObject({ passed: true });
    });
  });

  describe('required-files', () => {
    it('passes when every required file exists and fails naming the missing ones', async () => {
      repo = createRepo(BASE);
      expect(await gate(repo, { requiredFiles: ['package.json', 'src/math.js'] }, 'required-files')).toMatchObject({ passed: true });
      rmSync(path.join(repo.dir, 'src/math.js'));
      expect(await gate(repo, { requiredFiles: ['package.json', 'src/math.js', 'CHANGELOG.md'] }, 'required-files')).toMatchObject({
        passed: false,
        message: 'missing required files: src/math.js, CHANGELOG.md',
      });
    });

    it('accepts a glob when at least one file matches it', async () => {
      repo = createRepo(BASE);
      expect(await gate(repo, { requiredFiles: ['test/*.test.js'] }, 'required-files')).toMatchObject({ passed: true });
      expect(await gate(repo, { requiredFiles: ['docs/**/*.md'] }, 'required-files')).toMatchObject({ passed: false, message: 'missing required file: docs/**/*.md' });
    });

    it('refuses a required path outside the worktree: in verify.yaml, and again at check time', async () => {
      repo = createRepo(BASE);
      expect(() => parseVerifyConfig({ contracts: { requiredFiles: ['../outside'] } })).toThrow(/requiredFiles\[0\]: must be a path inside the repository/);
      const unchecked = { ...input(repo, {}), contracts: { ...parseVerifyConfig({}).contracts, requiredFiles: ['../outside'] } };
      const error: unknown = await checkContracts(unchecked).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AgentGateError);
      expect((error as AgentGateError).code).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
    });

    it('is left out of the report when not configured', async () => {
      repo = createRepo(BASE);
      expect((await checkContracts(input(repo, {}))).map((g) => g.name)).toEqual(['protected-paths']);
    });
  });

  describe('forbidden-patterns', () => {
    it('fails for tracked or untracked files matching a pattern, dotfiles included', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, '.env', 'SECRET=1\n');
      writeFile(repo.dir, 'certs/server.pem', '---\n');
      snapshot(repo);
      const result = await gate(repo, { forbiddenPatterns: ['**/.env', '**/*.pem'] }, 'forbidden-patterns');
      expect(result).toMatchObject({ passed: false, message: 'forbidden files present: .env (**/.env), certs/server.pem (**/*.pem)' });
    });

    it('ignores files that git ignores and passes on a clean tree', async () => {
      repo = createRepo(BASE);
      writeFile(repo.dir, '.env.local', 'SECRET=1\n');
      expect(await gate(repo, { forbiddenPatterns: ['**/.env*'] }, 'forbidden-patterns')).toMatchObject({ passed: true });
    });
  });
});
