/**
 * The global limit per repository of a scaled-out deployment (issue 14): "one mutating run per
 * repository and branch". The queue passes the key of a work order to `runs.create({ exclusiveKey })`
 * and the store refuses a second run that is not terminal with the same key (`AG_ERR_RUN_EXCLUSIVE_BUSY`,
 * retryable: the work order stays queued), across every process sharing the store.
 *
 * Which branch does a run mutate? Every run writes only its own branch `<branchPrefix><runId>` (in the
 * source repository, and on the remote when it pushes), which no other run can write: that branch is
 * already guarded by the run-branch lease (`workspace/lease.ts`). The one branch several runs can aim at
 * is the **base branch a change request targets**: a run with `delivery.pr.create` opens a PR/MR against
 * it and (with `ci.wait`) iterates on CI results against it. So by default:
 *
 * - a run that opens a change request is keyed `<repository>#<base>` — two such runs on one repository
 *   and base branch never execute at once, on any worker;
 * - every other run (local delivery, or a push of its own run branch) has no key and runs as capacity
 *   allows — serialising them would only cost throughput, they share nothing a run writes.
 *
 * `<repository>` is {@link repositoryIdentity}: the real path of a local repository, the credential-free
 * normalised URL of a git remote, `github:<owner>/<name>` or `gitlab:<group>/<project>` (lower-cased:
 * both forges treat these paths case-insensitively). `<base>` is the workspace's `ref`, or `HEAD` for
 * "the default branch" (not resolved before the run starts, so `main` and an unspecified ref are two
 * keys). The queue takes the policy as a function, so a deployment can key differently.
 */
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ResolvedTaskSpec, ResolvedWorkspace } from '../schemas/resolve.js';
import { assertNever } from '../util/abort.js';
import { stripUrlCredentials } from '../workspace/paths.js';

/** Decides the exclusive key of a spec; undefined: the run shares nothing and has no key. */
export type ExclusiveKeyPolicy = (spec: ResolvedTaskSpec) => Promise<string | undefined>;

/** The default policy (see the module comment): runs that open a change request, by repository and base. */
export const exclusiveKeyOf: ExclusiveKeyPolicy = async (spec) => {
  if (!spec.delivery.pr.create) return undefined;
  return `${await repositoryIdentity(spec.workspace)}#${spec.workspace.ref ?? 'HEAD'}`;
};

/** One name per repository, whichever way a spec spells it (see the module comment). */
export async function repositoryIdentity(workspace: ResolvedWorkspace): Promise<string> {
  switch (workspace.source) {
    case 'local':
      return `local:${await realPathOrResolved(workspace.path)}`;
    case 'git':
      return `git:${normalizeRemoteUrl(workspace.url)}`;
    case 'github':
      return `github:${workspace.repo.replace(/\.git$/, '').toLowerCase()}`;
    case 'gitlab':
      return `gitlab:${workspace.project.replace(/\.git$/, '').toLowerCase()}`;
    default:
      return assertNever(workspace);
  }
}

/**
 * A remote URL without user name and password, with a lower-case scheme and host and without a
 * trailing `/` or `.git`, so `https://Host/a/b.git` and `https://user:pw@host/a/b/` name one
 * repository. scp-like (`git@host:a/b.git`) and path URLs only lose the suffix.
 */
export function normalizeRemoteUrl(url: string): string {
  const bare = stripUrlCredentials(url.trim());
  const trimmed = bare.replace(/\/+$/, '').replace(/\.git$/, '');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\/([^/]*)(.*)$/i.exec(trimmed);
  if (scheme === null) return trimmed;
  return `${(scheme[1] ?? '').toLowerCase()}://${(scheme[2] ?? '').toLowerCase()}${scheme[3] ?? ''}`;
}

/**
 * The real path of a local repository; when it cannot be read here (another machine's path, removed
 * since), the absolute path as written — the run itself then fails on it, the key only has to be stable.
 */
async function realPathOrResolved(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (error) {
    if (isMissingPath(error)) return resolve(path);
    throw error;
  }
}

function isMissingPath(error: unknown): boolean {
  if (typeof error !== 'object' || error === null || !('code' in error)) return false;
  return error.code === 'ENOENT' || error.code === 'ENOTDIR' || error.code === 'EACCES' || error.code === 'ELOOP';
}
