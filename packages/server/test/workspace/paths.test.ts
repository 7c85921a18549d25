import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentGateError } from '../../src/errors.js';
import {
  isValidBranchName,
  repoCachePath,
  resolveAgentGateHome,
  runArtifactsDir,
  runBranchName,
  safeJoin,
  stripUrlCredentials,
  urlSecrets,
  validateRunId,
  worktreePath,
} from '../../src/workspace/paths.js';

const ROOT = path.resolve('/srv/agentgate');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof AgentGateError ? error.code : 'not an AgentGateError';
  }
}

describe('safeJoin', () => {
  it('joins relative parts below the root', () => {
    expect(safeJoin(ROOT, 'runs', 'r1', 'iteration-1.patch')).toBe(path.join(ROOT, 'runs', 'r1', 'iteration-1.patch'));
  });

  it('allows `..` that stays inside the root', () => {
    expect(safeJoin(ROOT, 'runs/r1/../r2')).toBe(path.join(ROOT, 'runs', 'r2'));
  });

  it('returns the root itself for no parts', () => {
    expect(safeJoin(ROOT)).toBe(ROOT);
  });

  it.each([['..'], ['../etc/passwd'], ['runs/../../etc'], ['a/../../..']])('rejects %s, which escapes the root', (part) => {
    expect(codeOf(() => safeJoin(ROOT, part))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
  });

  it('rejects a sibling directory that merely shares the prefix', () => {
    expect(codeOf(() => safeJoin(ROOT, '../agentgate-evil/x'))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
  });

  it('rejects absolute parts, even ones inside the root', () => {
    expect(codeOf(() => safeJoin(ROOT, '/etc/passwd'))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
    expect(codeOf(() => safeJoin(ROOT, path.join(ROOT, 'runs')))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
  });

  it('rejects NUL bytes', () => {
    expect(codeOf(() => safeJoin(ROOT, 'runs\0/x'))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
  });
});

describe('run ids', () => {
  it.each([['run-1'], ['01J9ZX3K4M'], ['a.b_c-d'], ['x'.repeat(128)]])('accepts %s', (runId) => {
    expect(validateRunId(runId)).toBe(runId);
  });

  it.each([[''], ['a/b'], ['../x'], ['..'], ['a..b'], ['.hidden'], ['-flag'], ['a b'], ['run.lock'], ['run.'], ['a\\b'], ['x'.repeat(129)]])(
    'rejects %j',
    (runId) => {
      expect(codeOf(() => validateRunId(runId))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
    },
  );
});

describe('run branches', () => {
  it('are agentgate/<runId> by default', () => {
    expect(runBranchName('run-1')).toBe('agentgate/run-1');
  });

  it('concatenate the prefix as the TaskSpec does', () => {
    expect(runBranchName('run-1', 'bots/ag-')).toBe('bots/ag-run-1');
    expect(runBranchName('run-1', '')).toBe('run-1');
  });

  it('reject a prefix that makes an invalid branch name', () => {
    expect(codeOf(() => runBranchName('run-1', 'bad..prefix/'))).toBe('AG_ERR_CONFIG_INVALID');
    expect(codeOf(() => runBranchName('run-1', 'has space/'))).toBe('AG_ERR_CONFIG_INVALID');
  });

  it('reject a run id with a slash before looking at the prefix', () => {
    expect(codeOf(() => runBranchName('a/b'))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
  });

  it.each([['main'], ['feature/x'], ['agentgate/run-1']])('isValidBranchName accepts %s', (name) => {
    expect(isValidBranchName(name)).toBe(true);
  });

  it.each([['-x'], ['a..b'], ['a//b'], ['a/'], ['/a'], ['a.lock'], ['a/.b'], ['a@{1}'], ['a~1'], ['a^'], ['a:b'], ['@'], ['a.']])(
    'isValidBranchName rejects %s',
    (name) => {
      expect(isValidBranchName(name)).toBe(false);
    },
  );
});

describe('home layout', () => {
  it('puts worktrees, repository caches and artifacts below the home', () => {
    expect(worktreePath(ROOT, 'run-1')).toBe(path.join(ROOT, 'worktrees', 'run-1'));
    expect(runArtifactsDir(ROOT, 'run-1')).toBe(path.join(ROOT, 'runs', 'run-1'));
    expect(repoCachePath(ROOT, 'https://example.com/a.git')).toMatch(new RegExp(`^${ROOT.replace(/[/\\]/g, '.')}.repos.[0-9a-f]{64}\\.git$`));
  });

  it('refuses run ids that would leave the worktrees directory', () => {
    expect(codeOf(() => worktreePath(ROOT, '../../etc'))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
    expect(codeOf(() => runArtifactsDir(ROOT, 'a/b'))).toBe('AG_ERR_WORKSPACE_PATH_ESCAPE');
  });

  it('shares one cache between URLs that differ only in credentials', () => {
    expect(repoCachePath(ROOT, 'https://user:secret@example.com/a.git')).toBe(repoCachePath(ROOT, 'https://example.com/a.git'));
    expect(repoCachePath(ROOT, 'https://example.com/b.git')).not.toBe(repoCachePath(ROOT, 'https://example.com/a.git'));
  });

  it('reads AGENTGATE_HOME and defaults to ~/.agentgate', () => {
    expect(resolveAgentGateHome({ AGENTGATE_HOME: '/data/ag' })).toBe(path.resolve('/data/ag'));
    expect(resolveAgentGateHome({})).toMatch(/\.agentgate$/);
  });
});

describe('URL credentials', () => {
  it('are stripped for display', () => {
    expect(stripUrlCredentials('https://user:s3cr3tvalue@example.com/a.git')).toBe('https://example.com/a.git');
    expect(stripUrlCredentials('https://ghp_tokenvalue@example.com/a.git')).toBe('https://example.com/a.git');
    expect(stripUrlCredentials('git@github.com:acme/app.git')).toBe('git@github.com:acme/app.git');
    expect(stripUrlCredentials('/srv/repos/app.git')).toBe('/srv/repos/app.git');
  });

  it('are reported as secrets to scrub from messages', () => {
    expect(urlSecrets('https://user:s3cr3t%21value@example.com/a.git')).toEqual(expect.arrayContaining(['s3cr3t%21value', 's3cr3t!value']));
    expect(urlSecrets('https://example.com/a.git')).toEqual([]);
  });
});
