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
import { z } from 'zod';
import { AgentGateError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

/** One schema problem, as exposed in `AgentGateError.details.issues`. */
export interface SchemaIssue {
  /** Dotted field path, arrays as `[i]`: `spec.convergence.limits.maxWallClock`, `tests[1].command`. */
  path: string;
  /** Plain reason, without the path. */
  message: string;
  /** 1-based line in the source file, when the document came from YAML. */
  line?: number;
}

/** The message shows at most this many issues; `details.issues` always holds all of them. */
const MAX_ISSUES_IN_MESSAGE = 10;

type PathSegment = string | number;

/** Renders a zod path as people write it: `spec.agent.env.TOKEN`, `blackbox[0].assertions[2]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out === '' ? '(root)' : out;
}

/** Names the kind of a received value, never its content (it could be a secret). */
function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'object':
      return 'an object';
    case 'string':
      return 'a string';
    case 'number':
      return Number.isNaN(value) ? 'NaN' : 'a number';
    case 'boolean':
      return 'a boolean';
    default:
      return typeof value;
  }
}

/** Quotes a short scalar for messages about enum-like values, where echoing the value helps. */
function quote(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return describeType(value);
}

const TYPE_NAMES: Record<string, string> = {
  object: 'an object',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  record: 'a map of keys to values',
};

function bound(origin: string, value: number | bigint, inclusive: boolean | undefined, side: 'min' | 'max'): string {
  if (origin === 'string') {
    if (side === 'min' && Number(value) === 1) return 'must not be empty';
    return side === 'min' ? `must be at least ${value} characters long` : `must be at most ${value} characters long`;
  }
  if (origin === 'array' || origin === 'set') {
    if (side === 'min' && Number(value) === 1) return 'must have at least one item';
    return side === 'min' ? `must have at least ${value} items` : `must have at most ${value} items`;
  }
  const op = side === 'min' ? (inclusive === false ? '>' : '>=') : inclusive === false ? '<' : '<=';
  return `must be ${op} ${value}`;
}

/** Lists the keys an object schema accepts, so an "unknown key" message can suggest the right one. */
function allowedKeys(inst: unknown): string | undefined {
  if (!(inst instanceof z.ZodObject)) return undefined;
  const keys = Object.keys(inst.shape).sort();
  return keys.length === 0 ? undefined : keys.join(', ');
}

/**
 * A per-parse zod error map producing AgentGate's wording. Messages given explicitly on a schema
 * (`{ error: ... }`) take precedence over this map, so domain-specific reasons (durations, regexes) stay.
 */
export const schemaErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.input === undefined) return 'required';
      const expected = TYPE_NAMES[issue.expected] ?? issue.expected;
      return `expected ${expected}, got ${describeType(issue.input)}`;
    }
    case 'invalid_value': {
      if (issue.input === undefined) return 'required';
      const values = issue.values.map((v) => quote(v));
      const expected = values.length === 1 ? values[0] : `one of ${values.join(', ')}`;
      return `expected ${expected}, got ${quote(issue.input)}`;
    }
    case 'invalid_union': {
      const options: unknown = 'options' in issue ? issue.options : undefined;
      if (issue.discriminator !== undefined && Array.isArray(options)) {
        const input: unknown = issue.input;
        const value = typeof input === 'object' && input !== null ? (input as Record<string, unknown>)[issue.discriminator] : undefined;
        const allowed = options.filter((v) => v !== undefined).map((v) => quote(v)).join(', ');
        if (value === undefined) return `required (one of ${allowed})`;
        return `expected one of ${allowed}, got ${quote(value)}`;
      }
      if (issue.input === undefined) return 'required';
      return `${describeType(issue.input)} does not match any accepted form`;
    }
    case 'unrecognized_keys': {
      const allowed = allowedKeys(issue.inst);
      return allowed === undefined ? 'unknown key' : `unknown key (allowed: ${allowed})`;
    }
    case 'too_small':
      return bound(issue.origin, issue.minimum, issue.inclusive, 'min');
    case 'too_big':
      return bound(issue.origin, issue.maximum, issue.inclusive, 'max');
    case 'invalid_format':
      if (issue.format === 'url') return `expected a URL, got ${quote(issue.input)}`;
      if (issue.format === 'regex') return `does not match the expected format ${issue.pattern ?? ''}`.trim();
      return `expected a valid ${issue.format}`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    case 'invalid_key':
      return 'has an invalid key';
    case 'invalid_element':
      return 'has an invalid element';
    case 'custom':
      return undefined;
    default:
      return undefined;
  }
};

/**
 * Flattens zod issues into {@link SchemaIssue}s. An `unrecognized_keys` issue becomes one issue per key
 * with the key in the path, so the reader (and the line lookup) lands on the offending key itself.
 */
export function toSchemaIssues(error: z.ZodError, lineOf?: (path: readonly PathSegment[]) => number | undefined): SchemaIssue[] {
  const out: SchemaIssue[] = [];
  for (const issue of error.issues) {
    const base = issue.path.filter((s): s is PathSegment => typeof s === 'string' || typeof s === 'number');
    const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...base, key]) : [base];
    for (const path of paths) {
      const entry: SchemaIssue = { path: formatPath(path), message: issue.message };
      const line = lineOf?.(path);
      if (line !== undefined) entry.line = line;
      out.push(entry);
    }
  }
  return out;
}

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
