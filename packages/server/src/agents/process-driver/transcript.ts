/** The per-run agent transcript (`<artifacts>/agent-transcript.log`), appended to by every iteration. */
import { createWriteStream, type WriteStream } from 'node:fs';

/** File name of the per-run transcript inside `request.artifactsDir`; iterations append to it. */
export const TRANSCRIPT_FILE = 'agent-transcript.log';

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
