import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/schemas/config.js';
import { openRepositories } from '../../src/store/open.js';
import { thrownAgentGateError } from '../helpers/errors.js';
import { TempStores } from './helpers/store-fixture.js';

const temp = new TempStores();
afterEach(() => temp.cleanup());

describe('store selection', () => {
  it('opens the SQLite file in $AGENTGATE_HOME when no database URL is configured', async () => {
    const home = await temp.dir();
    const repos = await openRepositories({ home });
    try {
      expect(repos.location).toBe(`sqlite:${home}/agentgate.db`);
      await repos.ping();
      expect((await repos.workOrders.create({ id: 'wo-1', source: 'task_spec', spec: {} })).event.seq).toBe(1);
    } finally {
      await repos.close();
    }
  });

  it('reads AGENTGATE_DATABASE_URL into config.databaseUrl (PostgreSQL is selected by it; see postgres-repositories.test.ts)', () => {
    expect(loadConfig({ HOME: '/home/dev' }).databaseUrl).toBeUndefined();
    expect(loadConfig({ HOME: '/home/dev', AGENTGATE_DATABASE_URL: '' }).databaseUrl).toBeUndefined();
    const url = 'postgresql://agentgate:pw@db.internal:5432/agentgate?sslmode=require';
    expect(loadConfig({ HOME: '/home/dev', AGENTGATE_DATABASE_URL: url }).databaseUrl).toBe(url);
  });

  it('refuses a database URL that is not postgres:// with AG_ERR_CONFIG_INVALID naming the variable, never echoing the value', () => {
    const error = thrownAgentGateError(() => loadConfig({ HOME: '/home/dev', AGENTGATE_DATABASE_URL: 'mysql://root:hunter2@db/agentgate' }));
    expect(error.code).toBe('AG_ERR_CONFIG_INVALID');
    expect(error.message).toContain('AGENTGATE_DATABASE_URL');
    expect(error.message).not.toContain('hunter2');
    expect(JSON.stringify(error.details)).not.toContain('hunter2');
  });
});
