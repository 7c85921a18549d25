/**
 * Translation of everything a request can throw into the error envelope, at the HTTP boundary.
 *
 * Rules (SPEC 10, 14): an {@link AgentGateError} keeps its catalogue code and status; fastify's own
 * client errors keep their 4xx status: body too large is `AG_ERR_API_PAYLOAD_TOO_LARGE` (413), an
 * unsupported media type `AG_ERR_API_UNSUPPORTED_MEDIA_TYPE` (415), the rest (malformed JSON, bad URL)
 * `AG_ERR_API_BAD_REQUEST`; anything else is a server fault: 500 `AG_ERR_INTERNAL`, logged
 * with its stack, and answered without internals. Branching is on `code` and `statusCode`, never on
 * message text.
 */
import { AgentGateError, isAgentGateError, type ErrorCode } from '../errors.js';
import type { ErrorEnvelope } from './envelope.js';

export interface HttpFailure {
  readonly status: number;
  readonly body: ErrorEnvelope;
  /** A server fault: log it at error level with its cause. */
  readonly fault: boolean;
}

/** Fastify error codes that are the client's mistake, with the code and reason clients see. */
const FASTIFY_CLIENT_ERRORS: Readonly<Record<string, { readonly code: ErrorCode; readonly reason: string }>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'AG_ERR_API_PAYLOAD_TOO_LARGE', reason: 'payload_too_large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'AG_ERR_API_UNSUPPORTED_MEDIA_TYPE', reason: 'unsupported_media_type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'AG_ERR_API_BAD_REQUEST', reason: 'invalid_content_length' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'AG_ERR_API_BAD_REQUEST', reason: 'empty_json_body' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'AG_ERR_API_BAD_REQUEST', reason: 'malformed_json' },
  FST_ERR_BAD_URL: { code: 'AG_ERR_API_BAD_REQUEST', reason: 'bad_url' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'AG_ERR_API_BAD_REQUEST', reason: 'bad_request' },
  FST_ERR_NOT_FOUND: { code: 'AG_ERR_API_NOT_FOUND', reason: 'not_found' },
};

function failure(status: number, code: ErrorCode, message: string, details?: Record<string, unknown>): HttpFailure {
  return {
    status,
    body: { success: false, error: details === undefined ? { code, message } : { code, message, details } },
    fault: status >= 500,
  };
}

function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const value = 'statusCode' in error ? error.statusCode : 'status' in error ? error.status : undefined;
  return typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 599 ? value : undefined;
}

function codeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

/** The HTTP failure for anything thrown while handling a request. */
export function toHttpFailure(error: unknown): HttpFailure {
  if (isAgentGateError(error)) {
    return failure(error.status, error.code, error.message, error.details);
  }
  const status = statusOf(error);
  const code = codeOf(error);
  const known = code === undefined ? undefined : FASTIFY_CLIENT_ERRORS[code];
  const message = error instanceof Error ? error.message : 'The request could not be handled';
  if (known !== undefined) return failure(status ?? 400, known.code, message, { reason: known.reason });
  // A JSON body that does not parse: fastify sets statusCode 400 on the SyntaxError.
  if (error instanceof SyntaxError && status === 400) return failure(400, 'AG_ERR_API_BAD_REQUEST', `Malformed JSON body: ${message}`, { reason: 'malformed_json' });
  if (status !== undefined && status < 500) {
    const apiCode: ErrorCode = status === 401 ? 'AG_ERR_API_UNAUTHORIZED' : status === 404 ? 'AG_ERR_API_NOT_FOUND' : status === 409 ? 'AG_ERR_API_CONFLICT' : 'AG_ERR_API_BAD_REQUEST';
    return failure(status, apiCode, message);
  }
  // Never echo an unexpected error's message: it may carry paths, SQL or secrets.
  return failure(500, 'AG_ERR_INTERNAL', 'Internal server error');
}

export function notFound(code: Extract<ErrorCode, 'AG_ERR_API_NOT_FOUND' | 'AG_ERR_RUN_NOT_FOUND' | 'AG_ERR_WORK_ORDER_NOT_FOUND'>, message: string): AgentGateError {
  return new AgentGateError(code, message);
}

export function unauthorized(): AgentGateError {
  return new AgentGateError('AG_ERR_API_UNAUTHORIZED', 'Missing or invalid API key: send Authorization: Bearer <key>');
}

