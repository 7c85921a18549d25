/** The TaskSpec most engine-level tests run: a command agent on a local repository. */
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';

export interface CommandTaskOptions {
  /** `spec.convergence.limits` (maxIterations defaults to 3). */
  limits?: Record<string, unknown>;
  /** `spec.execution.sandbox` (default: the product default, `auto`). */
  sandbox?: { mode: 'auto' | 'bwrap' | 'none'; network?: boolean };
  /** Further `spec` fields (verify, delivery …). */
  extra?: Partial<TaskSpecInput['spec']>;
  name?: string;
}

/** A resolved TaskSpec running `agentCommand` (a shell command) against the repository at `repoPath`. */
export function commandTask(repoPath: string, agentCommand: string, options: CommandTaskOptions = {}): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: options.name ?? 'test-task' },
    spec: {
      goal: { prompt: 'Implement add and multiply' },
      convergence: { limits: { maxIterations: 3, ...options.limits } },
      execution: {
        workspace: { source: 'local', path: repoPath },
        agent: { driver: 'command', command: agentCommand },
        ...(options.sandbox !== undefined && { sandbox: options.sandbox }),
      },
      ...options.extra,
    },
  } as TaskSpecInput);
}
