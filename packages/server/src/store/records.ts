/**
 * The typed record of one iteration, as the run actor writes it and every surface (CLI, API,
 * dashboard) reads it back. Each part is present once its step has run: a build that failed has
 * `agent` and `error` but no `snapshot`.
 */
import type { AgentSummary } from '../agents/types.js';
import type { ConvergenceDecision } from '../convergence/types.js';
import type { VerificationReport } from '../gates/types.js';
import type { SnapshotResult } from '../workspace/types.js';

export interface IterationErrorRecord {
  readonly code: string;
  readonly message: string;
  readonly phase?: string;
}

export interface IterationRecord {
  agent?: AgentSummary;
  snapshot?: SnapshotResult;
  verification?: VerificationReport;
  decision?: ConvergenceDecision;
  feedback?: { text: string; truncated: boolean };
  error?: IterationErrorRecord;
}
