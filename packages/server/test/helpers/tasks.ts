/** The TaskSpec most engine-level tests run (a command agent on a local repository), and its runtime. */
import { silentLogger } from '../../src/observability/logger.js';
import type { RunEventEnvelope } from '../../src/observability/events.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig } from '../../src/schemas/config.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { makeRepo, type TempRepo } from './git-repo.js';

export interface CommandTaskOptions {
  /** `spec.convergence.limits` (maxIterations defaults to 3). */
  limits?: Record<string, unknown>;
  /** `spec.execution.sandbox` (default: the product default, `auto`). */
  sandbox?: { mode: 'auto' | 'bwrap' | 'none'; network?: boolean };
  /** Further `spec` fields (verify, delivery …). */
  extra?: Partial<TaskSpecInput['spec']>;
  name?: string;
}

/** The TaskSpec document running `agentCommand` (a shell command) against the repository at `repoPath`. */
export function commandTaskDocument(repoPath: string, agentCommand: string, options: CommandTaskOptions = {}): TaskSpecInput {
  return {
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
  } as TaskSpecInput;
}

/** {@link commandTaskDocument}, resolved. */
export function commandTask(repoPath: string, agentCommand: string, options: CommandTaskOptions = {}): ResolvedTaskSpec {
  return resolveTaskSpec(commandTaskDocument(repoPath, agentCommand, options));
}

export interface EngineSetup {
  repo: TempRepo;
  runtime: Runtime;
  /** Every run event the hub delivered, in delivery order. */
  events: RunEventEnvelope[];
}

/**
 * A temp repository (the calculator example plus `files`) and a runtime on its home; both are torn
 * down by the functions pushed onto `cleanups` (run them in reverse order after each test).
 */
export async function engineSetup(cleanups: Array<() => unknown>, files: Record<string, string> = {}): Promise<EngineSetup> {
  const repo = makeRepo(files);
  cleanups.push(repo.cleanup);
  const runtime = await createRuntime({ config: loadConfig({ AGENTGATE_HOME: repo.home }), logger: silentLogger(), baseEnv: { ...process.env } });
  cleanups.push(() => runtime.close());
  const events: RunEventEnvelope[] = [];
  runtime.hub.on((e) => events.push(e));
  return { repo, runtime, events };
}
