/** The tamper tests' workspace, snapshot and protected-paths gate, as the snapshot and verify phases run them. */
import { mkdir, realpath, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkContracts, type SnapshotRef } from '../../src/gates/contracts.js';
import type { GateResult } from '../../src/gates/types.js';
import { parseVerifyConfig } from '../../src/schemas/verify-config.js';
import { systemClock } from '../../src/util/clock.js';
import { WorkspaceManager } from '../../src/workspace/manager.js';
import { Snapshotter, type SnapshotOutcome } from '../../src/workspace/snapshotter.js';
import type { Workspace } from '../../src/workspace/types.js';
import { TempDirs, liveSignal } from '../workspace/helpers.js';

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

export interface TamperWorkspace {
  readonly repo: string;
  readonly home: string;
  /** The run workspace on `repo` (run id `run-1`). */
  readonly ws: Workspace;
  /** Releases the current workspace and acquires a fresh one on `repo` for `runId`. */
  reacquire(runId: string): Promise<Workspace>;
  /** Releases the current workspace and removes every directory made for it. */
  close(): Promise<void>;
}

/** A repository built by `build` in a fresh temp directory, and a run workspace acquired on it. */
export async function openTamperWorkspace(prefix: string, build: (repo: string) => Promise<void>): Promise<TamperWorkspace> {
  const temp = new TempDirs();
  const root = await realpath(await temp.make(prefix));
  const repo = path.join(root, 'repo');
  const home = path.join(root, 'home');
  await build(repo);
  const manager = new WorkspaceManager({ home });
  const acquire = (runId: string): Promise<Workspace> => manager.acquire({ source: 'local', path: repo }, { runId, signal: liveSignal() });
  let current = await acquire('run-1');
  return {
    repo,
    home,
    ws: current,
    reacquire: async (runId) => {
      await manager.release(current, { signal: liveSignal() });
      current = await acquire(runId);
      return current;
    },
    close: async () => {
      await manager.release(current, { signal: liveSignal() });
      await temp.cleanup();
    },
  };
}

/** Iteration 1's snapshot of `ws`, as the snapshot phase takes it; throws when it fails. */
export async function takeSnapshot(ws: Workspace, home: string): Promise<Extract<SnapshotOutcome, { ok: true }>> {
  const outcome = await new Snapshotter().snapshot({ workspace: ws, iteration: 1, artifactsDir: path.join(home, 'runs', ws.runId), signal: liveSignal() });
  if (!outcome.ok) throw outcome.error;
  return outcome;
}
