/**
 * Secret hygiene. AgentGate's own credentials (API key, forge tokens) must never reach an agent or a
 * gate process, a log line, a stored event or a transcript.
 */

import { dirname, isAbsolute, resolve as resolvePath, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Environment variables that hold AgentGate's own secrets: never passed to agents or gates. */
export const SERVER_SECRET_ENV = [
  'AGENTGATE_API_KEY',
  'AGENTGATE_GITHUB_TOKEN',
  'AGENTGATE_GITLAB_TOKEN',
  'GITHUB_TOKEN',
  'GH_TOKEN',
  'GITLAB_TOKEN',
  'GL_TOKEN',
  // The store's credentials: a PostgreSQL URL carries its password, and libpq's variables may too.
  'AGENTGATE_DATABASE_URL',
  'PGPASSWORD',
  'PGPASSFILE',
] as const;

/** Model credentials an agent may need but a gate (the project's own test commands) never does. */
export const MODEL_SECRET_ENV = ['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'OPENAI_API_KEY', 'CODEX_API_KEY'] as const;

/**
 * Variables a parent git process (a hook, `git rebase --exec`) leaves behind that would point git at
 * another repository, index or work tree: an agent's `git add` in its worktree would land in the user's
 * index. Removed from every git, agent and gate environment.
 */
export const REPOSITORY_ENV = [
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_INDEX_FILE',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_COMMON_DIR',
  'GIT_NAMESPACE',
  'GIT_PREFIX',
  'GIT_CEILING_DIRECTORIES',
] as const;

export type Env = Record<string, string | undefined>;

/**
 * Variables a package manager sets for the script it runs (`pnpm agentgate …`, `npm exec`): its
 * configuration (`npm_config_reporter` made npm print warnings into a gate's feedback), AgentGate's own
 * package.json fields, the lifecycle event and pnpm's state. They describe AgentGate's package, not the
 * repository's, so they never reach setup steps, gates or agents. Upper-case `NPM_CONFIG_*`, the form a
 * user sets on purpose (a registry mirror), is kept.
 */
const PACKAGE_MANAGER_ENV = /^(npm_|PNPM_|pnpm_)|^INIT_CWD$/;

/** Directories holding AgentGate itself: its module directory and every ancestor. */
function ancestors(dir: string): string[] {
  const out: string[] = [];
  for (let current = resolvePath(dir); ; current = dirname(current)) {
    out.push(current);
    if (dirname(current) === current) return out;
  }
}

const OWN_ROOTS: readonly string[] = ancestors(dirname(fileURLToPath(import.meta.url)));

/**
 * Whether a PATH entry is a `node_modules/.bin` of AgentGate's own installation (a package manager puts
 * those first when it starts AgentGate: a bare `vitest` in a gate then ran AgentGate's vitest) or a
 * package manager's `node-gyp-bin` shim directory.
 */
function isOwnToolDir(entry: string, roots: readonly string[]): boolean {
  if (!isAbsolute(entry)) return false;
  const normal = resolvePath(entry);
  if (normal.split(sep).at(-1) === 'node-gyp-bin') return true;
  const marker = `${sep}node_modules${sep}`;
  const at = normal.indexOf(marker);
  if (at < 0 || !normal.endsWith(`${sep}node_modules${sep}.bin`)) return false;
  // The directory that owns the outermost node_modules must be AgentGate's directory or one of its ancestors.
  const owner = normal.slice(0, at) || sep;
  return roots.includes(owner);
}

/**
 * The environment without what a package manager that started AgentGate added (see
 * {@link PACKAGE_MANAGER_ENV}) and without AgentGate's own `.bin` directories on PATH, so setup steps,
 * gates and agents find the repository's tools and its pinned package manager, not AgentGate's.
 * `roots` defaults to AgentGate's install directory and its ancestors (tests pass their own).
 */
export function withoutToolLeaks(env: Env, roots: readonly string[] = OWN_ROOTS): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || PACKAGE_MANAGER_ENV.test(key)) continue;
    out[key] = value;
  }
  for (const key of Object.keys(out).filter((k) => k.toUpperCase() === 'PATH')) {
    const path = out[key] ?? '';
    out[key] = path
      .split(':')
      .filter((entry) => entry !== '' && !isOwnToolDir(entry, roots))
      .join(':');
  }
  // pnpm points NODE_PATH at AgentGate's store; a user's own NODE_PATH elsewhere is kept.
  const nodePath = out['NODE_PATH'];
  if (nodePath !== undefined) {
    const kept = nodePath.split(':').filter((entry) => entry !== '' && !(isAbsolute(entry) && roots.some((root) => root !== sep && resolvePath(entry).startsWith(`${root}${sep}node_modules${sep}`))));
    if (kept.length === 0) delete out['NODE_PATH'];
    else out['NODE_PATH'] = kept.join(':');
  }
  return out;
}

/** A copy of `env` without the named variables (and without undefined values). */
export function withoutVars(env: Env, names: readonly string[]): Record<string, string> {
  const drop = new Set(names);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && !drop.has(key)) out[key] = value;
  }
  return out;
}

/** Environment for an agent process: the server's secrets removed, model credentials kept. */
export function agentEnv(base: Env, extra: Record<string, string> = {}): Record<string, string> {
  const drop = [...SERVER_SECRET_ENV, ...REPOSITORY_ENV];
  return { ...withoutVars(withoutToolLeaks(base), drop), ...withoutVars(extra, drop) };
}

/** Environment for a gate process: the server's secrets and the agent's model credentials removed. */
export function gateEnv(base: Env): Record<string, string> {
  return withoutVars(withoutToolLeaks(base), [...SERVER_SECRET_ENV, ...MODEL_SECRET_ENV, ...REPOSITORY_ENV]);
}

const REDACTED = '[REDACTED]';

/** Well-known token shapes redacted even when the value itself is not known to us. */
const TOKEN_PATTERNS: readonly RegExp[] = [
  /\bgh[pousr]_[A-Za-z0-9]{20,}\b/g, // GitHub tokens
  /\bgithub_pat_[A-Za-z0-9_]{20,}\b/g,
  /\bglpat-[A-Za-z0-9_-]{20,}\b/g, // GitLab personal access tokens
  /\bsk-ant-[A-Za-z0-9_-]{10,}\b/g, // Anthropic keys
  /\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b/g, // OpenAI keys
  /\b(Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/gi,
];

/**
 * Replaces known secret values and well-known token shapes with `[REDACTED]`. Values shorter than 6
 * characters are ignored (redacting them would mangle ordinary text).
 */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 6) out = out.split(secret).join(REDACTED);
  }
  for (const pattern of TOKEN_PATTERNS) {
    out = out.replace(pattern, (match, bearer: unknown) => (typeof bearer === 'string' && /^bearer$/i.test(bearer) ? `${bearer} ${REDACTED}` : REDACTED));
  }
  return out;
}

/** The secret values present in an environment (for {@link redact}). */
export function secretValues(env: Env): string[] {
  return [...SERVER_SECRET_ENV, ...MODEL_SECRET_ENV].flatMap((name) => {
    const value = env[name];
    return value ? [value] : [];
  });
}
