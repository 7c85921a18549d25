import { describe, expect, it } from 'vitest';
import { agentEnv, gateEnv, redact, secretValues } from '../../src/util/secrets.js';

const BASE = {
  PATH: '/usr/bin',
  AGENTGATE_GITHUB_TOKEN: 'ghp_0123456789abcdefghijklmnopqrstuv',
  AGENTGATE_API_KEY: 'server-api-key',
  ANTHROPIC_API_KEY: 'sk-ant-model-key-123',
  GIT_DIR: '/home/user/repo/.git',
  GIT_INDEX_FILE: '/home/user/repo/.git/index',
  UNSET: undefined,
};

describe('agentEnv', () => {
  it("removes AgentGate's own secrets and inherited git repository variables, keeps model credentials", () => {
    const env = agentEnv(BASE, { EXTRA: '1', GITHUB_TOKEN: 'sneaky' });
    expect(env).toEqual({ PATH: '/usr/bin', ANTHROPIC_API_KEY: 'sk-ant-model-key-123', EXTRA: '1' });
  });
});

describe('gateEnv', () => {
  it('also removes model credentials: gates are the project\'s own commands', () => {
    expect(gateEnv(BASE)).toEqual({ PATH: '/usr/bin' });
  });
});

describe('redact', () => {
  it('replaces known secret values and well-known token shapes', () => {
    const text = 'key=server-api-key token ghp_0123456789abcdefghijklmnopqrstuv auth: Bearer abc.def.ghi1234 other glpat-abcdefghijklmnopqrstu';
    expect(redact(text, secretValues(BASE))).toBe('key=[REDACTED] token [REDACTED] auth: Bearer [REDACTED] other [REDACTED]');
  });

  it('leaves short values alone (they would mangle ordinary text)', () => {
    expect(redact('the word abc stays', ['abc'])).toBe('the word abc stays');
  });
});
