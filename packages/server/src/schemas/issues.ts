/**
 * Zod issues in AgentGate's words: the error map that turns zod's defaults into plain reasons, and the
 * flattening into `{ path, message }`. Only zod, so the dashboard validates its form with the same
 * wording the API answers with (`errors.ts` builds the AgentGateError around these).
 */
import { z } from 'zod';

/** One schema problem, as exposed in `AgentGateError.details.issues`. */
export interface SchemaIssue {
  /** Dotted field path, arrays as `[i]`: `spec.convergence.limits.maxWallClock`, `tests[1].command`. */
  path: string;
  /** Plain reason, without the path. */
  message: string;
  /** 1-based line in the source file, when the document came from YAML. */
  line?: number;
}

export type PathSegment = string | number;

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
