/**
 * The response envelope of every API route (SPEC 10): `{ success: true, data }` or
 * `{ success: false, error: { code, message, details? } }`. The zod schemas here are the route response
 * schemas, so the serializer, the OpenAPI document and the clients agree on one shape.
 */
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../errors.js';

export const ErrorBodySchema = z
  .object({
    code: z.enum(ERROR_CODES as [ErrorCode, ...ErrorCode[]]).describe('Stable AG_ERR_* code (docs/errors.md)'),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: 'ApiError' });

export const ErrorEnvelopeSchema = z
  .object({
    success: z.literal(false),
    error: ErrorBodySchema,
  })
  .meta({ id: 'ErrorEnvelope' });

export type ErrorEnvelope = z.output<typeof ErrorEnvelopeSchema>;

/** `{ success: true, data: <schema> }`. */
export function okEnvelope<T extends z.ZodType>(data: T): z.ZodObject<{ success: z.ZodLiteral<true>; data: T }> {
  return z.object({ success: z.literal(true), data });
}

export function ok<T>(data: T): { success: true; data: T } {
  return { success: true, data };
}

/**
 * The response schemas shared by every route: its success schema under `status`, and the error
 * envelope for every 4xx and 5xx.
 */
export function responses<S extends number, T extends z.ZodType>(
  status: S,
  data: T,
): { [K in S]: z.ZodObject<{ success: z.ZodLiteral<true>; data: T }> } & { '4xx': typeof ErrorEnvelopeSchema; '5xx': typeof ErrorEnvelopeSchema } {
  const success = { [status]: okEnvelope(data) } as { [K in S]: z.ZodObject<{ success: z.ZodLiteral<true>; data: T }> };
  return { ...success, '4xx': ErrorEnvelopeSchema, '5xx': ErrorEnvelopeSchema };
}
