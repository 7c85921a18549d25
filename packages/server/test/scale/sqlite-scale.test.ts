/** The scale-out suite on SQLite: several runtimes in one process on one database file (WAL). */
import { describeScaleOut } from './scale-contract.js';
import { sqliteSharedStore } from './helpers.js';

describeScaleOut('SQLite (one file, one connection per node)', sqliteSharedStore);
