/** The gates (SPEC 6): plan loading, detection, L0 contracts, L1 commands, L2 black-box checks, diagnostics. */
export { Verifier } from './verifier.js';
export type { GateContext, SetupResult, VerifierOptions, VerifyResult } from './verifier.js';
export { assertBaseSha, commitReader, describeGatePlan, loadGatePlan } from './loader.js';
export type { GatePlan, LoadGatePlanOptions, VerifyConfigFileName } from './loader.js';
export { detectGatePlan } from './detect.js';
export type { DetectedPlan, DetectionResult, RepoReader } from './detect.js';
export { CONTRACT_GATES, checkContracts, listChangedFiles, listWorktreeFiles, resolveInside } from './contracts.js';
export type { ChangeKind, ChangedFile, ContractsInput } from './contracts.js';
export { OUTPUT_TAIL_BYTES, buildGateEnv, executeCommand, runCommandGate, safeFileName } from './command-gate.js';
export type { CommandEnvironment, CommandExecution, CommandGateConfig, CommandOutcome, CommandSpec } from './command-gate.js';
export { checkAssertion, runBlackboxGate } from './blackbox.js';
export {
  MAX_DIAGNOSTICS,
  parseDiagnostics,
  parseEslintDiagnostics,
  parseJestDiagnostics,
  parsePytestDiagnostics,
  parseNodeTestDiagnostics,
  parseTscDiagnostics,
  parseVitestDiagnostics,
  stripAnsi,
} from './diagnostics.js';
export type { DiagnosticsOptions } from './diagnostics.js';
export type { Diagnostic, GateLevel, GateResult, VerificationReport } from './types.js';
