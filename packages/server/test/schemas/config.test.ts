import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/schemas/config.js';
import { thrownAgentGateError } from '../helpers/errors.js';

describe('loadConfig', () => {
  it('uses the defaults when nothing is set', () => {
    expect(loadConfig({ HOME: '/home/dev' })).toEqual({
      home: '/home/dev/.agentgate',
      maxConcurrent: 2,
      githubApiUrl: 'https://api.github.com',
      gitlabUrl: 'https://gitlab.com',
      logLevel: 'info',
      port: 3001,
      host: '127.0.0.1',
    });
  });

  it('falls back to the OS home directory without HOME', () => {
    expect(loadConfig({}).home).toBe(join(homedir(), '.agentgate'));
  });

  it('reads every variable', () => {
    const config = loadConfig({
      AGENTGATE_HOME: '/var/lib/agentgate',
      AGENTGATE_API_KEY: 'k-123',
      AGENTGATE_MAX_CONCURRENT: '8',
      AGENTGATE_GITHUB_TOKEN: 'ghp_x',
      AGENTGATE_GITHUB_API_URL: 'https://github.example.com/api/v3/',
      AGENTGATE_GITLAB_TOKEN: 'glpat_x',
      AGENTGATE_GITLAB_URL: 'https://gitlab.example.com',
      AGENTGATE_LOG_LEVEL: 'DEBUG',
      AGENTGATE_PORT: '8080',
      AGENTGATE_HOST: '0.0.0.0',
    });
    expect(config).toEqual({
      home: '/var/lib/agentgate',
      apiKey: 'k-123',
      maxConcurrent: 8,
      githubToken: 'ghp_x',
      githubApiUrl: 'https://github.example.com/api/v3',
      gitlabToken: 'glpat_x',
      gitlabUrl: 'https://gitlab.example.com',
      logLevel: 'debug',
      port: 8080,
      host: '0.0.0.0',
    });
  });

  it('treats empty values as unset', () => {
    const config = loadConfig({ HOME: '/h', AGENTGATE_API_KEY: '', AGENTGATE_MAX_CONCURRENT: '  ', AGENTGATE_LOG_LEVEL: '' });
    expect(config.apiKey).toBeUndefined();
    expect(config.maxConcurrent).toBe(2);
    expect(config.logLevel).toBe('info');
    expect(Object.hasOwn(config, 'apiKey')).toBe(false);
  });

  it('expands ~ and resolves a relative home to an absolute path', () => {
    expect(loadConfig({ HOME: '/home/dev', AGENTGATE_HOME: '~/data' }).home).toBe('/home/dev/data');
    expect(loadConfig({ AGENTGATE_HOME: 'state' }).home).toBe(resolve('state'));
  });

  it('lets overrides (flags) beat the environment', () => {
    const config = loadConfig(
      { HOME: '/h', AGENTGATE_MAX_CONCURRENT: '4', AGENTGATE_PORT: '9000', AGENTGATE_API_KEY: 'from-env' },
      { maxConcurrent: 6, port: '3100', apiKey: 'from-flag', host: '::1' },
    );
    expect(config).toMatchObject({ maxConcurrent: 6, port: 3100, apiKey: 'from-flag', host: '::1' });
  });

  it('does not validate an environment value that a flag overrides', () => {
    expect(loadConfig({ HOME: '/h', AGENTGATE_PORT: 'nope' }, { port: 3002 }).port).toBe(3002);
  });

  describe('when a value is invalid', () => {
    it('names the variable', () => {
      const error = thrownAgentGateError(() => loadConfig({ AGENTGATE_MAX_CONCURRENT: 'abc' }));
      expect(error.code).toBe('AG_ERR_CONFIG_INVALID');
      expect(error.message).toBe('AGENTGATE_MAX_CONCURRENT: expected a positive integer (1-256), got "abc"');
      expect(error.details).toEqual({ issues: [{ variable: 'AGENTGATE_MAX_CONCURRENT', message: 'expected a positive integer (1-256), got "abc"' }] });
    });

    it('names the flag when the bad value came from a flag', () => {
      expect(thrownAgentGateError(() => loadConfig({}, { maxConcurrent: 0 })).message).toBe('--max-concurrent: expected a positive integer (1-256), got "0"');
    });

    it('reports every bad variable at once', () => {
      const error = thrownAgentGateError(() =>
        loadConfig({ AGENTGATE_PORT: '70000', AGENTGATE_LOG_LEVEL: 'loud', AGENTGATE_GITHUB_API_URL: 'ftp://x', AGENTGATE_GITLAB_URL: 'not a url' }),
      );
      expect(error.message).toBe(
        [
          'AGENTGATE_GITHUB_API_URL: expected an http(s) URL, got "ftp://x"',
          'AGENTGATE_GITLAB_URL: expected an http(s) URL, got "not a url"',
          'AGENTGATE_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
          'AGENTGATE_PORT: expected a port number (0-65535), got "70000"',
        ].join('; '),
      );
    });

    it('rejects a fractional or negative count', () => {
      expect(thrownAgentGateError(() => loadConfig({ AGENTGATE_MAX_CONCURRENT: '1.5' })).message).toContain('AGENTGATE_MAX_CONCURRENT');
      expect(thrownAgentGateError(() => loadConfig({ AGENTGATE_MAX_CONCURRENT: '-1' })).message).toContain('got "-1"');
    });
  });
});
