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
export function makeRepo(files: Record<string, string> = {}, options: { example?: boolean } = {}): TempRepo {
  const root = mkdtempSync(join(tmpdir(), 'agentgate-test-'));
  const repo = join(root, 'repo');
  mkdirSync(repo);
  if (options.example !== false) cpSync(EXAMPLE_REPO, repo, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(repo, path)), { recursive: true });
    writeFileSync(join(repo, path), content);
  }
  git(repo, 'init', '-q', '-b', 'main');
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
   * Wrong on iteration 1, fixed on iteration 2. Keeps the feedback it received (environment and stdin)
   * in the run's artifacts: received-feedback-<n>.txt and received-stdin-<n>.txt.
   */
  failThenPass: `artifacts=$(dirname "$AGENTGATE_PROMPT_FILE")
printf '%s' "$AGENTGATE_FEEDBACK" > "$artifacts/received-feedback-$AGENTGATE_ITERATION.txt"
cat > "$artifacts/received-stdin-$AGENTGATE_ITERATION.txt"
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
  /** Always wrong; counts its invocations in $COUNTER_FILE. */
  alwaysWrong: `echo x >> "$COUNTER_FILE"
cat > src/math.js <<JS
export function add(a, b) { return a + b + $AGENTGATE_ITERATION; }
export function multiply(a, b) { return 0; }
JS
echo "attempt $AGENTGATE_ITERATION"`,
} as const;
