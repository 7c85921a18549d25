/**
 * The AgentDriver registry: the one place that maps an agent name (`agentType` of a WorkOrder, `agent`
 * of a TaskSpec, `--agent` of the CLI) to a driver. Submission validates the name and the driver's
 * options through it, so an unknown agent or a missing option is a 400 / exit 2 before anything is
 * queued; the build phase asks it for the driver.
 *
 * Extension point: a driver that ships with AgentGate (claude-code, codex) adds one entry to
 * {@link BUILTIN_AGENT_DRIVERS}; anything else (tests, embedders) calls `register()`.
 *
 * Start-up: only the names and option checks of claude-code and codex (`options.ts`) are imported here;
 * each driver's own modules (its stream parser, accumulator and zod event schemas: ~20–30 ms of every CLI
 * start, docs/performance.md) are imported on its first run ({@link lazyDriver}).
 */
import { AgentGateError } from '../errors.js';
import { CLAUDE_CODE_AGENT_NAME, validateClaudeCodeOptions, type ClaudeCodeDriverConfig } from './claude-code/options.js';
import { CODEX_AGENT_NAME, validateCodexOptions, type CodexDriverConfig } from './codex/options.js';
import { COMMAND_AGENT_NAME, createCommandAgentDriver, validateCommandOptions, type CommandAgentDriverConfig } from './command.js';
import type { AgentDriver, AgentOptions, AgentResult } from './types.js';

/** Creates a driver; called once, on the first `get()` of its name. */
export type AgentDriverFactory = () => AgentDriver;

/**
 * Fail-fast check of a task's agent options for one driver.
 * @throws AgentGateError `AG_ERR_CONFIG_INVALID` naming the option.
 */
export type AgentOptionsValidator = (options: AgentOptions) => void;

export interface AgentDriverRegistration {
  validateOptions?: AgentOptionsValidator;
}

export interface AgentDriverRegistry {
  /**
   * Adds a driver under `name` (lowercase letters, digits and dashes).
   * @throws AgentGateError `AG_ERR_CONFIG_INVALID` for a malformed or already registered name.
   */
  register(name: string, factory: AgentDriverFactory, registration?: AgentDriverRegistration): void;
  has(name: string): boolean;
  /** Registered names, sorted (shown in errors and `--help`). */
  names(): string[];
  /**
   * The driver registered under `name`, created on first use and reused afterwards (drivers are
   * stateless; per-run state lives in the request).
   * @throws AgentGateError `AG_ERR_AGENT_UNKNOWN` listing the known names.
   */
  get(name: string): AgentDriver;
  /**
   * Checks that `name` exists and that `options` suit its driver.
   * @throws AgentGateError `AG_ERR_AGENT_UNKNOWN` or `AG_ERR_CONFIG_INVALID`.
   */
  validate(name: string, options: AgentOptions): void;
}

/** Configuration handed to the built-in drivers' factories. */
export interface BuiltinAgentDriversConfig {
  command?: CommandAgentDriverConfig;
  claudeCode?: ClaudeCodeDriverConfig;
  codex?: CodexDriverConfig;
}

interface BuiltinDriver {
  create: (config: BuiltinAgentDriversConfig) => AgentDriver;
  validateOptions?: AgentOptionsValidator;
}

/**
 * A driver whose module is imported when it first runs, then reused. Keeps the driver contract: `run`
 * never throws — a module that cannot be loaded (a broken installation) is that run's failure,
 * `AG_ERR_INTERNAL` with the import error as its cause, and the next run tries the import again.
 */
export function lazyDriver(name: string, load: () => Promise<AgentDriver>): AgentDriver {
  let loading: Promise<AgentDriver> | undefined;
  return {
    name,
    async run(request, ctx): Promise<AgentResult> {
      loading ??= load();
      let driver: AgentDriver;
      try {
        driver = await loading;
      } catch (error) {
        loading = undefined;
        const reason = error instanceof Error ? error.message : String(error);
        return {
          ok: false,
          failure: 'agent_crash',
          aborted: false,
          error: new AgentGateError('AG_ERR_INTERNAL', `The ${name} agent driver could not be loaded: ${reason}`, { cause: error, details: { agent: name } }),
          exitCode: null,
          durationMs: 0,
          toolCalls: 0,
          output: '',
        };
      }
      return driver.run(request, ctx);
    },
  };
}

/** The drivers every registry starts with (SPEC 7). */
export const BUILTIN_AGENT_DRIVERS: Readonly<Record<string, BuiltinDriver>> = {
  [COMMAND_AGENT_NAME]: { create: (config) => createCommandAgentDriver(config.command), validateOptions: validateCommandOptions },
  [CLAUDE_CODE_AGENT_NAME]: {
    create: (config) => lazyDriver(CLAUDE_CODE_AGENT_NAME, async () => (await import('./claude-code/protocol.js')).createClaudeCodeDriver(config.claudeCode)),
    validateOptions: validateClaudeCodeOptions,
  },
  [CODEX_AGENT_NAME]: {
    create: (config) => lazyDriver(CODEX_AGENT_NAME, async () => (await import('./codex/protocol.js')).createCodexDriver(config.codex)),
    validateOptions: validateCodexOptions,
  },
};

export interface CreateAgentDriverRegistryOptions {
  /** Register {@link BUILTIN_AGENT_DRIVERS}. Default true; tests that want only fakes pass false. */
  builtins?: boolean;
  config?: BuiltinAgentDriversConfig;
}

const NAME_PATTERN = /^[a-z][a-z0-9-]*$/;

interface Entry {
  factory: AgentDriverFactory;
  registration: AgentDriverRegistration;
  driver?: AgentDriver;
}

/** Creates a registry holding the built-in drivers (unless `builtins: false`). */
export function createAgentDriverRegistry(options: CreateAgentDriverRegistryOptions = {}): AgentDriverRegistry {
  const entries = new Map<string, Entry>();
  const config = options.config ?? {};

  const lookup = (name: string): Entry => {
    const entry = entries.get(name);
    if (entry === undefined) {
      const known = [...entries.keys()].sort();
      throw new AgentGateError('AG_ERR_AGENT_UNKNOWN', `Unknown agent "${name}"; known agents: ${known.length > 0 ? known.join(', ') : '(none)'}.`, {
        details: { agent: name, known },
      });
    }
    return entry;
  };

  const registry: AgentDriverRegistry = {
    register(name, factory, registration = {}) {
      if (!NAME_PATTERN.test(name)) {
        throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Agent name "${name}" must be lowercase letters, digits and dashes.`, { details: { agent: name } });
      }
      if (entries.has(name)) {
        throw new AgentGateError('AG_ERR_CONFIG_INVALID', `An agent driver named "${name}" is already registered.`, { details: { agent: name } });
      }
      entries.set(name, { factory, registration });
    },
    has: (name) => entries.has(name),
    names: () => [...entries.keys()].sort(),
    get(name) {
      const entry = lookup(name);
      if (entry.driver === undefined) {
        const driver = entry.factory();
        if (driver.name !== name) {
          throw new AgentGateError('AG_ERR_INTERNAL', `The factory registered as "${name}" created a driver named "${driver.name}".`, { details: { agent: name, driver: driver.name } });
        }
        entry.driver = driver;
      }
      return entry.driver;
    },
    validate(name, agentOptions) {
      lookup(name).registration.validateOptions?.(agentOptions);
    },
  };

  if (options.builtins ?? true) {
    for (const [name, builtin] of Object.entries(BUILTIN_AGENT_DRIVERS)) {
      registry.register(name, () => builtin.create(config), builtin.validateOptions === undefined ? {} : { validateOptions: builtin.validateOptions });
    }
  }
  return registry;
}
