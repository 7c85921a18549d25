/** The protected-paths gate as the verify phase runs it, for the tamper tests of a workspace. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkContracts, type SnapshotRef } from '../../src/gates/contracts.js';
import type { GateResult } from '../../src/gates/types.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import type { SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';
import { liveSignal } from '../workspace/helpers.js';

/** What the verify phase passes for a snapshot `outcome` of `ws`. */
export function snapshotRef(ws: Workspace, outcome: Extract<SnapshotOutcome, { ok: true }>): SnapshotRef {
  return { commit: outcome.snapshot.sha, git: { gitDir: ws.gitDir, indexFile: ws.indexFile, workTree: ws.path }, changesFromBase: outcome.changesFromBase };
}

/** The protected-paths gate of `ws` for `patterns`, against `snapshot` when given, else the work tree alone. */
export async function protectedPathsGate(ws: Workspace, patterns: readonly string[], snapshot?: SnapshotRef): Promise<GateResult> {
  const results = await checkContracts({
    worktreePath: ws.path,
    baseSha: ws.baseSha,
    contracts: parseVerifyConfig({ contracts: { protectedPaths: [...patterns] } }).contracts,
    alwaysProtected: [],
    signal: liveSignal(),
    clock: systemClock,
    ...(snapshot !== undefined && { snapshot }),
  });
  const gate = results.find((result) => result.name === 'protected-paths');
  if (gate === undefined) throw new Error('no protected-paths gate');
  return gate;
}

/** Writes `content` to `file` in the agent's work tree, creating its directories. */
export async function writeAgentFile(ws: Workspace, file: string, content: string): Promise<void> {
  await mkdir(path.dirname(path.join(ws.path, file)), { recursive: true });
  await writeFile(path.join(ws.path, file), content);
}
