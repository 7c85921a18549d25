/**
 * The git processes a run costs (SPEC 15): every one is a fork of the CLI's Node process. A `git` wrapper
 * first on PATH records each command the CLI runs (the CLI and the engine resolve `git` through PATH), so
 * these tests pin what an iteration may run: the gate plan read once, in one process, for the plan shown
 * before the run and the engine alike; no diff between trees that are equal; no tree-to-tree diff for
 * tamper detection that the snapshot already made; no `ls-files` after the checkout and no `rev-parse` for
 * the first snapshot (both read from the index the checkout wrote); an iteration with nothing to stage costs
 * one `status`; a staging snapshot commits without a `write-tree` first, and without an `add` when only
 * tracked files changed; a later iteration's changes since the base come from the earlier ones, not a diff; for a base commit with submodules, two processes more per staging snapshot (which
 * submodules the index holds, and `update-index` staging them instead of `git add`).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../helpers/cli.js';
import { git, makeRepo, writeAgent, type TempRepo } from '../helpers/git-repo.js';

const repos: TempRepo[] = [];
afterEach(() => {
  for (const r of repos.splice(0)) r.cleanup();
});

const REAL_GIT = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();

const FILES: Record<string, string> = {
  'verify.yaml': 'version: "1"\ntests:\n  - { name: state, command: "sh check.sh" }\n',
  'check.sh': '! grep -qx attempt src/state.txt\n',
  'src/state.txt': 'broken\n',
  ...Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`src/f${i}.txt`, `file ${i}\n`])),
};

/**
 * Runs `exec` with a command agent (`true`, or a script with this body) and returns the result and the git
 * commands the CLI ran, each without git's `-c` options, in no particular order (calls run concurrently).
 */
async function execLogged(agentBody: string | undefined, prepare?: (repo: string) => void): Promise<{ r: TempRepo; res: CliResult; commands: string[][] }> {
  const r = makeRepo(FILES, { example: false });
  repos.push(r);
  prepare?.(r.repo);
  const log = join(r.root, 'git-calls');
  const wrapper = join(r.root, 'bin');
  mkdirSync(log);
  mkdirSync(wrapper);
  // One file per call (named by the wrapper's pid), so concurrent calls never mix their lines.
  writeFileSync(join(wrapper, 'git'), `#!/bin/sh\nprintf '%s\\0' "$@" > '${log}/'$$\nexec '${REAL_GIT}' "$@"\n`);
  chmodSync(join(wrapper, 'git'), 0o755);
  const agent = agentBody === undefined ? 'true' : `sh ${writeAgent(r.root, 'agent', agentBody)}`;
  const res = await runCli(
    ['exec', '--path', r.repo, '--prompt', 'fix the state', '--agent', 'command', '--agent-command', agent, '--sandbox', 'none', '--max-iterations', '3', '--json'],
    { env: { AGENTGATE_HOME: r.home, PATH: `${wrapper}:${process.env['PATH'] ?? ''}` } },
  );
  const commands = readdirSync(log).map((file) => {
    const args = readFileSync(join(log, file), 'utf8').split('\0').slice(0, -1);
    const out: string[] = [];
    for (let i = 0; i < args.length; i += 1) {
      if (args[i] === '-c') i += 1;
      else out.push(args[i] ?? '');
    }
    return out;
  });
  return { r, res, commands };
}

/** The subcommand of a logged call (`--no-optional-locks status` → `status`). */
function subcommand(args: readonly string[]): string {
  return args.find((arg) => !arg.startsWith('-')) ?? '';
}

describe('git processes of a run', () => {
  it('a no-op iteration: the plan is read once in one process, and no diff runs between equal trees', async () => {
    const { r, res, commands } = await execLogged(undefined);
    expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
    // The plan shown before the run and the engine's plan: one `cat-file --batch` for both, no ls-tree.
    expect(commands.filter((args) => args.includes('cat-file'))).toEqual([['cat-file', '--batch']]);
    // The snapshot changed nothing: one `status` says so, so no add, no write-tree, no commit, no stats, no
    // patch, no tree-to-tree tamper check. Left: the work tree below the protected paths against the
    // snapshot (edits made after it), and new files there.
    expect(commands.filter((args) => subcommand(args) === 'diff')).toEqual([
      ['diff', '--name-status', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', '--ignore-submodules=dirty', expect.stringMatching(/^[0-9a-f]{40}$/), '--', ':(glob)verify.yaml', ':(glob).agentgate/verify.yaml'],
    ]);
    expect(commands.map(subcommand).sort()).toEqual(
      // CLI: the source and the plan (rev-parse, cat-file); the engine reuses that source. Workspace: the
      // uncommitted-changes status and the branch check (for-each-ref) alongside the checkout (read-tree;
      // its files and the base tree are read from the index it wrote). Snapshot: status, nothing else — it
      // is measured against the base commit and that tree. Verify: diff, ls-files.
      ['rev-parse', 'cat-file', 'status', 'for-each-ref', 'read-tree', 'status', 'diff', 'ls-files'].sort(),
    );
    // The documented artifact is still there: the iteration's patch against the base, empty.
    const runId = String(res.json?.['runId']);
    expect(readFileSync(join(r.home, 'runs', runId, 'iteration-1.patch'), 'utf8')).toBe('');
  });

  it('a repository with a submodule: git add leaves it out and update-index stages it, two processes more', async () => {
    const { res, commands } = await execLogged(undefined, (repo) => {
      mkdirSync(join(repo, 'vendor', 'lib'), { recursive: true });
      git(repo, 'update-index', '--add', '--cacheinfo', `160000,${git(repo, 'rev-parse', 'HEAD')},vendor/lib`);
      git(repo, 'commit', '-q', '-m', 'a submodule');
    });
    expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 1 });
    // The snapshot's staging: which submodules the index holds, everything else, then the submodules.
    const staging = commands.filter((args) => ['add', 'update-index'].includes(subcommand(args)) || args.some((arg) => arg.includes('vendor/lib')));
    expect(staging).toHaveLength(3);
    expect(staging).toEqual(
      expect.arrayContaining([
        ['ls-files', '-z', '--stage', '--', ':(top,literal)vendor/lib'],
        ['add', '--all', '--', ':(top)', ':(top,exclude,literal)vendor/lib'],
        ['update-index', '--remove', '--', 'vendor/lib'],
      ]),
    );
    // A base commit with submodules always stages (status does not look inside submodules): add,
    // write-tree (status saw no change, so the tree is checked before any commit — and it is the base's:
    // no commit) and the two submodule processes, four more than the no-op iteration without one.
    expect(commands.map(subcommand)).toContain('write-tree');
    expect(commands.map(subcommand)).not.toContain('commit');
    expect(commands).toHaveLength(12);
  });

  it('fail-then-pass: one diff gives iteration 1 its stats and its changes, and tamper detection reuses them', async () => {
    const { r, res, commands } = await execLogged('if grep -qx attempt src/state.txt; then echo fixed > src/state.txt; else echo attempt > src/state.txt; fi');
    expect(res.json).toMatchObject({ state: 'succeeded', result: 'passed', iterations: 2 });
    const names = commands.map(subcommand);
    expect(commands.filter((args) => args.includes('cat-file'))).toEqual([['cat-file', '--batch']]);
    expect(names).not.toContain('diff-tree');
    expect(names.filter((name) => name === 'commit')).toHaveLength(2);
    // Each commit reaches the user's repository by a copy of its new objects and one `update-ref` — no
    // `fetch`, which would cost five more processes inside git (publish-branch.ts).
    expect(names.filter((name) => name === 'update-ref')).toHaveLength(2);
    expect(names).not.toContain('fetch');
    const diffs = commands.filter((args) => subcommand(args) === 'diff');
    // Each iteration: `--raw --numstat` against the one before (the base for the first), the patch, the work
    // tree below the protected paths. Iteration 2's changes since the base are iteration 1's plus its own
    // entries (`--raw`): no diff against the base.
    expect(diffs.filter((args) => args.includes('--raw') && args.includes('--numstat'))).toHaveLength(2);
    expect(diffs.filter((args) => args.includes('--name-status') && !args.includes('--'))).toHaveLength(0);
    expect(diffs.filter((args) => args.some((arg) => arg.startsWith('--output=')))).toHaveLength(2);
    expect(diffs).toHaveLength(6);
    // Only the CLI's (the engine reuses its source): the first snapshot is measured against the base tree
    // the checkout read from its index, the second against what the first left (the Snapshotter remembers
    // it), and after a commit its id is read from the branch it moved and its tree from the commit object —
    // no `write-tree` before the commit either.
    expect(names.filter((name) => name === 'rev-parse')).toHaveLength(1);
    expect(names).not.toContain('write-tree');
    expect(names.filter((name) => name === 'ls-files')).toHaveLength(2);
    // The agent only edits a tracked file: each commit stages it itself (`commit --all`), no `git add`.
    expect(commands.filter((args) => subcommand(args) === 'commit').every((args) => args.includes('--all'))).toBe(true);
    expect(names).not.toContain('add');
    expect(commands).toHaveLength(19);
    const runId = String(res.json?.['runId']);
    expect(git(r.repo, 'show', `agentgate/${runId}:src/state.txt`)).toBe('fixed');
    expect(readFileSync(join(r.home, 'runs', runId, 'iteration-1.patch'), 'utf8')).toContain('+attempt');
    expect(readFileSync(join(r.home, 'runs', runId, 'iteration-2.patch'), 'utf8')).toContain('+fixed');
  });
});
