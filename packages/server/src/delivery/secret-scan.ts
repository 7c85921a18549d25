/**
 * The secret scan that runs before every push (SPEC 9): the added lines of every commit of the run branch
 * (base..snapshot, so a key added in iteration 1 and deleted in iteration 2 is still found: the history
 * would carry it) and the names of the files it adds. A finding blocks delivery with
 * `AG_ERR_DELIVERY_SECRET_DETECTED` naming the file and line — never the secret itself — and nothing is
 * pushed.
 *
 * What counts: private keys, cloud and forge token shapes (the formats their vendors document), values
 * assigned to secret-looking names, long high-entropy strings, and files that hold credentials by name
 * (`.env`, `id_rsa`, `*.pem` …). The pure part ({@link scanPatch}) is separate from the git call so it can
 * be tested on text.
 */
import path from 'node:path';
import { AgentGateError } from '../errors.js';
import { runGit } from '../workspace/git.js';

export type SecretKind =
  | 'private_key'
  | 'aws_access_key'
  | 'aws_secret_key'
  | 'github_token'
  | 'gitlab_token'
  | 'slack_token'
  | 'google_api_key'
  | 'stripe_key'
  | 'model_api_key'
  | 'npm_token'
  | 'assigned_secret'
  | 'high_entropy'
  | 'forbidden_file';

export interface SecretFinding {
  readonly file: string;
  /** 1-based line in the new file; absent for file-name findings. */
  readonly line?: number;
  readonly kind: SecretKind;
}

const DESCRIPTIONS: Readonly<Record<SecretKind, string>> = {
  private_key: 'a private key',
  aws_access_key: 'an AWS access key id',
  aws_secret_key: 'an AWS secret access key',
  github_token: 'a GitHub token',
  gitlab_token: 'a GitLab token',
  slack_token: 'a Slack token',
  google_api_key: 'a Google API key',
  stripe_key: 'a Stripe live key',
  model_api_key: 'a model provider API key',
  npm_token: 'an npm token',
  assigned_secret: 'a value assigned to a secret-looking name',
  high_entropy: 'a high-entropy string (looks like a random token)',
  forbidden_file: 'a file that holds credentials by name',
};

/** Token shapes as their vendors document them. */
const TOKEN_PATTERNS: readonly { kind: SecretKind; pattern: RegExp }[] = [
  { kind: 'private_key', pattern: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----/ },
  { kind: 'aws_access_key', pattern: /\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b/ },
  { kind: 'aws_secret_key', pattern: /aws_?secret_?access_?key\s*["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}\b/i },
  { kind: 'github_token', pattern: /\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}\b/ },
  { kind: 'gitlab_token', pattern: /\bgl(?:pat|ptt|dt|rt|soat|cbt|ft|imt|agent)-[A-Za-z0-9_-]{20,}\b/ },
  { kind: 'slack_token', pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/ },
  { kind: 'google_api_key', pattern: /\bAIza[0-9A-Za-z_-]{35}\b/ },
  { kind: 'stripe_key', pattern: /\b[sr]k_live_[0-9A-Za-z]{20,}\b/ },
  { kind: 'model_api_key', pattern: /\bsk-ant-[A-Za-z0-9_-]{20,}|\bsk-(?:proj-)?[A-Za-z0-9_-]{40,}/ },
  { kind: 'npm_token', pattern: /\bnpm_[A-Za-z0-9]{36}\b/ },
];

/** `password = "…"`, `API_KEY: …`, `"client_secret": "…"`: the value is group 1. */
const ASSIGNMENT = /(?:secret|token|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|credential)[A-Za-z0-9_.-]*["']?\s*[:=]\s*["']([^"'\s]{16,})["']/i;
/** Candidate random strings: long runs of base64/url-safe characters. */
const LONG_TOKEN = /[A-Za-z0-9+/_=-]{40,}/g;
/** Values that are references or placeholders, not secrets. */
const PLACEHOLDER = /^(?:\$\{?|%|<|\{\{|process\.env|os\.environ|env\.|example|changeme|xxx|your[_-])/i;

/** Files whose name says they hold credentials; templates (`.env.example`) are fine. */
const FORBIDDEN_NAMES = new Set(['.env', 'id_rsa', 'id_dsa', 'id_ecdsa', 'id_ed25519', '.netrc', '.pgpass', '.git-credentials', 'credentials.json', '.htpasswd']);
const FORBIDDEN_EXTENSIONS = new Set(['.pem', '.key', '.p12', '.pfx', '.jks', '.keystore', '.ppk']);
const TEMPLATE_SUFFIX = /\.(?:example|sample|template|dist)$/i;
/** Lockfiles are full of integrity hashes; only token shapes are searched there. */
const LOCKFILES = new Set(['package-lock.json', 'pnpm-lock.yaml', 'yarn.lock', 'Cargo.lock', 'poetry.lock', 'go.sum', 'composer.lock', 'Gemfile.lock']);

export function isForbiddenFile(file: string): boolean {
  const base = path.posix.basename(file);
  if (TEMPLATE_SUFFIX.test(base)) return false;
  if (FORBIDDEN_NAMES.has(base) || /^\.env\.[A-Za-z0-9_-]+$/.test(base)) return true;
  if (file.split('/').includes('.aws') && base === 'credentials') return true;
  return FORBIDDEN_EXTENSIONS.has(path.posix.extname(base).toLowerCase());
}

/** Shannon entropy in bits per character. */
export function shannonEntropy(text: string): number {
  const counts = new Map<string, number>();
  for (const char of text) counts.set(char, (counts.get(char) ?? 0) + 1);
  let entropy = 0;
  for (const count of counts.values()) {
    const p = count / text.length;
    entropy -= p * Math.log2(p);
  }
  return entropy;
}

function looksRandom(token: string, minEntropy: number): boolean {
  if (/^[0-9a-f]+$/i.test(token)) return false; // hashes and ids: hex tops out at 4 bits a character
  if (!/[a-z]/.test(token) || !/[A-Z]/.test(token) || !/[0-9]/.test(token)) return false;
  return shannonEntropy(token) >= minEntropy;
}

/** The findings of one added line. */
export function scanLine(text: string, file: string): SecretKind | undefined {
  for (const { kind, pattern } of TOKEN_PATTERNS) if (pattern.test(text)) return kind;
  if (LOCKFILES.has(path.posix.basename(file))) return undefined;
  const assigned = ASSIGNMENT.exec(text)?.[1];
  if (assigned !== undefined && !PLACEHOLDER.test(assigned) && looksRandom(assigned, 3.5)) return 'assigned_secret';
  for (const match of text.matchAll(LONG_TOKEN)) {
    const token = match[0];
    if (/^sha(?:1|256|384|512)-/.test(text.slice(Math.max(0, (match.index ?? 0) - 7), match.index))) continue;
    if (looksRandom(token, 4.5)) return 'high_entropy';
  }
  return undefined;
}

/**
 * Scans the output of `git log -p -U0` (or a plain diff): added lines of every file, and the names of
 * added files. At most `limit` findings.
 */
export function scanPatch(patch: string, limit = 20): SecretFinding[] {
  const findings: SecretFinding[] = [];
  const seen = new Set<string>();
  const add = (finding: SecretFinding): void => {
    const key = `${finding.file}\0${finding.line ?? ''}\0${finding.kind}`;
    if (seen.has(key) || findings.length >= limit) return;
    seen.add(key);
    findings.push(finding);
  };
  let file: string | undefined;
  let line = 0;
  for (const raw of patch.split('\n')) {
    if (raw.startsWith('+++ ')) {
      const name = raw.slice(4);
      file = name === '/dev/null' ? undefined : unquote(name).replace(/^b\//, '');
      if (file !== undefined && isForbiddenFile(file)) add({ file, kind: 'forbidden_file' });
      continue;
    }
    if (raw.startsWith('@@')) {
      const start = /\+(\d+)/.exec(raw)?.[1];
      line = start === undefined ? 0 : Number(start);
      continue;
    }
    if (raw.startsWith('Binary files ')) {
      const binary = / and (?:"?b\/)(.+?)"? differ$/.exec(raw)?.[1];
      if (binary !== undefined && isForbiddenFile(binary)) add({ file: binary, kind: 'forbidden_file' });
      continue;
    }
    if (file === undefined || !raw.startsWith('+')) continue;
    const kind = scanLine(raw.slice(1), file);
    if (kind !== undefined) add({ file, line, kind });
    line += 1;
  }
  return findings;
}

/** git quotes unusual paths as C strings: `"a\\tb"`. Enough unquoting to name the file. */
function unquote(name: string): string {
  if (!name.startsWith('"') || !name.endsWith('"')) return name;
  return name.slice(1, -1).replace(/\\(.)/g, '$1');
}

export function describeFinding(finding: SecretFinding): string {
  return `${DESCRIPTIONS[finding.kind]} in ${finding.file}${finding.line === undefined ? '' : ` (line ${finding.line})`}`;
}

/** The error that blocks delivery; names the files, never the values. */
export function secretDetectedError(findings: readonly SecretFinding[], branch: string): AgentGateError {
  const listed = findings.slice(0, 5).map(describeFinding);
  const more = findings.length > 5 ? `, and ${findings.length - 5} more` : '';
  return new AgentGateError(
    'AG_ERR_DELIVERY_SECRET_DETECTED',
    `Delivery blocked: the run branch ${branch} adds ${listed.join('; ')}${more}. Nothing was pushed; remove the secret from the branch history (the branch stays local).`,
    { details: { branch, findings: findings.map((finding) => ({ ...finding })) } },
  );
}

export interface BranchScan {
  /** Repository holding both commits. */
  repoPath: string;
  baseSha: string;
  sha: string;
  branch: string;
  signal: AbortSignal;
}

/**
 * Scans every commit in `baseSha..sha` and throws `AG_ERR_DELIVERY_SECRET_DETECTED` on a finding. A
 * commit the repository does not have is `AG_ERR_DELIVERY_PUSH` (not retryable): nothing can be pushed.
 */
export async function assertNoSecrets(scan: BranchScan): Promise<void> {
  const patch = await runGit({
    cwd: scan.repoPath,
    args: [
      '-c',
      'core.quotePath=false',
      'log',
      '-p',
      '-U0',
      '--no-color',
      '--no-ext-diff',
      '--no-textconv',
      '--no-renames',
      '--format=format:',
      `${scan.baseSha}..${scan.sha}`,
      '--',
    ],
    signal: scan.signal,
    failAs: 'AG_ERR_DELIVERY_PUSH',
    what: `scan ${scan.sha.slice(0, 12)} for secrets before pushing`,
    hardened: true,
  }).catch((error: unknown) => {
    if (error instanceof AgentGateError && error.code === 'AG_ERR_DELIVERY_PUSH') {
      throw new AgentGateError('AG_ERR_DELIVERY_PUSH', error.message, { cause: error, retryable: false });
    }
    throw error;
  });
  const findings = scanPatch(patch);
  if (findings.length > 0) throw secretDetectedError(findings, scan.branch);
}
