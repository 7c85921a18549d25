/**
 * A run's timeline as the page holds it: events keyed by `seq`, so a replay after a reconnect (or a
 * reload) never shows an entry twice, and `lastSeq` is what the next subscription resumes after.
 * Pure: no DOM, no socket.
 */

export interface EventEnvelope {
  readonly seq: number;
  readonly runId?: string;
  readonly workOrderId: string;
  readonly type: string;
  readonly timestamp: string;
  readonly data: Record<string, unknown>;
  /** Set when the server merged queued `agent_output` events into one frame (docs/events.md). */
  readonly coalesced?: { readonly fromSeq: number; readonly count: number };
}

export class Timeline {
  private readonly bySeq = new Map<number, EventEnvelope>();
  private last = 0;
  duplicatesSkipped = 0;

  get lastSeq(): number {
    return this.last;
  }

  /** Adds an event; false when its seq was already seen (a replayed duplicate). */
  add(event: EventEnvelope): boolean {
    const from = event.coalesced?.fromSeq ?? event.seq;
    if (event.seq <= this.last || this.bySeq.has(event.seq) || this.bySeq.has(from)) {
      this.duplicatesSkipped += 1;
      return false;
    }
    this.bySeq.set(event.seq, event);
    this.last = Math.max(this.last, event.seq);
    return true;
  }

  events(): EventEnvelope[] {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }

  /** True once the run's closing event is in. */
  get ended(): boolean {
    for (const event of this.bySeq.values()) if (CLOSING.has(event.type)) return true;
    return false;
  }
}

const CLOSING = new Set(['run_completed', 'run_failed', 'run_canceled']);

function str(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) return '';
  return JSON.stringify(value);
}

export interface TimelineLine {
  readonly kind: 'header' | 'phase' | 'gate' | 'output' | 'tool' | 'state' | 'end' | 'info';
  readonly title: string;
  readonly detail: string;
  readonly ok: boolean | null;
}

/** What one event looks like in the timeline. */
export function describe(event: EventEnvelope): TimelineLine {
  const d = event.data;
  switch (event.type) {
    case 'run_started':
      return { kind: 'info', title: `Run started: ${str(d.agent)} on ${str(d.branch)}, at most ${str(d.maxIterations)} iterations (${str(d.strategy)})`, detail: '', ok: null };
    case 'run_state_changed':
      return { kind: 'state', title: `${str(d.from)} → ${str(d.to)}`, detail: d.error === undefined ? '' : str(d.error), ok: null };
    case 'iteration_started':
      return { kind: 'header', title: `Iteration ${str(d.iteration)}`, detail: '', ok: null };
    case 'iteration_completed':
      return { kind: 'header', title: `Iteration ${str(d.iteration)} ${d.passed === true ? 'passed' : 'did not pass'} (${ms(d.durationMs)})`, detail: '', ok: d.passed === true };
    case 'phase_started':
      return { kind: 'phase', title: `${str(d.phase)} …`, detail: '', ok: null };
    case 'phase_completed':
      return { kind: 'phase', title: `${str(d.phase)} ${d.ok === true ? 'ok' : 'failed'} (${ms(d.durationMs)})`, detail: d.error === undefined ? '' : str(d.error), ok: d.ok === true };
    case 'gate_checked':
      return { kind: 'gate', title: `Gate ${str(d.gate)} ${d.passed === true ? 'passed' : 'failed'}${d.exitCode === undefined ? '' : ` (exit ${str(d.exitCode)})`}`, detail: str(d.message), ok: d.passed === true };
    case 'convergence_decision':
      return { kind: 'info', title: `Decision: ${str(d.decision)}`, detail: str(d.reason), ok: null };
    case 'agent_output':
      return { kind: 'output', title: `agent ${str(d.stream)}`, detail: str(d.text), ok: null };
    case 'agent_tool_call':
      return { kind: 'tool', title: `tool ${str(d.tool)}`, detail: str(d.input), ok: null };
    case 'agent_tool_result':
      return { kind: 'tool', title: `tool result${d.isError === true ? ' (error)' : ''}`, detail: str(d.output), ok: d.isError !== true };
    case 'delivery_started':
      return { kind: 'info', title: `Delivery (${str(d.kind)}) …`, detail: '', ok: null };
    case 'delivery_completed':
      return { kind: 'info', title: `Delivery ${d.ok === true ? 'done' : 'failed'}${d.prUrl === undefined ? '' : `: ${str(d.prUrl)}`}`, detail: d.error === undefined ? str(d.branch) : str(d.error), ok: d.ok === true };
    case 'ci_status':
      return { kind: 'info', title: `CI ${str(d.status)}`, detail: str(d.detail), ok: null };
    case 'run_completed':
      return { kind: 'end', title: `Run ${str(d.result)} after ${str(d.iterations)} iteration(s), ${ms(d.durationMs)}`, detail: str(d.branch), ok: true };
    case 'run_failed':
      return { kind: 'end', title: `Run ${str(d.result)} after ${str(d.iterations)} iteration(s)`, detail: str(d.error), ok: false };
    case 'run_canceled':
      return { kind: 'end', title: `Run canceled after ${str(d.iterations)} iteration(s)`, detail: str(d.reason), ok: false };
    default:
      return { kind: 'info', title: event.type, detail: str(d), ok: null };
  }
}

export function ms(value: unknown): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(1)} s`;
}
