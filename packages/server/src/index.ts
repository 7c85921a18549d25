/**
 * Public API of @agentgate/server for server-internal imports. Names are listed explicitly: what is
 * not here is internal and may change without notice.
 */

// Errors
export { AgentGateError, ERROR_CATALOGUE, ERROR_CODES, isAgentGateError, toAgentGateError } from './errors.js';
export type { AgentGateErrorOptions, ErrorCode, ErrorDefinition } from './errors.js';

// State machine
export {
  ALL_EVENTS,
  ALL_RESULTS,
  ALL_STATES,
  InvalidTransitionError,
  RunEvent,
  RunResult,
  RunState,
  TERMINAL_STATES,
  TRANSITIONS,
  applyTransition,
  canTransition,
  createRun,
  getNextState,
  isTerminalState,
  listTransitions,
  transition,
} from './orchestrator/state-machine.js';
export type {
  CreateRunInput,
  NextState,
  NonTerminalState,
  Run,
  RunErrorInfo,
  RunIn,
  TerminalState,
  TransitionDetail,
  TransitionMap,
  TransitionTarget,
} from './orchestrator/state-machine.js';
export { StateMachineValidator } from './orchestrator/state-machine-validator.js';
export type { TableShape, ValidationIssue, ValidationReport, ValidatorInput } from './orchestrator/state-machine-validator.js';
export { renderStateDiagram } from './orchestrator/state-diagram.js';

// Schemas and configuration
export {
  AGENT_DRIVERS,
  CONVERGENCE_STRATEGIES,
  TASK_SPEC_API_VERSION,
  TASK_SPEC_DEFAULTS,
  TaskSpecSchema,
  VerifyConfigSchema,
  WorkOrderBodySchema,
  formatDuration,
  loadConfig,
  parseDuration,
  parseTaskSpec,
  parseTaskSpecYaml,
  parseVerifyConfig,
  parseVerifyConfigYaml,
  parseWorkOrderBody,
  resolveTaskSpec,
  resolveWorkOrder,
  workOrderToTaskSpec,
} from './schemas/index.js';
export type {
  AgentGateConfig,
  ResolvedTaskSpec,
  ResolvedWorkspace,
  TaskSpec,
  TaskSpecInput,
  VerifyConfig,
  WorkOrderBody,
  WorkOrderBodyInput,
} from './schemas/index.js';

// Store
export { openSqliteRepositories, openPostgresRepositories, openRepositories, WorkOrderSource, WorkOrderStatus, migrate, LATEST_SCHEMA_VERSION } from './store/index.js';
export type { OpenedRepositories, OpenRepositoriesOptions, PostgresOpenOptions, PostgresRepositories } from './store/index.js';
export type {
  Fence,
  IterationRecord,
  IterationRepository,
  LeaseRepository,
  Repositories,
  RunMeta,
  RunRepository,
  StoredEvent,
  StoredIterationRecord,
  StoredRun,
  StoredWorkOrder,
  WorkOrderRepository,
} from './store/index.js';

// Execution
export { ExecutionEngine } from './execution/engine.js';
export type { EngineServices, RunOutcome, StartOptions, StartedRun } from './execution/engine.js';
export { PhaseOrchestrator, defaultPhaseHandlers } from './execution/phase-orchestrator.js';
export type { PhaseHandlers } from './execution/phase-orchestrator.js';
export { BuildPhase } from './execution/phases/build.js';
export { SnapshotPhase } from './execution/phases/snapshot.js';
export { VerifyPhase } from './execution/phases/verify.js';
export { FeedbackPhase } from './execution/phases/feedback.js';
export type { ExecutionContext, ExecutionServices, PhaseContext, PhaseHandler, PhaseResult } from './execution/context.js';
export { generateFeedback } from './execution/feedback-generator.js';
export { RunActor } from './execution/run-actor.js';
export { STEPS } from './execution/steps/index.js';
export type { RunContext, Step, StepOutcome, StepTable } from './execution/steps/index.js';
export { WorkOrderService } from './execution/work-order-service.js';
export { reconcileInterruptedRuns } from './execution/reconcile.js';
export { RunAbort, abortError, abortReason } from './util/abort.js';
export { ManualClock, systemClock } from './util/clock.js';
export type { Clock, TimerClock } from './util/clock.js';

// Delivery
export { createDeliveryRegistry } from './delivery/registry.js';
export type { DeliveryRegistry } from './delivery/registry.js';
export { LocalDeliveryManager } from './delivery/local.js';
export type { DeliveryManager, DeliveryCapabilities, DeliveryContext, CiOutcome, ChangeOutcome, PushOutcome } from './delivery/manager.js';
export { createRuntime } from './runtime.js';
export type { LocalRuntime, Runtime, RuntimeOptions } from './runtime.js';

// Convergence
export { ConvergenceController, createStrategy, jaccardSimilarity } from './convergence/index.js';
export type { ConvergenceStrategy, Decision, StrategyName } from './convergence/index.js';

// Agents
export { createAgentDriverRegistry } from './agents/registry.js';
export type { AgentDriverRegistry } from './agents/registry.js';
export { CommandAgentDriver } from './agents/command.js';
export type { AgentDriver, AgentRequest, AgentResult, AgentRunContext, AgentUsage } from './agents/types.js';

// Gates and workspaces
export { Verifier, detectGatePlan, loadGatePlan, parseDiagnostics } from './gates/index.js';
export type { Diagnostic, GateResult, VerificationReport } from './gates/index.js';
export { WorkspaceManager } from './workspace/manager.js';
export { Snapshotter } from './workspace/snapshotter.js';
export type { SnapshotResult, Workspace } from './workspace/types.js';

// Observability
export { EventHub } from './observability/event-hub.js';
export { ProgressEmitter } from './observability/progress-emitter.js';
export type { Subscription, SubscriptionEnd } from './observability/event-hub.js';
export { PROGRESS_EVENT_TYPES } from './observability/events.js';
export type { ProgressEnvelope, ProgressEventType, ProgressEvents, RunEventEnvelope, WorkOrderEventEnvelope } from './observability/events.js';
export { createLogger } from './observability/logger.js';

// HTTP server
export { buildServer, listRoutes, DEFAULT_BODY_LIMIT } from './server/app.js';
export type { RegisteredRoute, RouteDeps, ServerOptions, ServerRuntime } from './server/app.js';
export { ApiKeyAuth, createServerAuth, DEFAULT_TICKET_TTL_MS, TICKET_PROTOCOL_PREFIX } from './server/auth.js';
export type { ServerAuthOptions } from './server/auth.js';
export type { QueueEntry, QueueSnapshot, ServerAuth, SubmitWorkOrder, WorkOrderQueue } from './server/contracts.js';
