/**
 * Live progress of a run on stderr. On a TTY: a status line redrawn in place (iteration, phase,
 * elapsed, last agent line) with permanent lines for state changes and gate results. Otherwise:
 * plain, timestamped lines that are easy to grep in CI logs. Never writes to stdout (stdout belongs
 * to `--json`).
 *
 * Agent output, gate names and messages, branch names and error messages come from the agent or the
 * repository: every line passes through `sanitizeForTerminal` (util/terminal), so the only escape
 * sequences on the terminal are the display's own `\r ESC[K`.
 */
import type { ProgressEnvelope } from '../observability/events.js';
import type { Clock } from '../util/clock.js';
import { sanitizeForTerminal } from '../util/terminal.js';

export interface ProgressDisplayOptions {
  stream: NodeJS.WriteStream | { write(chunk: string): boolean; isTTY?: boolean; columns?: number };
  clock: Clock;
  /** Show every agent output line (plain mode) instead of only the status line. */
  verbose?: boolean;
  maxIterations: number;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export class ProgressDisplay {
  private readonly started: number;
  private readonly tty: boolean;
  private iteration = 1;
  private phase = 'starting';
  private lastAgentLine = '';
  private frame = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(private readonly options: ProgressDisplayOptions) {
    this.started = options.clock.now();
    this.tty = options.stream.isTTY === true;
    if (this.tty) this.scheduleRedraw();
  }

  handle(event: ProgressEnvelope): void {
    switch (event.type) {
      case 'run_started': {
        const data = event.data as ProgressEnvelope<'run_started'>['data'];
        this.line(`run ${event.runId} started: agent ${data.agent}, strategy ${data.strategy}, up to ${data.maxIterations} iteration(s), branch ${data.branch}`);
        break;
      }
      case 'run_state_changed': {
        const data = event.data as ProgressEnvelope<'run_state_changed'>['data'];
        this.iteration = data.iteration;
        const suffix = data.result ? ` (${data.result})` : '';
        const error = data.error ? ` — ${data.error.code}: ${data.error.message}` : '';
        this.line(`state ${data.from} → ${data.to}${suffix}${error}`);
        break;
      }
      case 'phase_started': {
        const data = event.data as ProgressEnvelope<'phase_started'>['data'];
        this.phase = data.phase;
        this.iteration = data.iteration;
        if (!this.tty) this.line(`iteration ${data.iteration}: ${data.phase} started`);
        break;
      }
      case 'gate_checked': {
        const data = event.data as ProgressEnvelope<'gate_checked'>['data'];
        const verdict = data.passed ? 'PASS' : 'FAIL';
        const exit = data.exitCode === undefined || data.exitCode === null ? '' : `, exit ${data.exitCode}`;
        const message = data.message && !data.passed ? ` — ${data.message}` : '';
        this.line(`  gate ${data.gate} [${data.level}] ${verdict} (${(data.durationMs / 1000).toFixed(1)}s${exit})${message}`);
        break;
      }
      case 'convergence_decision': {
        const data = event.data as ProgressEnvelope<'convergence_decision'>['data'];
        this.line(`iteration ${data.iteration}: ${data.decision} (${data.strategy}: ${data.reason})`);
        break;
      }
      case 'iteration_completed': {
        const data = event.data as ProgressEnvelope<'iteration_completed'>['data'];
        this.line(`iteration ${data.iteration} ${data.passed ? 'passed' : 'failed'} in ${(data.durationMs / 1000).toFixed(1)}s`);
        break;
      }
      case 'agent_output': {
        const data = event.data as ProgressEnvelope<'agent_output'>['data'];
        // One event may hold several coalesced lines.
        const lines = data.text.split('\n');
        this.lastAgentLine = lines.findLast((l) => l.trim() !== '') ?? '';
        if (!this.tty && this.options.verbose) for (const text of lines) this.line(`  │ ${text}`);
        break;
      }
      default:
        break;
    }
  }

  /** Stops redrawing and clears the status line; idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.tty) this.options.stream.write('\r\x1b[K');
  }

  private elapsed(): string {
    const s = Math.floor((this.options.clock.now() - this.started) / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  }

  private line(untrusted: string): void {
    const text = sanitizeForTerminal(untrusted);
    if (this.tty) {
      this.options.stream.write(`\r\x1b[K${text}\n`);
      this.drawStatus();
    } else {
      this.options.stream.write(`[${this.elapsed()}] ${text}\n`);
    }
  }

  private drawStatus(): void {
    if (this.stopped) return;
    // A pseudo-terminal may report 0 columns: then assume a common width.
    const columns = (this.options.stream as { columns?: number }).columns;
    const width = columns !== undefined && columns > 0 ? columns : 100;
    const spinner = SPINNER[this.frame % SPINNER.length] ?? '';
    const agent = this.lastAgentLine ? ` · ${sanitizeForTerminal(this.lastAgentLine).replace(/\s+/g, ' ')}` : '';
    const status = `${spinner} iteration ${this.iteration}/${this.options.maxIterations} · ${sanitizeForTerminal(this.phase)} · ${this.elapsed()}${agent}`;
    this.options.stream.write(`\r\x1b[K${status.slice(0, Math.max(20, width - 1))}`);
  }

  private scheduleRedraw(): void {
    this.timer = setTimeout(() => {
      this.frame += 1;
      this.drawStatus();
      if (!this.stopped) this.scheduleRedraw();
    }, 120);
    this.timer.unref();
  }
}
