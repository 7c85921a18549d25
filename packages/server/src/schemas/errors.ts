/**
 * Turning schema failures into errors a person can act on.
 *
 * Zod's default messages ("Invalid input: expected string, received undefined") say neither *where* nor
 * *what to write instead*. Every document AgentGate reads (WorkOrder body, TaskSpec, verify.yaml) goes
 * through the helpers here, so each failure becomes one {@link AgentGateError} whose message names the
 * field path (and, for YAML, the file and line) with a plain reason, and whose `details.issues` carries the
 * same data for API clients. Callers branch on the error code, never on this text.
 */

import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document, LineCounter as LineCounterType, Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { AgentGateError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { schemaErrorMap, toSchemaIssues, type PathSegment, type SchemaIssue } from './issues.js';

export { formatPath, schemaErrorMap, toSchemaIssues } from './issues.js';
export type { SchemaIssue } from './issues.js';

/** The message shows at most this many issues; `details.issues` always holds all of them. */
const MAX_ISSUES_IN_MESSAGE = 10;

/** One line per issue: `<file>:<line>: <path>: <reason>` with a file, `<path>: <reason>` without. */
function renderIssue(issue: SchemaIssue, fileName: string | undefined): string {
  if (fileName === undefined) return `${issue.path}: ${issue.message}`;
  const location = issue.line === undefined ? fileName : `${fileName}:${issue.line}`;
  return `${location}: ${issue.path}: ${issue.message}`;
}

export interface SchemaErrorOptions {
  /** Defaults to `AG_ERR_SCHEMA_INVALID`; verify.yaml uses `AG_ERR_VERIFY_CONFIG_INVALID`. */
  code?: ErrorCode;
  /** Source file, named in the message and in `details.file`. */
  fileName?: string;
  /** Maps a failing path to its source line (see {@link parseYamlWithSchema}). */
  lineOf?: (path: readonly PathSegment[]) => number | undefined;
}

/**
 * Converts a ZodError into the classified error every surface reports: HTTP 400 with the field paths,
 * CLI exit 2 with the same text. Issues are joined with `; ` so the message stays one log-friendly line.
 */
export function zodErrorToAgentGateError(error: z.ZodError, options: SchemaErrorOptions = {}): AgentGateError {
  const issues = toSchemaIssues(error, options.lineOf);
  const shown = issues.slice(0, MAX_ISSUES_IN_MESSAGE).map((issue) => renderIssue(issue, options.fileName));
  if (issues.length > MAX_ISSUES_IN_MESSAGE) shown.push(`(and ${issues.length - MAX_ISSUES_IN_MESSAGE} more)`);
  const details: Record<string, unknown> = { issues };
  if (options.fileName !== undefined) details.file = options.fileName;
  // No `cause`: the ZodError carries the raw input (reportInput), which may hold secrets such as agent env values.
  return new AgentGateError(options.code ?? 'AG_ERR_SCHEMA_INVALID', shown.join('; '), { details });
}

/**
 * Validates an already-parsed value (an HTTP JSON body, a programmatic TaskSpec) and returns the schema's
 * output with defaults applied, or throws a classified error naming every failing path.
 */
export function parseWithSchema<S extends z.ZodType>(value: unknown, schema: S, options: SchemaErrorOptions = {}): z.output<S> {
  const result = schema.safeParse(value, { error: schemaErrorMap, reportInput: true });
  if (!result.success) throw zodErrorToAgentGateError(result.error, options);
  return result.data;
}

function camelToSnake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function resolveAlias(node: unknown, doc: Document): unknown {
  return isAlias(node) ? node.resolve(doc) : node;
}

function lineAt(node: unknown, lineCounter: LineCounterType): number | undefined {
  const range = (node as YamlNode | null | undefined)?.range;
  return range === undefined || range === null ? undefined : lineCounter.linePos(range[0]).line;
}

/**
 * Finds the source line of a path in a YAML document: the line of the deepest key or item that exists.
 * A missing field therefore points at its parent's key, and an invalid value at its own key. A camelCase
 * segment that is absent is also looked up in snake_case, because verify.yaml accepts both spellings and
 * is validated after its keys were normalised.
 */
export function yamlLineOf(doc: Document, lineCounter: LineCounterType, path: readonly PathSegment[]): number | undefined {
  let node = resolveAlias(doc.contents, doc);
  let line = lineAt(node, lineCounter);
  for (const segment of path) {
    if (isMap(node)) {
      const candidates = typeof segment === 'string' ? [segment, camelToSnake(segment)] : [String(segment)];
      const pair = node.items.find((p) => {
        const key: unknown = isScalar(p.key) ? p.key.value : p.key;
        return candidates.includes(String(key));
      });
      if (pair === undefined) return line;
      line = lineAt(pair.key, lineCounter) ?? line;
      node = resolveAlias(pair.value, doc);
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment];
      if (item === undefined) return line;
      node = resolveAlias(item, doc);
      line = lineAt(node, lineCounter) ?? line;
    } else {
      return line;
    }
  }
  return line;
}

export interface ParseYamlOptions {
  /** Named in every message (`verify.yaml:12: ...`) and in `details.file`. */
  fileName: string;
  /** Code for schema failures; defaults to `AG_ERR_SCHEMA_INVALID`. */
  code?: ErrorCode;
  /** Code for YAML syntax failures; defaults to `AG_ERR_YAML_PARSE`. */
  syntaxCode?: ErrorCode;
}

/** Drops yaml's " at line X, column Y:" suffix and code snippet: the location is rendered as a prefix. */
function firstLine(message: string): string {
  const head = message.split('\n')[0] ?? message;
  return head.replace(/ at line \d+, column \d+:?$/, '');
}

/**
 * Parses YAML text and validates it against a schema, keeping node ranges so a failure names the line.
 *
 * Syntax errors throw `syntaxCode` (`AG_ERR_YAML_PARSE`) as `<file>:<line>:<col>: <reason>`; schema errors
 * throw `code` as `<file>:<line>: <path>: <reason>`. Aliases are expanded with yaml's default alias-count
 * limit, which protects against "billion laughs" documents.
 */
export function parseYamlWithSchema<S extends z.ZodType>(text: string, schema: S, options: ParseYamlOptions): z.output<S> {
  const { fileName } = options;
  const syntaxCode = options.syntaxCode ?? 'AG_ERR_YAML_PARSE';
  const lineCounter = new LineCounter();
  // `merge` enables `<<: *anchor`, which people use to share fields between list items.
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, merge: true });

  const syntaxError = doc.errors[0];
  if (syntaxError !== undefined) {
    const pos = syntaxError.linePos?.[0];
    const location = pos === undefined ? fileName : `${fileName}:${pos.line}:${pos.col}`;
    const line = pos?.line;
    throw new AgentGateError(syntaxCode, `${location}: invalid YAML: ${firstLine(syntaxError.message)}`, {
      cause: syntaxError,
      details: { file: fileName, ...(line === undefined ? {} : { line }), kind: 'yaml_syntax' },
    });
  }

  let value: unknown;
  try {
    value = doc.toJS();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new AgentGateError(syntaxCode, `${fileName}: invalid YAML: ${reason}`, {
      cause: error,
      details: { file: fileName, kind: 'yaml_syntax' },
    });
  }

  return parseWithSchema(value, schema, {
    code: options.code ?? 'AG_ERR_SCHEMA_INVALID',
    fileName,
    lineOf: (path) => yamlLineOf(doc, lineCounter, path),
  });
}
