/**
 * The one error catalogue of AgentGate.
 *
 * Every failure that leaves a module is an {@link AgentGateError} carrying a stable `AG_ERR_*` code,
 * the HTTP status an API client sees, and whether retrying the same operation can help. Third-party
 * errors (git, SQLite, HTTP clients) are translated at the boundary with {@link toAgentGateError};
 * callers branch on `code`, never on message text. `docs/errors.md` lists every code and a test keeps
 * the two in sync.
 */

export interface ErrorDefinition {
  readonly status: number;
  readonly retryable: boolean;
  readonly description: string;
}

export const ERROR_CATALOGUE = {
  // Runs and the state machine
  AG_ERR_RUN_INVALID_TRANSITION: { status: 409, retryable: false, description: 'A state transition that the run state machine does not allow was requested.' },
  AG_ERR_RUN_NOT_FOUND: { status: 404, retryable: false, description: 'No run with this id exists.' },
  AG_ERR_RUN_ALREADY_TERMINAL: { status: 409, retryable: false, description: 'The run has already reached a terminal state.' },
  AG_ERR_RUN_TIMEOUT: { status: 500, retryable: false, description: 'The run exceeded its wall-clock limit.' },
  AG_ERR_RUN_CANCELED: { status: 409, retryable: false, description: 'The run was canceled by a user or by shutdown.' },
  AG_ERR_RUN_INTERRUPTED: { status: 500, retryable: true, description: 'The process that owned the run died; the run was reconciled at start-up.' },
  AG_ERR_RUN_BUDGET_EXCEEDED: { status: 500, retryable: false, description: 'The run used up its token or cost budget.' },
  AG_ERR_RUN_UNEXPECTED: { status: 500, retryable: false, description: 'An unclassified error escaped a phase; it was normalised at the engine boundary.' },
  AG_ERR_WORK_ORDER_NOT_FOUND: { status: 404, retryable: false, description: 'No work order with this id exists.' },
  AG_ERR_WORK_ORDER_CLAIMED: { status: 409, retryable: false, description: 'The work order is no longer queued: another worker claimed it (or it was canceled) first. Nothing was written; take the next one.' },
  AG_ERR_RUN_EXCLUSIVE_BUSY: { status: 409, retryable: true, description: 'Another run that is not finished holds the same exclusive key (repository and branch). Nothing was written; try again once that run ended.' },

  // Configuration and input
  AG_ERR_CONFIG_INVALID: { status: 400, retryable: false, description: 'A configuration value (environment variable, flag, option) is invalid.' },
  AG_ERR_SCHEMA_INVALID: { status: 400, retryable: false, description: 'A document (WorkOrder, TaskSpec) does not match its schema; the message names the field path.' },
  AG_ERR_YAML_PARSE: { status: 400, retryable: false, description: 'A YAML document could not be parsed; the message names the line.' },
  AG_ERR_VERIFY_CONFIG_INVALID: { status: 400, retryable: false, description: 'verify.yaml is invalid; the message names the file, line and reason.' },
  AG_ERR_CLI_USAGE: { status: 400, retryable: false, description: 'The command line was invalid (unknown flag, missing value, bad combination).' },

  // Storage
  AG_ERR_STORE_OPEN: { status: 500, retryable: false, description: 'The store could not be opened (SQLite file; PostgreSQL database missing, credentials refused) or was used after close.' },
  AG_ERR_STORE_MIGRATION: { status: 500, retryable: false, description: 'A schema migration failed; the database was left at its previous version.' },
  AG_ERR_STORE_WRITE: { status: 500, retryable: true, description: 'A write to the store failed and was rolled back.' },
  AG_ERR_STORE_BUSY: { status: 503, retryable: true, description: 'The store stayed locked by another writer beyond the busy timeout.' },
  AG_ERR_DISK_FULL: { status: 507, retryable: true, description: 'A write failed because the disk (or quota) is full: ENOSPC, EDQUOT or SQLITE_FULL. Free space and run again.' },
  AG_ERR_STORE_UNAVAILABLE: { status: 503, retryable: true, description: 'The PostgreSQL server could not be reached, or the connection was lost during the call. A write interrupted at its commit may or may not have been applied; version checks and claims make a retry safe.' },
  AG_ERR_STORE_CONFLICT: { status: 409, retryable: false, description: 'A write conflicted with the stored state (stale run version or duplicate key).' },

  // Workspaces and leases
  AG_ERR_WORKSPACE_NOT_A_REPO: { status: 400, retryable: false, description: 'The workspace path is not a git repository.' },
  AG_ERR_WORKSPACE_LOCAL_REFUSED: { status: 400, retryable: false, description: 'This deployment does not accept local workspaces (AGENTGATE_LOCAL_WORKSPACES=deny): its workers cannot reach a path on the accepting node.' },
  AG_ERR_WORKSPACE_REF_NOT_FOUND: { status: 400, retryable: false, description: 'The requested ref does not exist in the repository.' },
  AG_ERR_WORKSPACE_SETUP: { status: 500, retryable: true, description: 'Creating the worktree or clone for the run failed.' },
  AG_ERR_WORKSPACE_CLEANUP: { status: 500, retryable: true, description: 'Removing the run worktree failed.' },
  AG_ERR_WORKSPACE_PATH_ESCAPE: { status: 400, retryable: false, description: 'A path would resolve outside its allowed root.' },
  AG_ERR_WORKSPACE_UNSUPPORTED: { status: 400, retryable: false, description: 'The workspace type, or something the base commit holds (a submodule whose name is not valid UTF-8), is not supported by this build or configuration.' },
  AG_ERR_LEASE_HELD: { status: 409, retryable: true, description: 'Another live run holds the lease on this repository branch.' },
  AG_ERR_LEASE_LOST: { status: 500, retryable: false, description: 'The run lost its lease (expired or taken over).' },

  // Phases
  AG_ERR_PHASE_BUILD_AGENT_CRASH: { status: 500, retryable: true, description: 'The agent process could not start, crashed or exited non-zero.' },
  AG_ERR_PHASE_BUILD_AGENT_TIMEOUT: { status: 500, retryable: true, description: 'The agent produced no output for idleTimeout, or exceeded its iteration time.' },
  AG_ERR_PHASE_BUILD_AGENT_TASK_FAILURE: { status: 500, retryable: false, description: 'The agent reported that it failed the task (for example is_error in its result).' },
  AG_ERR_PHASE_SNAPSHOT: { status: 500, retryable: true, description: 'Committing the iteration snapshot with git failed.' },
  AG_ERR_VERIFY_FAILED: { status: 422, retryable: false, description: 'The gates did not pass and the convergence strategy or the iteration limit stopped the run.' },
  AG_ERR_PHASE_VERIFY: { status: 500, retryable: true, description: 'The gates could not be run (not: a gate failed).' },
  AG_ERR_PHASE_FEEDBACK: { status: 500, retryable: false, description: 'Generating feedback for the next iteration failed.' },
  AG_ERR_GATE_SETUP_FAILED: { status: 500, retryable: false, description: 'An environment setup command of verify.yaml failed.' },

  // Agents
  AG_ERR_AGENT_UNKNOWN: { status: 400, retryable: false, description: 'No agent driver is registered under this name.' },
  AG_ERR_AGENT_NOT_INSTALLED: { status: 400, retryable: false, description: 'The agent CLI binary could not be found.' },
  AG_ERR_AGENT_PROTOCOL: { status: 500, retryable: false, description: 'The agent output stream could not be parsed or ended without a result.' },

  // Convergence
  AG_ERR_CONVERGENCE_STRATEGY: { status: 500, retryable: false, description: 'A convergence strategy threw; the run fails instead of continuing silently.' },
  AG_ERR_CONVERGENCE_UNKNOWN_STRATEGY: { status: 400, retryable: false, description: 'The named convergence strategy does not exist.' },

  // Delivery
  AG_ERR_DELIVERY_PUSH: { status: 502, retryable: true, description: 'Pushing the run branch failed.' },
  AG_ERR_DELIVERY_SECRET_DETECTED: { status: 422, retryable: false, description: 'The secret scan found a secret in the diff; delivery was blocked.' },
  AG_ERR_DELIVERY_FORGE: { status: 502, retryable: true, description: 'The forge API (GitHub, GitLab) failed after retries.' },
  AG_ERR_DELIVERY_CI_TIMEOUT: { status: 504, retryable: true, description: 'CI on the pushed branch did not finish within spec.delivery.ci.timeout; the run fails as failed_timeout and the branch is kept.' },
  AG_ERR_DELIVERY_UNSUPPORTED: { status: 400, retryable: false, description: 'The delivery kind is not supported for this workspace.' },

  // HTTP API
  AG_ERR_API_UNAUTHORIZED: { status: 401, retryable: false, description: 'The API key is missing or wrong.' },
  AG_ERR_API_NOT_FOUND: { status: 404, retryable: false, description: 'The route or resource does not exist.' },
  AG_ERR_API_BAD_REQUEST: { status: 400, retryable: false, description: 'The request could not be understood.' },
  AG_ERR_API_PAYLOAD_TOO_LARGE: { status: 413, retryable: false, description: 'The request body is larger than the server accepts.' },
  AG_ERR_API_UNSUPPORTED_MEDIA_TYPE: { status: 415, retryable: false, description: 'The request body has a content type this route does not accept (JSON everywhere; YAML on POST /api/v1/tasks).' },
  AG_ERR_API_CONFLICT: { status: 409, retryable: false, description: 'The resource is in a state that does not allow this operation.' },
  AG_ERR_API_QUEUE_FULL: { status: 503, retryable: true, description: 'The queue is full.' },

  // Anything else
  AG_ERR_INTERNAL: { status: 500, retryable: false, description: 'An internal invariant was violated.' },
} as const satisfies Record<string, ErrorDefinition>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

export interface AgentGateErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
  /** Overrides the catalogue's default retryability for this instance. */
  retryable?: boolean;
}

export class AgentGateError extends Error {
  override readonly name = 'AgentGateError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AgentGateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const def: ErrorDefinition = ERROR_CATALOGUE[code];
    this.code = code;
    this.status = def.status;
    this.retryable = options.retryable ?? def.retryable;
    this.details = options.details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isAgentGateError(value: unknown): value is AgentGateError {
  return value instanceof AgentGateError;
}

/**
 * Normalises anything thrown into a classified error. An AgentGateError passes through unchanged;
 * anything else is wrapped with `fallback` and keeps the original as `cause`.
 */
export function toAgentGateError(value: unknown, fallback: ErrorCode = 'AG_ERR_RUN_UNEXPECTED'): AgentGateError {
  if (value instanceof AgentGateError) return value;
  // A full disk is its own class whatever operation hit it: the fix is the same (free space, retry).
  if (isDiskFull(value)) return new AgentGateError('AG_ERR_DISK_FULL', `No space left on device: ${value instanceof Error ? value.message : String(value)}`, { cause: value });
  const message = value instanceof Error ? value.message : typeof value === 'string' ? value : 'Unknown error';
  return new AgentGateError(fallback, message, { cause: value });
}

/** ENOSPC / EDQUOT from a Node.js file-system call (the structured `code`, never the message). */
export function isDiskFull(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || !('code' in value)) return false;
  return value.code === 'ENOSPC' || value.code === 'EDQUOT';
}

/**
 * Whether a child process's error output (run with `LC_ALL=C`) reports a full disk. Only for tools
 * that give nothing more structured than text (git); Node.js errors are classified by `code`.
 */
export function reportsDiskFull(output: string): boolean {
  return output.includes('No space left on device') || output.includes('Disk quota exceeded');
}
