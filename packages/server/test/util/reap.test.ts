/**
 * The `/proc` sweep of util/reap.ts on real processes: tagged processes that left their process group are
 * found and killed even when there are more of them than one turn of the event loop reads, and untagged
 * ones are left alone.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { findTaggedProcesses, killTaggedProcesses } from '../../src/util/reap.js';

const TAG_VARIABLE = 'AGENTGATE_REAP_TEST_TAG';
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

/** Pids of live `sleep` processes whose environment holds `TAG_VARIABLE=tag`, read from /proc here. */
function tagged(tag: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
      if (environ.includes(`${TAG_VARIABLE}=${tag}`) && state !== 'Z') pids.push(Number(entry));
    } catch (error) {
      // Gone since readdir (not alive), or another user's process (not one of ours).
      if (['ENOENT', 'ESRCH', 'EACCES'].includes((error as NodeJS.ErrnoException).code ?? '')) continue;
      throw error;
    }
  }
  return pids.sort((a, b) => a - b);
}

/** Starts `count` detached `sleep 300` processes in new sessions with `TAG_VARIABLE=tag`; resolves once all run. */
async function startEscapees(tag: string, count: number): Promise<void> {
  const script = `i=0; while [ "$i" -lt ${count} ]; do setsid sleep 300 < /dev/null > /dev/null 2>&1 & i=$((i + 1)); done; wait`;
  const parent = spawn('sh', ['-c', script], { env: { ...process.env, [TAG_VARIABLE]: tag }, stdio: 'ignore', detached: true });
  cleanups.push(() => {
    for (const pid of tagged(tag)) process.kill(pid, 'SIGKILL');
    parent.kill('SIGKILL');
  });
  for (let waited = 0; tagged(tag).filter((pid) => pid !== parent.pid).length < count; waited += 50) {
    if (waited > 30_000) throw new Error(`only ${tagged(tag).length} of ${count} processes started`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the /proc sweep', () => {
  it('finds and kills every tagged process, more than one batch of reads, and spares the others', async () => {
    const tag = `many-${process.pid}-${Date.now()}`;
    const other = `other-${process.pid}-${Date.now()}`;
    await startEscapees(tag, 150);
    await startEscapees(other, 2);
    const found = await findTaggedProcesses(tag, TAG_VARIABLE);
    expect(found).toEqual(tagged(tag));
    expect(found.length).toBeGreaterThanOrEqual(150);

    expect(await killTaggedProcesses(tag, 10_000, TAG_VARIABLE)).toEqual([]);
    expect(tagged(tag)).toEqual([]);
    expect(await findTaggedProcesses(tag, TAG_VARIABLE)).toEqual([]);
    expect(tagged(other).length).toBeGreaterThanOrEqual(2);
  });
});
