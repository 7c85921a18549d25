import { afterEach, describe, expect, it } from 'vitest';
import { describeGatePlan, loadGatePlan } from '../../src/gates/loader.js';
import type { LoadGatePlanOptions } from '../../src/gates/loader.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import { rejectedAgentGateError } from '../helpers/errors.js';
import { createRepo, snapshot, writeFile } from './helpers.js';
import type { TempRepo } from './helpers.js';

const VERIFY = 'version: "1"\ntests:\n  - { name: test, command: node --test }\n';

let repo: TempRepo | undefined;
afterEach(() => {
  repo?.cleanup();
  repo = undefined;
});

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
