import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CappedOutputLog, omissionMarker, verbatim, type OutputLogLimits } from '../../src/util/output-log.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'agentgate-output-log-'));
  dirs.push(dir);
  return join(dir, 'out.log');
}

/** Every line counts for its bytes + newline + 16 bytes of prefix allowance: `line-NN` is 7 + 1 + 16 = 24. */
const LIMITS: OutputLogLimits = { headBytes: 24 * 3, tailBytes: 24 * 2, maxLineChars: 100 };
const lines = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `line-${String(from + i).padStart(2, '0')}`);

describe('CappedOutputLog', () => {
  it('writes everything when it fits', async () => {
    const path = tempFile();
    const log = CappedOutputLog.create(path, LIMITS);
    for (const line of lines(0, 3)) log.write(line, verbatim);
    expect(await log.close()).toBeUndefined();
    expect(readFileSync(path, 'utf8')).toBe(`${lines(0, 3).join('\n')}\n`);
  });

  it('keeps the head and the tail with a marker counting the lines and bytes dropped between', async () => {
    const path = tempFile();
    const log = CappedOutputLog.create(path, LIMITS);
    for (const line of lines(0, 50)) log.write(line, (raw) => `[stdout] ${raw}`);
    await log.close();
    expect(readFileSync(path, 'utf8').split('\n')).toEqual([
      '[stdout] line-00',
      '[stdout] line-01',
      '[stdout] line-02',
      omissionMarker(45, 45 * 8),
      '[stdout] line-48',
      '[stdout] line-49',
      '',
    ]);
    expect(log.stats).toEqual({ omittedLines: 45, omittedBytes: 360 });
  });

  it('renders only the lines it keeps', async () => {
    const log = CappedOutputLog.create(tempFile(), LIMITS);
    let rendered = 0;
    for (const line of lines(0, 100)) {
      log.write(line, (raw) => {
        rendered += 1;
        return raw;
      });
    }
    await log.close();
    expect(rendered).toBe(5);
  });

  it('cuts an over-long line', async () => {
    const path = tempFile();
    const log = CappedOutputLog.create(path, { ...LIMITS, headBytes: 1000 });
    log.write('x'.repeat(150), verbatim);
    await log.close();
    expect(readFileSync(path, 'utf8')).toBe(`${'x'.repeat(100)}… [line cut: 50 more characters]\n`);
  });

  it('keeps the caps for the whole file across writers that append in turn', async () => {
    const path = tempFile();
    for (let writer = 0; writer < 4; writer += 1) {
      const log = await CappedOutputLog.append(path, LIMITS);
      for (const line of lines(writer * 20, writer * 20 + 20)) log.write(line, verbatim);
      await log.close();
    }
    const text = readFileSync(path, 'utf8');
    expect(text.startsWith(`${lines(0, 3).join('\n')}\n`)).toBe(true);
    expect(text.endsWith(`${lines(78, 80).join('\n')}\n`)).toBe(true);
    expect(statSync(path).size).toBeLessThan(LIMITS.headBytes + LIMITS.tailBytes + 200);
  });

  it('continues a file whose head is not full yet', async () => {
    const path = tempFile();
    const first = await CappedOutputLog.append(path, LIMITS);
    first.write('one', verbatim);
    await first.close();
    const second = await CappedOutputLog.append(path, LIMITS);
    second.write('two', verbatim);
    await second.close();
    expect(readFileSync(path, 'utf8')).toBe('one\ntwo\n');
  });
});
