/** The scale-out suite on PostgreSQL: a real server (test/helpers/postgres.ts), a fresh database per test, a home per node. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { postgresAvailable, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { describeScaleOut } from './scale-contract.js';

describe.skipIf(!postgresAvailable && process.env['CI'] !== 'true')('scale-out on PostgreSQL', () => {
  let server: TestPostgres | undefined;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });

  describeScaleOut('PostgreSQL (temp server, one database, a home per node)', async (root) => {
    if (server === undefined) throw new Error('the PostgreSQL server did not start');
    const databaseUrl = await server.createDatabase();
    return {
      node(name) {
        const home = join(root, name);
        mkdirSync(home, { recursive: true });
        return { home, databaseUrl };
      },
      cleanup: async () => undefined,
    };
  });
});
