/**
 * Turns gate output into file:line diagnostics (SPEC 4, Verify).
 *
 * Feedback to the agent is far more useful as "src/a.ts:12 TS2322 …" than as 8 KB of raw log, so the
 * verifier runs every parser below over a failed gate's output. Each parser recognises one tool's
 * documented default format and ignores everything else, so running all of them over any output is safe;
 * the formats are distinct enough that one tool's lines never match another tool's parser.
 *
 * Recognised formats:
 * - tsc: `src/a.ts(12,5): error TS2322: …` and `--pretty`'s `src/a.ts:12:5 - error TS2322: …`
 * - eslint: `stylish` (file header, then `  12:5  error  message  rule`), `unix`, `compact`
 * - vitest: ` FAIL  test/x.test.ts > suite > name`, the error line, then `❯ test/x.test.ts:12:5`
 * - jest: `● suite › name`, the error line, then `at … (test/x.test.js:12:5)`
 * - pytest: `FAILED tests/test_x.py::test_name - AssertionError …` and `tests/test_x.py:12: AssertionError`
 * - node:test (TAP, its default reporter when not on a TTY): `not ok 2 - name`, then the YAML block's
 *   `location: '/abs/test/x.test.js:9:1'` and `error: …`
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Diagnostic } from './types.js';

/** Enough for the agent to see every distinct problem of a typical failure, small enough for a prompt. */
export const MAX_DIAGNOSTICS = 50;

/** A single diagnostic message longer than this is cut; the full text stays in the gate log. */
const MAX_MESSAGE_CHARS = 500;

export interface DiagnosticsOptions {
  /** The directory the tool ran in; absolute paths inside it are reported relative to it. */
  cwd?: string;
  /** Upper bound on the number of diagnostics returned (default {@link MAX_DIAGNOSTICS}). */
  max?: number;
}

// Built from a character code so the pattern holds no control character literal (eslint no-control-regex).
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[ -/]*[@-~]`, 'g');

/** Removes terminal colour codes, which tools emit even when piped if FORCE_COLOR is set. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

function clip(message: string): string {
  const trimmed = message.trim();
  return trimmed.length > MAX_MESSAGE_CHARS ? `${trimmed.slice(0, MAX_MESSAGE_CHARS)}…` : trimmed;
}

/** Reports a path the way the agent sees the repository: relative to the worktree, forward slashes. */
function normaliseFile(file: string, cwd: string | undefined): string {
  let out = file.trim();
  if (out.startsWith('file://')) {
    try {
      out = fileURLToPath(out);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      // A malformed file URL is still a useful location: it is reported as printed.
      return out;
    }
  }
  if (cwd !== undefined && path.isAbsolute(out)) {
    const relative = path.relative(cwd, out);
    if (relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative)) out = relative;
  }
  out = out.split(path.sep).join('/');
  return out.startsWith('./') ? out.slice(2) : out;
}

function lines(output: string): string[] {
  return stripAnsi(output).split(/\r?\n/);
}

function toInt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number.parseInt(text, 10);
  return Number.isFinite(value) ? value : undefined;
}

function make(tool: Diagnostic['tool'], fields: { file?: string | undefined; line?: number | undefined; column?: number | undefined; test?: string | undefined; message: string }): Diagnostic {
  const out: Diagnostic = { tool, message: clip(fields.message) };
  if (fields.file !== undefined) out.file = fields.file;
  if (fields.line !== undefined) out.line = fields.line;
  if (fields.column !== undefined) out.column = fields.column;
  if (fields.test !== undefined) out.test = fields.test;
  return out;
}

const TSC_PLAIN = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/;
const TSC_PRETTY = /^(.+?):(\d+):(\d+) - error (TS\d+): (.*)$/;

/** TypeScript compiler errors, plain and `--pretty`. */
export function parseTscDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const line of lines(output)) {
    const m = TSC_PLAIN.exec(line) ?? TSC_PRETTY.exec(line);
    if (!m) continue;
    out.push(make('tsc', { file: normaliseFile(m[1] ?? '', options.cwd), line: toInt(m[2]), column: toInt(m[3]), message: `${m[4] ?? ''}: ${m[5] ?? ''}` }));
  }
  return out;
}

const ESLINT_STYLISH_ROW = /^\s+(\d+):(\d+)\s+(error|warning)\s+(.+?)(?:\s{2,}(\S+))?\s*$/;
const ESLINT_UNIX = /^(.+?):(\d+):(\d+): (.*) \[(Error|Warning)\/(.+)\]$/;
const ESLINT_COMPACT = /^(.+?): line (\d+), col (\d+), (Error|Warning) - (.*?)(?: \(([^()]+)\))?$/;

/**
 * ESLint errors in the `stylish` (default), `unix` and `compact` formats. Warnings are reported only when
 * there are no errors: a gate usually fails on the errors, and warnings would crowd them out.
 */
export function parseEslintDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const errors: Diagnostic[] = [];
  const warnings: Diagnostic[] = [];
  const add = (severity: string, diagnostic: Diagnostic): void => {
    (severity.toLowerCase() === 'error' ? errors : warnings).push(diagnostic);
  };
  let currentFile: string | undefined;
  for (const line of lines(output)) {
    const unix = ESLINT_UNIX.exec(line);
    if (unix) {
      add(unix[5] ?? '', make('eslint', { file: normaliseFile(unix[1] ?? '', options.cwd), line: toInt(unix[2]), column: toInt(unix[3]), message: `${unix[4] ?? ''} (${unix[6] ?? ''})` }));
      continue;
    }
    const compact = ESLINT_COMPACT.exec(line);
    if (compact) {
      const rule = compact[6] === undefined ? '' : ` (${compact[6]})`;
      add(compact[4] ?? '', make('eslint', { file: normaliseFile(compact[1] ?? '', options.cwd), line: toInt(compact[2]), column: toInt(compact[3]), message: `${compact[5] ?? ''}${rule}` }));
      continue;
    }
    const row = ESLINT_STYLISH_ROW.exec(line);
    if (row && currentFile !== undefined) {
      const rule = row[5] === undefined ? '' : ` (${row[5]})`;
      add(row[3] ?? '', make('eslint', { file: currentFile, line: toInt(row[1]), column: toInt(row[2]), message: `${row[4] ?? ''}${rule}` }));
      continue;
    }
    // A stylish file header: an unindented line that names a file. Anything else unindented ends the block.
    const trimmed = line.trim();
    if (trimmed === '') continue;
    currentFile = /^\S/.test(line) && /\.[cm]?[jt]sx?$|\.(vue|svelte|json|md|mdx|astro|html)$/.test(trimmed) ? normaliseFile(trimmed, options.cwd) : undefined;
  }
  return errors.length > 0 ? errors : warnings;
}

const VITEST_FAIL = /^\s*FAIL\s+(\S+)\s+>\s+(.+?)\s*$/;
const VITEST_SUITE_FAIL = /^\s*FAIL\s+(\S+)\s+\[\s*\S+\s*\]\s*$/;
const VITEST_LOCATION = /^\s*❯\s+(.+?):(\d+):(\d+)\s*$/;
const VITEST_SEPARATOR = /^\s*⎯{3,}/;

/**
 * Vitest failures from its default reporter: one diagnostic per ` FAIL  file > suite > test` block, with
 * the first error line as message and the first `❯ file:line:col` frame as location.
 */
export function parseVitestDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const out: Diagnostic[] = [];
  let block: { file: string; test?: string; message?: string; line?: number; column?: number; locationFile?: string } | undefined;
  const close = (): void => {
    if (block === undefined) return;
    out.push(make('vitest', { file: block.locationFile ?? block.file, line: block.line, column: block.column, test: block.test, message: block.message ?? 'test failed' }));
    block = undefined;
  };
  for (const line of lines(output)) {
    const fail = VITEST_FAIL.exec(line);
    const suite = fail ? null : VITEST_SUITE_FAIL.exec(line);
    if (fail || suite) {
      close();
      const file = normaliseFile((fail ?? suite)?.[1] ?? '', options.cwd);
      block = fail ? { file, test: (fail[2] ?? '').trim() } : { file };
      continue;
    }
    if (block === undefined) continue;
    if (VITEST_SEPARATOR.test(line)) {
      close();
      continue;
    }
    const location = VITEST_LOCATION.exec(line);
    if (location) {
      if (block.line === undefined) {
        block.locationFile = normaliseFile(location[1] ?? '', options.cwd);
        block.line = toInt(location[2]);
        block.column = toInt(location[3]);
      }
      continue;
    }
    if (block.message === undefined && line.trim() !== '') block.message = line.trim();
  }
  close();
  return out;
}

const JEST_HEADER = /^\s*● (.+?)\s*$/;
const JEST_FRAME_PAREN = /^\s*at .*\((.+):(\d+):(\d+)\)\s*$/;
const JEST_FRAME_BARE = /^\s*at (?:async )?(\S+):(\d+):(\d+)\s*$/;
const JEST_END = /^(Test Suites:|Tests:|Snapshots:|Time:|Ran all test suites)/;

/**
 * Jest failures: one diagnostic per `● suite › test` block, with the first line of the error as message
 * and the first stack frame outside node_modules as location. `● Console` blocks are log output, skipped.
 */
export function parseJestDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const out: Diagnostic[] = [];
  let block: { test: string; message?: string; file?: string; line?: number; column?: number } | undefined;
  const close = (): void => {
    if (block === undefined) return;
    out.push(make('jest', { file: block.file, line: block.line, column: block.column, test: block.test, message: block.message ?? 'test failed' }));
    block = undefined;
  };
  for (const line of lines(output)) {
    const header = JEST_HEADER.exec(line);
    if (header) {
      close();
      const name = header[1] ?? '';
      block = name === 'Console' ? undefined : { test: name };
      continue;
    }
    if (block === undefined) continue;
    if (JEST_END.test(line.trim())) {
      close();
      continue;
    }
    const frame = JEST_FRAME_PAREN.exec(line) ?? JEST_FRAME_BARE.exec(line);
    if (frame) {
      const file = frame[1] ?? '';
      if (block.file === undefined && !file.includes('node_modules') && !file.startsWith('node:')) {
        block.file = normaliseFile(file, options.cwd);
        block.line = toInt(frame[2]);
        block.column = toInt(frame[3]);
      }
      continue;
    }
    if (block.message === undefined && line.trim() !== '') block.message = line.trim();
  }
  close();
  return out;
}

const PYTEST_SUMMARY = /^(FAILED|ERROR) (.+?)(?: - (.*))?$/;
const PYTEST_LOCATION = /^(\S+\.py):(\d+): (\w+)$/;

/**
 * pytest failures from the short test summary (`FAILED file::test - reason`), with line numbers taken
 * from the traceback's last line (`file.py:12: AssertionError`). Without a summary (older pytest or
 * `-rN`) the traceback lines alone become diagnostics.
 */
export function parsePytestDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const summary: Diagnostic[] = [];
  const locations: Array<{ file: string; line: number | undefined; error: string }> = [];
  for (const line of lines(output)) {
    const location = PYTEST_LOCATION.exec(line);
    if (location) {
      locations.push({ file: normaliseFile(location[1] ?? '', options.cwd), line: toInt(location[2]), error: location[3] ?? '' });
      continue;
    }
    const entry = PYTEST_SUMMARY.exec(line);
    if (!entry) continue;
    const id = entry[2] ?? '';
    const split = id.indexOf('::');
    const file = normaliseFile(split === -1 ? id : id.slice(0, split), options.cwd);
    if (!/\.py$/.test(file)) continue;
    const test = split === -1 ? undefined : id.slice(split + 2);
    summary.push(make('pytest', { file, test, message: entry[3] ?? (entry[1] === 'ERROR' ? 'error' : 'failed') }));
  }
  if (summary.length === 0) return locations.map((l) => make('pytest', { file: l.file, line: l.line, message: l.error }));
  // Tracebacks appear in the same order as the summary; give each failure the next location of its file.
  const pending = [...locations];
  for (const diagnostic of summary) {
    const index = pending.findIndex((l) => l.file === diagnostic.file);
    if (index === -1) continue;
    const [location] = pending.splice(index, 1);
    if (location?.line !== undefined) diagnostic.line = location.line;
  }
  return summary;
}

const TAP_NOT_OK = /^\s*not ok \d+ - (.+?)(?:\s+#\s.*)?$/;
const TAP_LOCATION = /^\s*location:\s*'(.+):(\d+):(\d+)'\s*$/;
const TAP_ERROR = /^(\s*)error:\s*(.*)$/;

/**
 * node:test failures from its TAP output: the test name from `not ok`, file:line from the YAML block's
 * `location`, the message from its `error` (inline or the first line of a `|-` block).
 */
export function parseNodeTestDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const out: Diagnostic[] = [];
  const all = lines(output);
  for (let i = 0; i < all.length; i += 1) {
    const failed = TAP_NOT_OK.exec(all[i] ?? '');
    if (!failed) continue;
    let file: string | undefined;
    let line: number | undefined;
    let column: number | undefined;
    let message = 'failed';
    for (let j = i + 1; j < all.length && !/^\s*\.\.\.\s*$/.test(all[j] ?? '') && !TAP_NOT_OK.test(all[j] ?? ''); j += 1) {
      const text = all[j] ?? '';
      const location = TAP_LOCATION.exec(text);
      if (location) {
        file = normaliseFile(location[1] ?? '', options.cwd);
        line = toInt(location[2]);
        column = toInt(location[3]);
        continue;
      }
      const error = TAP_ERROR.exec(text);
      if (!error) continue;
      const inline = (error[2] ?? '').trim();
      if (inline !== '' && !/^[|>]-?$/.test(inline)) {
        message = inline.replace(/^'(.*)'$/, '$1');
      } else {
        const next = all.slice(j + 1).find((l) => l.trim() !== '');
        if (next !== undefined) message = next.trim();
      }
    }
    out.push(make('node-test', { file, line, column, test: failed[1], message }));
  }
  return out;
}

const PARSERS = [parseTscDiagnostics, parseEslintDiagnostics, parseVitestDiagnostics, parseJestDiagnostics, parsePytestDiagnostics, parseNodeTestDiagnostics] as const;

/**
 * Runs every parser over `output` and returns the distinct diagnostics, at most `max` of them, in
 * parser order (compiler errors first: they usually explain the test failures that follow).
 */
export function parseDiagnostics(output: string, options: DiagnosticsOptions = {}): Diagnostic[] {
  const max = options.max ?? MAX_DIAGNOSTICS;
  const seen = new Set<string>();
  const out: Diagnostic[] = [];
  for (const parser of PARSERS) {
    for (const diagnostic of parser(output, options)) {
      const key = JSON.stringify([diagnostic.tool, diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.test, diagnostic.message]);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(diagnostic);
      if (out.length >= max) return out;
    }
  }
  return out;
}
