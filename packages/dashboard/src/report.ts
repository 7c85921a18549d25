/**
 * Pure readers for the run detail page (no DOM): the gate results of an iteration record with bounded
 * output excerpts, and the delivery / PR / CI status of a run from its events and `run.meta`.
 */
import type { EventEnvelope } from './timeline.js';

/** Longest excerpt of a failed gate's output shown in the page (the end of it: errors come last). */
export const EXCERPT_CHARS = 4000;
/** At most this many diagnostics per gate. */
export const MAX_DIAGNOSTICS = 20;

export interface GateView {
  readonly name: string;
  readonly passed: boolean;
  readonly exitCode: number | null;
  readonly message: string;
  readonly excerpt: string;
  readonly diagnostics: readonly string[];
}

function obj(value: unknown): Record<string, unknown> | null {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The end of `value`, at most `max` characters, marked when cut. */
export function excerpt(value: string, max = EXCERPT_CHARS): string {
  if (value.length <= max) return value;
  return `… ${value.length - max} characters omitted …\n${value.slice(value.length - max)}`;
}

function diagnostic(value: unknown): string {
  const d = obj(value);
  if (d === null) return '';
  const where = [text(d.file), typeof d.line === 'number' ? String(d.line) : '', typeof d.column === 'number' ? String(d.column) : ''].filter((s) => s !== '').join(':');
  return [where, text(d.test), text(d.message)].filter((s) => s !== '').join(' — ');
}

/** `record.verification.gates[]` of one iteration record; failed gates carry an excerpt of their output. */
export function gatesOf(record: Record<string, unknown>): GateView[] {
  const gates = obj(record.verification)?.gates;
  if (!Array.isArray(gates)) return [];
  return gates.flatMap((value: unknown): GateView[] => {
    const g = obj(value);
    if (g === null) return [];
    const passed = g.passed === true;
    const diagnostics = Array.isArray(g.diagnostics) ? g.diagnostics.map(diagnostic).filter((s) => s !== '') : [];
    return [
      {
        name: text(g.name) || '(unnamed gate)',
        passed,
        exitCode: typeof g.exitCode === 'number' ? g.exitCode : null,
        message: text(g.message),
        excerpt: passed ? '' : excerpt(text(g.outputTail)),
        diagnostics: passed ? [] : diagnostics.slice(0, MAX_DIAGNOSTICS).map((s) => excerpt(s, 500)),
      },
    ];
  });
}

export interface DeliveryView {
  /** Nothing delivered yet and nothing announced: the panel says so. */
  readonly started: boolean;
  readonly kind: string | null;
  /** null while delivery runs. */
  readonly ok: boolean | null;
  readonly branch: string | null;
  readonly prUrl: string | null;
  readonly error: string | null;
  /** The latest `ci_status` poll, if any. */
  readonly ci: { readonly status: string; readonly detail: string; readonly iteration: number | null } | null;
}

/** Only http(s) links are rendered as links. */
export function safeUrl(value: string | null): string | null {
  if (value === null) return null;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

/** The delivery state of a run: its delivery / CI events, in seq order, then `run.meta.prUrl` / `meta.delivery`. */
export function deliveryOf(events: readonly EventEnvelope[], meta: Record<string, unknown>): DeliveryView {
  let view: { -readonly [K in keyof DeliveryView]: DeliveryView[K] } = { started: false, kind: null, ok: null, branch: null, prUrl: null, error: null, ci: null };
  for (const event of events) {
    const d = event.data;
    if (event.type === 'delivery_started') view = { ...view, started: true, kind: text(d.kind) || null, ok: null, error: null };
    else if (event.type === 'delivery_completed') {
      view = { ...view, started: true, kind: text(d.kind) || view.kind, ok: d.ok === true, branch: text(d.branch) || view.branch, prUrl: text(d.prUrl) || view.prUrl, error: text(d.error) || null };
    } else if (event.type === 'ci_status') view = { ...view, ci: { status: text(d.status) || 'unknown', detail: text(d.detail), iteration: typeof d.iteration === 'number' ? d.iteration : null } };
  }
  const delivery = obj(meta.delivery);
  const prUrl = text(meta.prUrl) || text(delivery?.prUrl) || view.prUrl || null;
  return { ...view, prUrl, kind: view.kind ?? (text(delivery?.kind) || null), started: view.started || prUrl !== null || delivery !== null };
}
