/**
 * Making sure no agent or gate process outlives its run: waiting for a process group to disappear,
 * and finding processes that left the group by a tag in their environment (agents: one tag per
 * invocation; every agent and gate process of a run also carries the run tag of util/run-scope.ts).
 *
 * Originally: making sure no agent process outlives `run()`: waiting for the agent's process group to disappear,
 * and finding processes that left the group by a tag in their environment. Linux `/proc`; elsewhere the
 * process-group kill of util/process is the only guarantee.
 */
import { readFile, readdir } from 'node:fs/promises';
import { processGroupAlive } from './process.js';
import { RUN_PROCESS_TAG_ENV } from './run-scope.js';

/**
 * Environment variable carrying a per-invocation tag into every process an agent starts.
 *
 * Why: agent CLIs run their tools in process groups of their own (claude's Bash tool does: its shell is
 * a group leader; codex gives each command a session), so killing the agent's group does not reach them
 * when the agent is SIGKILLed before it can clean up. The tag survives re-parenting, and
 * {@link killTaggedProcesses} finds them by it.
 */
export const AGENT_PROCESS_TAG_ENV = 'AGENTGATE_AGENT_PROCESS_TAG';

/**
 * Waits until no live (non-zombie) process remains in the process group `pgid`, polling at short
 * intervals up to `timeoutMs`. Returns the pids still alive at the end (empty when the group is gone).
 *
 * Why: runProcess sends SIGKILL to the group when the agent ends, but delivery is asynchronous and a
 * killed grandchild can still be running for a moment; the driver contract promises that no agent process
 * survives `run()`. Zombies waiting for init to reap them are dead and do not count — some container
 * inits reap orphans only every second or so. Without `/proc` (not Linux) any group member counts.
 */
export async function waitForProcessGroupExit(pgid: number, timeoutMs: number): Promise<number[]> {
  return pollUntilGone(async () => (processGroupAlive(pgid) ? await liveGroupMembers(pgid) : []), timeoutMs);
}

/**
 * SIGKILLs every process tagged with `tag`, repeating (processes may fork while being killed) until none
 * is left or `timeoutMs` has passed. Returns the pids still alive at the end (empty when all are gone).
 */
export async function killTaggedProcesses(tag: string, timeoutMs: number, variable: string = AGENT_PROCESS_TAG_ENV): Promise<number[]> {
  return pollUntilGone(async () => {
    const alive = await findTaggedProcesses(tag, variable);
    for (const pid of alive) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    }
    return alive;
  }, timeoutMs);
}

/**
 * Live processes (not zombies, not this process) whose environment holds `<variable>=tag`
 * (`AGENT_PROCESS_TAG_ENV` by default).
 * Linux only (`/proc`); elsewhere returns [].
 */
export async function findTaggedProcesses(tag: string, variable: string = AGENT_PROCESS_TAG_ENV): Promise<number[]> {
  const needle = `${variable}=${tag}`;
  const entries = await procEntries();
  if (entries === undefined) return [];
  const found: number[] = [];
  await Promise.all(
    entries.map(async (pid) => {
      const environ = await readProcFile(pid, 'environ');
      if (environ === undefined || !environ.split('\0').includes(needle)) return;
      const stat = await readProcFile(pid, 'stat');
      if (stat !== undefined && isLive(parseStat(stat).state)) found.push(pid);
    }),
  );
  return found.sort((a, b) => a - b);
}

/** Calls `alive` with backoff (5 ms doubling to 100 ms) until it returns [] or `timeoutMs` has passed. */
async function pollUntilGone(alive: () => Promise<number[]>, timeoutMs: number): Promise<number[]> {
  let waited = 0;
  let delay = 5;
  for (;;) {
    const pids = await alive();
    if (pids.length === 0 || waited >= timeoutMs) return pids;
    await new Promise((resolve) => setTimeout(resolve, delay));
    waited += delay;
    delay = Math.min(delay * 2, 100);
  }
}

async function liveGroupMembers(pgid: number): Promise<number[]> {
  const entries = await procEntries();
  if (entries === undefined) return [pgid];
  const members = await Promise.all(
    entries.map(async (pid) => {
      const stat = await readProcFile(pid, 'stat');
      if (stat === undefined) return undefined;
      const { state, pgrp } = parseStat(stat);
      return pgrp === pgid && isLive(state) ? pid : undefined;
    }),
  );
  return members.filter((pid): pid is number => pid !== undefined).sort((a, b) => a - b);
}

/** Pids in `/proc` other than this process; undefined without `/proc`. */
async function procEntries(): Promise<number[] | undefined> {
  try {
    return (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => pid !== process.pid);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** `/proc/<pid>/stat` is `pid (comm) state ppid pgrp …`; comm may contain spaces and parentheses. */
function parseStat(stat: string): { state: string; pgrp: number } {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', pgrp: Number(fields[2]) };
}

function isLive(state: string): boolean {
  return state !== '' && state !== 'Z' && state !== 'X';
}

async function readProcFile(pid: number, file: string): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Gone since readdir, or a process of another user / a kernel thread: not one of ours.
    if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return undefined;
    throw error;
  }
}

/** SIGKILLs every live process carrying the run tag of `runId` (util/run-scope.ts); returns survivors. */
export function killRunProcesses(runId: string, timeoutMs = 2_000): Promise<number[]> {
  return killTaggedProcesses(runId, timeoutMs, RUN_PROCESS_TAG_ENV);
}
