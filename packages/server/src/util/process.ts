/**
 * Runs a child process in its own process group and guarantees that, whatever happens (normal exit,
 * timeout, idle watchdog, abort), the whole group is gone when the promise settles.
 *
 * Built on node:child_process rather than execa because the property that matters here is killing the
 * *group* (`kill(-pgid)`), including grandchildren a shell or test runner left behind; execa kills
 * only the direct child.
 */
import { runTagEnv } from './run-scope.js';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { systemClock, type Clock } from './clock.js';
import { sandboxCommand, type SandboxSpec } from './sandbox.js';

/** How long pipes may stay open after the child exited before we stop reading them. */
const PIPE_DRAIN_MS = 1000;

export type ProcessOutcome = 'exited' | 'timeout' | 'idle_timeout' | 'aborted' | 'spawn_error';

export interface ProcessLine {
  stream: 'stdout' | 'stderr';
  line: string;
}

export interface RunProcessOptions {
  /** A shell command (`sh -c <command>`), or an executable when `args` is given. */
  command: string;
  /** When present, `command` is executed directly with these arguments (no shell). */
  args?: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** Written to stdin, which is then closed. Without it stdin is empty. */
  stdin?: string;
  signal?: AbortSignal;
  /** Total time limit. */
  timeoutMs?: number;
  /** Kill when neither stdout nor stderr produced anything for this long (the idle watchdog). */
  idleTimeoutMs?: number;
  /** Receives every complete output line as it arrives. Must not throw; throws are reported, not raised. */
  onLine?: (line: ProcessLine) => void;
  /** How much of each stream's end to keep in the result. Default 64 KiB. */
  tailBytes?: number;
  /**
   * How stdout is decoded (default `utf8`). `latin1` maps every byte to one character, so binary output
   * (`git cat-file --batch`) survives intact and `stdout.length` counts bytes.
   */
  stdoutEncoding?: 'utf8' | 'latin1';
  /** Time between SIGTERM and SIGKILL. Default 2 s. */
  killGraceMs?: number;
  clock?: Clock;
  /**
   * Run the command inside this bubblewrap sandbox (util/sandbox.ts). bwrap leads the process group, so
   * every kill below (timeout, watchdog, abort, normal exit) takes the whole sandbox with it.
   */
  sandbox?: SandboxSpec;
}

export interface ProcessResult {
  outcome: ProcessOutcome;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  stdout: string;
  stderr: string;
  pid: number | undefined;
  /** The spawn error, or a listener error that was isolated. */
  error?: Error;
}

/** A single output line longer than this is cut (the rest up to its newline is dropped and counted). */
export const MAX_LINE_CHARS = 16 * 1024 * 1024;

class Tail {
  private text = '';
  private partial = '';
  /** Characters dropped from the current (over-long) line. */
  private dropped = 0;
  constructor(private readonly max: number) {}

  push(chunk: string, emit: (line: string) => void): void {
    this.text += chunk;
    if (this.text.length > this.max * 2) this.text = this.text.slice(-this.max);
    // Only the new chunk is scanned, so a long line costs linear time, and its buffer is capped.
    let start = 0;
    for (let newline = chunk.indexOf('\n'); newline !== -1; newline = chunk.indexOf('\n', start)) {
      this.append(chunk.slice(start, newline));
      this.emitPartial(emit);
      start = newline + 1;
    }
    this.append(chunk.slice(start));
  }

  flush(emit: (line: string) => void): void {
    if (this.partial.length > 0 || this.dropped > 0) this.emitPartial(emit);
  }

  value(): string {
    return this.text.length > this.max ? this.text.slice(-this.max) : this.text;
  }

  private append(piece: string): void {
    const room = MAX_LINE_CHARS - this.partial.length;
    if (piece.length <= room) {
      this.partial += piece;
    } else {
      this.partial += piece.slice(0, Math.max(0, room));
      this.dropped += piece.length - Math.max(0, room);
    }
  }

  private emitPartial(emit: (line: string) => void): void {
    const line = this.partial.endsWith('\r') ? this.partial.slice(0, -1) : this.partial;
    emit(this.dropped > 0 ? `${line}… [line cut: ${this.dropped} more characters]` : line);
    this.partial = '';
    this.dropped = 0;
  }
}

/** Sends `signal` to the whole process group led by `pid`; a group that is already gone is fine. */
export function killProcessGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // ESRCH: the group is gone. EPERM: only processes we may not signal are left (e.g. an agent's
    // `sudo … &`); nothing more can be done from here, and throwing from a timer would kill the server.
    if (code === 'ESRCH' || code === 'EPERM') return false;
    throw error;
  }
}

/** Whether any process of the group led by `pid` is still alive. */
export function processGroupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (error) {
    // EPERM: members exist that we may not signal — still alive.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Process groups started by {@link runProcess} that have not settled yet. */
const liveGroups = new Set<number>();

/**
 * Signals every process group this process started and that is still running; returns how many. For
 * emergency exits (a second Ctrl-C, an exit handler) where the normal cancel path cannot be awaited.
 */
export function killAllProcessGroups(signal: NodeJS.Signals = 'SIGKILL'): number {
  let count = 0;
  for (const pid of liveGroups) if (killProcessGroup(pid, signal)) count += 1;
  return count;
}

export function runProcess(options: RunProcessOptions): Promise<ProcessResult> {
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const tailBytes = options.tailBytes ?? 64 * 1024;
  const grace = options.killGraceMs ?? 2000;
  const stdoutTail = new Tail(tailBytes);
  const stderrTail = new Tail(tailBytes);

  return new Promise<ProcessResult>((resolve) => {
    let outcome: ProcessOutcome = 'exited';
    let listenerError: Error | undefined;
    let settled = false;
    const timers: Array<ReturnType<typeof setTimeout>> = [];
    let idleTimer: ReturnType<typeof setTimeout> | undefined;

    if (options.signal?.aborted) {
      resolve({ outcome: 'aborted', exitCode: null, signal: null, durationMs: 0, stdout: '', stderr: '', pid: undefined });
      return;
    }

    let child: ChildProcessWithoutNullStreams;
    try {
      const argv = options.args ? [options.command, ...options.args] : ['sh', '-c', options.command];
      // Every process of a run carries its run tag, so the run's end and reconciliation can find survivors.
      const env = { ...options.env, ...runTagEnv() };
      const launch = options.sandbox ? sandboxCommand(options.sandbox, argv, env, options.cwd) : { file: argv[0] ?? options.command, args: argv.slice(1), env };
      child = spawn(launch.file, launch.args, { cwd: options.cwd, env: launch.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (error) {
      // spawn throws synchronously for some errors (E2BIG: arguments or environment too large).
      resolve({ outcome: 'spawn_error', exitCode: null, signal: null, durationMs: clock.now() - started, stdout: '', stderr: '', pid: undefined, error: error instanceof Error ? error : new Error(String(error)) });
      return;
    }
    const pid = child.pid;
    if (pid !== undefined) liveGroups.add(pid);

    const emit = (stream: 'stdout' | 'stderr') => (line: string) => {
      if (!options.onLine) return;
      try {
        options.onLine({ stream, line });
      } catch (error) {
        listenerError ??= error instanceof Error ? error : new Error(String(error));
      }
    };

    const stopGroup = (why: ProcessOutcome): void => {
      if (outcome === 'exited') outcome = why;
      if (pid === undefined) return;
      killProcessGroup(pid, 'SIGTERM');
      timers.push(setTimeout(() => killProcessGroup(pid, 'SIGKILL'), grace));
    };

    const armIdle = (): void => {
      if (options.idleTimeoutMs === undefined) return;
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => stopGroup('idle_timeout'), options.idleTimeoutMs);
    };

    const onAbort = (): void => stopGroup('aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.timeoutMs !== undefined) timers.push(setTimeout(() => stopGroup('timeout'), options.timeoutMs));
    armIdle();

    child.stdout.setEncoding(options.stdoutEncoding ?? 'utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      armIdle();
      stdoutTail.push(chunk, emit('stdout'));
    });
    child.stderr.on('data', (chunk: string) => {
      armIdle();
      stderrTail.push(chunk, emit('stderr'));
    });
    // A child that exits without reading stdin makes the write fail with EPIPE; that is not an error here.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');

    const finish = (exitCode: number | null, signal: NodeJS.Signals | null, error?: Error): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      if (idleTimer) clearTimeout(idleTimer);
      options.signal?.removeEventListener('abort', onAbort);
      // Leftover grandchildren (background jobs, watchers) die with the run.
      if (pid !== undefined) {
        killProcessGroup(pid, 'SIGKILL');
        liveGroups.delete(pid);
      }
      stdoutTail.flush(emit('stdout'));
      stderrTail.flush(emit('stderr'));
      const result: ProcessResult = {
        outcome: error ? 'spawn_error' : outcome,
        exitCode,
        signal,
        durationMs: clock.now() - started,
        stdout: stdoutTail.value(),
        stderr: stderrTail.value(),
        pid,
      };
      const reported = error ?? listenerError;
      resolve(reported ? { ...result, error: reported } : result);
    };

    child.on('error', (error) => finish(null, null, error));
    // 'close' waits for the pipes; grandchildren holding them would delay it, so the group is killed on
    // 'exit' and 'close' follows as soon as the pipes drain.
    child.on('exit', (code, signal) => {
      if (pid !== undefined) killProcessGroup(pid, 'SIGKILL');
      // A process that escaped the group (setsid, a daemon) may hold the pipes open forever: give them a
      // moment to drain, then stop reading so the run can never hang on someone else's pipe.
      const drain = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal);
      }, PIPE_DRAIN_MS);
      drain.unref();
      timers.push(drain);
    });
    child.on('close', (code, signal) => finish(code, signal));
  });
}
