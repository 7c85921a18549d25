/**
 * Helpers shared by the drivers of CLI agents that stream JSON lines (`claude --output-format
 * stream-json`, `codex exec --json`): narrowing parsed JSON without `any`, redacting every string of a
 * line before it is stored or emitted, bounding what goes into events, an append-only transcript, and a
 * sweep for agent processes that left the agent's process group.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';

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

/** `text` cut to `max` characters with a note saying how much was left out. */
export function truncateText(text: string, max: number, where = 'in the transcript'): string {
  return text.length <= max ? text : `${text.slice(0, max)}… [${text.length - max} more characters ${where}]`;
}

/** A JSON value whose strings are each cut to `max` characters (tool inputs can hold whole files). */
export function boundJsonStrings(value: unknown, max: number): unknown {
  return mapJsonStrings(value, (text) => truncateText(text, max));
}

/**
 * Append-only transcript writer that never blocks the line callback; the first write error is kept and
 * reported by {@link close} so the driver can classify it instead of losing it.
 */
export class AgentTranscript {
  private readonly stream: WriteStream;
  private error: Error | undefined;

  constructor(readonly path: string) {
    this.stream = createWriteStream(path, { flags: 'a', encoding: 'utf8' });
    this.stream.on('error', (error) => {
      this.error ??= error;
    });
  }

  write(line: string): void {
    if (this.error === undefined) this.stream.write(`${line}\n`);
  }

  /** Flushes and closes; resolves with the first write error, if any. Safe to call twice. */
  close(): Promise<Error | undefined> {
    return new Promise((resolve) => {
      if (this.stream.destroyed || this.stream.writableFinished) {
        resolve(this.error);
        return;
      }
      this.stream.once('error', () => resolve(this.error));
      this.stream.end(() => resolve(this.error));
    });
  }
}

/**
 * Environment variable carrying a per-invocation tag into every process an agent starts.
 *
 * Why: agent CLIs run their tools in process groups of their own (claude's Bash tool does: its shell is
 * a group leader), so killing the agent's group does not reach them when the agent is SIGKILLed before
 * it can clean up. The tag survives re-parenting, and {@link killTaggedProcesses} finds them by it.
 */
export const AGENT_PROCESS_TAG_ENV = 'AGENTGATE_AGENT_PROCESS_TAG';

/**
 * Live processes (not zombies, not this process) whose environment holds `AGENT_PROCESS_TAG_ENV=tag`.
 * Linux only (`/proc`); elsewhere returns [] and the process-group kill is the only guarantee.
 */
export async function findTaggedProcesses(tag: string): Promise<number[]> {
  const needle = `${AGENT_PROCESS_TAG_ENV}=${tag}`;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const found: number[] = [];
  await Promise.all(
    entries
      .filter((entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid)
      .map(async (entry) => {
        const environ = await readProcFile(entry, 'environ');
        if (environ === undefined || !environ.split('\0').includes(needle)) return;
        const stat = await readProcFile(entry, 'stat');
        if (stat === undefined) return;
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        if (state !== 'Z' && state !== 'X') found.push(Number(entry));
      }),
  );
  return found.sort((a, b) => a - b);
}

async function readProcFile(pid: string, file: string): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Gone since readdir, or a process of another user / a kernel thread: not one of ours.
    if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return undefined;
    throw error;
  }
}

/**
 * SIGKILLs every process tagged with `tag`, repeating (processes may fork while being killed) until none
 * is left or `timeoutMs` has passed. Returns the pids still alive at the end (empty when all are gone).
 */
export async function killTaggedProcesses(tag: string, timeoutMs: number): Promise<number[]> {
  let waited = 0;
  let delay = 5;
  for (;;) {
    const alive = await findTaggedProcesses(tag);
    if (alive.length === 0 || waited >= timeoutMs) return alive;
    for (const pid of alive) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    waited += delay;
    delay = Math.min(delay * 2, 100);
  }
}
