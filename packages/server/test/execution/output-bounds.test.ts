/**
 * Untrusted output at run scale (issue 8): a flooding agent cannot fill AGENTGATE_HOME or the event log,
 * cancel still works during the flood, and a verify.yaml pattern cannot stall the run on the agent's
 * output. Real processes, real SQLite, real git.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONFORMANCE_MARKER_ENV, liveProcessesWithMarker } from '../agents/conformance.js';
import { TRANSCRIPT_FILE } from '../../src/agents/process-driver/transcript.js';
import { resolveTaskSpec, type ResolvedTaskSpec } from '../../src/schemas/resolve.js';
import type { TaskSpecInput } from '../../src/schemas/task-spec.js';
import { AGENTS, writeAgent, type TempRepo } from '../helpers/git-repo.js';
import { readRun } from '../helpers/store-checks.js';
import { engineSetup, type EngineSetup } from '../helpers/tasks.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

function setup(files: Record<string, string> = {}): Promise<EngineSetup> {
  return engineSetup(cleanups, files);
}

function spec(repo: TempRepo, agentPath: string, maxIterations = 1): ResolvedTaskSpec {
  return resolveTaskSpec({
    apiVersion: 'agentgate.io/v1',
    kind: 'TaskSpec',
    metadata: { name: 'output-bounds' },
    spec: {
      goal: { prompt: 'Implement add and multiply' },
      convergence: { limits: { maxIterations } },
      execution: { workspace: { source: 'local', path: repo.repo }, agent: { driver: 'command', command: `sh ${agentPath}` } },
    },
  } as TaskSpecInput);
}

/** Disk use of a directory in bytes, as `du` counts it (allocated blocks, WAL and all). */
function diskUse(dir: string): number {
  return Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]) * 1024;
}

const MB = 1024 * 1024;
/** ~80-byte lines: 500 MB is about 6.5 million of them. */
const FLOOD_LINE = 'flood: the quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnop';

describe('untrusted output at run scale', () => {
  describe('when the agent prints 500 MB', () => {
    it('keeps AGENTGATE_HOME within 64 MB, the events readable, gap-free and few, and the transcript head and tail', async () => {
      const { repo, runtime } = await setup();
      const flood = `echo "start of output"\nyes '${FLOOD_LINE}' | head -c 500000000\necho "end of output" >&2\n${AGENTS.correct}`;
      const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'flood', flood)));
      expect(outcome).toMatchObject({ state: 'succeeded', result: 'passed' });
      await runtime.close();

      const used = diskUse(repo.home);
      console.info(`output flood: AGENTGATE_HOME grew to ${(used / MB).toFixed(1)} MB after 500 MB of agent output`);
      expect(used).toBeLessThanOrEqual(64 * MB);

      const view = await readRun(repo.home, outcome.runId); // seq 1..n, no gaps, closing event last
      const output = view.events.filter((e) => e.type === 'agent_output');
      expect(output.length).toBeLessThan(2000);
      const texts = output.map((e) => String(e.data['text']));
      expect(texts[0]).toContain('start of output');
      expect(texts.some((t) => /… \d+ lines \/ \d+ bytes of output omitted/.test(t))).toBe(true);
      // The agent's last words survive the flood. stdout ("implemented") and stderr ("end of output") are
      // separate pipes, so either may be read last.
      const lastTwo = texts.slice(-2).join('\n');
      expect(lastTwo).toContain('implemented');
      expect(lastTwo).toContain('end of output');
      expect(Math.max(...texts.map((t) => t.length))).toBeLessThanOrEqual(32 * 1024);

      const transcriptPath = join(repo.home, 'runs', outcome.runId, TRANSCRIPT_FILE);
      expect(statSync(transcriptPath).size).toBeLessThanOrEqual(17 * MB);
      const transcript = readFileSync(transcriptPath, 'utf8');
      expect(transcript).toContain('[stdout] start of output');
      expect(transcript).toMatch(/=== agentgate: \d+ lines \/ \d+ bytes of output omitted here/);
      expect(transcript).toContain('[stderr] end of output');
      expect(transcript).toMatch(/=== iteration 1 finished: .* ===\n$/);
    }, 240_000);
  });

  describe('when the run is canceled during a flood', () => {
    it('reaches canceled and leaves no process', async () => {
      const { repo, runtime } = await setup();
      const marker = `flood-cancel-${Date.now()}`;
      const resolved = spec(repo, writeAgent(repo.root, 'flood', `yes '${FLOOD_LINE}'`));
      const started = await runtime.engine.start({ ...resolved, agent: { ...resolved.agent, env: { [CONFORMANCE_MARKER_ENV]: marker } } });
      let floods = 0;
      runtime.hub.on((e) => {
        // Cancel once the flood is well under way (the limiter has begun dropping lines).
        if (e.runId === started.runId && e.type === 'agent_output' && e.data.text.includes('omitted') && (floods += 1) === 2) {
          runtime.engine.cancel(started.runId, 'flood cancel');
        }
      });
      const outcome = await started.done;
      expect(outcome).toMatchObject({ state: 'canceled', result: 'canceled', error: { code: 'AG_ERR_RUN_CANCELED' } });
      expect(await liveProcessesWithMarker(marker)).toEqual([]);
      const view = await readRun(repo.home, outcome.runId);
      expect(view.events.at(-1)?.type).toBe('run_canceled');
    }, 120_000);
  });

  describe('when a verify.yaml pattern backtracks catastrophically in JavaScript', () => {
    it('checks it against the output in linear time and the run ends normally', async () => {
      const verify = `tests:\n  - { name: unit-tests, command: "node --test test/" }\nblackbox:\n  - name: redos\n    command: "printf '${'a'.repeat(60)}!'"\n    assertions:\n      - matches: "^(a+)+$"\n`;
      const { repo, runtime, events } = await setup({ 'verify.yaml': verify });
      const outcome = await runtime.engine.run(spec(repo, writeAgent(repo.root, 'a', AGENTS.correct)));
      expect(outcome).toMatchObject({ state: 'failed', result: 'failed_verification', iterations: 1 });
      const redos = events.find((e) => e.type === 'gate_checked' && e.data.gate === 'redos');
      expect(redos?.data).toMatchObject({ level: 'L2', passed: false, message: 'expected stdout to match /^(a+)+$/' });
      expect(events.find((e) => e.type === 'gate_checked' && e.data.gate === 'unit-tests')?.data).toMatchObject({ passed: true });
    });
  });
});
