/**
 * `POST /api/v1/tasks`: a TaskSpec document (`agentgate.io/v1`), as JSON or as YAML
 * (`Content-Type: application/yaml` or `text/yaml`). YAML is parsed here, in this plugin's content-type
 * parser, so its errors name the line (`request body:12: spec.goal.prompt: required`); the document then
 * goes through the same TaskSpec schema and resolver as `agentgate task run`.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { resolveTaskSpec } from '../../schemas/resolve.js';
import { TaskSpecSchema, parseTaskSpecYaml } from '../../schemas/task-spec.js';
import type { RouteDeps } from '../app.js';
import { rawBodyOf, rememberRawBody } from '../app.js';
import { ok, responses } from '../envelope.js';
import { WorkOrderViewSchema } from '../schemas.js';
import { positionOf, toWorkOrderView } from './work-orders.js';

export const YAML_MEDIA_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

/** How a YAML body is named in error messages. */
const YAML_BODY_NAME = 'request body';

export const taskRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { runtime }) => {
  // Encapsulated: only this plugin's routes accept YAML.
  app.addContentTypeParser(YAML_MEDIA_TYPES, { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseTaskSpecYaml(typeof body === 'string' ? body : body.toString('utf8'), YAML_BODY_NAME));
    } catch (error) {
      done(error instanceof Error ? error : new Error(String(error)), undefined);
    }
  });

  app.post(
    '/api/v1/tasks',
    {
      schema: {
        tags: ['tasks'],
        summary: 'Submit a TaskSpec (JSON or YAML; queued, runs automatically)',
        description: `Send JSON, or YAML with Content-Type ${YAML_MEDIA_TYPES.join(', ')}.`,
        body: TaskSpecSchema,
        response: responses(201, WorkOrderViewSchema),
      },
      preValidation: rememberRawBody,
    },
    async (request, reply) => {
      const spec = resolveTaskSpec(request.body, runtime.config.sandbox === undefined ? {} : { sandboxMode: runtime.config.sandbox });
      const workOrder = await runtime.queue.submit({ spec, source: 'task_spec', request: rawBodyOf(request) });
      return reply.status(201).send(ok(toWorkOrderView(workOrder, await positionOf(runtime, workOrder))));
    },
  );
};
