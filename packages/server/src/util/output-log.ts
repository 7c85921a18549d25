/**
 * A log file of untrusted process output (the agent transcript, gate logs) that keeps the **head and
 * the tail** within a fixed size, however much the process prints. An agent that prints 500 MB must not
 * fill the disk: the first `headBytes` are written as they arrive; after that, lines go to an in-memory
 * ring holding the last `tailBytes`, written when the log closes behind a marker saying how many lines
 * and bytes were omitted between the two.
 *
 * Lines are stored raw and rendered (redacted, prefixed) only when they are written, so a line that is
 * pushed out of the ring costs a counter update and nothing else — the flood is not redacted line by
 * line. Writes never block the caller; the first write error is kept and returned by {@link close}.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { open, stat, truncate } from 'node:fs/promises';

export interface OutputLogLimits {
  /** Bytes written as they arrive, from the start of the file. */
  headBytes: number;
  /** Bytes of the most recent output kept once the head is full. */
  tailBytes: number;
  /** A longer line is cut to this many characters (with a note) before it is stored. */
  maxLineChars: number;
}

/** Turns a stored raw line into the text written (redaction, a `[stderr] ` prefix …). */
export type LineRenderer = (raw: string) => string;

/** Writes the raw line as it is. */
export const verbatim: LineRenderer = (raw) => raw;

/** The line written between head and tail when output was dropped; for people reading the log (nothing parses it). */
export function omissionMarker(lines: number, bytes: number): string {
  return `=== agentgate: ${lines} lines / ${bytes} bytes of output omitted here (the log keeps its first and last part) ===`;
}

/** Bytes a stored line is counted for: its UTF-8 size, a newline, and room for a renderer's prefix. */
const PREFIX_ALLOWANCE = 16;

function lineBytes(raw: string): number {
  return Buffer.byteLength(raw, 'utf8') + 1 + PREFIX_ALLOWANCE;
}

export interface OutputLogStats {
  /** Lines dropped between head and tail (so far). */
  omittedLines: number;
  omittedBytes: number;
}

/**
 * Opens with {@link CappedOutputLog.create} (new file) or {@link CappedOutputLog.append} (a log shared by
 * several writers in turn, such as the per-run transcript every iteration appends to: the caps hold for
 * the file as a whole).
 */
export class CappedOutputLog {
  private error: Error | undefined;
  /** Head bytes still free; once a line does not fit, the head is closed for good (order is kept). */
  private headRoom: number;
  private headOpen: boolean;
  private ringLines: string[] = [];
  private ringRender: LineRenderer[] = [];
  private ringSizes: number[] = [];
  private ringStart = 0;
  private ringBytes = 0;
  private omittedLines = 0;
  private omittedBytes = 0;
  private closing: Promise<Error | undefined> | undefined;

  private constructor(
    readonly path: string,
    private readonly stream: WriteStream,
    private readonly limits: OutputLogLimits,
    headUsed: number,
  ) {
    this.headRoom = Math.max(0, limits.headBytes - headUsed);
    this.headOpen = this.headRoom > 0;
    stream.on('error', (error) => {
      this.error ??= error;
    });
  }

  /** A new (truncated) log. */
  static create(path: string, limits: OutputLogLimits): CappedOutputLog {
    return new CappedOutputLog(path, createWriteStream(path, { flags: 'w' }), limits, 0);
  }

  /**
   * Appends to the log at `path`. When an earlier writer already filled the head, its tail is read back
   * into this writer's ring and the file is cut to the end of the head, so head + tail stay within the
   * limits for the file as a whole rather than per writer.
   */
  static async append(path: string, limits: OutputLogLimits): Promise<CappedOutputLog> {
    let size = 0;
    try {
      size = (await stat(path)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (size <= limits.headBytes) return new CappedOutputLog(path, createWriteStream(path, { flags: 'a' }), limits, size);
    const { headEnd, rest } = await readAfterHead(path, limits.headBytes, size);
    await truncate(path, headEnd);
    const log = new CappedOutputLog(path, createWriteStream(path, { flags: 'a' }), limits, limits.headBytes);
    for (const line of rest) log.write(line, verbatim);
    return log;
  }

  get stats(): OutputLogStats {
    return { omittedLines: this.omittedLines, omittedBytes: this.omittedBytes };
  }

  /** Adds one line (without its newline). `render` runs when the line is written, if it ever is. */
  write(raw: string, render: LineRenderer): void {
    if (this.error !== undefined || this.closing !== undefined) return;
    const line = raw.length > this.limits.maxLineChars ? `${raw.slice(0, this.limits.maxLineChars)}… [line cut: ${raw.length - this.limits.maxLineChars} more characters]` : raw;
    const size = lineBytes(line);
    if (this.headOpen) {
      if (size <= this.headRoom) {
        this.headRoom -= size;
        this.stream.write(`${render(line)}\n`);
        return;
      }
      this.headOpen = false;
    }
    this.ringLines.push(line);
    this.ringRender.push(render);
    this.ringSizes.push(size);
    this.ringBytes += size;
    while (this.ringBytes > this.limits.tailBytes && this.ringLines.length - this.ringStart > 1) {
      const dropped = this.ringSizes[this.ringStart] ?? 0;
      this.ringBytes -= dropped;
      this.omittedLines += 1;
      this.omittedBytes += dropped - PREFIX_ALLOWANCE;
      this.ringStart += 1;
    }
    if (this.ringStart > 4096 && this.ringStart * 2 > this.ringLines.length) this.compact();
  }

  /** Writes the tail (behind the omission marker, if anything was dropped), flushes and closes. */
  close(): Promise<Error | undefined> {
    this.closing ??= new Promise((resolve) => {
      if (this.error === undefined) {
        if (this.omittedLines > 0) this.stream.write(`${omissionMarker(this.omittedLines, this.omittedBytes)}\n`);
        let chunk = '';
        for (let i = this.ringStart; i < this.ringLines.length; i += 1) {
          const render = this.ringRender[i] ?? verbatim;
          chunk += `${render(this.ringLines[i] ?? '')}\n`;
          if (chunk.length > 64 * 1024) {
            this.stream.write(chunk);
            chunk = '';
          }
        }
        if (chunk !== '') this.stream.write(chunk);
      }
      this.ringLines = [];
      this.ringRender = [];
      this.ringSizes = [];
      this.ringStart = 0;
      if (this.stream.destroyed || this.stream.writableFinished) {
        resolve(this.error);
        return;
      }
      this.stream.once('error', () => resolve(this.error));
      this.stream.end(() => resolve(this.error));
    });
    return this.closing;
  }

  private compact(): void {
    this.ringLines = this.ringLines.slice(this.ringStart);
    this.ringRender = this.ringRender.slice(this.ringStart);
    this.ringSizes = this.ringSizes.slice(this.ringStart);
    this.ringStart = 0;
  }
}

/**
 * For a file larger than its head: where the head ends (after the last newline within `headBytes`) and
 * the lines after it (an earlier writer's omission marker and tail), which are at most about
 * `size - headBytes` plus one line.
 */
async function readAfterHead(path: string, headBytes: number, size: number): Promise<{ headEnd: number; rest: string[] }> {
  const handle = await open(path, 'r');
  try {
    // The head's last line ends at most one line before headBytes; lines are cut to maxLineChars, so a
    // window of a few MiB before headBytes always holds that newline.
    const from = Math.max(0, headBytes - 4 * 1024 * 1024);
    const buffer = Buffer.alloc(size - from);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, from);
    const bytes = buffer.subarray(0, bytesRead);
    const newline = bytes.lastIndexOf(0x0a, headBytes - from - 1);
    const cut = newline === -1 ? 0 : newline + 1;
    const text = bytes.subarray(cut).toString('utf8');
    const rest = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
    return { headEnd: from + cut, rest: text === '' ? [] : rest };
  } finally {
    await handle.close();
  }
}
