/**
 * `GET /api/v1/runs` (filtered, paginated), `GET /api/v1/runs/:id` (with its iteration records) and
 * `GET /api/v1/runs/:id/iterations/:n/patch` (the iteration's diff against the base, bounded).
 * The event log and the SSE stream of a run are served by the event routes (`routes/events.ts`).
 */
import { open, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AgentGateError } from '../../errors.js';
import type { StoredIterationRecord } from '../../store/repositories.js';
import type { StoredRun } from '../../store/types.js';
import { publishedBranch } from '../../execution/run-branch.js';
import type { RouteDeps } from '../app.js';
import { ErrorEnvelopeSchema, ok, responses } from '../envelope.js';
import type { IterationViewSchema} from '../schemas.js';
import { IdParamsSchema, IterationParamsSchema, ListRunsQuerySchema, RunDetailSchema, RunViewSchema, pageSchema } from '../schemas.js';

export type RunView = z.output<typeof RunViewSchema>;
export type IterationView = z.output<typeof IterationViewSchema>;

export function toRunView(run: StoredRun): RunView {
  return {
    id: run.id,
    workOrderId: run.workOrderId,
    state: run.state,
    iteration: run.iteration,
    maxIterations: run.maxIterations,
    result: run.result,
    error: run.error === null ? null : { ...run.error },
    branch: publishedBranch(run),
    meta: { ...run.meta },
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    completedAt: run.completedAt,
  };
}

function toIterationView(stored: StoredIterationRecord): IterationView {
  return { iteration: stored.iteration, startedAt: stored.startedAt, completedAt: stored.completedAt, record: { ...stored.record } };
}

/** At most this many bytes of a patch are sent; a longer one ends with {@link truncationNote}. */
export const MAX_PATCH_BYTES = 1024 * 1024;

export function truncationNote(total: number): string {
  return `\n# agentgate: patch truncated to the first ${MAX_PATCH_BYTES} of ${total} bytes\n`;
}

/**
 * The first {@link MAX_PATCH_BYTES} of the patch at `patchPath`, which must resolve (symlinks
 * followed) inside `runDir`; null when it does not, or when the file is missing.
 */
async function readPatch(runDir: string, patchPath: string): Promise<string | null> {
  let root: string;
  let file: string;
  try {
    root = await realpath(runDir);
    file = await realpath(patchPath);
  } catch {
    return null;
  }
  if (!file.startsWith(root + sep)) return null;
  const handle = await open(file, 'r');
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return null;
    const size = stat.size;
    const buffer = Buffer.alloc(Math.min(size, MAX_PATCH_BYTES));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, bytesRead).toString('utf8');
    if (size <= MAX_PATCH_BYTES) return text;
    // Cut at the last whole line so the excerpt stays a readable diff.
    const cut = text.lastIndexOf('\n');
    return (cut > 0 ? text.slice(0, cut + 1) : text) + truncationNote(size);
  } finally {
    await handle.close();
  }
}

export const runRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime }) => {
  app.get(
    '/api/v1/runs',
    {
      schema: {
        tags: ['runs'],
        summary: 'List runs, newest first',
        querystring: ListRunsQuerySchema,
        response: responses(200, pageSchema(RunViewSchema)),
      },
    },
    async (request) => {
      const { limit, offset, workOrderId, state } = request.query;
      const page = await runtime.repos.runs.list({ limit, offset, ...(workOrderId !== undefined && { workOrderId }), ...(state !== undefined && { state }) });
      return ok({ items: page.items.map(toRunView), total: page.total, limit, offset, hasMore: offset + page.items.length < page.total });
    },
  );

  app.get(
    '/api/v1/runs/:id',
    {
      schema: {
        tags: ['runs'],
        summary: 'A run with its iteration records',
        params: IdParamsSchema,
        response: responses(200, RunDetailSchema),
      },
    },
    async (request) => {
      const run = await runtime.repos.runs.get(request.params.id);
      if (run === null) throw new AgentGateError('AG_ERR_RUN_NOT_FOUND', `No run with id ${request.params.id}`);
      const iterations = await runtime.repos.iterations.list(run.id);
      return ok({ ...toRunView(run), iterations: iterations.map(toIterationView) });
    },
  );

  app.get(
    '/api/v1/runs/:id/iterations/:n/patch',
    {
      schema: {
        tags: ['runs'],
        summary: `The diff of one iteration's snapshot against the base (text/x-diff, at most ${MAX_PATCH_BYTES} bytes, then a truncation note)`,
        params: IterationParamsSchema,
        produces: ['text/x-diff'],
        response: { 200: z.string().describe('git diff --binary output'), '4xx': ErrorEnvelopeSchema, '5xx': ErrorEnvelopeSchema },
      },
    },
    async (request, reply) => {
      const { id, n } = request.params;
      const run = await runtime.repos.runs.get(id);
      if (run === null) throw new AgentGateError('AG_ERR_RUN_NOT_FOUND', `No run with id ${id}`);
      const stored = (await runtime.repos.iterations.list(run.id)).find((it) => it.iteration === n);
      if (stored === undefined) throw new AgentGateError('AG_ERR_API_NOT_FOUND', `Run ${id} has no iteration ${n}`);
      const patchPath = stored.record.snapshot?.patchPath ?? null;
      const text = patchPath === null ? null : await readPatch(join(runtime.config.home, 'runs', run.id), patchPath);
      if (text === null) throw new AgentGateError('AG_ERR_API_NOT_FOUND', `Iteration ${n} of run ${id} has no patch`);
      return reply.type('text/x-diff; charset=utf-8').header('cache-control', 'no-cache').send(text);
    },
  );
};
