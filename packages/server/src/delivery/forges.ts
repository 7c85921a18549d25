/**
 * The configured forges: GitHub and GitLab delivery managers, and the clone access the workspace cache
 * needs for github/gitlab workspaces, built from the configuration (`AGENTGATE_GITHUB_TOKEN`,
 * `AGENTGATE_GITHUB_API_URL`, `AGENTGATE_GITLAB_TOKEN`, `AGENTGATE_GITLAB_URL`). A forge without a token
 * has no manager, so the registry rejects tasks that need it at submission.
 *
 * Clone URLs come from the forge's API (`clone_url`, `http_url_to_repo`), as real clients do (SPEC 9): the
 * workspace cache asks the manager, so an emulator returning a local URL exercises the same path.
 */
import type { AgentGateConfig } from '../schemas/config.js';
import { systemClock, type TimerClock } from '../util/clock.js';
import { githubCloneBaseFromApiUrl, type ForgeCloneConfig } from '../workspace/git-remote.js';
import { GitHubDeliveryManager, type GitHubDeliveryOptions } from './github.js';
import { GitLabDeliveryManager, type GitLabDeliveryOptions } from './gitlab.js';
import type { DeliveryManager } from './manager.js';

export interface ForgeDelivery {
  /** The configured forge managers, for `createDeliveryRegistry({ managers })`. */
  managers: DeliveryManager[];
  /** Clone access for `WorkspaceManager` options (`github`, `gitlab`). */
  clone: { github?: ForgeCloneConfig; gitlab?: ForgeCloneConfig };
}

export interface ForgeDeliveryOverrides {
  github?: Partial<Omit<GitHubDeliveryOptions, 'token' | 'apiUrl'>>;
  gitlab?: Partial<Omit<GitLabDeliveryOptions, 'token' | 'url'>>;
  /** Clock of the clone-URL lookups' retries. */
  clock?: TimerClock;
}

export function createForgeDelivery(config: Pick<AgentGateConfig, 'githubToken' | 'githubApiUrl' | 'gitlabToken' | 'gitlabUrl'>, overrides: ForgeDeliveryOverrides = {}): ForgeDelivery {
  const clock = overrides.clock ?? systemClock;
  const managers: DeliveryManager[] = [];
  const clone: ForgeDelivery['clone'] = {};
  if (config.githubToken !== undefined && config.githubToken !== '') {
    const github = new GitHubDeliveryManager({ ...overrides.github, token: config.githubToken, apiUrl: config.githubApiUrl });
    managers.push(github);
    clone.github = { token: config.githubToken, baseUrl: githubCloneBaseFromApiUrl(config.githubApiUrl), cloneUrl: (repo, signal) => github.cloneUrl(repo, signal, clock) };
  }
  if (config.gitlabToken !== undefined && config.gitlabToken !== '') {
    const gitlab = new GitLabDeliveryManager({ ...overrides.gitlab, token: config.gitlabToken, url: config.gitlabUrl });
    managers.push(gitlab);
    clone.gitlab = { token: config.gitlabToken, baseUrl: config.gitlabUrl, cloneUrl: (project, signal) => gitlab.cloneUrl(project, signal, clock) };
  }
  return { managers, clone };
}
