/** {@link IterationRepository} on PostgreSQL: one typed record per run iteration. */
import { AgentGateError } from '../../errors.js';
import { mapIteration, toJson, type IterationRow } from '../codec.js';
import type { Fence, IterationRepository, StoredIterationRecord } from '../repositories.js';
import type { PostgresDatabase } from './database.js';
import type { PostgresRunRepository } from './run-repository.js';

const COLUMNS = 'run_id, iteration, data_json, started_at, completed_at';

const UPSERT = `
  INSERT INTO iterations (run_id, iteration, data_json, started_at, completed_at)
  VALUES ($1, $2, $3, $4, $5)
  ON CONFLICT (run_id, iteration) DO UPDATE SET
    data_json = excluded.data_json, started_at = excluded.started_at, completed_at = excluded.completed_at
  RETURNING ${COLUMNS}`;

export class PostgresIterationRepository implements IterationRepository {
  constructor(
    private readonly db: PostgresDatabase,
    private readonly runs: PostgresRunRepository,
  ) {}

  async save(input: StoredIterationRecord, fence: Fence | null): Promise<StoredIterationRecord> {
    if (!Number.isInteger(input.iteration) || input.iteration < 1) {
      throw new AgentGateError('AG_ERR_SCHEMA_INVALID', `iteration: must be a positive integer, got ${String(input.iteration)}`);
    }
    const dataJson = toJson(input.record, 'iteration record');
    return this.db.write('iterations.save', async (tx) => {
      await this.runs.requireWritable(tx, input.runId, fence, 'iterations.save');
      const row = await tx.first<IterationRow>(UPSERT, [input.runId, input.iteration, dataJson, input.startedAt, input.completedAt]);
      if (row === undefined) {
        throw new AgentGateError('AG_ERR_INTERNAL', `Iteration ${input.iteration} of run ${input.runId} vanished after its write`);
      }
      return mapIteration(row);
    });
  }

  async list(runId: string): Promise<StoredIterationRecord[]> {
    const rows = await this.db.query<IterationRow>('iterations.list', `SELECT ${COLUMNS} FROM iterations WHERE run_id = $1 ORDER BY iteration ASC`, [runId]);
    return rows.map(mapIteration);
  }
}
