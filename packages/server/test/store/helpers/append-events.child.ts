/**
 * Child process of the concurrency test: opens its own repositories on the shared file, reports
 * `ready`, waits for `go` on stdin (so both writers start together without sleeping), appends `count`
 * events to the run one call at a time, then reports `done <count>`.
 *
 * Usage: node --import tsx append-events.child.ts <dbPath> <runId> <writer> <count>
 */
import { createInterface } from 'node:readline';
import { openSqliteRepositories } from '../../../src/store/sqlite/index.js';

const [dbPath, runId, writer, countText] = process.argv.slice(2);
if (dbPath === undefined || runId === undefined || writer === undefined || countText === undefined) {
  process.stderr.write('usage: append-events.child.ts <dbPath> <runId> <writer> <count>\n');
  process.exit(2);
}
const count = Number(countText);

const repos = openSqliteRepositories({ path: dbPath });
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
lines.once('line', () => {
  lines.close();
  void (async () => {
    try {
      for (let i = 0; i < count; i += 1) {
        await repos.runs.appendEvents(runId, [{ type: 'agent_output', data: { writer, i } }], null);
      }
      process.stdout.write(`done ${count}\n`);
    } finally {
      await repos.close();
    }
  })();
});
