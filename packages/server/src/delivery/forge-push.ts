/**
 * Pushing the run branch to a forge: the secret scan first, then one `git push <cloneUrl>
 * <sha>:refs/heads/<branch>` from the repository that holds the branch (AgentGate's cached clone). The
 * clone URL is the one the forge's API gave (`clone_url`, `http_url_to_repo`); the token reaches git only
 * as an `http.<url>.extraHeader` of this one process (`GIT_CONFIG_*` environment, never argv, a file or a
 * stored remote), and is scrubbed from every message.
 */
import { AgentGateError } from '../errors.js';
import { runGit, type GitEnvConfig } from '../workspace/git.js';
import { stripUrlCredentials } from '../workspace/paths.js';
import type { PushOutcome } from './manager.js';
import { assertNoSecrets } from './secret-scan.js';

const SHA_PATTERN = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

export interface ForgePush {
  readonly repoPath: string;
  readonly cloneUrl: string;
  readonly branch: string;
  readonly baseSha: string;
  readonly sha: string;
  readonly iteration: number;
  /** HTTP Basic user the forge expects with a token (`x-access-token` GitHub, `oauth2` GitLab). */
  readonly tokenUser: string;
  readonly token: string;
  readonly signal: AbortSignal;
}

/** The per-process git configuration that authenticates to `url` with `token` (empty for local URLs). */
export function forgeAuthConfig(url: string, tokenUser: string, token: string): { envConfig: GitEnvConfig[]; secrets: string[] } {
  if (token === '' || !/^https?:\/\//i.test(url)) return { envConfig: [], secrets: token === '' ? [] : [token] };
  const credentials = Buffer.from(`${tokenUser}:${token}`).toString('base64');
  return { envConfig: [{ key: `http.${url}.extraHeader`, value: `Authorization: Basic ${credentials}` }], secrets: [token, credentials] };
}

export async function pushToForge(push: ForgePush): Promise<PushOutcome> {
  if (!SHA_PATTERN.test(push.sha)) {
    throw new AgentGateError('AG_ERR_DELIVERY_PUSH', `Snapshot ${JSON.stringify(push.sha)} of iteration ${push.iteration} is not a commit id`, { retryable: false });
  }
  await assertNoSecrets({ repoPath: push.repoPath, baseSha: push.baseSha, sha: push.sha, branch: push.branch, signal: push.signal });
  const ref = `refs/heads/${push.branch}`;
  const url = stripUrlCredentials(push.cloneUrl);
  const auth = forgeAuthConfig(push.cloneUrl, push.tokenUser, push.token);
  const what = `push ${push.sha.slice(0, 12)} to ${url} as ${ref}`;
  try {
    await runGit({
      cwd: push.repoPath,
      args: ['push', '--quiet', '--no-verify', push.cloneUrl, `${push.sha}:${ref}`],
      signal: push.signal,
      failAs: 'AG_ERR_DELIVERY_PUSH',
      what,
      envConfig: [...auth.envConfig, { key: 'push.recurseSubmodules', value: 'no' }, { key: 'push.gpgSign', value: 'false' }],
      secrets: auth.secrets,
      hardened: true,
    });
  } catch (error) {
    if (push.signal.aborted || !(error instanceof AgentGateError) || error.code !== 'AG_ERR_DELIVERY_PUSH') throw error;
    const output = (error.cause instanceof Error ? error.cause.message : error.message)
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('hint:'))
      .slice(0, 4)
      .join(' / ');
    throw new AgentGateError('AG_ERR_DELIVERY_PUSH', `Could not ${what}: ${output.slice(0, 600)}`, { details: { url, ref } });
  }
  return { status: 'pushed', remote: url, url, ref, sha: push.sha };
}
