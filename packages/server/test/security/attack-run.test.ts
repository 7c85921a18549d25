/**
 * The clean-filter attack end to end: a real run whose (sandboxed) agent neuters a protected test and
 * defines a git clean filter — in its own repository and, through the alternates path, in the user's —
 * that maps the neutered file back to the original. The run must not pass, the user's repository
 * configuration must be untouched, and no agent-defined program may have been run by AgentGate.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observability/logger.js';
import { createRuntime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { AGENTS, git, makeRepo, writeAgent } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** sha256 of every file below `dir` (relative path → hash), so "byte-identical" can be compared. */
function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (current: string, prefix: string): void => {
    for (const name of readdirSync(current).sort()) {
      const full = join(current, name);
      const rel = `${prefix}${name}`;
      if (statSync(full).isDirectory()) walk(full, `${rel}/`);
      else out[rel] = createHash('sha256').update(readFileSync(full)).digest('hex');
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

describe('the clean-filter attack', () => {
  it('does not pass, leaves the user repository byte-identical and runs no agent-defined program', async () => {
    const repo = makeRepo();
    cleanups.push(repo.cleanup);
    const marker = join(repo.root, 'agent-program-ran');
    const original = readFileSync(join(repo.repo, 'test', 'math.test.js'), 'utf8');
    // The filter "cleans" any content back to the original test and leaves a marker when it runs.
    const filter = `sh -c 'touch ${marker}; cat ${join(repo.repo, 'test', 'math.test.js')}'`;
    const agent = writeAgent(
      repo.root,
      'attacker',
      [
        AGENTS.correct,
        `git config filter.x.clean "${filter}"`,
        `git config filter.x.smudge cat`,
        `git config diff.x.textconv "${filter}"`,
        `echo 'test/** filter=x diff=x' >> .gitattributes`,
        `mkdir -p .git/info && echo 'test/** filter=x' >> .git/info/attributes`,
        // The user's repository, found through the objects the workspace borrows.
        `user_git=$(dirname "$(dirname "$(head -n1 .git/objects/info/alternates)")")`,
        `git --git-dir="$user_git" config filter.x.clean "${filter}" 2>/dev/null || echo "user config not writable"`,
        `echo 'test/** filter=x' >> "$user_git/info/attributes" 2>/dev/null || echo "user info not writable"`,
        `printf 'import { test } from "node:test";\\ntest("nothing", () => {});\\n' > test/math.test.js`,
        'echo neutered',
      ].join('\n'),
    );
    const userConfig = readFileSync(join(repo.repo, '.git', 'config'));
    const userInfo = hashTree(join(repo.repo, '.git', 'info'));
    const userHooks = hashTree(join(repo.repo, '.git', 'hooks'));

    const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger() });
    cleanups.push(() => runtime.close());
    const spec = resolveTaskSpec({
      apiVersion: 'agentgate.io/v1',
      kind: 'TaskSpec',
      metadata: { name: 'attack' },
      spec: {
        goal: { prompt: 'Implement add and multiply' },
        convergence: { limits: { maxIterations: 1 } },
        execution: { workspace: { source: 'local', path: repo.repo }, agent: { driver: 'command', command: `sh ${agent}` } },
      },
    } as TaskSpecInput);
    const outcome = await runtime.engine.run(spec);

    expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification' });
    const view = await readRun(repo.home, outcome.runId);
    const verification = view.records[0]?.record.verification;
    const protectedGate = verification?.gates.find((r) => r.name === 'protected-paths');
    expect(protectedGate?.passed).toBe(false);
    expect(JSON.stringify(protectedGate)).toContain('test/math.test.js');
    // The snapshot holds what the agent really wrote, not what the filter would have "cleaned" it to.
    expect(git(repo.repo, 'show', `${outcome.branch}:test/math.test.js`)).toContain('test("nothing"');
    expect(git(repo.repo, 'show', `${outcome.branch}:test/math.test.js`)).not.toBe(original.trimEnd());
    // Nothing of the attack reached the user's repository, and AgentGate ran none of its programs.
    expect(readFileSync(join(repo.repo, '.git', 'config'))).toEqual(userConfig);
    expect(hashTree(join(repo.repo, '.git', 'info'))).toEqual(userInfo);
    expect(hashTree(join(repo.repo, '.git', 'hooks'))).toEqual(userHooks);
    expect(existsSync(marker)).toBe(false);
    // It did try: the sandbox (on by default) refused the writes to the user's repository.
    const said = view.events.filter((e) => e.type === 'agent_output').map((e) => String(e.data['text'])).join('\n');
    expect(said).toContain('user config not writable');
    expect(said).toContain('user info not writable');
    expect(view.events.find((e) => e.type === 'run_started')?.data['warnings']).toEqual([]);
  });
});
