/**
 * The CLI's HTTP client of an AgentGate server: JSON requests with the `{ success, data | error }`
 * envelope, and the SSE stream of a run. The API key goes in `Authorization: Bearer`, never in a URL.
 * Failures are {@link ApiError}s carrying the server's `AG_ERR_*` code (or `unreachable` when no
 * server answered), so commands map them to exit codes without reading messages.
 */

export const DEFAULT_SERVER_URL = 'http://127.0.0.1:3001';

export class ApiError extends Error {
  constructor(
    /** The server's error code, or `unreachable` / `bad_response` for transport failures. */
    readonly code: string,
    message: string,
    /** HTTP status; 0 when no response arrived. */
    readonly status: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface SseEvent {
  readonly id: string | undefined;
  readonly event: string;
  readonly data: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ApiClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly apiKey: string | undefined,
  ) {
    let parsed: URL;
    try {
      parsed = new URL(baseUrl);
    } catch {
      throw new ApiError('AG_ERR_CLI_USAGE', `--server: not a URL: ${baseUrl}`, 0);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ApiError('AG_ERR_CLI_USAGE', `--server: expected an http(s) URL, got ${baseUrl}`, 0);
    if (parsed.username !== '' || parsed.password !== '') throw new ApiError('AG_ERR_CLI_USAGE', '--server: credentials do not belong in the URL; use --api-key or AGENTGATE_API_KEY', 0);
    this.baseUrl = parsed.origin + parsed.pathname.replace(/\/+$/, '');
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.apiKey !== undefined && this.apiKey !== '' && { authorization: `Bearer ${this.apiKey}` }), ...extra };
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(`${this.baseUrl}${path}`, init);
    } catch (error) {
      if (init.signal?.aborted === true) throw error;
      const cause = isRecord(error) && isRecord(error['cause']) && typeof error['cause']['code'] === 'string' ? ` (${error['cause']['code']})` : '';
      throw new ApiError('unreachable', `cannot reach the AgentGate server at ${this.baseUrl}${cause}`, 0);
    }
  }

  /** Sends a request and returns the envelope's `data`; throws {@link ApiError} on an error envelope. */
  async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await this.fetch(path, {
      method,
      headers: this.headers(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ApiError('bad_response', `the server at ${this.baseUrl} answered HTTP ${response.status} without JSON`, response.status);
    }
    if (isRecord(json) && json['success'] === true) return json['data'];
    const error = isRecord(json) && isRecord(json['error']) ? json['error'] : {};
    const code = typeof error['code'] === 'string' ? error['code'] : 'bad_response';
    const message = typeof error['message'] === 'string' ? error['message'] : `HTTP ${response.status}`;
    throw new ApiError(code, message, response.status);
  }

  /**
   * The SSE stream at `path`, resumed after `lastEventId`. Yields parsed frames; returns when the server
   * ends the stream (204 = nothing more: returns at once). Throws {@link ApiError} when refused.
   */
  async *stream(path: string, lastEventId: string | undefined, signal: AbortSignal): AsyncGenerator<SseEvent> {
    const response = await this.fetch(path, { headers: this.headers({ accept: 'text/event-stream', ...(lastEventId !== undefined && { 'last-event-id': lastEventId }) }), signal });
    if (response.status === 204) return;
    if (!response.ok || response.body === null) {
      const text = await response.text();
      let code = 'bad_response';
      let message = `HTTP ${response.status}`;
      try {
        const json: unknown = JSON.parse(text);
        if (isRecord(json) && isRecord(json['error'])) {
          if (typeof json['error']['code'] === 'string') code = json['error']['code'];
          if (typeof json['error']['message'] === 'string') message = json['error']['message'];
        }
      } catch {
        // Not an envelope: keep the status.
      }
      throw new ApiError(code, message, response.status);
    }
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id: string | undefined;
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'id') id = value;
          else if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length > 0) yield { id, event, data: data.join('\n') };
      }
    }
  }
}
