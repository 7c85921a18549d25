/**
 * The per-run agent transcript (`<artifacts>/agent-transcript.log`), appended to by every iteration. It
 * keeps the first {@link TRANSCRIPT_LIMITS}.headBytes and the last tailBytes of the run's output, with
 * a marker saying how much was dropped in between (util/output-log), so an agent flooding its output
 * cannot fill the disk.
 */
import { CappedOutputLog, verbatim, type LineRenderer, type OutputLogLimits } from '../../util/output-log.js';

/** File name of the per-run transcript inside `request.artifactsDir`; iterations append to it. */
export const TRANSCRIPT_FILE = 'agent-transcript.log';

/** 8 MiB head + 8 MiB tail for the whole run; a line is cut at 1 MiB characters. */
export const TRANSCRIPT_LIMITS: OutputLogLimits = {
  headBytes: 8 * 1024 * 1024,
  tailBytes: 8 * 1024 * 1024,
  maxLineChars: 1024 * 1024,
};

/**
 * Append-only transcript writer that never blocks the line callback; the first write error is kept and
 * reported by {@link close} so the driver can classify it instead of losing it.
 */
export class AgentTranscript {
  private constructor(private readonly log: CappedOutputLog) {}

  /** Opens (or continues) the transcript at `path`; the caps hold for the file as a whole. */
  static async open(path: string, limits: OutputLogLimits = TRANSCRIPT_LIMITS): Promise<AgentTranscript> {
    return new AgentTranscript(await CappedOutputLog.append(path, limits));
  }

  get path(): string {
    return this.log.path;
  }

  /** One line; `render` (redaction, a stream prefix) runs only if the line is kept. */
  write(line: string, render: LineRenderer = verbatim): void {
    this.log.write(line, render);
  }

  /** Writes the kept tail, flushes and closes; resolves with the first write error, if any. Safe to call twice. */
  close(): Promise<Error | undefined> {
    return this.log.close();
  }
}
