/**
 * FeedbackGenerator (SPEC 4): turns failed gates and failed CI jobs into the prompt the agent gets in the
 * next iteration. Three properties matter more than prose:
 * - **deterministic** — the same input gives the same bytes (no timestamps, nothing reordered), so runs
 *   are reproducible and feedback can be compared across iterations;
 * - **bounded** — the text never exceeds `maxBytes` (UTF-8); output excerpts share a budget and, if the
 *   text is still too long, it is cut with a visible `[… truncated N bytes]` marker, keeping the file
 *   list and the closing instruction;
 * - **structured** — markdown with one section per failed gate: what ran, how it failed, the parsed
 *   diagnostics (`file:line:col — message`), the relevant lines of output, then the files to look at.
 *
 * Kept in one file (over 400 lines) on purpose: the byte budget is shared by every section and the final
 * cut must keep the file list and the closing instruction, so the renderer and its budget arithmetic stay
 * where that invariant can be read at once.
 */
import { AgentGateError } from '../errors.js';
import type { Diagnostic, GateResult, VerificationReport } from '../gates/types.js';
import { redact } from '../util/secrets.js';

export interface CiFailedJob {
  name: string;
  /** The job's log, or the part of it the forge returned (the generator picks the lines to show). */
  logExcerpt: string;
  url?: string;
}

export interface CiFailure {
  /** One line from the delivery manager, e.g. "2 of 5 checks failed on abc1234". */
  summary: string;
  failedJobs: CiFailedJob[];
}

export interface FeedbackInput {
  /** The iteration that failed (1-based). */
  iteration: number;
  report?: VerificationReport;
  ci?: CiFailure;
  /** Hard cap on the UTF-8 size of `text` (default 8000, at least 256). */
  maxBytes?: number;
  /** Cap on each output excerpt in bytes (default 2000); excerpts also share what `maxBytes` leaves. */
  excerptBytes?: number;
  /** Secret values to redact; well-known token shapes are redacted regardless. */
  secrets?: readonly string[];
  /** Workspace paths the snapshot could not capture (nested repositories, submodule paths). */
  uncaptured?: readonly string[];
}

export interface Feedback {
  text: string;
  /** True when the hard cap cut text (the marker is in `text`); shortened excerpts do not count. */
  truncated: boolean;
  /** Names of the failed gates, in report order. */
  failedGates: string[];
  /** Names of the failed CI jobs, in the order given. */
  failedJobs: string[];
  /** Unique files named by the diagnostics of failed gates, in order of first mention. */
  files: string[];
}

export const FEEDBACK_DEFAULTS = { maxBytes: 8000, excerptBytes: 2000 } as const;

/** The closing line of every feedback text. */
export const FEEDBACK_INSTRUCTION = 'Fix the failures above; do not modify protected tests or verify.yaml.';

const MIN_MAX_BYTES = 256;
/** Below this an excerpt is more noise than help; it is left out. */
const MIN_EXCERPT_BYTES = 120;
/** Bytes an excerpt block adds around its lines: label, fences, newlines. */
const EXCERPT_OVERHEAD_BYTES = 64;
const MAX_DIAGNOSTICS_PER_GATE = 15;
const MAX_LISTED_FILES = 25;
const MAX_MESSAGE_CHARS = 240;
const MAX_LINE_BYTES = 400;
const CONTEXT_BEFORE = 2;
const CONTEXT_AFTER = 8;
/** When cutting, prefer a line end if one lies within this many bytes before the cut. */
const LINE_SNAP_BYTES = 200;

/**
 * Lines that usually sit at a failure: test runner verdicts (FAIL, ✗, ×, not ok), compiler and linter
 * errors, `SomethingError`/`SomethingException`, npm's `ERR!`, Python tracebacks and Rust panics.
 */
const FAILURE_MARKER = /\b(?:FAIL(?:ED|URE)?|ERROR|error|not ok|Traceback|panicked)\b|\w*(?:Error|Exception)\b|\bERR!|[✗✕×❌]/;
/** ANSI colour and cursor sequences (built from a string: the ESC character in a literal trips lint). */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[ -/]*[@-~]`, 'g');

interface ExcerptSlot {
  /** Cleaned output lines. */
  lines: string[];
  /** Bytes of the complete cleaned output. */
  need: number;
}

interface Section {
  render: (excerptBytes: number) => string;
  slot: ExcerptSlot | null;
}

/**
 * Builds the feedback for one failed iteration. Throws `AG_ERR_CONFIG_INVALID` only for an unusable
 * `maxBytes`/`excerptBytes`; everything else renders.
 */
export function generateFeedback(input: FeedbackInput): Feedback {
  const maxBytes = input.maxBytes ?? FEEDBACK_DEFAULTS.maxBytes;
  const excerptCap = input.excerptBytes ?? FEEDBACK_DEFAULTS.excerptBytes;
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_MAX_BYTES) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Feedback maxBytes must be an integer ≥ ${MIN_MAX_BYTES} (got ${maxBytes})`);
  }
  if (!Number.isInteger(excerptCap) || excerptCap < 0) {
    throw new AgentGateError('AG_ERR_CONFIG_INVALID', `Feedback excerptBytes must be an integer ≥ 0 (got ${excerptCap})`);
  }
  const secrets = input.secrets ?? [];
  const clean = (text: string): string => redact(text, secrets);

  const gates = input.report?.gates ?? [];
  const failed = gates.filter((g) => !g.passed);
  const jobs = input.ci?.failedJobs ?? [];
  const files = uniqueFiles(failed);

  const sections: Section[] = [
    ...failed.map((gate): Section => {
      const slot = excerptSlot(clean(gate.outputTail ?? ''));
      return { slot, render: (bytes) => renderGate(gate, clean, slot, bytes) };
    }),
    ...jobs.map((job): Section => {
      const slot = excerptSlot(clean(job.logExcerpt));
      return { slot, render: (bytes) => renderJob(job, clean, slot, bytes) };
    }),
  ];

  const verificationFailed = input.report !== undefined && (!input.report.passed || failed.length > 0);
  const head: string[] = [];
  if (verificationFailed || input.ci === undefined) {
    head.push(`## Verification failed (iteration ${input.iteration})`);
    head.push(gateSummary(failed.length, gates.length, failed));
  }
  const ciHead: string[] =
    input.ci === undefined
      ? []
      : [`## CI failed (iteration ${input.iteration})`, ...(input.ci.summary.trim() === '' ? [] : [clean(oneLine(input.ci.summary, 500))])];
  const tail: string[] = [];
  if (files.length > 0) tail.push(renderFiles(files));
  if (input.uncaptured !== undefined && input.uncaptured.length > 0) tail.push(renderUncaptured(input.uncaptured, clean));
  tail.push(FEEDBACK_INSTRUCTION);

  const assemble = (budgets: readonly number[]): { body: string; tail: string } => {
    const rendered = sections.map((section, i) => section.render(budgets[i] ?? 0));
    const body = [...head, ...rendered.slice(0, failed.length), ...ciHead, ...rendered.slice(failed.length)].join('\n\n');
    return { body, tail: tail.join('\n\n') };
  };

  const skeleton = assemble(sections.map(() => 0));
  const skeletonBytes = byteLength(`${skeleton.body}\n\n${skeleton.tail}\n`);
  const budgets = shareExcerptBudget(sections, maxBytes - skeletonBytes, excerptCap);
  const { body, tail: tailText } = assemble(budgets);
  const full = `${body}\n\n${tailText}\n`;

  const base = { failedGates: failed.map((g) => g.name), failedJobs: jobs.map((j) => j.name), files };
  if (byteLength(full) <= maxBytes) return { text: full, truncated: false, ...base };
  return { text: capText(body, tailText, maxBytes), truncated: true, ...base };
}

/** A service wrapper around {@link generateFeedback} with per-engine defaults (size caps, secrets). */
export class FeedbackGenerator {
  constructor(private readonly defaults: Pick<FeedbackInput, 'maxBytes' | 'excerptBytes' | 'secrets'> = {}) {}

  generate(input: FeedbackInput): Feedback {
    return generateFeedback({ ...this.defaults, ...input });
  }
}

/** At most this many uncaptured paths are named (each cut to 200 characters). */
const MAX_UNCAPTURED_SHOWN = 20;

function renderUncaptured(paths: readonly string[], clean: (s: string) => string): string {
  const shown = paths.slice(0, MAX_UNCAPTURED_SHOWN).map((p) => `- ${inlineCode(clean(oneLine(p, 200)))}`);
  const more = paths.length > MAX_UNCAPTURED_SHOWN ? [`- … and ${paths.length - MAX_UNCAPTURED_SHOWN} more`] : [];
  return [
    '## Changes that are not part of your result',
    'These paths are nested git repositories or submodule paths. Files you change there are not recorded in the run branch, even though the gates saw them; make your change outside them:',
    ...shown,
    ...more,
  ].join('\n');
}

function gateSummary(failedCount: number, total: number, failed: readonly GateResult[]): string {
  if (failedCount === 0) return 'The verification failed, but no gate reported a failure.';
  const names = failed.map((g) => inlineCode(g.name)).join(', ');
  return `${failedCount} of ${total} ${total === 1 ? 'gate' : 'gates'} failed: ${names}.`;
}

function renderGate(gate: GateResult, clean: (s: string) => string, slot: ExcerptSlot | null, excerptBytes: number): string {
  const lines = [`### Gate ${inlineCode(gate.name)} failed (${gate.level})`];
  if (gate.command !== undefined && gate.command !== '') lines.push(`- Command: ${inlineCode(clean(oneLine(gate.command, 500)))}`);
  if (gate.timedOut === true) lines.push('- Timed out: the command was killed when it exceeded its timeout.');
  else if (gate.exitCode === null) lines.push('- Exit code: none (the command was killed by a signal)');
  else if (gate.exitCode !== undefined) lines.push(`- Exit code: ${gate.exitCode}`);
  if (gate.message !== undefined && gate.message.trim() !== '') lines.push(`- Reason: ${clean(oneLine(gate.message, 500))}`);

  const shown = gate.diagnostics.slice(0, MAX_DIAGNOSTICS_PER_GATE);
  if (shown.length > 0) {
    lines.push('', 'Diagnostics:');
    for (const d of shown) lines.push(`- ${clean(formatDiagnostic(d))}`);
    const hidden = gate.diagnostics.length - shown.length;
    if (hidden > 0) lines.push(`- … and ${hidden} more ${hidden === 1 ? 'diagnostic' : 'diagnostics'}`);
  }
  const excerpt = renderExcerpt('Output', slot, excerptBytes);
  if (excerpt !== '') lines.push('', excerpt);
  return lines.join('\n');
}

function renderJob(job: CiFailedJob, clean: (s: string) => string, slot: ExcerptSlot | null, excerptBytes: number): string {
  const lines = [`### Job ${inlineCode(clean(oneLine(job.name, 200)))} failed`];
  if (job.url !== undefined && job.url !== '') lines.push(`- URL: ${clean(oneLine(job.url, 500))}`);
  const excerpt = renderExcerpt('Log', slot, excerptBytes);
  if (excerpt !== '') lines.push('', excerpt);
  return lines.join('\n');
}

/** `file:line:col — test — message`, each part only when known. */
export function formatDiagnostic(d: Diagnostic): string {
  const parts: string[] = [];
  if (d.file !== undefined && d.file !== '') {
    let location = d.file;
    if (d.line !== undefined) location += `:${d.line}`;
    if (d.line !== undefined && d.column !== undefined) location += `:${d.column}`;
    parts.push(location);
  }
  if (d.test !== undefined && d.test !== '') parts.push(`test ${inlineCode(oneLine(d.test, MAX_MESSAGE_CHARS))}`);
  parts.push(oneLine(d.message, MAX_MESSAGE_CHARS) || '(no message)');
  return parts.join(' — ');
}

function renderFiles(files: readonly string[]): string {
  const shown = files.slice(0, MAX_LISTED_FILES).map((f) => `- ${oneLine(f, 300)}`);
  const hidden = files.length - MAX_LISTED_FILES;
  if (hidden > 0) shown.push(`- … and ${hidden} more`);
  return ['### Files to look at', ...shown].join('\n');
}

function uniqueFiles(failed: readonly GateResult[]): string[] {
  const seen = new Set<string>();
  for (const gate of failed) {
    for (const d of gate.diagnostics) {
      if (d.file !== undefined && d.file !== '') seen.add(d.file.replace(/^\.\//, ''));
    }
  }
  return [...seen];
}

// ---------------------------------------------------------------------------------------------------
// Excerpts

function excerptSlot(output: string): ExcerptSlot | null {
  const lines = output
    .replace(ANSI, '')
    .split(/\r?\n/)
    // A carriage return without a newline redraws the line (progress bars): keep what was left visible.
    .map((line) => capLine((line.split('\r').at(-1) ?? '').trimEnd()));
  while (lines.length > 0 && lines[0] === '') lines.shift();
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  if (lines.length === 0) return null;
  return { lines, need: byteLength(lines.join('\n')) };
}

/**
 * Splits what the skeleton leaves of `available` bytes among the excerpts: smallest first, each gets at
 * most an equal share of what is left and at most `cap`, so a short log does not waste its share and a
 * huge one cannot starve the others. Returns one budget per section (0 = no excerpt).
 */
function shareExcerptBudget(sections: readonly Section[], available: number, cap: number): number[] {
  const budgets = sections.map(() => 0);
  const slots = sections
    .map((s, index) => ({ index, need: s.slot === null ? 0 : s.slot.need }))
    .filter((s) => s.need > 0)
    .sort((a, b) => a.need - b.need || a.index - b.index);
  let remaining = available;
  slots.forEach((slot, position) => {
    const share = Math.floor(remaining / (slots.length - position)) - EXCERPT_OVERHEAD_BYTES;
    const bytes = Math.min(slot.need, share, cap);
    if (bytes < Math.min(slot.need, MIN_EXCERPT_BYTES)) return;
    budgets[slot.index] = bytes;
    remaining -= bytes + EXCERPT_OVERHEAD_BYTES;
  });
  return budgets;
}

function renderExcerpt(what: 'Output' | 'Log', slot: ExcerptSlot | null, budget: number): string {
  if (slot === null || budget <= 0) return '';
  const picked = pickLines(slot, budget);
  if (picked.lines.length === 0) return '';
  const label =
    picked.kind === 'complete'
      ? `${what} (complete):`
      : picked.kind === 'failures'
        ? `${what} excerpt (lines around failures):`
        : `${what} excerpt (last lines):`;
  const fence = fenceFor(picked.lines);
  return [label, `${fence}text`, ...picked.lines, fence].join('\n');
}

interface Picked {
  kind: 'complete' | 'failures' | 'tail';
  lines: string[];
}

/** The lines to show within `budget` bytes: everything, else the windows around failure markers, else the tail. */
function pickLines(slot: ExcerptSlot, budget: number): Picked {
  const { lines } = slot;
  if (slot.need <= budget) return { kind: 'complete', lines };

  const markers = lines.flatMap((line, i) => (FAILURE_MARKER.test(line) ? [i] : []));
  if (markers.length > 0) {
    const picked = aroundMarkers(lines, markers, budget);
    if (picked.some((l) => l !== '…')) return { kind: 'failures', lines: picked };
  }
  return { kind: 'tail', lines: tailLines(lines, budget) };
}

function aroundMarkers(lines: readonly string[], markers: readonly number[], budget: number): string[] {
  const windows: Array<[number, number]> = [];
  for (const i of markers) {
    const start = Math.max(0, i - CONTEXT_BEFORE);
    const end = Math.min(lines.length - 1, i + CONTEXT_AFTER);
    const last = windows.at(-1);
    if (last !== undefined && start <= last[1] + 1) last[1] = Math.max(last[1], end);
    else windows.push([start, end]);
  }
  const out: string[] = [];
  let used = 0;
  const add = (line: string): boolean => {
    const cost = byteLength(line) + (out.length === 0 ? 0 : 1);
    if (used + cost > budget) return false;
    out.push(line);
    used += cost;
    return true;
  };
  let previousEnd = -1;
  for (const [start, end] of windows) {
    if (start > previousEnd + 1 && !add('…')) return out;
    for (let i = start; i <= end; i += 1) if (!add(lines[i] ?? '')) return out;
    previousEnd = end;
  }
  if (previousEnd < lines.length - 1) add('…');
  return out;
}

function tailLines(lines: readonly string[], budget: number): string[] {
  const out: string[] = [];
  let used = byteLength('…') + 1;
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    const line = lines[i] ?? '';
    const cost = byteLength(line) + 1;
    if (used + cost > budget) {
      if (out.length === 0) out.unshift(`…${sliceEnd(line, budget - used)}`);
      else out.unshift('…');
      return out;
    }
    out.unshift(line);
    used += cost;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Text helpers

/** The cut with the hard cap: body shortened at a char (preferably line) boundary, marker, then the tail. */
function capText(body: string, tail: string, maxBytes: number): string {
  const bodyBytes = byteLength(body);
  let keepTail = `\n\n${tail}\n`;
  // A tail (file list) too long to leave room for the body shrinks to the instruction alone.
  if (byteLength(keepTail) > maxBytes / 2) keepTail = `\n\n${FEEDBACK_INSTRUCTION}\n`;
  let keep = maxBytes - byteLength(keepTail) - byteLength(marker(bodyBytes));
  for (;;) {
    const cut = cutUtf8(body, Math.max(0, keep));
    const fence = openFence(cut);
    const dropped = bodyBytes - byteLength(cut);
    const candidate = `${cut}${fence === null ? '' : `\n${fence}`}${marker(dropped)}${keepTail}`;
    const over = byteLength(candidate) - maxBytes;
    if (over <= 0 || keep <= 0) return over <= 0 ? candidate : cutUtf8(candidate, maxBytes);
    keep -= over;
  }
}

function marker(droppedBytes: number): string {
  return `\n[… truncated ${droppedBytes} bytes]`;
}

/** The fence of a code block left open at the end of `text`, or null. */
function openFence(text: string): string | null {
  let open: string | null = null;
  for (const line of text.split('\n')) {
    const match = /^(`{3,})(\w*)\s*$/.exec(line);
    if (match === null) continue;
    const ticks = match[1] ?? '';
    if (open === null) open = ticks;
    else if (match[2] === '' && ticks.length >= open.length) open = null;
  }
  return open;
}

/** A fence longer than any backtick run in the excerpt, so output cannot close it early (CommonMark). */
function fenceFor(lines: readonly string[]): string {
  let longest = 0;
  for (const line of lines) for (const run of line.match(/`+/g) ?? []) longest = Math.max(longest, run.length);
  return '`'.repeat(Math.max(3, longest + 1));
}

function inlineCode(text: string): string {
  let longest = 0;
  for (const run of text.match(/`+/g) ?? []) longest = Math.max(longest, run.length);
  const ticks = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${ticks}${pad}${text}${pad}${ticks}`;
}

/** Whitespace (newlines included) collapsed to single spaces, at most `max` characters. */
function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const chars = [...flat];
  return chars.length <= max ? flat : `${chars.slice(0, max - 1).join('')}…`;
}

function capLine(line: string): string {
  return byteLength(line) <= MAX_LINE_BYTES ? line : `${cutUtf8(line, MAX_LINE_BYTES - 3)}…`;
}

function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** The longest prefix of `text` of at most `maxBytes` UTF-8 bytes, never splitting a character. */
function cutUtf8(text: string, maxBytes: number): string {
  const buffer = Buffer.from(text, 'utf8');
  if (buffer.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && ((buffer[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  const prefix = buffer.subarray(0, end).toString('utf8');
  const newline = prefix.lastIndexOf('\n');
  return newline >= 0 && byteLength(prefix.slice(newline)) <= LINE_SNAP_BYTES ? prefix.slice(0, newline) : prefix;
}

/** The longest suffix of `text` of at most `maxBytes` UTF-8 bytes, never splitting a character. */
function sliceEnd(text: string, maxBytes: number): string {
  const buffer = Buffer.from(text, 'utf8');
  if (buffer.length <= maxBytes) return text;
  let start = buffer.length - Math.max(0, maxBytes);
  while (start < buffer.length && ((buffer[start] ?? 0) & 0xc0) === 0x80) start += 1;
  return buffer.subarray(start).toString('utf8');
}
