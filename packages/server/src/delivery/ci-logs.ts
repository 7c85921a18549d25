/**
 * Failed CI job logs → what the agent needs to read: the failing step and the error lines with a little
 * context, bounded. Pure functions over text (GitHub Actions logs with their timestamps and `##[group]` /
 * `##[error]` markers, GitLab job traces with `section_start`/`section_end` markers and ANSI colours), so
 * they are tested on captured logs; the FeedbackGenerator then fits the excerpts into its byte budget.
 */

export interface JobLogSummary {
  /** The step that failed: from the forge's job steps when known, else the last step opened before the first error. */
  failingStep?: string;
  /** Error lines with context, cleaned; at most `maxBytes`. */
  excerpt: string;
  truncated: boolean;
}

export interface SummariseOptions {
  failingStep?: string;
  /** Default 4000. */
  maxBytes?: number;
  /** Default 40. */
  maxLines?: number;
}

const ESC = String.fromCharCode(27);
const ANSI = new RegExp(`${ESC}\\[[0-9;?]*[ -/]*[@-~]`, 'g');
/** `2024-05-01T10:00:00.1234567Z ` at the start of every GitHub Actions log line. */
const GITHUB_TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?/;
/** `section_start:1714557600:step_script\r` (GitLab), optionally with `[collapsed=true]`. */
const GITLAB_SECTION = /section_(start|end):\d+:([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\r?/;
const GITHUB_GROUP = /^##\[group\](.*)$/;
const GITHUB_ERROR = /^##\[error\](.*)$/;
/** Lines that usually sit at a failure (test verdicts, compiler errors, exceptions, npm ERR!). */
const ERROR_LINE = /\b(?:FAIL(?:ED|URE)?|ERROR|error|not ok|Traceback|panicked|AssertionError|Expected|expected)\b|\w*(?:Error|Exception)\b|\bERR!|[✗✕×❌]/;
const CONTEXT_BEFORE = 2;
const CONTEXT_AFTER = 2;

interface CleanLine {
  text: string;
  step: string | undefined;
  error: boolean;
}

function cleanLines(log: string): CleanLine[] {
  const out: CleanLine[] = [];
  let step: string | undefined;
  for (const raw of log.split('\n')) {
    let text = raw.replace(ANSI, '').replace(GITHUB_TIMESTAMP, '');
    const section = GITLAB_SECTION.exec(text);
    if (section !== null) {
      if (section[1] === 'start') step = section[2];
      text = text.replace(GITLAB_SECTION, '');
    }
    text = text.replace(/\r/g, '').trimEnd();
    const group = GITHUB_GROUP.exec(text);
    if (group !== null) {
      step = (group[1] ?? '').replace(/^Run /, '').trim() || step;
      continue;
    }
    if (text === '##[endgroup]') continue;
    const marked = GITHUB_ERROR.exec(text);
    if (marked !== null) {
      out.push({ text: `error: ${marked[1] ?? ''}`, step, error: true });
      continue;
    }
    if (text.trim() === '') continue;
    out.push({ text, step, error: ERROR_LINE.test(text) });
  }
  return out;
}

/** Summarises one failed job's log. */
export function summariseJobLog(log: string, options: SummariseOptions = {}): JobLogSummary {
  const maxBytes = options.maxBytes ?? 4000;
  const maxLines = options.maxLines ?? 40;
  const lines = cleanLines(log);
  const firstError = lines.findIndex((line) => line.error);
  const failingStep = options.failingStep ?? (firstError === -1 ? undefined : lines[firstError]?.step);
  const keep = new Set<number>();
  if (firstError === -1) {
    // No recognisable error line: the end of the log is where a job usually says why it stopped.
    for (let i = Math.max(0, lines.length - 15); i < lines.length; i += 1) keep.add(i);
  } else {
    lines.forEach((line, index) => {
      if (!line.error) return;
      for (let i = Math.max(0, index - CONTEXT_BEFORE); i <= Math.min(lines.length - 1, index + CONTEXT_AFTER); i += 1) keep.add(i);
    });
  }
  const picked = [...keep].sort((a, b) => a - b);
  const selected: string[] = [];
  let previous = -2;
  let bytes = 0;
  let truncated = false;
  for (const index of picked) {
    if (selected.length >= maxLines) {
      truncated = true;
      break;
    }
    const text = (lines[index]?.text ?? '').slice(0, 400);
    const gap = previous >= 0 && index > previous + 1 ? '…\n' : '';
    const size = Buffer.byteLength(`${gap}${text}\n`);
    if (bytes + size > maxBytes) {
      truncated = true;
      break;
    }
    selected.push(`${gap}${text}`);
    bytes += size;
    previous = index;
  }
  const excerpt = selected.join('\n');
  return { ...(failingStep === undefined ? {} : { failingStep }), excerpt, truncated };
}

/** The log excerpt the feedback shows for one job: the failing step first, then the lines. */
export function jobExcerpt(summary: JobLogSummary): string {
  const head = summary.failingStep === undefined ? '' : `Failing step: ${summary.failingStep}\n`;
  return `${head}${summary.excerpt}${summary.truncated ? '\n[… more lines in the job log]' : ''}`;
}
