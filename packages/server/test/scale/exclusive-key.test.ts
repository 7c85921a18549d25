/** The default exclusive-key policy (execution/exclusive-key.ts): which runs are serialised, under which key. */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { exclusiveKeyOf, normalizeRemoteUrl, repositoryIdentity } from '../../src/execution/exclusive-key.js';
import type { ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import { queueFixture, queueSpec } from '../queue/helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0).reverse()) fn();
});

function changeRequest(spec: ResolvedTaskSpec, workspace: ResolvedTaskSpec['workspace']): ResolvedTaskSpec {
  return { ...spec, workspace, delivery: { ...spec.delivery, kind: 'github', push: true, pr: { ...spec.delivery.pr, create: true } } };
}

describe('exclusiveKeyOf', () => {
  it('gives a run that only writes its own run branch no key', async () => {
    const fixture = queueFixture(cleanups);
    const spec = queueSpec(fixture, 'true');
    expect(await exclusiveKeyOf(spec)).toBeUndefined();
    expect(await exclusiveKeyOf({ ...spec, delivery: { ...spec.delivery, push: true, remote: 'origin' } })).toBeUndefined();
  });

  it('keys a run opening a change request by repository and base branch', async () => {
    const fixture = queueFixture(cleanups);
    const spec = queueSpec(fixture, 'true');
    const github = { source: 'github', repo: 'Acme/Widget', owner: 'Acme', name: 'Widget' } as const;
    expect(await exclusiveKeyOf(changeRequest(spec, github))).toBe('github:acme/widget#HEAD');
    expect(await exclusiveKeyOf(changeRequest(spec, { ...github, repo: 'acme/widget.git', ref: 'release/1.x' }))).toBe('github:acme/widget#release/1.x');
    expect(await exclusiveKeyOf(changeRequest(spec, { source: 'gitlab', project: 'Group/Sub/Project', ref: 'main' }))).toBe('gitlab:group/sub/project#main');
  });
});

describe('repositoryIdentity', () => {
  it('names a local repository by its real path, whichever link leads to it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'agentgate-identity-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const real = join(root, 'repo');
    mkdirSync(real);
    symlinkSync(real, join(root, 'link'));
    const viaLink = await repositoryIdentity({ source: 'local', path: join(root, 'link') });
    expect(viaLink).toBe(await repositoryIdentity({ source: 'local', path: `${real}/` }));
    expect(viaLink.startsWith('local:/')).toBe(true);
    // A path this machine cannot see still gives a stable name.
    expect(await repositoryIdentity({ source: 'local', path: join(root, 'missing', '..', 'gone') })).toBe(`local:${join(root, 'gone')}`);
  });

  it('names a git remote by its credential-free, normalised URL', async () => {
    const a = await repositoryIdentity({ source: 'git', url: 'https://user:secret@Git.Example.COM/Team/App.git' });
    const b = await repositoryIdentity({ source: 'git', url: 'https://git.example.com/Team/App/' });
    expect(a).toBe('git:https://git.example.com/Team/App');
    expect(b).toBe(a);
    expect(a).not.toContain('secret');
  });
});

describe('normalizeRemoteUrl', () => {
  it('keeps scp-like and path remotes, without the .git suffix', () => {
    expect(normalizeRemoteUrl('git@github.com:acme/widget.git')).toBe('git@github.com:acme/widget');
    expect(normalizeRemoteUrl('/srv/git/widget.git/')).toBe('/srv/git/widget');
    // The user name is not part of the repository's name (it is dropped with any password).
    expect(normalizeRemoteUrl('SSH://git@Host:2222/acme/widget.git')).toBe('ssh://host:2222/acme/widget');
  });
});
