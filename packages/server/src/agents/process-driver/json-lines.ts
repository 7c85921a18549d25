/**
 * Narrowing parsed JSON without `any`, and redacting every string of a JSON output line before it is
 * stored or emitted. Shared by the protocols of CLI agents that stream JSON lines
 * (`claude --output-format stream-json`, `codex exec --json`).
 */

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The line parsed as a JSON object; undefined for anything else (blank, not JSON, an array …). */
export function parseJsonObject(line: string): JsonObject | undefined {
  const trimmed = line.trim();
  if (!trimmed.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(trimmed);
    return isJsonObject(value) ? value : undefined;
  } catch (error) {
    // Only a syntax error means "not a JSON line"; anything else is a bug and must surface.
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

export function stringField(object: JsonObject | undefined, key: string): string | undefined {
  const value = object?.[key];
  return typeof value === 'string' ? value : undefined;
}

export function numberField(object: JsonObject | undefined, key: string): number | undefined {
  const value = object?.[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function booleanField(object: JsonObject | undefined, key: string): boolean | undefined {
  const value = object?.[key];
  return typeof value === 'boolean' ? value : undefined;
}

export function objectField(object: JsonObject | undefined, key: string): JsonObject | undefined {
  const value = object?.[key];
  return isJsonObject(value) ? value : undefined;
}

export function arrayField(object: JsonObject | undefined, key: string): unknown[] | undefined {
  const value = object?.[key];
  return Array.isArray(value) ? value : undefined;
}

/** A deep copy of a JSON value with `map` applied to every string (object keys included). */
export function mapJsonStrings(value: unknown, map: (text: string) => string): unknown {
  if (typeof value === 'string') return map(value);
  if (Array.isArray(value)) return value.map((item) => mapJsonStrings(item, map));
  if (isJsonObject(value)) {
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value)) out[map(key)] = mapJsonStrings(item, map);
    return out;
  }
  return value;
}

/**
 * Redacts one output line. A JSON line is redacted string by string on the *decoded* values and
 * re-serialised, so a secret is caught even where JSON escaping would hide it from a plain text search
 * (`\n` before a token, escaped quotes in a value); any other line is redacted as text.
 */
export function redactJsonLine(line: string, redact: (text: string) => string): string {
  const parsed = parseJsonObject(line);
  return parsed === undefined ? redact(line) : JSON.stringify(mapJsonStrings(parsed, redact));
}
