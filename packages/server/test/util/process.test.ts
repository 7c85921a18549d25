import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_LINE_CHARS, runProcess, type ProcessLine, type ProcessResult, type RunProcessOptions } from '../../src/util/process.js';

const execFileAsync = promisify(execFile);

/** Pids among `pids` that are still running (zombies, which only wait to be reaped, are dead). */
async function livePids(pids: readonly number[]): Promise<number[]> {
  const { stdout } = await execFileAsync('ps', ['-eo', 'pid=,stat=']);
  const running = new Set(
    stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter(([pid, stat]) => pid !== undefined && stat !== undefined && !stat.startsWith('Z'))
      .map(([pid]) => Number(pid)),
  );
  return pids.filter((pid) => running.has(pid));
}

/** Waits (polling `ps`, bounded) until none of `pids` is running. */
async function expectAllGone(pids: readonly number[]): Promise<void> {
  expect(pids.length).toBeGreaterThan(0);
  await vi.waitFor(async () => expect(await livePids(pids)).toEqual([]), { timeout: 3000, interval: 20 });
}

/** Collects streamed lines and lets a test wait, event-driven, for one to arrive. */
class Lines {
  readonly all: ProcessLine[] = [];
  private waiters: Array<{ match: (l: ProcessLine) => boolean; resolve: (l: ProcessLine) => void }> = [];

  readonly onLine = (line: ProcessLine): void => {
    this.all.push(line);
    for (const w of this.waiters.filter((w) => w.match(line))) w.resolve(line);
    this.waiters = this.waiters.filter((w) => !w.match(line));
  };

  next(match: (l: ProcessLine) => boolean): Promise<ProcessLine> {
    const seen = this.all.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** The pid printed on a line `<label> <pid>`. */
  async pid(label: string): Promise<number> {
    const line = await this.next((l) => l.line.startsWith(`${label} `));
    return Number(line.line.slice(label.length + 1));
  }

  stdout(): string[] {
    return this.all.filter((l) => l.stream === 'stdout').map((l) => l.line);
  }
}

describe('runProcess', () => {
  let dir: string;
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const run = (options: Omit<RunProcessOptions, 'cwd' | 'env'> & Partial<Pick<RunProcessOptions, 'cwd' | 'env'>>): Promise<ProcessResult> =>
    runProcess({ cwd: dir, env, ...options });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-process-'));
  });

  afterEach(async () => {
    vi.useRealTimers();
    vi.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  describe('when the command exits on its own', () => {
    it('reports its exit code, pid and duration', async () => {
      const result = await run({ command: 'echo out; echo err >&2; exit 7' });

      expect(result).toMatchObject({ outcome: 'exited', exitCode: 7, signal: null, stdout: 'out\n', stderr: 'err\n' });
      expect(result.pid).toEqual(expect.any(Number));
      expect(result.durationMs).toBeGreaterThanOrEqual(0);
      expect(result.error).toBeUndefined();
    });

    it('gives the child its stdin, its environment and its working directory, nothing else', async () => {
      const result = await run({ command: 'cat; printf "%s|%s|%s\\n" "$FOO" "${HOME:-unset}" "$(pwd -P)"', env: { ...env, FOO: 'bar' }, stdin: 'from stdin\n' });

      expect(result.stdout).toBe(`from stdin\nbar|unset|${await realpath(dir)}\n`);
    });

    it('runs an executable directly with its arguments when args are given, without a shell', async () => {
      const result = await run({ command: process.execPath, args: ['-e', 'console.log(process.argv[1])', '$HOME; exit 3'] });

      expect(result).toMatchObject({ outcome: 'exited', exitCode: 0, stdout: '$HOME; exit 3\n' });
    });

    it('kills background processes the command left behind', async () => {
      const lines = new Lines();

      const result = await run({ command: 'sleep 1000 & echo "background $!"', onLine: lines.onLine });

      expect(result).toMatchObject({ outcome: 'exited', exitCode: 0 });
      await expectAllGone([await lines.pid('background')]);
    });

    it('keeps binary stdout byte for byte with stdoutEncoding latin1 (one character per byte)', async () => {
      const bytes = Buffer.from([0x00, 0xff, 0xe2, 0x82, 0x0a, 0xac, 0x80, 0x41]);
      await writeFile(path.join(dir, 'bytes'), bytes);
      const result = await run({ command: 'cat bytes', stdoutEncoding: 'latin1' });

      expect(Buffer.from(result.stdout, 'latin1')).toEqual(bytes);
      expect((await run({ command: 'cat bytes' })).stdout).toContain('\ufffd');
    });

    it('keeps only the configured tail of a large output', async () => {
      const result = await run({ command: 'i=0; while [ $i -lt 200 ]; do echo "line-$i"; i=$((i+1)); done', tailBytes: 100 });

      expect(result.stdout.length).toBeLessThanOrEqual(100);
      expect(result.stdout.endsWith('line-199\n')).toBe(true);
    });
  });

  describe('line streaming', () => {
    it('delivers every line per stream in order, strips CR and flushes a final line without newline', async () => {
      const lines = new Lines();

      await run({ command: "printf 'a\\nb\\r\\nc'; printf 'e1\\ne2' >&2", onLine: lines.onLine });

      expect(lines.stdout()).toEqual(['a', 'b', 'c']);
      expect(lines.all.filter((l) => l.stream === 'stderr').map((l) => l.line)).toEqual(['e1', 'e2']);
    });

    it('isolates a throwing listener: the process completes and the error is reported', async () => {
      const seen: string[] = [];
      const failure = new Error('listener failed');

      const result = await run({
        command: 'echo one; echo two; echo done > marker',
        onLine: ({ line }) => {
          seen.push(line);
          throw failure;
        },
      });

      expect(result).toMatchObject({ outcome: 'exited', exitCode: 0, stdout: 'one\ntwo\n' });
      expect(result.error).toBe(failure);
      expect(seen).toEqual(['one', 'two']);
      expect(existsSync(path.join(dir, 'marker'))).toBe(true);
    });
  });

  describe('when the process cannot be started', () => {
    it('reports a missing executable as spawn_error', async () => {
      const result = await run({ command: path.join(dir, 'no-such-agent'), args: ['--version'] });

      expect(result).toMatchObject({ outcome: 'spawn_error', exitCode: null });
      expect((result.error as NodeJS.ErrnoException | undefined)?.code).toBe('ENOENT');
    });

    it('reports a missing working directory as spawn_error', async () => {
      const result = await run({ command: 'true', cwd: path.join(dir, 'missing') });

      expect(result.outcome).toBe('spawn_error');
      expect(result.error).toBeInstanceOf(Error);
    });
  });

  describe('when the time limit is reached', () => {
    it('kills the whole process group, including a background child and an orphaned grandchild', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const lines = new Lines();
      const pending = run({
        command: 'sleep 1000 & echo "child $!"; (sleep 1000 & echo "orphan $!"); echo "shell $$"; sleep 1000',
        timeoutMs: 10_000,
        onLine: lines.onLine,
      });
      const pids = [await lines.pid('child'), await lines.pid('orphan'), await lines.pid('shell')];
      expect(await livePids(pids)).toEqual(pids);

      vi.advanceTimersByTime(10_000);
      const result = await pending;
      vi.useRealTimers();

      expect(result.outcome).toBe('timeout');
      await expectAllGone(pids);
    });
  });

  describe('idle watchdog', () => {
    it('stops a process that stays silent, counting from its last output', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const kill = vi.spyOn(process, 'kill');
      const lines = new Lines();
      // The second line waits for the test to create "go", so the two outputs are separated in fake time.
      const pending = run({ command: 'echo first; while [ ! -e go ]; do sleep 0.01; done; echo "second $$"; sleep 1000', idleTimeoutMs: 1000, onLine: lines.onLine });

      await lines.next((l) => l.line === 'first');
      vi.advanceTimersByTime(900);
      await writeFile(path.join(dir, 'go'), '');
      const pid = await lines.pid('second');
      vi.advanceTimersByTime(900);
      expect(kill).not.toHaveBeenCalledWith(-pid, 'SIGTERM');

      vi.advanceTimersByTime(100);
      expect(kill).toHaveBeenCalledWith(-pid, 'SIGTERM');
      const result = await pending;
      vi.useRealTimers();

      expect(result.outcome).toBe('idle_timeout');
      expect(result.stdout).toBe(`first\nsecond ${pid}\n`);
      await expectAllGone([pid]);
    });
  });

  describe('when the signal is aborted', () => {
    it('stops the running process group and reports aborted', async () => {
      const controller = new AbortController();
      const lines = new Lines();
      const pending = run({ command: 'sleep 1000 & echo "child $!"; wait', signal: controller.signal, onLine: lines.onLine });
      const child = await lines.pid('child');

      controller.abort();
      const result = await pending;

      expect(result.outcome).toBe('aborted');
      await expectAllGone([child, result.pid ?? -1]);
    });

    it('escalates to SIGKILL after the grace period when SIGTERM is ignored', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      const controller = new AbortController();
      const lines = new Lines();
      const pending = run({ command: `trap '' TERM; echo "shell $$"; sleep 1000`, signal: controller.signal, killGraceMs: 2000, onLine: lines.onLine });
      const pid = await lines.pid('shell');

      controller.abort();
      vi.advanceTimersByTime(2000);
      const result = await pending;
      vi.useRealTimers();

      expect(result).toMatchObject({ outcome: 'aborted', signal: 'SIGKILL', exitCode: null });
      await expectAllGone([pid]);
    });

    it('does not start anything when the signal is already aborted', async () => {
      const controller = new AbortController();
      controller.abort();

      const result = await run({ command: 'touch started', signal: controller.signal });

      expect(result).toMatchObject({ outcome: 'aborted', pid: undefined, exitCode: null });
      expect(existsSync(path.join(dir, 'started'))).toBe(false);
    });
  });

  describe('output limits', () => {
    it('cuts a single over-long line instead of buffering it without bound', async () => {
      const lines: ProcessLine[] = [];
      const result = await run({ command: "head -c 20000000 /dev/zero | tr '\\0' a; echo; echo next", onLine: (l) => lines.push(l) });
      expect(result.outcome).toBe('exited');
      expect(lines).toHaveLength(2);
      expect(lines[0]?.line.length).toBeLessThan(MAX_LINE_CHARS + 100);
      expect(lines[0]?.line.endsWith(`… [line cut: ${20_000_000 - MAX_LINE_CHARS} more characters]`)).toBe(true);
      expect(lines[1]).toEqual({ stream: 'stdout', line: 'next' });
    });

    it('reports arguments too large for the OS (E2BIG) as a spawn error instead of throwing', async () => {
      const result = await run({ command: 'echo', args: ['x'.repeat(200_000)] });
      expect(result.outcome).toBe('spawn_error');
      expect(result.error?.message).toMatch(/E2BIG/);
    });
  });
});
