/**
 * Secret hygiene. AgentGate's own credentials (API key, forge tokens) must never reach an agent or a
 * gate process, a log line, a stored event or a transcript.
 */

/** Environment variables that hold AgentGate's own secrets: never passed to agents or gates. */
export const SERVER_SECRET_ENV = [
  'AGENTGATE_API_KEY',
  'AGENTGATE_GITHUB_TOKEN',
  'AGENTGATE_GITLAB_TOKEN',
  'GITHUB_TOKEN',
  'GH_TOKEN',
  'GITLAB_TOKEN',
  'GL_TOKEN',
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
  return { ...withoutVars(base, drop), ...withoutVars(extra, drop) };
}

/** Environment for a gate process: the server's secrets and the agent's model credentials removed. */
export function gateEnv(base: Env): Record<string, string> {
  return withoutVars(base, [...SERVER_SECRET_ENV, ...MODEL_SECRET_ENV, ...REPOSITORY_ENV]);
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
