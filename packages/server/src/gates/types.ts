/** Results of running the gate plan (SPEC 6). */

export type GateLevel = 'L0' | 'L1' | 'L2' | 'setup';

export interface Diagnostic {
  tool: 'tsc' | 'eslint' | 'vitest' | 'jest' | 'pytest' | 'node-test' | 'generic';
  file?: string;
  line?: number;
  column?: number;
  /** Test name for test runners. */
  test?: string;
  message: string;
}

export interface GateResult {
  name: string;
  level: GateLevel;
  passed: boolean;
  durationMs: number;
  command?: string;
  exitCode?: number | null;
  /** Why the gate failed in one line (tamper, timeout, missing file, assertion …). */
  message?: string;
  /** The end of the combined output (bounded). */
  outputTail?: string;
  diagnostics: Diagnostic[];
  timedOut?: boolean;
  /** Path of the full log file under the run's artifacts directory. */
  logPath?: string;
  /** The gate was not run (L0 contracts failed, or the verification ran out of time); it counts as failed. */
  skipped?: boolean;
}

export interface VerificationReport {
  passed: boolean;
  /** True when no verify.yaml existed and no command could be detected: nothing was checked. */
  unverified: boolean;
  /** Where the plan came from. */
  source: 'verify.yaml' | '.agentgate/verify.yaml' | 'inline' | 'detected' | 'none';
  gates: GateResult[];
  /** passed gates / all gates (1 when there are none). */
  passRatio: number;
  durationMs: number;
  /** Where detection looked and what it skipped (detected and unverified plans), for the run record. */
  notes?: string[];
}
