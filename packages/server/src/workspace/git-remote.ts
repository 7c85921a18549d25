/**
 * Remote repositories (SPEC section 8: `git { url }`, `github { repo }`, `gitlab { project }`): one
 * cached bare repository per remote under `$AGENTGATE_HOME/repos/<sha256(url)>.git`, fetched before each
 * run; every run then gets its own workspace borrowing the cache's objects, and its run branch is
 * fetched back into the cache after every snapshot.
 *
 * The cache fetches the remote's branches into `refs/remotes/origin/*`, not into `refs/heads/*`: run
 * branches (`agentgate/<runId>`) live in `refs/heads/` of the cache, and a `+refs/heads/*:refs/heads/*`
 * fetch with `--prune` would delete them.
 *
 * Forge tokens never touch disk or argv: the cache's `remote.origin.url` holds the plain URL, and the
 * token reaches git as an `http.<base>/.extraHeader` through `GIT_CONFIG_KEY_n` environment variables of
 * the fetch process only. Error messages are scrubbed of the token.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { runGit, withRepositoryLock, type GitEnvConfig } from './git.js';
import { formatLines, type ObjectFormat } from './isolated-git.js';
import type { KeyedMutex } from './keyed-mutex.js';
import { resolveCommit, validateRef, type PreparedSource } from './local.js';
import { repoCacheKey, repoCachePath, reposRoot, safeJoin, stripUrlCredentials, urlSecrets } from './paths.js';

/** Clone access to a forge. Without any of it, that forge's workspaces are unsupported. */
export interface ForgeCloneConfig {
  /** Token used for HTTPS clone and fetch. Never stored, logged or shown. */
  token?: string;
  /** Web/clone base URL, e.g. `https://github.com` or `https://gitlab.example.com`. */
  baseUrl?: string;
  /**
   * The repository's clone URL from the forge's API (`clone_url`, `http_url_to_repo`; SPEC 9). When given,
   * fetches use it instead of `<baseUrl>/<repo>.git`; the cache is still keyed by the latter.
   */
  cloneUrl?: (repo: string, signal: AbortSignal) => Promise<string>;
}

export const DEFAULT_GITHUB_BASE_URL = 'https://github.com';
export const DEFAULT_GITLAB_BASE_URL = 'https://gitlab.com';

/**
 * The clone base URL of a GitHub API URL: `https://api.github.com` → `https://github.com`; GitHub
 * Enterprise `https://ghe.example.com/api/v3` → `https://ghe.example.com`. See
 * https://docs.github.com/en/enterprise-server@latest/rest/quickstart.
 */
export function githubCloneBaseFromApiUrl(apiUrl: string): string {
  const parsed = new URL(apiUrl);
  if (parsed.hostname === 'api.github.com') return DEFAULT_GITHUB_BASE_URL;
  parsed.pathname = parsed.pathname.replace(/\/api\/v3\/?$/, '');
  return parsed.toString().replace(/\/+$/, '');
}

export type RemoteWorkspaceSpec =
  | { source: 'git'; url: string; ref?: string }
  | { source: 'github'; repo: string; ref?: string }
  | { source: 'gitlab'; project: string; ref?: string };

/** A remote resolved to a fetchable URL plus the credentials for it. */
export interface RemoteSource {
  kind: 'git' | 'github' | 'gitlab';
  /** What git fetches from (may contain credentials the user embedded in a `git` URL). */
  fetchUrl: string;
  /** Credential-free URL: cache key, `remote.origin.url` of the cache, and the workspace's `source`. */
  displayUrl: string;
  /** Per-process git configuration carrying the forge token (empty without a token). */
  envConfig: GitEnvConfig[];
  /** Values scrubbed from every message. */
  secrets: string[];
  /** Asks the forge's API for the URL to fetch: replaces `fetchUrl` and the auth header scoped to it. */
  resolve?: (signal: AbortSignal) => Promise<Pick<RemoteSource, 'fetchUrl' | 'envConfig'>>;
}

const SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9_.-]+$/;

/**
 * Turns a remote workspace spec into a URL and credentials.
 *
 * @throws AG_ERR_WORKSPACE_UNSUPPORTED for github/gitlab without configuration; AG_ERR_SCHEMA_INVALID
 *   for a malformed repo, project or URL; AG_ERR_CONFIG_INVALID for a bad base URL.
 */
export function resolveRemoteSource(spec: RemoteWorkspaceSpec, forges: { github?: ForgeCloneConfig; gitlab?: ForgeCloneConfig }): RemoteSource {
  switch (spec.source) {
    case 'git': {
      const url = spec.url.trim();
      if (url === '' || url.startsWith('-') || /\s/.test(url) || /^ext::/i.test(url)) {
        throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `Invalid git URL ${JSON.stringify(stripUrlCredentials(url))}`);
      }
      return { kind: 'git', fetchUrl: url, displayUrl: stripUrlCredentials(url), envConfig: [], secrets: urlSecrets(url) };
    }
    case 'github': {
      const [owner = '', rawName = '', ...rest] = spec.repo.split('/');
      const name = rawName.replace(/\.git$/, '');
      if (rest.length > 0 || !SEGMENT.test(owner) || !SEGMENT.test(name)) {
        throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `Invalid GitHub repository "${spec.repo}": expected "owner/name"`);
      }
      return withCloneUrl(forgeSource('github', `${owner}/${name}`, forges.github, DEFAULT_GITHUB_BASE_URL, 'x-access-token'), `${owner}/${name}`, forges.github, 'x-access-token');
    }
    case 'gitlab': {
      const project = spec.project.replace(/\.git$/, '');
      const segments = project.split('/');
      if (segments.length < 2 || !segments.every((segment) => SEGMENT.test(segment))) {
        throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `Invalid GitLab project "${spec.project}": expected a path such as "group/name"`);
      }
      return withCloneUrl(forgeSource('gitlab', project, forges.gitlab, DEFAULT_GITLAB_BASE_URL, 'oauth2'), project, forges.gitlab, 'oauth2');
    }
    default: {
      const unreachable: never = spec;
      return unreachable;
    }
  }
}

function forgeSource(
  kind: 'github' | 'gitlab',
  repoPath: string,
  config: ForgeCloneConfig | undefined,
  defaultBase: string,
  tokenUser: string,
): RemoteSource {
  const forgeName = kind === 'github' ? 'GitHub' : 'GitLab';
  if (config === undefined || (config.token === undefined && config.baseUrl === undefined)) {
    throw new AgentGateError('AG_ERR_WORKSPACE_UNSUPPORTED', `${forgeName} workspaces need a configured ${forgeName} token or base URL`, {
      details: { source: kind },
    });
  }
  const base = normaliseBaseUrl(config.baseUrl ?? defaultBase, forgeName);
  const url = `${base}/${repoPath}.git`;
  const token = config.token;
  if (token === undefined || token === '') return { kind, fetchUrl: url, displayUrl: url, envConfig: [], secrets: [] };
  // HTTP Basic with the token as password: accepted by GitHub (any user name, `x-access-token` by
  // convention) and GitLab (`oauth2` for OAuth and personal access tokens).
  const credentials = Buffer.from(`${tokenUser}:${token}`).toString('base64');
  return {
    kind,
    fetchUrl: url,
    displayUrl: url,
    envConfig: [{ key: `http.${base}/.extraHeader`, value: `Authorization: Basic ${credentials}` }],
    secrets: [token, credentials],
  };
}

/** Adds the API lookup of the clone URL; the token's header is then scoped to that URL. */
function withCloneUrl(source: RemoteSource, repoPath: string, config: ForgeCloneConfig | undefined, tokenUser: string): RemoteSource {
  const lookup = config?.cloneUrl;
  if (lookup === undefined) return source;
  return {
    ...source,
    resolve: async (signal) => {
      const url = await lookup(repoPath, signal);
      if (url.startsWith('-') || /\s/.test(url)) throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `The forge returned an unusable clone URL for ${repoPath}`);
      return { fetchUrl: url, envConfig: authFor(url, tokenUser, config?.token) };
    },
  };
}

/** The auth header of `token` for `url` (http(s) only). */
function authFor(url: string, tokenUser: string, token: string | undefined): GitEnvConfig[] {
  if (token === undefined || token === '' || !/^https?:\/\//i.test(url)) return [];
  return [{ key: `http.${url}.extraHeader`, value: `Authorization: Basic ${Buffer.from(`${tokenUser}:${token}`).toString('base64')}` }];
}

function normaliseBaseUrl(value: string, forgeName: string): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch (error) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${forgeName} base URL is not a URL`, { cause: error });
  }
  if (!['http:', 'https:', 'file:'].includes(parsed.protocol) || parsed.username !== '' || parsed.password !== '') {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `${forgeName} base URL must be an http(s) URL without credentials`);
  }
  return parsed.toString().replace(/\/+$/, '');
}

/** Ref that records the remote's HEAD (its default branch) at the last fetch without an explicit ref. */
const REMOTE_HEAD_REF = 'refs/agentgate/remote-head';

/**
 * The cache of bare repositories. Clone and fetch of one cache directory are serialised through the
 * mutex, so concurrent runs on the same remote never see a half-created or concurrently-updated cache.
 */
export class RemoteRepositoryCache {
  constructor(
    private readonly home: string,
    private readonly mutex: KeyedMutex,
  ) {}

  /**
   * Brings the cache of `remote` up to date and resolves `ref` (default: the remote's default branch)
   * to a commit. Branch names are looked up among the remote's branches first, then tags, then as an arbitrary
   * revision git understands (a sha, or an earlier run branch `agentgate/<runId>`).
   *
   * @throws AG_ERR_WORKSPACE_SETUP when clone or fetch fails; AG_ERR_WORKSPACE_REF_NOT_FOUND.
   */
  async prepare(source: RemoteSource, ref: string | undefined, signal: AbortSignal): Promise<PreparedSource> {
    const repoPath = repoCachePath(this.home, source.displayUrl);
    const candidates = ref === undefined ? [REMOTE_HEAD_REF] : [`refs/remotes/origin/${validateRef(ref)}`, `refs/tags/${ref}`, ref];
    const refspecs = ['+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*'];
    if (ref === undefined) refspecs.push(`+HEAD:${REMOTE_HEAD_REF}`);
    const remote = source.resolve === undefined ? source : { ...source, ...(await source.resolve(signal)) };
    return withRepositoryLock(this.mutex, repoPath, signal, async () => {
      if (existsSync(path.join(repoPath, 'HEAD'))) await this.refresh(remote, repoPath, refspecs, signal);
      else await this.createCache(remote, repoPath, refspecs, signal);
      const baseSha = await resolveCommit(repoPath, candidates, ref ?? 'the default branch', signal);
      return { repoPath, baseSha, objectsDir: path.join(repoPath, 'objects'), source: remote.displayUrl, warnings: [] };
    });
  }

  /**
   * Fetches into an existing cache, in the object format its config names. When the remote serves the
   * other format — the config lost its `[extensions]` line, or the cache was made while the remote was
   * empty — a cache that holds no object yet is made again in that format, and one that holds objects
   * gets its config in that format and one more fetch (which fails, naming the cache, when its objects
   * are of the first format: a remote made again in the other one). Nothing is removed that a run could
   * be borrowing.
   */
  private async refresh(remote: RemoteSource, repoPath: string, refspecs: readonly string[], signal: AbortSignal): Promise<void> {
    try {
      await this.fetch(remote, repoPath, refspecs, signal, await cacheObjectFormat(repoPath));
    } catch (error) {
      const served = servedFormat(error);
      if (served === undefined) throw error;
      if (await holdsNoObjects(repoPath)) {
        await rm(repoPath, { recursive: true, force: true });
        await this.createCache(remote, repoPath, refspecs, signal, served);
        return;
      }
      await this.fetch(remote, repoPath, refspecs, signal, served).catch((again: unknown) => {
        const message = again instanceof Error ? again.message : String(again);
        throw new AgentGateError(
          'AG_ERR_WORKSPACE_SETUP',
          `${remote.displayUrl} serves ${served} objects, which the repository cache ${repoPath} does not hold (${message}); move or remove that directory (it may hold the run branches agentgate/* of earlier runs) and run again`,
          { cause: again },
        );
      });
    }
  }

  private async fetch(remote: RemoteSource, repoPath: string, refspecs: readonly string[], signal: AbortSignal, format: ObjectFormat): Promise<void> {
    // Run workspaces no longer share this repository (they borrow its objects read-only), but the config is
    // still reset before every fetch that carries a token: nothing but this file is trusted here. It keeps
    // the object format the cache was created with. Written beside and renamed in: never half a config.
    const config = path.join(repoPath, 'config');
    const written = `${config}.agentgate-${randomUUID()}`;
    try {
      await writeFile(written, cacheConfig(remote.displayUrl, format));
      await rename(written, config);
    } finally {
      await rm(written, { force: true });
    }
    await runGit({
      cwd: repoPath,
      args: ['fetch', '--prune', '--no-tags', '--quiet', remote.fetchUrl, ...refspecs],
      signal,
      failAs: 'AG_ERR_WORKSPACE_SETUP',
      what: `fetch ${remote.displayUrl}`,
      envConfig: remote.envConfig,
      secrets: remote.secrets,
    });
  }

  /**
   * Creates the bare repository and fetches into it next to its final place, then renames it in: a
   * crash, cancel or failed first fetch (a mistyped URL) never leaves a half-initialised cache behind.
   * The cache is made for `format` (default SHA-1); a remote that answers with git's "mismatched
   * algorithms: client sha1; server sha256" gets a cache of the format it serves instead (git tells a
   * remote's object format only by refusing the other).
   */
  private async createCache(remote: RemoteSource, repoPath: string, refspecs: readonly string[], signal: AbortSignal, format: ObjectFormat = 'sha1'): Promise<void> {
    const root = reposRoot(this.home);
    await mkdir(root, { recursive: true });
    const staging = safeJoin(root, `${repoCacheKey(remote.displayUrl)}.git.tmp-${randomUUID()}`);
    try {
      const what = `create the repository cache for ${remote.displayUrl}`;
      const create = async (format: ObjectFormat): Promise<void> => {
        await runGit({ cwd: root, args: ['init', '--bare', '--quiet', `--object-format=${format}`, staging], signal, failAs: 'AG_ERR_WORKSPACE_SETUP', what });
        await this.fetch(remote, staging, refspecs, signal, format);
      };
      try {
        await create(format);
      } catch (error) {
        const served = servedFormat(error);
        if (served === undefined || served === format) throw error;
        await rm(staging, { recursive: true, force: true });
        await create(served);
      }
      await rename(staging, repoPath);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
}

/** The whole config of a cache repository: nothing else is trusted there. */
function cacheConfig(displayUrl: string, format: ObjectFormat): string {
  return [...formatLines(format), '\tfilemode = true', '\tbare = true', '[remote "origin"]', `\turl = ${JSON.stringify(displayUrl)}`, ''].join('\n');
}

/**
 * The object format an existing cache's config names: `objectFormat = sha256` in its `[extensions]`
 * section (as {@link cacheConfig} and `git init` write it), else SHA-1. Only a hint: a remote serving
 * the other format is handled by `refresh`.
 */
async function cacheObjectFormat(repoPath: string): Promise<ObjectFormat> {
  const config = await readFile(path.join(repoPath, 'config'), 'utf8').catch((error: unknown) => {
    // No config at all: the one written next is SHA-1's, as before.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new AgentGateError('AG_ERR_WORKSPACE_SETUP', `Cannot read the config of the repository cache ${repoPath}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  });
  let section = '';
  for (const line of config.split('\n')) {
    const header = /^\s*\[([^\]]*)\]\s*$/.exec(line);
    if (header !== null) section = (header[1] ?? '').trim().toLowerCase();
    else if (section === 'extensions' && /^\s*objectformat\s*=\s*sha256\s*$/i.test(line)) return 'sha256';
  }
  return 'sha1';
}

/** The object format a remote serves, when git refused a fetch for "mismatched algorithms". */
function servedFormat(error: unknown): ObjectFormat | undefined {
  if (!(error instanceof AgentGateError)) return undefined;
  const served = /mismatched algorithms: client sha(?:1|256); server (sha1|sha256)/.exec(error.message)?.[1];
  return served === 'sha1' || served === 'sha256' ? served : undefined;
}

/** Whether a cache holds no object yet (nothing but `info/` and an empty `pack/`): made while its remote was empty. */
async function holdsNoObjects(repoPath: string): Promise<boolean> {
  const objects = path.join(repoPath, 'objects');
  // No objects directory (a damaged cache): not known to be empty, so nothing is made again in its place.
  const entries = await readdir(objects).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  });
  if (entries === undefined) return false;
  if (entries.some((entry) => entry !== 'info' && entry !== 'pack')) return false;
  return !entries.includes('pack') || (await readdir(path.join(objects, 'pack'))).length === 0;
}
