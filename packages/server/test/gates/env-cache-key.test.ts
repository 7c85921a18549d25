/**
 * The environment cache key names the repository by the base commit's root commits, read through
 * AgentGate's own git directory of the run: nothing in the agent's `.git` can make its setup be stored
 * under (or restored from) another repository's entries.
 */
import { realpath, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { environmentKey } from '../../src/gates/env-cache.js';
import { systemClock } from '../../src/util/clock.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { TempDirs, commitFile, git, initRepo, liveSignal } from '../workspace/helpers.js';

const temp = new TempDirs();
afterEach(() => temp.cleanup());

describe('environmentKey in a run workspace', () => {
  it('names the repository by its root commit whatever the agent writes into its own .git', async () => {
    const root = await realpath(await temp.make());
    const repo = await initRepo(path.join(root, 'repo'));
    const first = git(repo, 'rev-parse', 'HEAD');
    await commitFile(repo, 'package-lock.json', '{}\n');
    const ws = await new WorkspaceManager({ home: path.join(root, 'home') }).acquire({ source: 'local', path: repo }, { runId: 'run-1', signal: liveSignal() });
    const key = (): ReturnType<typeof environmentKey> =>
      environmentKey({ worktreePath: ws.path, baseSha: ws.baseSha, steps: [{ name: 'install', command: 'npm ci' }], signal: liveSignal(), clock: systemClock });

    const before = await key();
    expect(before.repository).toBe(first);
    // A shallow boundary at the base commit, in the agent's repository only: git there now says the base is a root.
    await writeFile(path.join(ws.path, '.git', 'shallow'), `${ws.baseSha}\n`);
    expect(git(ws.path, 'rev-list', '--max-parents=0', ws.baseSha)).toBe(ws.baseSha);
    expect(await key()).toEqual(before);
  });
});
