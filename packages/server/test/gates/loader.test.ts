import { symlinkSync, realpathSync, renameSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { clearGatePlanCache, describeGatePlan, loadGatePlan } from '../../src/gates/loader.js';
import type { LoadGatePlanOptions } from '../../src/gates/loader.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import { rejectedAgentGateError } from '../helpers/errors.js';
import { createRepo, git, snapshot, writeFile } from './helpers.js';
import type { TempRepo } from './helpers.js';

const VERIFY = 'version: "1"\ntests:\n  - { name: test, command: node --test }\n';

let repo: TempRepo | undefined;
const others: TempRepo[] = [];
afterEach(() => {
  repo?.cleanup();
  repo = undefined;
  for (const other of others.splice(0)) other.cleanup();
  clearGatePlanCache();
});

/** A repository whose base commit holds `build` (run in its work tree before the commit). */
function repoWith(build: (dir: string) => void): TempRepo {
  const r = createRepo({});
  build(r.dir);
  git(r.dir, 'add', '-A');
  git(r.dir, 'commit', '-q', '-m', 'entries');
  return { ...r, baseSha: git(r.dir, 'rev-parse', 'HEAD') };
}

/** The real object directory of a repository, as the engine names it (`PreparedSource.objectsDir`). */
function objectsOf(r: TempRepo): string {
  return realpathSync(path.join(r.dir, '.git', 'objects'));
}

function options(r: TempRepo, extra: Partial<LoadGatePlanOptions> = {}): LoadGatePlanOptions {
  return { worktreePath: r.dir, baseSha: r.baseSha, signal: new AbortController().signal, clock: systemClock, ...extra };
}

describe('loadGatePlan', () => {
  it('reads verify.yaml from the base commit', async () => {
    repo = createRepo({ 'verify.yaml': VERIFY });
    const plan = await loadGatePlan(options(repo));
    expect(plan).toMatchObject({ source: 'verify.yaml', path: 'verify.yaml' });
    expect(plan.source !== 'none' && plan.config.tests.map((t) => t.command)).toEqual(['node --test']);
  });

  it("ignores the agent's edits to verify.yaml, committed or not, and keeps the base commit's gates", async () => {
    repo = createRepo({ 'verify.yaml': VERIFY });
    writeFile(repo.dir, 'verify.yaml', 'version: "1"\ntests: []\n');
    snapshot(repo);
    writeFile(repo.dir, 'verify.yaml', 'version: "1"\ntests:\n  - { name: test, command: "true" }\n');
    const plan = await loadGatePlan(options(repo));
    expect(plan.source !== 'none' && plan.config.tests).toEqual([{ name: 'test', command: 'node --test', timeout: 300, expectedExit: 0 }]);
  });

  it('ignores a verify.yaml the agent created when the base commit had none', async () => {
    repo = createRepo({ 'README.md': '# x' });
    writeFile(repo.dir, 'verify.yaml', VERIFY);
    expect(await loadGatePlan(options(repo))).toMatchObject({ source: 'none' });
  });

  it('falls back to .agentgate/verify.yaml, and prefers verify.yaml when both exist', async () => {
    repo = createRepo({ '.agentgate/verify.yaml': VERIFY });
    expect(await loadGatePlan(options(repo))).toMatchObject({ source: '.agentgate/verify.yaml', path: '.agentgate/verify.yaml' });
    repo.cleanup();
    repo = createRepo({ '.agentgate/verify.yaml': VERIFY, 'verify.yaml': 'tests: []\n' });
    expect(await loadGatePlan(options(repo))).toMatchObject({ source: 'verify.yaml' });
  });

  it('lets an inline plan win over the files', async () => {
    repo = createRepo({ 'verify.yaml': VERIFY });
    const inline = parseVerifyConfig({ tests: [{ name: 'inline', command: 'true' }] });
    expect(await loadGatePlan(options(repo, { inline }))).toEqual({ source: 'inline', config: inline });
  });

  it('reports an invalid verify.yaml with file, line and reason', async () => {
    repo = createRepo({ 'verify.yaml': 'version: "1"\ntests:\n  - name: test\n    comand: npm test\n' });
    const error = await rejectedAgentGateError(loadGatePlan(options(repo)));
    expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
    expect(error.message).toContain('verify.yaml:4: tests[0].comand: unknown key');
    expect(error.message).toContain('verify.yaml:3: tests[0].command: required');
  });

  it('reports a YAML syntax error in .agentgate/verify.yaml with its line', async () => {
    repo = createRepo({ '.agentgate/verify.yaml': 'tests:\n  - { name: a, command: "x" \n' });
    const error = await rejectedAgentGateError(loadGatePlan(options(repo)));
    expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
    expect(error.message).toMatch(/^\.agentgate\/verify\.yaml:\d+:\d+: invalid YAML/);
  });

  it('detects commands from the base commit, not from what the agent added', async () => {
    repo = createRepo({ 'package.json': JSON.stringify({ scripts: { test: 'node --test' } }) });
    writeFile(repo.dir, 'package.json', JSON.stringify({ scripts: { test: 'true', lint: 'true' } }));
    writeFile(repo.dir, 'go.mod', 'module x\n');
    snapshot(repo);
    const plan = await loadGatePlan(options(repo));
    expect(plan).toMatchObject({ source: 'detected', detectedFrom: ['package.json'] });
    expect(plan.source === 'detected' && plan.config.tests.map((t) => t.command)).toEqual(['npm run test']);
  });

  it('returns none when nothing can be detected', async () => {
    repo = createRepo({ 'README.md': '# nothing to run' });
    expect(await loadGatePlan(options(repo))).toEqual({ source: 'none', notes: [] });
  });

  describe('judges each location by its entry in the base commit, as ls-tree would', () => {
    it('refuses a verify.yaml that is a symlink, even to a valid plan, and does not fall back', async () => {
      repo = repoWith((dir) => {
        writeFile(dir, 'other.yaml', VERIFY);
        writeFile(dir, '.agentgate/verify.yaml', VERIFY);
        symlinkSync('other.yaml', path.join(dir, 'verify.yaml'));
      });
      const error = await rejectedAgentGateError(loadGatePlan(options(repo)));
      expect(error.code).toBe('AG_ERR_VERIFY_CONFIG_INVALID');
      expect(error.message).toBe('verify.yaml: must be a regular file in the base commit (found a symlink)');
    });

    it('refuses a verify.yaml that is a directory or a submodule', async () => {
      repo = repoWith((dir) => writeFile(dir, 'verify.yaml/inner.yaml', VERIFY));
      expect((await rejectedAgentGateError(loadGatePlan(options(repo)))).message).toBe('verify.yaml: must be a regular file in the base commit (found a tree)');
      repo.cleanup();
      repo = createRepo({});
      git(repo.dir, 'update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(40)},verify.yaml`);
      git(repo.dir, 'commit', '-q', '-m', 'a submodule named verify.yaml');
      repo = { ...repo, baseSha: git(repo.dir, 'rev-parse', 'HEAD') };
      expect((await rejectedAgentGateError(loadGatePlan(options(repo)))).message).toBe('verify.yaml: must be a regular file in the base commit (found a commit)');
    });

    it('refuses a .agentgate/verify.yaml that is a symlink', async () => {
      repo = repoWith((dir) => {
        writeFile(dir, 'plan.yaml', VERIFY);
        writeFile(dir, '.agentgate/README', 'x');
        symlinkSync('../plan.yaml', path.join(dir, '.agentgate', 'verify.yaml'));
      });
      expect((await rejectedAgentGateError(loadGatePlan(options(repo)))).message).toBe('.agentgate/verify.yaml: must be a regular file in the base commit (found a symlink)');
    });

    it('does not look through a .agentgate that is a symlink or a file', async () => {
      repo = repoWith((dir) => {
        writeFile(dir, 'config/verify.yaml', VERIFY);
        symlinkSync('config', path.join(dir, '.agentgate'));
      });
      expect(await loadGatePlan(options(repo))).toEqual({ source: 'none', notes: [] });
      repo.cleanup();
      repo = repoWith((dir) => writeFile(dir, '.agentgate', VERIFY));
      expect(await loadGatePlan(options(repo))).toEqual({ source: 'none', notes: [] });
    });

    it('reads a large verify.yaml with multi-byte characters byte for byte', async () => {
      const padding = '# äöü € 😀 — keeps multi-byte characters across every chunk boundary of the pipe\n'.repeat(3000);
      repo = createRepo({ 'verify.yaml': `${padding}version: "1"\ntests:\n  - { name: prüfung-😀, command: "echo ✓" }\n${padding}`, '.agentgate/verify.yaml': padding });
      const plan = await loadGatePlan(options(repo));
      expect(plan.source !== 'none' && plan.config.tests).toEqual([{ name: 'prüfung-😀', command: 'echo ✓', timeout: 300, expectedExit: 0 }]);
    });
  });

  describe('with the object directory named (objectStore)', () => {
    it('reads a base commit once: a later load of the same commit from the same object directory runs no git', async () => {
      repo = createRepo({ 'verify.yaml': VERIFY });
      const objectStore = objectsOf(repo);
      const first = await loadGatePlan(options(repo, { objectStore }));
      // The repository is gone: only the cache can answer now.
      renameSync(path.join(repo.dir, '.git'), path.join(repo.root, 'moved.git'));
      const second = await loadGatePlan(options(repo, { objectStore }));
      expect(second).toEqual(first);
      // Every caller gets a copy of its own.
      if (second.source === 'verify.yaml') second.config.tests.length = 0;
      expect(await loadGatePlan(options(repo, { objectStore }))).toEqual(first);
      // Another object directory, no object directory, or an abbreviated id: git is asked (and fails here).
      expect((await rejectedAgentGateError(loadGatePlan(options(repo, { objectStore: `${objectStore}-other` })))).code).toBe('AG_ERR_PHASE_VERIFY');
      expect((await rejectedAgentGateError(loadGatePlan(options(repo)))).code).toBe('AG_ERR_PHASE_VERIFY');
      expect((await rejectedAgentGateError(loadGatePlan(options(repo, { objectStore, baseSha: repo.baseSha.slice(0, 12) })))).code).toBe('AG_ERR_PHASE_VERIFY');
    });

    it('caches detected plans and "none" alike, per commit', async () => {
      repo = createRepo({ 'package.json': JSON.stringify({ scripts: { test: 'node --test' } }) });
      const objectStore = objectsOf(repo);
      const detected = await loadGatePlan(options(repo, { objectStore }));
      git(repo.dir, 'rm', '-q', 'package.json');
      git(repo.dir, 'commit', '-q', '-m', 'no tests');
      const none = await loadGatePlan(options(repo, { objectStore, baseSha: git(repo.dir, 'rev-parse', 'HEAD') }));
      renameSync(path.join(repo.dir, '.git'), path.join(repo.root, 'moved.git'));
      expect(detected).toMatchObject({ source: 'detected' });
      expect(await loadGatePlan(options(repo, { objectStore }))).toEqual(detected);
      expect(none).toEqual({ source: 'none', notes: [] });
    });

    it('never caches a failure: a commit that arrives later is read', async () => {
      repo = createRepo({ 'verify.yaml': VERIFY });
      const elsewhere = createRepo({ '.agentgate/verify.yaml': VERIFY });
      others.push(elsewhere);
      const objectStore = objectsOf(repo);
      const later = options(repo, { objectStore, baseSha: elsewhere.baseSha });
      expect((await rejectedAgentGateError(loadGatePlan(later))).code).toBe('AG_ERR_PHASE_VERIFY');
      git(repo.dir, 'fetch', '-q', elsewhere.dir, 'main:other');
      expect(await loadGatePlan(later)).toMatchObject({ source: '.agentgate/verify.yaml' });
    });

    it('still reports cancellation for a cached commit', async () => {
      repo = createRepo({ 'verify.yaml': VERIFY });
      const objectStore = objectsOf(repo);
      await loadGatePlan(options(repo, { objectStore }));
      const controller = new AbortController();
      controller.abort();
      expect((await rejectedAgentGateError(loadGatePlan(options(repo, { objectStore, signal: controller.signal })))).code).toBe('AG_ERR_RUN_CANCELED');
    });
  });

  it('refuses a base commit that is not a sha', async () => {
    repo = createRepo({ 'verify.yaml': VERIFY });
    const error = await rejectedAgentGateError(loadGatePlan(options(repo, { baseSha: '--output=/tmp/x' })));
    expect(error.code).toBe('AG_ERR_PHASE_VERIFY');
  });

  it('classifies an unknown base commit as a verify phase error', async () => {
    repo = createRepo({ 'verify.yaml': VERIFY });
    const error = await rejectedAgentGateError(loadGatePlan(options(repo, { baseSha: 'deadbeefdeadbeefdeadbeefdeadbeefdeadbeef' })));
    expect(error.code).toBe('AG_ERR_PHASE_VERIFY');
  });

  it('reports cancellation when the signal is already aborted', async () => {
    repo = createRepo({ 'verify.yaml': VERIFY });
    const controller = new AbortController();
    controller.abort();
    const error = await rejectedAgentGateError(loadGatePlan(options(repo, { signal: controller.signal })));
    expect(error.code).toBe('AG_ERR_RUN_CANCELED');
  });
});

describe('describeGatePlan', () => {
  it('tells the agent which commands judge it and which files it must not touch', () => {
    const config = parseVerifyConfig({ contracts: { protectedPaths: ['test/**'] }, tests: [{ name: 'test', command: 'npm test' }] });
    const text = describeGatePlan({ source: 'verify.yaml', path: 'verify.yaml', config });
    expect(text).toContain('from verify.yaml');
    expect(text).toContain('- test: `npm test`');
    expect(text).toContain('do not modify: verify.yaml, .agentgate/verify.yaml, test/**');
  });

  it('says so when there are no gates', () => {
    expect(describeGatePlan({ source: 'none', notes: [] })).toMatch(/unverified/);
  });
});
