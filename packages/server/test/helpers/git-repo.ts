/** Real git repositories in unique temp dirs for engine and CLI tests. */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const EXAMPLE_REPO = join(REPO_ROOT, 'examples', 'calculator');

const IDENTITY = ['-c', 'user.name=Test User', '-c', 'user.email=test@example.com'];

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', [...IDENTITY, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export interface TempRepo {
  root: string;
  repo: string;
  home: string;
  cleanup(): void;
}

/**
 * A temp dir holding `repo/` (a git repository with one commit on main, built from the calculator
 * example plus `files`) and `home/` (an AGENTGATE_HOME).
 */
export function makeRepo(files: Record<string, string> = {}, options: { example?: boolean; objectFormat?: 'sha256' } = {}): TempRepo {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-test-'));
  const repo = join(root, 'repo');
  mkdirSync(repo);
  if (options.example !== false) cpSync(EXAMPLE_REPO, repo, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(repo, path)), { recursive: true });
    writeFileSync(join(repo, path), content);
  }
  git(repo, 'init', '-q', '-b', 'main', ...(options.objectFormat === undefined ? [] : [`--object-format=${options.objectFormat}`]));
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'initial');
  return { root, repo, home: join(root, 'home'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** Writes an executable agent script into the temp root (outside the repository) and returns its path. */
export function writeAgent(root: string, name: string, body: string): string {
  const path = join(root, `${name}.sh`);
  writeFileSync(path, `#!/bin/sh\nset -eu\n${body}\n`, { mode: 0o755 });
  return path;
}

/** Snapshot of what a user would notice in their repository. */
export function userTreeState(repo: string): { head: string; branch: string; status: string } {
  return { head: git(repo, 'rev-parse', 'HEAD'), branch: git(repo, 'branch', '--show-current'), status: git(repo, 'status', '--porcelain') };
}

/** Agent scripts shared by engine and CLI tests (they run in the worktree, with AGENTGATE_* set). */
export const AGENTS = {
  /** Implements math.js correctly at once. */
  correct: `cat > src/math.js <<'JS'
export function add(a, b) { return a + b; }
export function multiply(a, b) { return a * b; }
JS
echo "implemented"`,
  /**
   * Wrong on iteration 1, fixed on iteration 2. Reports what it received (environment and stdin) in its
   * own output, base64-encoded on `received-feedback-<n>:` / `received-stdin-<n>:` lines, so the test can
   * read it back from the run's events even when the agent is sandboxed (it can write only its workspace).
   */
  failThenPass: `printf 'received-feedback-%s: %s\\n' "$AGENTGATE_ITERATION" "$(printf '%s' "$AGENTGATE_FEEDBACK" | base64 -w0)"
printf 'received-stdin-%s: %s\\n' "$AGENTGATE_ITERATION" "$(base64 -w0)"
if [ "$AGENTGATE_ITERATION" = "1" ]; then
cat > src/math.js <<'JS'
export function add(a, b) { return a + b; }
export function multiply(a, b) { return a + b; }
JS
else
cat > src/math.js <<'JS'
export function add(a, b) { return a + b; }
export function multiply(a, b) { return a * b; }
JS
fi
echo "attempt $AGENTGATE_ITERATION"`,
  /** Always wrong; says `attempt <n>` on every invocation. */
  alwaysWrong: `cat > src/math.js <<JS
export function add(a, b) { return a + b + $AGENTGATE_ITERATION; }
export function multiply(a, b) { return 0; }
JS
echo "attempt $AGENTGATE_ITERATION"`,
} as const;

/** Everything the agent printed in a run, from the stored `agent_output` events (in seq order). */
export function agentOutput(events: ReadonlyArray<{ type: string; data: Record<string, unknown> }>): string {
  return events
    .filter((e) => e.type === 'agent_output')
    .map((e) => String(e.data['text']))
    .join('\n');
}

/** What a `failThenPass` agent reported it received in `iteration` (`feedback` or `stdin`). */
export function agentReceived(output: string, kind: 'feedback' | 'stdin', iteration: number): string {
  const match = new RegExp(`received-${kind}-${iteration}: ([A-Za-z0-9+/=]*)`).exec(output);
  if (match === null) throw new Error(`the agent did not report its ${kind} of iteration ${iteration}`);
  return Buffer.from(match[1] ?? '', 'base64').toString('utf8');
}
