/**
 * Child process of the concurrency test: opens its own SqliteRunStore on the shared file, reports
 * `ready`, waits for `go` on stdin (so both writers start together without sleeping), appends
 * `count` events to the run, then reports `done <count>`.
 *
 * Usage: node --import tsx append-events.child.ts <dbPath> <runId> <writer> <count>
 */
import { createInterface } from 'node:readline';
import { SqliteRunStore } from '../../../src/store/run-store.js';

const [dbPath, runId, writer, countText] = process.argv.slice(2);
if (dbPath === undefined || runId === undefined || writer === undefined || countText === undefined) {
  process.stderr.write('usage: append-events.child.ts <dbPath> <runId> <writer> <count>\n');
  process.exit(2);
}
const count = Number(countText);

const store = SqliteRunStore.open({ path: dbPath });
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
lines.once('line', () => {
  lines.close();
  try {
    for (let i = 0; i < count; i += 1) {
      store.appendEvent(runId, 'agent_output', { writer, i });
    }
    process.stdout.write(`done ${count}\n`);
  } finally {
    store.close();
  }
});
