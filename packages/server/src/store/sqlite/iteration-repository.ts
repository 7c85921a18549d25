/** {@link IterationRepository} on SQLite: one typed record per run iteration. */
import { AgentGateError } from '../../errors.js';
import type { Fence, IterationRepository, StoredIterationRecord } from '../repositories.js';
import { mapIteration, toJson, type IterationRow } from '../codec.js';
import type { SqliteDatabase } from './database.js';
import type { SqliteRunRepository } from './run-repository.js';

function prepare(db: SqliteDatabase) {
  const c = db.connection;
  return {
    upsert: c.prepare<[IterationRow]>(
      `INSERT INTO iterations (run_id, iteration, data_json, started_at, completed_at)
       VALUES (@run_id, @iteration, @data_json, @started_at, @completed_at)
       ON CONFLICT (run_id, iteration) DO UPDATE SET
         data_json = excluded.data_json, started_at = excluded.started_at, completed_at = excluded.completed_at`,
    ),
    get: c.prepare<[string, number], IterationRow>('SELECT * FROM iterations WHERE run_id = ? AND iteration = ?'),
    list: c.prepare<[string], IterationRow>('SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration ASC'),
  };
}

export class SqliteIterationRepository implements IterationRepository {
  private readonly stmts: ReturnType<typeof prepare>;

  constructor(
    private readonly db: SqliteDatabase,
    private readonly runs: SqliteRunRepository,
  ) {
    this.stmts = prepare(db);
  }

  async save(input: StoredIterationRecord, fence: Fence | null): Promise<StoredIterationRecord> {
    if (!Number.isInteger(input.iteration) || input.iteration < 1) {
      throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `iteration: must be a positive integer, got ${String(input.iteration)}`);
    }
    const row: IterationRow = {
      run_id: input.runId,
      iteration: input.iteration,
      data_json: toJson(input.record, 'iteration record'),
      started_at: input.startedAt,
      completed_at: input.completedAt,
    };
    return this.db.write('iterations.save', () => {
      this.runs.requireWritable(input.runId, fence, 'iterations.save');
      this.stmts.upsert.run(row);
      const stored = this.stmts.get.get(input.runId, input.iteration);
      if (stored === undefined) {
        throw new AgentGateError('AG_ERR_INTERNAL', `Iteration ${input.iteration} of run ${input.runId} vanished after its write`);
      }
      return mapIteration(stored);
    });
  }

  async list(runId: string): Promise<StoredIterationRecord[]> {
    return this.db.read('iterations.list', () => this.stmts.list.all(runId).map(mapIteration));
  }
}
