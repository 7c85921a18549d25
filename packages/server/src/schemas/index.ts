/**
 * Public surface of the schemas module: document schemas, their parsers, the resolver and configuration.
 * Names are exported explicitly so internal helpers stay internal.
 */

export { DURATION_HINT, DurationSchema, formatDuration, parseDuration, tryParseDuration } from './duration.js';
export type { DurationInput, DurationParseResult } from './duration.js';

export { formatPath, parseWithSchema, parseYamlWithSchema, schemaErrorMap, toSchemaIssues, yamlLineOf, zodErrorToAgentGateError } from './errors.js';
export type { ParseYamlOptions, SchemaErrorOptions, SchemaIssue } from './errors.js';

export {
  DEFAULT_BLACKBOX_TIMEOUT_SECONDS,
  DEFAULT_COMMAND_TIMEOUT_SECONDS,
  VERIFY_CONFIG_FILE_NAMES,
  VERIFY_KEY_ALIASES,
  VerifyConfigSchema,
  parseVerifyConfig,
  parseVerifyConfigYaml,
} from './verify-config.js';
export type { BlackboxAssertion, BlackboxGate, SetupStep, TestGate, VerifyConfig } from './verify-config.js';

export {
  AGENT_DRIVERS,
  CONVERGENCE_STRATEGIES,
  MAX_ITERATIONS_CAP,
  TASK_SPEC_API_VERSION,
  TASK_SPEC_DEFAULTS,
  TASK_SPEC_KIND,
  TaskSpecSchema,
  parseTaskSpec,
  parseTaskSpecYaml,
} from './task-spec.js';
export type { AgentDriverName, ConvergenceStrategyName, TaskSpec, TaskSpecConvergence, TaskSpecInput, TaskSpecSandbox, TaskSpecWorkspace } from './task-spec.js';

export { GIT_OPS_MODES, HarnessSchema, LEGACY_AGENT_TYPES, WorkOrderBodySchema, WorkspaceSourceSchema, parseWorkOrderBody } from './work-order.js';
export type { GitOpsMode, WorkOrderAgentType, WorkOrderBody, WorkOrderBodyInput, WorkOrderHarness, WorkOrderWorkspaceSource } from './work-order.js';

export { HARNESS_PROFILE_LABEL, WORK_ORDER_SOURCE_LABEL, resolveSandboxPolicy, resolveTaskSpec, resolveWorkOrder, workOrderToTaskSpec } from './resolve.js';
export type {
  DeliveryKind,
  ResolveOptions,
  ResolvedAgent,
  ResolvedConvergence,
  ResolvedDelivery,
  ResolvedLimits,
  ResolvedTaskSpec,
  ResolvedWorkspace,
  TaskSource,
} from './resolve.js';

export { CONFIG_DEFAULTS, CONFIG_ENV_VARS, LOG_LEVELS, loadConfig } from './config.js';
export type { AgentGateConfig, ConfigIssue, ConfigOverrides, LogLevel } from './config.js';
