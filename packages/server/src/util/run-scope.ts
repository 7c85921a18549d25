/**
 * The run a process is started for. The engine executes each run inside {@link runInRunScope}; every
 * process `runProcess` starts there — agents, their tools, gates, environment setup steps — carries
 * `AGENTGATE_RUN_TAG=<runId>` in its environment. The tag survives `setsid`, double forks and
 * re-parenting, so `killRunProcesses` (util/reap.ts) finds what a run left behind by it: at the end of every run
 * (the fallback when no sandbox holds the run's processes in a PID namespace) and when reconciliation
 * closes the run of a process that died. An agent that scrubs its children's environment escapes the
 * sweep; only the sandbox (docs/security.md) is a guarantee.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export const RUN_PROCESS_TAG_ENV = 'AGENTGATE_RUN_TAG';

const scope = new AsyncLocalStorage<{ readonly runId: string }>();

export function runInRunScope<T>(runId: string, fn: () => T): T {
  return scope.run({ runId }, fn);
}

/** The environment entry every process of the current run gets (empty outside a run). */
export function runTagEnv(): Record<string, string> {
  const current = scope.getStore();
  return current === undefined ? {} : { [RUN_PROCESS_TAG_ENV]: current.runId };
}
