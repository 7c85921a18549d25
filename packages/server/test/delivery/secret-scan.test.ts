import { describe, expect, it } from 'vitest';
import { isForbiddenFile, scanLine, scanPatch, secretDetectedError } from '../../src/delivery/secret-scan.js';

function patch(file: string, lines: readonly string[]): string {
  return [`diff --git a/${file} b/${file}`, 'new file mode 100644', '--- /dev/null', `+++ b/${file}`, `@@ -0,0 +1,${lines.length} @@`, ...lines.map((line) => `+${line}`)].join('\n');
}

describe('the secret scan', () => {
  describe('finds', () => {
    it.each([
      ['a private key', '-----BEGIN OPENSSH PRIVATE KEY-----', 'private_key'],
      ['an AWS access key id', 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE', 'aws_access_key'],
      ['a GitHub token', `token: ghp_${'a1B2'.repeat(9)}`, 'github_token'],
      ['a GitLab token', 'GITLAB=glpat-abcdefghij0123456789', 'gitlab_token'],
      ['a Slack token', 'xoxb-123456789012-abcdefghijkl', 'slack_token'],
      ['a value assigned to a secret name', 'const password = "Zr8qLk2vPw9mXn4T";', 'assigned_secret'],
      ['a long random string', `blob ${'q7RzK2mP9vXw4LtY8nB3cD6fH1jS5gA0'.repeat(2)}`, 'high_entropy'],
    ])('%s', (_what, line, kind) => {
      expect(scanLine(line, 'src/config.ts')).toBe(kind);
    });

    it('names the file and line of each finding in the diff, and the file of a forbidden name', () => {
      const text = [patch('src/a.ts', ['ok', 'const apiKey = "Zr8qLk2vPw9mXn4T";']), patch('.env', ['A=1']), patch('keys/deploy.pem', ['x'])].join('\n');
      expect(scanPatch(text)).toEqual([
        { file: 'src/a.ts', line: 2, kind: 'assigned_secret' },
        { file: '.env', kind: 'forbidden_file' },
        { file: 'keys/deploy.pem', kind: 'forbidden_file' },
      ]);
    });

    it('gives an error that names the file but never the secret', () => {
      const error = secretDetectedError([{ file: 'deploy/id_rsa', kind: 'forbidden_file' }, { file: 'a.ts', line: 3, kind: 'private_key' }], 'agentgate/r1');
      expect(error.code).toBe('AG_ERR_DELIVERY_SECRET_DETECTED');
      expect(error.message).toContain('a private key in a.ts (line 3)');
      expect(error.message).toContain('deploy/id_rsa');
      expect(error.message).toContain('Nothing was pushed');
    });
  });

  describe('leaves alone', () => {
    it.each([
      ['a commit sha', 'fixes 3f786850e387550fdab836ed7e6dc881de23001b'],
      ['an integrity hash in a lockfile', `integrity: sha512-${'q7RzK2mP9vXw4LtY8nB3cD6fH1jS5gA0'.repeat(2)}`],
      ['an environment reference', 'const password = "${DB_PASSWORD}";'],
      ['ordinary code', 'export function add(a, b) { return a + b; }'],
      ['a long lower-case identifier', 'const averyveryveryveryverylongidentifiernamethatisfine = 1;'],
    ])('%s', (_what, line) => {
      expect(scanLine(line, line.startsWith('integrity') ? 'pnpm-lock.yaml' : 'src/a.ts')).toBeUndefined();
    });

    it('templates of forbidden files and removed lines', () => {
      expect(isForbiddenFile('.env.example')).toBe(false);
      expect(isForbiddenFile('.env.production')).toBe(true);
      expect(scanPatch(['+++ b/src/a.ts', '@@ -1 +0,0 @@', '------BEGIN RSA PRIVATE KEY-----'].join('\n'))).toEqual([]);
    });
  });
});
