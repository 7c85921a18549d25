/** The real store satisfies the lease contract the LeaseKeeper and WorkspaceManager rely on. */
import { afterEach } from 'vitest';
import { SqliteRunStore } from '../../src/store/run-store.js';
import type { LeaseStore } from '../../src/workspace/lease.js';
import { describeLeaseStoreContract } from './lease-store-contract.js';

const opened: SqliteRunStore[] = [];

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
});

describeLeaseStoreContract('SqliteRunStore', (): LeaseStore => {
  const store = SqliteRunStore.open({ path: ':memory:' });
  opened.push(store);
  return store;
});
