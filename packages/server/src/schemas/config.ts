/**
 * Process configuration (SPEC section 12): command-line flags over environment variables over defaults.
 *
 * Everything is validated once at start-up, so a typo such as `AGENTGATE_MAX_CONCURRENT=two` stops the
 * process with a message naming the variable (or flag) instead of surfacing later as a strange runtime
 * failure. Empty values count as unset, because `AGENTGATE_API_KEY=` in a `.env` file or a compose file
 * means "not configured", not "the empty key".
 */

import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { AgentGateError } from '../errors.js';
import { SANDBOX_ENV, SANDBOX_MODES, type SandboxMode } from '../util/sandbox.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The resolved configuration every component reads; secrets are present only when configured. */
export interface AgentGateConfig {
  /** Absolute path of the data directory (store, worktrees, run artifacts). */
  home: string;
  /** When set, every route except `/health*` requires `Authorization: Bearer <key>`. */
  apiKey?: string;
  maxConcurrent: number;
  githubToken?: string;
  githubApiUrl: string;
  gitlabToken?: string;
  gitlabUrl: string;
  logLevel: LogLevel;
  port: number;
  host: string;
  /**
   * Default sandbox mode of tasks that name none (`AGENTGATE_SANDBOX`: auto | bwrap | none); absent means
   * `auto`. See util/sandbox.ts and docs/security.md.
   */
  sandbox?: SandboxMode;
  /**
   * `AGENTGATE_REQUEUE_INTERRUPTED` (true | false, default false): a run whose process died is failed
   * with `AG_ERR_RUN_INTERRUPTED` either way; with true its work order is queued again and re-run.
   */
  requeueInterrupted?: boolean;
  /** `AGENTGATE_RECONCILE_INTERVAL_MS`: period of the server's reconciliation of dead owners' runs (default 30 s). */
  reconcileIntervalMs?: number;
  /**
   * `AGENTGATE_LEASE_TTL_MS`: how long a run's lease lives without a heartbeat (default 60 s; renewed every
   * third of it). A process that stopped (crash, `kill -9`, SIGSTOP) is noticed this long after its last
   * renewal, plus one reconciliation period; shorter means faster take-over and more store writes.
   */
  leaseTtlMs?: number;
  /**
   * `AGENTGATE_LOCAL_WORKSPACES` (allow | deny, default allow): whether work orders may name a `local`
   * workspace path. A deployment whose workers run on other machines than its API nodes sets deny, so a
   * path they cannot reach is refused at submission (docs/deployment.md).
   */
  localWorkspaces?: 'allow' | 'deny';
  /**
   * `AGENTGATE_DATABASE_URL` (`postgres://user:password@host:5432/db`): store everything in this PostgreSQL
   * database, which several AgentGate processes may share, instead of `$AGENTGATE_HOME/agentgate.db`.
   * A secret (it may hold a password): never logged, never passed to agents or gates.
   */
  databaseUrl?: string;
  /**
   * `AGENTGATE_WORKTREE_POOL` (on | off, also true/false/1/0; default on): reuse the worktrees of finished
   * runs of the same repository instead of a full checkout and removal per run (docs/workspaces.md
   * "Reused worktrees"). Absent means on.
   */
  worktreePool?: boolean;
}

/** Values from command-line flags. Numbers may arrive as strings, exactly as the CLI parser gives them. */
export interface ConfigOverrides {
  home?: string;
  apiKey?: string;
  maxConcurrent?: number | string;
  githubToken?: string;
  githubApiUrl?: string;
  gitlabToken?: string;
  gitlabUrl?: string;
  logLevel?: string;
  port?: number | string;
  host?: string;
  sandbox?: string;
  requeueInterrupted?: boolean | string;
  reconcileIntervalMs?: number | string;
  leaseTtlMs?: number | string;
  localWorkspaces?: string;
  databaseUrl?: string;
  worktreePool?: boolean | string;
}

export const CONFIG_DEFAULTS = {
  home: '~/.agentgate',
  maxConcurrent: 2,
  githubApiUrl: 'https://api.github.com',
  gitlabUrl: 'https://gitlab.com',
  logLevel: 'info',
  port: 3001,
  host: '127.0.0.1',
} as const satisfies Partial<Record<keyof AgentGateConfig, string | number>>;

/** Upper bound for concurrent runs: each run owns an agent process, a worktree and gate processes. */
const MAX_CONCURRENT_LIMIT = 256;

function integer(min: number, max: number, description: string) {
  return z.string().transform((raw, ctx) => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < min || value > max) {
      ctx.addIssue({ code: 'custom', message: `expected ${description}, got ${JSON.stringify(raw)}` });
      return z.NEVER;
    }
    return value;
  });
}

const HttpUrl = z.string().transform((raw, ctx) => {
  const protocol = URL.canParse(raw) ? new URL(raw).protocol : undefined;
  if (protocol !== 'http:' && protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `expected an http(s) URL, got ${JSON.stringify(raw)}` });
    return z.NEVER;
  }
  // API clients append paths; a trailing slash would double it.
  return raw.replace(/\/+$/, '');
});

const Secret = z.string();

/** A PostgreSQL connection URL. The value is never echoed in the error: it may hold a password. */
const DatabaseUrl = z.string().refine(
  (raw) => URL.canParse(raw) && ['postgres:', 'postgresql:'].includes(new URL(raw).protocol),
  { error: 'expected a postgres:// or postgresql:// URL (value not shown: it may contain a password)' },
);

const Flag = z.string().transform((raw, ctx) => {
  const value = raw.toLowerCase();
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  ctx.addIssue({ code: 'custom', message: `expected true or false, got ${JSON.stringify(raw)}` });
  return z.NEVER;
});

const OnOff = z.string().transform((raw, ctx) => {
  const value = raw.toLowerCase();
  if (value === 'on' || value === 'true' || value === '1') return true;
  if (value === 'off' || value === 'false' || value === '0') return false;
  ctx.addIssue({ code: 'custom', message: `expected on or off, got ${JSON.stringify(raw)}` });
  return z.NEVER;
});

interface Field<T> {
  env: string;
  flag: string;
  schema: z.ZodType<T, string>;
}

/** The fields, each with its environment variable, its flag and a schema from the raw string. */
const FIELDS = {
  home: { env: 'AGENTGATE_HOME', flag: '--home', schema: z.string() },
  apiKey: { env: 'AGENTGATE_API_KEY', flag: '--api-key', schema: Secret },
  maxConcurrent: { env: 'AGENTGATE_MAX_CONCURRENT', flag: '--max-concurrent', schema: integer(1, MAX_CONCURRENT_LIMIT, `a positive integer (1-${MAX_CONCURRENT_LIMIT})`) },
  githubToken: { env: 'AGENTGATE_GITHUB_TOKEN', flag: '--github-token', schema: Secret },
  githubApiUrl: { env: 'AGENTGATE_GITHUB_API_URL', flag: '--github-api-url', schema: HttpUrl },
  gitlabToken: { env: 'AGENTGATE_GITLAB_TOKEN', flag: '--gitlab-token', schema: Secret },
  gitlabUrl: { env: 'AGENTGATE_GITLAB_URL', flag: '--gitlab-url', schema: HttpUrl },
  logLevel: {
    env: 'AGENTGATE_LOG_LEVEL',
    flag: '--log-level',
    schema: z
      .string()
      .transform((raw) => raw.toLowerCase())
      .pipe(z.enum(LOG_LEVELS, { error: (issue) => `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(issue.input)}` })),
  },
  port: { env: 'AGENTGATE_PORT', flag: '--port', schema: integer(0, 65_535, 'a port number (0-65535)') },
  host: {
    env: 'AGENTGATE_HOST',
    flag: '--host',
    schema: z.string().regex(/^\S+$/, { error: (issue) => `expected a host name or address, got ${JSON.stringify(issue.input)}` }),
  },
  sandbox: {
    env: SANDBOX_ENV,
    flag: '--sandbox',
    schema: z.string().pipe(z.enum(SANDBOX_MODES, { error: (issue) => `expected one of ${SANDBOX_MODES.join(', ')}, got ${JSON.stringify(issue.input)}` })),
  },
  requeueInterrupted: { env: 'AGENTGATE_REQUEUE_INTERRUPTED', flag: '--requeue-interrupted', schema: Flag },
  reconcileIntervalMs: {
    env: 'AGENTGATE_RECONCILE_INTERVAL_MS',
    flag: '--reconcile-interval-ms',
    schema: integer(1_000, 86_400_000, 'milliseconds between 1000 and 86400000'),
  },
  leaseTtlMs: { env: 'AGENTGATE_LEASE_TTL_MS', flag: '--lease-ttl-ms', schema: integer(3_000, 3_600_000, 'milliseconds between 3000 and 3600000') },
  localWorkspaces: {
    env: 'AGENTGATE_LOCAL_WORKSPACES',
    flag: '--local-workspaces',
    schema: z
      .string()
      .transform((raw) => raw.toLowerCase())
      .pipe(z.enum(['allow', 'deny'], { error: (issue) => `expected allow or deny, got ${JSON.stringify(issue.input)}` })),
  },
  databaseUrl: { env: 'AGENTGATE_DATABASE_URL', flag: '--database-url', schema: DatabaseUrl },
  worktreePool: { env: 'AGENTGATE_WORKTREE_POOL', flag: '--worktree-pool', schema: OnOff },
} as const satisfies Record<keyof AgentGateConfig, Field<unknown>>;

/** Environment variable names, e.g. for `--help` text and docs. */
export const CONFIG_ENV_VARS = Object.fromEntries(Object.entries(FIELDS).map(([key, field]) => [key, field.env])) as Record<keyof AgentGateConfig, string>;

export interface ConfigIssue {
  /** The variable or flag that holds the bad value, e.g. `AGENTGATE_PORT` or `--port`. */
  variable: string;
  message: string;
}

/** Expands `~` and makes the path absolute, so every component agrees on one directory. */
function resolveHome(raw: string, env: Readonly<Record<string, string | undefined>>): string {
  const home = env.HOME !== undefined && env.HOME.trim() !== '' ? env.HOME : homedir();
  let path = raw;
  if (path === '~') path = home;
  else if (path.startsWith('~/')) path = join(home, path.slice(2));
  return isAbsolute(path) ? resolve(path) : resolve(process.cwd(), path);
}

function present(value: string | number | boolean | undefined): string | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  return text === '' ? undefined : text;
}

/**
 * Loads the configuration: each value from `overrides` (flags), else `env`, else the default. All bad values
 * are reported together in one AG_ERR_CONFIG_INVALID whose message names each variable or flag, e.g.
 * `AGENTGATE_MAX_CONCURRENT: expected a positive integer (1-256), got "abc"`.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>> = process.env, overrides: ConfigOverrides = {}): AgentGateConfig {
  const issues: ConfigIssue[] = [];

  function read<T>(field: Field<T>, flagValue: string | number | boolean | undefined): T | undefined {
    const fromFlag = present(flagValue);
    const raw = fromFlag ?? present(env[field.env]);
    if (raw === undefined) return undefined;
    const result = field.schema.safeParse(raw);
    if (result.success) return result.data;
    const variable = fromFlag !== undefined ? field.flag : field.env;
    for (const issue of result.error.issues) issues.push({ variable, message: issue.message });
    return undefined;
  }

  const home = read(FIELDS.home, overrides.home);
  const apiKey = read(FIELDS.apiKey, overrides.apiKey);
  const maxConcurrent = read(FIELDS.maxConcurrent, overrides.maxConcurrent);
  const githubToken = read(FIELDS.githubToken, overrides.githubToken);
  const githubApiUrl = read(FIELDS.githubApiUrl, overrides.githubApiUrl);
  const gitlabToken = read(FIELDS.gitlabToken, overrides.gitlabToken);
  const gitlabUrl = read(FIELDS.gitlabUrl, overrides.gitlabUrl);
  const logLevel = read(FIELDS.logLevel, overrides.logLevel);
  const port = read(FIELDS.port, overrides.port);
  const host = read(FIELDS.host, overrides.host);
  const sandbox = read(FIELDS.sandbox, overrides.sandbox);
  const requeueInterrupted = read(FIELDS.requeueInterrupted, overrides.requeueInterrupted);
  const reconcileIntervalMs = read(FIELDS.reconcileIntervalMs, overrides.reconcileIntervalMs);
  const leaseTtlMs = read(FIELDS.leaseTtlMs, overrides.leaseTtlMs);
  const localWorkspaces = read(FIELDS.localWorkspaces, overrides.localWorkspaces);
  const databaseUrl = read(FIELDS.databaseUrl, overrides.databaseUrl);
  const worktreePool = read(FIELDS.worktreePool, overrides.worktreePool);

  if (issues.length > 0) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', issues.map((issue) => `${issue.variable}: ${issue.message}`).join('; '), {
      details: { issues },
    });
  }

  const config: AgentGateConfig = {
    home: resolveHome(home ?? CONFIG_DEFAULTS.home, env),
    maxConcurrent: maxConcurrent ?? CONFIG_DEFAULTS.maxConcurrent,
    githubApiUrl: githubApiUrl ?? CONFIG_DEFAULTS.githubApiUrl,
    gitlabUrl: gitlabUrl ?? CONFIG_DEFAULTS.gitlabUrl,
    logLevel: logLevel ?? CONFIG_DEFAULTS.logLevel,
    port: port ?? CONFIG_DEFAULTS.port,
    host: host ?? CONFIG_DEFAULTS.host,
  };
  if (apiKey !== undefined) config.apiKey = apiKey;
  if (githubToken !== undefined) config.githubToken = githubToken;
  if (gitlabToken !== undefined) config.gitlabToken = gitlabToken;
  if (sandbox !== undefined) config.sandbox = sandbox;
  if (requeueInterrupted !== undefined) config.requeueInterrupted = requeueInterrupted;
  if (reconcileIntervalMs !== undefined) config.reconcileIntervalMs = reconcileIntervalMs;
  if (leaseTtlMs !== undefined) config.leaseTtlMs = leaseTtlMs;
  if (localWorkspaces !== undefined) config.localWorkspaces = localWorkspaces;
  if (databaseUrl !== undefined) config.databaseUrl = databaseUrl;
  if (worktreePool !== undefined) config.worktreePool = worktreePool;
  return config;
}
