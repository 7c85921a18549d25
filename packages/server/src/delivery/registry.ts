/**
 * The DeliveryManager registry: maps a task's delivery kind (`spec.delivery.kind`) to its manager and
 * rejects, at submission, every task that asks for delivery no registered manager can do — a forge this
 * build does not have, a pull request, a CI wait, a push with nowhere to go. Such a task gets a 400 /
 * exit 2 naming the field before anything is queued; nothing is ever silently skipped at the end of a
 * run that already spent its budget.
 *
 * Forge managers (github, gitlab) exist only when configured with a token: {@link createForgeDelivery}
 * builds them from the configuration and they are passed as `managers`; tests and embedders may also
 * call `register()`.
 */
import { AgentGateError } from '../errors.js';
import type { DeliveryKind, ResolvedTaskSpec } from '../schemas/resolve.js';
import { assertNever } from '../util/abort.js';
import { createLocalDeliveryManager } from './local.js';
import { checkCapabilities, type DeliveryCapabilities, type DeliveryIssue, type DeliveryManager } from './manager.js';

export interface DeliveryRegistry {
  /**
   * Adds the manager for its kind (`manager.name`).
   * @throws AgentGateError `AG_ERR_CONFIG_INVALID` when that kind is already registered.
   */
  register(manager: DeliveryManager): void;
  has(kind: DeliveryKind): boolean;
  /** Registered kinds, sorted (shown in errors). */
  kinds(): DeliveryKind[];
  /**
   * The manager of `kind`.
   * @throws AgentGateError `AG_ERR_DELIVERY_UNSUPPORTED` when this build has none.
   */
  get(kind: DeliveryKind): DeliveryManager;
  /**
   * Checks at submission that a registered manager can deliver `spec` exactly as asked. Pure: reads
   * neither the repository nor the network (`prepare` checks those before the first build).
   * @throws AgentGateError `AG_ERR_DELIVERY_UNSUPPORTED`; the message names every offending field
   *   (`spec.delivery.ci.wait: …`) and `details.issues` lists them as `{ path, message }`.
   */
  validate(spec: ResolvedTaskSpec): void;
}

/** The managers every registry starts with. */
export const BUILTIN_DELIVERY_MANAGERS: readonly (() => DeliveryManager)[] = [createLocalDeliveryManager];

export interface CreateDeliveryRegistryOptions {
  /** Register {@link BUILTIN_DELIVERY_MANAGERS}. Default true; tests that want only fakes pass false. */
  builtins?: boolean;
  /** Further managers, e.g. the configured forges of {@link createForgeDelivery}. */
  managers?: readonly DeliveryManager[];
}

const FORGE_NAMES: Readonly<Record<DeliveryKind, string>> = { local: 'local', github: 'GitHub', gitlab: 'GitLab' };
const FORGE_TOKENS: Readonly<Record<DeliveryKind, string>> = { local: '', github: 'AGENTGATE_GITHUB_TOKEN', gitlab: 'AGENTGATE_GITLAB_TOKEN' };

/** "needs github delivery, which is not configured (set AGENTGATE_GITHUB_TOKEN)". */
function unavailable(kind: DeliveryKind): string {
  return kind === 'local' ? 'which this build does not provide' : `which is not configured (set ${FORGE_TOKENS[kind]})`;
}

export function createDeliveryRegistry(options: CreateDeliveryRegistryOptions = {}): DeliveryRegistry {
  const managers = new Map<DeliveryKind, DeliveryManager>();
  const kinds = (): DeliveryKind[] => [...managers.keys()].sort();
  const offered = (has: (capabilities: DeliveryCapabilities) => boolean): boolean => [...managers.values()].some((manager) => has(manager.capabilities));
  const available = (): string => {
    const known = kinds();
    return known.length > 0 ? known.join(', ') : '(none)';
  };

  /** Adds what the build as a whole offers to a manager's issue, so the message says what to do. */
  const explain = (issue: DeliveryIssue, spec: ResolvedTaskSpec): string => {
    switch (issue.requirement) {
      case 'change_request':
        return offered((c) => c.changeRequests)
          ? `${issue.message}; pull and merge requests need a github or gitlab workspace`
          : 'opening a pull or merge request needs a forge delivery (github or gitlab), which is not configured (set AGENTGATE_GITHUB_TOKEN or AGENTGATE_GITLAB_TOKEN)';
      case 'ci_wait':
        return offered((c) => c.ciWait)
          ? `${issue.message}; waiting for CI needs a pull or merge request on a github or gitlab workspace (spec.delivery.pr.create)`
          : 'waiting for CI needs a forge delivery (github or gitlab), which is not configured (set AGENTGATE_GITHUB_TOKEN or AGENTGATE_GITLAB_TOKEN)';
      case 'push':
        if (spec.workspace.source === 'github' || spec.workspace.source === 'gitlab') {
          const forge = spec.workspace.source;
          return managers.has(forge)
            ? `${issue.message}; pushing to ${FORGE_NAMES[forge]} is done by ${forge} delivery (spec.delivery.pr.create)`
            : `pushing to ${FORGE_NAMES[forge]} needs ${forge} delivery, ${unavailable(forge)}`;
        }
        return spec.workspace.source === 'git'
          ? `${issue.message}: a git workspace is a cached clone of the URL without remotes of yours, so there is no remote to push to; the run branch stays in the cache`
          : issue.message;
      case 'kind':
      case 'workspace':
      case 'push_remote':
      case 'remote_unused':
      case 'pr_setting_unused':
        return issue.message;
      default:
        return assertNever(issue.requirement);
    }
  };

  const registry: DeliveryRegistry = {
    register(manager) {
      if (managers.has(manager.name)) {
        throw new AgentGateError('AG_ERR_CONFIG_INVALID', `A delivery manager for "${manager.name}" is already registered.`, { details: { kind: manager.name } });
      }
      managers.set(manager.name, manager);
    },
    has: (kind) => managers.has(kind),
    kinds,
    get(kind) {
      const manager = managers.get(kind);
      if (manager === undefined) {
        throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', `${kind} delivery is not available: ${kind === 'local' ? 'not provided by this build' : `not configured (set ${FORGE_TOKENS[kind]})`}; available: ${available()}.`, {
          details: { kind, available: kinds() },
        });
      }
      return manager;
    },
    validate(spec) {
      const kind = spec.delivery.kind;
      const manager = managers.get(kind);
      let issues: { path: string; message: string }[];
      if (manager === undefined) {
        const path = spec.delivery.pr.create ? 'spec.delivery.pr.create' : 'spec.delivery.kind';
        const what = spec.delivery.pr.create ? `opening a ${kind === 'gitlab' ? 'merge' : 'pull'} request on ${FORGE_NAMES[kind]} needs` : 'the task needs';
        issues = [{ path, message: `${what} ${kind} delivery, ${unavailable(kind)} (available: ${available()})` }];
        if (spec.delivery.ci.wait && !offered((c) => c.ciWait)) {
          issues.push({ path: 'spec.delivery.ci.wait', message: 'waiting for CI needs a forge delivery (github or gitlab), which is not configured (set AGENTGATE_GITHUB_TOKEN or AGENTGATE_GITLAB_TOKEN)' });
        }
      } else {
        issues = checkCapabilities(manager.name, manager.capabilities, spec).map((issue) => ({ path: issue.path, message: explain(issue, spec) }));
      }
      if (issues.length === 0) return;
      const listed = issues.map((issue) => `${issue.path}: ${issue.message}`);
      const message = listed.length === 1 ? `${listed[0]}.` : `The task asks for delivery this build cannot do: ${listed.join('; ')}.`;
      throw new AgentGateError('AG_ERR_DELIVERY_UNSUPPORTED', message, { details: { kind, issues } });
    },
  };

  if (options.builtins ?? true) {
    for (const create of BUILTIN_DELIVERY_MANAGERS) registry.register(create());
  }
  for (const manager of options.managers ?? []) registry.register(manager);
  return registry;
}
