/**
 * The AgentDriver registry: the one place that maps an agent name (`agentType` of a WorkOrder, `agent`
 * of a TaskSpec, `--agent` of the CLI) to a driver. Submission validates the name and the driver's
 * options through it, so an unknown agent or a missing option is a 400 / exit 2 before anything is
 * queued; the build phase asks it for the driver.
 *
 * Extension point: a driver that ships with AgentGate (claude-code, codex) adds one entry to
 * {@link BUILTIN_AGENT_DRIVERS}; anything else (tests, embedders) calls `register()`.
 */
import { AgentGateError } from '../errors.js';
import { CLAUDE_CODE_AGENT_NAME, createClaudeCodeDriver, validateClaudeCodeOptions, type ClaudeCodeDriverConfig } from './claude-code/index.js';
import { CODEX_AGENT_NAME, createCodexDriver, validateCodexOptions, type CodexDriverConfig } from './codex/index.js';
import { COMMAND_AGENT_NAME, createCommandAgentDriver, validateCommandOptions, type CommandAgentDriverConfig } from './command.js';
import type { AgentDriver, AgentOptions } from './types.js';

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

/** The drivers every registry starts with (SPEC 7). */
export const BUILTIN_AGENT_DRIVERS: Readonly<Record<string, BuiltinDriver>> = {
  [COMMAND_AGENT_NAME]: { create: (config) => createCommandAgentDriver(config.command), validateOptions: validateCommandOptions },
  [CLAUDE_CODE_AGENT_NAME]: { create: (config) => createClaudeCodeDriver(config.claudeCode), validateOptions: validateClaudeCodeOptions },
  [CODEX_AGENT_NAME]: { create: (config) => createCodexDriver(config.codex), validateOptions: validateCodexOptions },
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
