/**
 * Local delivery (SPEC 9, the default): the run's result is the run branch `agentgate/<runId>` in the
 * repository that holds it (the workspace already created it), optionally pushed to a named remote of
 * that repository. No pull request, no CI.
 *
 * Pushing is offered for `local` workspaces only. A `git` workspace's repository is AgentGate's cached
 * bare clone of the URL: its only remote is `origin`, rewritten by AgentGate before every fetch and
 * stripped of any credentials the URL carried, so there is no remote of the user's to name; a task that
 * pushes from it is rejected at submission. For `github`/`gitlab` workspaces pushing is the forge
 * managers' job. Without a push, every workspace kind is delivered: the branch stays where it is.
 *
 * The push is a plain `git push <remote> <sha>:refs/heads/<branch>` in the source repository (never
 * forced: a remote branch changed by someone else is a failure, not overwritten). Because the agent's
 * worktree shares that repository's configuration, `prepare` — called before the first build — records
 * a fingerprint of every configuration entry that can steer a push (the remote's URLs and commands,
 * `url.*` rewrites, credential helpers, ssh and http settings, includes), and a push whose
 * configuration no longer matches is refused instead of run.
 */
import { createHash } from 'node:crypto';
import { AgentGateError } from '../errors.js';
import type { ResolvedTaskSpec } from '../schemas/resolve.js';
import { assertNever } from '../util/abort.js';
import { runGit, type GitEnvConfig } from '../workspace/git.js';
import { stripUrlCredentials, urlSecrets } from '../workspace/paths.js';
import {
  deliveryStep,
  supportFromCapabilities,
  type ChangeOutcome,
  type CiOutcome,
  type DeliveryCapabilities,
  type DeliveryContext,
  type DeliveryManager,
  type DeliveryResult,
  type DeliverySupport,
  type DeliveryTarget,
  type FinalizeOutcome,
  type IterationDeliveryContext,
  type LocalDeliveryTarget,
  type LocalPushTarget,
  type PreparedDeliveryContext,
  type PushOutcome,
} from './manager.js';
import { assertNoSecrets } from './secret-scan.js';

export const LOCAL_DELIVERY_CAPABILITIES: DeliveryCapabilities = {
  workspaces: ['local', 'git', 'github', 'gitlab'],
  pushFrom: ['local'],
  pushTarget: 'named_remote',
  changeRequests: false,
  ciWait: false,
};

/**
 * Configuration that can change where a push goes, what runs during it, or how it authenticates
 * (git-config(1): remote.<name>.*, url.<base>.insteadOf/pushInsteadOf, core.sshCommand, credential.*,
 * http.*, include.*). Compared by prefix on the lower-cased key.
 */
const PUSH_CONFIG_PREFIXES = ['remote.', 'url.', 'credential.', 'http.', 'push.', 'ssh.', 'gpg.', 'protocol.', 'include.', 'includeif.', 'transfer.', 'sendpack.'];
const PUSH_CONFIG_KEYS = new Set(['core.sshcommand', 'core.gitproxy', 'core.askpass']);

/** Settings fixed for AgentGate's pushes: no submodule pushes and no signing program. */
const PUSH_ENV_CONFIG: readonly GitEnvConfig[] = [
  { key: 'push.recurseSubmodules', value: 'no' },
  { key: 'push.gpgSign', value: 'false' },
];

const SHA_PATTERN = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
const REMOTE_PATTERN = /^(?!-)[A-Za-z0-9._-]+$/;

interface ConfigEntry {
  key: string;
  value: string | undefined;
}

export class LocalDeliveryManager implements DeliveryManager {
  readonly name = 'local' as const;
  readonly capabilities = LOCAL_DELIVERY_CAPABILITIES;

  canHandle(spec: ResolvedTaskSpec): DeliverySupport {
    return supportFromCapabilities(this.name, this.capabilities, spec);
  }

  prepare(ctx: DeliveryContext): Promise<DeliveryResult<DeliveryTarget>> {
    return deliveryStep(ctx.signal, 'prepare local delivery', 'AG_ERR_DELIVERY_UNSUPPORTED', async () => {
      const support = this.canHandle(ctx.spec);
      if (!support.ok) {
        // The registry rejects these at submission; a caller that skipped it still gets no silent skip.
        const [first] = support.issues;
        throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', `${first?.path ?? 'spec.delivery'}: ${first?.message ?? 'not supported'}`, {
          details: { issues: support.issues.map(({ path, message }) => ({ path, message })) },
        });
      }
      const { workspace, spec } = ctx;
      if (workspace.kind !== spec.workspace.source) {
        throw new AgentGateError('AG_ERR_INTERNAL', `The workspace is a ${workspace.kind} workspace but the task names a ${spec.workspace.source} one`);
      }
      const target: LocalDeliveryTarget = { kind: 'local', repoPath: workspace.repoPath, branch: ctx.branch };
      const remote = spec.delivery.push ? spec.delivery.remote : undefined;
      if (remote === undefined) return target;
      return { ...target, push: await this.resolvePushTarget(workspace.repoPath, remote, ctx.signal) };
    });
  }

  pushIteration(ctx: IterationDeliveryContext): Promise<DeliveryResult<PushOutcome>> {
    return deliveryStep(ctx.signal, `push iteration ${ctx.iteration}`, 'AG_ERR_DELIVERY_PUSH', async () => {
      const target = localTarget(ctx.target);
      if (target.push === undefined) return { status: 'not_pushed', reason: 'push_disabled' };
      return this.push(target, target.push, ctx);
    });
  }

  openChange(ctx: IterationDeliveryContext): Promise<DeliveryResult<ChangeOutcome>> {
    return deliveryStep(ctx.signal, 'open a change request', 'AG_ERR_INTERNAL', () => {
      localTarget(ctx.target);
      return Promise.resolve({ status: 'none' });
    });
  }

  waitForCI(ctx: IterationDeliveryContext, signal: AbortSignal): Promise<DeliveryResult<CiOutcome>> {
    return deliveryStep(signal, 'wait for CI', 'AG_ERR_INTERNAL', () => {
      localTarget(ctx.target);
      return Promise.resolve({ status: 'none' });
    });
  }

  /** Nothing to finish: the branch (and its pushed copy) is the result, whatever the outcome. */
  finalize(ctx: PreparedDeliveryContext): Promise<DeliveryResult<FinalizeOutcome>> {
    return deliveryStep(ctx.signal, 'finalize local delivery', 'AG_ERR_INTERNAL', () => {
      localTarget(ctx.target);
      return Promise.resolve({ status: 'unchanged' });
    });
  }

  private async resolvePushTarget(repoPath: string, remote: string, signal: AbortSignal): Promise<LocalPushTarget> {
    if (!REMOTE_PATTERN.test(remote)) {
      throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', `spec.delivery.git.remote: not a valid remote name: ${JSON.stringify(remote)}`);
    }
    const entries = await readConfig(repoPath, signal);
    const url = remoteUrl(entries, remote);
    if (url === undefined) {
      throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', `spec.delivery.git.remote: the repository ${repoPath} has no remote named "${remote}"`, {
        details: { remote, repoPath },
      });
    }
    return { remote, url: stripUrlCredentials(url), configFingerprint: pushConfigFingerprint(entries) };
  }

  private async push(target: LocalDeliveryTarget, push: LocalPushTarget, ctx: IterationDeliveryContext): Promise<PushOutcome> {
    const { snapshotSha: sha, signal } = ctx;
    if (!SHA_PATTERN.test(sha)) {
      throw new AgentGateError('AG_ERR_INTERNAL', `Snapshot ${JSON.stringify(sha)} of iteration ${ctx.iteration} is not a commit id`);
    }
    const entries = await readConfig(target.repoPath, signal);
    if (pushConfigFingerprint(entries) !== push.configFingerprint) {
      throw new AgentGateError(
        'AG_ERR_DELIVERY_PUSH',
        `Refusing to push to "${push.remote}": the push configuration of ${target.repoPath} (remote URLs, url rewrites, credential, ssh or http settings) changed during the run`,
        { retryable: false, details: { remote: push.remote, repoPath: target.repoPath } },
      );
    }
    // Nothing leaves the machine before the secret scan of every commit being pushed.
    await assertNoSecrets({ repoPath: target.repoPath, baseSha: ctx.workspace.baseSha, sha, branch: target.branch, signal });
    const ref = `refs/heads/${target.branch}`;
    const rawUrl = remoteUrl(entries, push.remote) ?? push.url;
    const what = `push ${sha.slice(0, 12)} to ${push.remote} (${push.url}) as ${ref}`;
    const started = ctx.clock.now();
    try {
      await runGit({
        cwd: target.repoPath,
        args: ['push', '--quiet', '--no-verify', push.remote, `${sha}:${ref}`],
        signal,
        failAs: 'AG_ERR_DELIVERY_PUSH',
        what,
        envConfig: PUSH_ENV_CONFIG,
        secrets: urlSecrets(rawUrl),
      });
    } catch (error) {
      throw summarisePushFailure(error, what, signal);
    }
    ctx.logger.info({ remote: push.remote, url: push.url, ref, sha, iteration: ctx.iteration, durationMs: ctx.clock.now() - started }, 'run branch pushed');
    return { status: 'pushed', remote: push.remote, url: push.url, ref, sha };
  }
}

export function createLocalDeliveryManager(): LocalDeliveryManager {
  return new LocalDeliveryManager();
}

function localTarget(target: DeliveryTarget): LocalDeliveryTarget {
  switch (target.kind) {
    case 'local':
      return target;
    case 'github':
    case 'gitlab':
      throw new AgentGateError('AG_ERR_INTERNAL', `local delivery was handed a ${target.kind} target`);
    default:
      return assertNever(target);
  }
}

/** Every configuration entry git sees in `repoPath` (all scopes, includes followed), in order. */
async function readConfig(repoPath: string, signal: AbortSignal): Promise<ConfigEntry[]> {
  const out = await runGit({
    cwd: repoPath,
    args: ['config', '--list', '-z'],
    signal,
    failAs: 'AG_ERR_DELIVERY_PUSH',
    what: `read the git configuration of ${repoPath}`,
  });
  // With -z each entry is `key\nvalue\0`, or `key\0` for a key without a value (git-config(1)).
  return out
    .split('\0')
    .filter((record) => record !== '')
    .map((record) => {
      const newline = record.indexOf('\n');
      return newline === -1 ? { key: record, value: undefined } : { key: record.slice(0, newline), value: record.slice(newline + 1) };
    });
}

/** The URL git pushes to first: the last `pushurl` if any, else the last `url` (later entries override). */
function remoteUrl(entries: readonly ConfigEntry[], remote: string): string | undefined {
  // Section and variable names are case-insensitive and listed lower-case; the remote name is not.
  const find = (variable: string): string | undefined => entries.findLast((entry) => entry.key === `remote.${remote}.${variable}`)?.value;
  return find('pushurl') ?? find('url');
}

function isPushConfig(key: string): boolean {
  const lower = key.toLowerCase();
  return PUSH_CONFIG_KEYS.has(lower) || PUSH_CONFIG_PREFIXES.some((prefix) => lower.startsWith(prefix));
}

/** sha256 of the push-relevant entries: never the values themselves (they may hold credentials). */
function pushConfigFingerprint(entries: readonly ConfigEntry[]): string {
  const hash = createHash('sha256');
  for (const entry of entries) {
    if (!isPushConfig(entry.key)) continue;
    hash.update(entry.key).update('\n').update(entry.value ?? '\u0001').update('\0');
  }
  return hash.digest('hex');
}

/**
 * The push failure with git's output cut to what a person needs: without `hint:` lines and blank
 * lines, at most four lines. The full (scrubbed) output stays in the cause.
 */
function summarisePushFailure(error: unknown, what: string, signal: AbortSignal): unknown {
  if (signal.aborted || !(error instanceof AgentGateError) || error.code !== 'AG_ERR_DELIVERY_PUSH') return error;
  const output = error.cause instanceof Error ? error.cause.message : error.message;
  const lines = output
    .split('\n')
    .map((line) => line.replace(/\s+/g, ' ').trim())
    .filter((line) => line !== '' && !line.startsWith('hint:'));
  const summary = lines.slice(0, 4).join(' / ').slice(0, 600);
  return new AgentGateError('AG_ERR_DELIVERY_PUSH', `Could not ${what}: ${summary === '' ? 'git failed without output' : summary}`, {
    cause: error.cause,
    details: { ...error.details },
  });
}
