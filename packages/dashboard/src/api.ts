/**
 * The dashboard's HTTP client: the `/api/v1` envelope, with the API key the user entered (kept in
 * sessionStorage, so it ends with the tab) sent as `Authorization: Bearer`.
 */

const KEY_STORAGE = 'agentgate.apiKey';

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function storeKey(key: string | null): void {
  if (key === null || key === '') sessionStorage.removeItem(KEY_STORAGE);
  else sessionStorage.setItem(KEY_STORAGE, key);
}

export interface ApiIssue {
  readonly path: string;
  readonly message: string;
}

/** A refused request: the server's code and message, `unauthorized` when the key is missing or wrong. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues: readonly ApiIssue[] = [],
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
  get unauthorized(): boolean {
    return this.status === 401;
  }
}

interface Envelope<T> {
  readonly success: boolean;
  readonly data?: T;
  readonly error?: { readonly code: string; readonly message: string; readonly details?: { readonly issues?: ApiIssue[] } };
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const key = storedKey();
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, ...(body !== undefined && { body: JSON.stringify(body) }) });
  let envelope: Envelope<T>;
  try {
    envelope = (await response.json()) as Envelope<T>;
  } catch (cause) {
    throw new ApiError(response.status, 'AG_ERR_API_BAD_RESPONSE', `${method} ${path}: not a JSON envelope (HTTP ${response.status})`, [], { cause });
  }
  if (!response.ok || !envelope.success || envelope.data === undefined) {
    const error = envelope.error ?? { code: 'AG_ERR_INTERNAL', message: `HTTP ${response.status}` };
    throw new ApiError(response.status, error.code, error.message, error.details?.issues ?? []);
  }
  return envelope.data;
}

/** A GET answering text (the iteration patch): the text, or the error envelope as an ApiError. */
export async function apiText(path: string): Promise<string> {
  const key = storedKey();
  const response = await fetch(path, { headers: key === null ? {} : { authorization: `Bearer ${key}` } });
  const body = await response.text();
  if (response.ok) return body;
  let envelope: Envelope<unknown> = { success: false };
  try {
    envelope = JSON.parse(body) as Envelope<unknown>;
  } catch {
    // not an envelope: the status says enough
  }
  throw new ApiError(response.status, envelope.error?.code ?? 'AG_ERR_INTERNAL', envelope.error?.message ?? `HTTP ${response.status}`);
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly total: number;
  readonly hasMore: boolean;
}

export interface RunView {
  readonly id: string;
  readonly workOrderId: string;
  readonly state: string;
  readonly iteration: number;
  readonly maxIterations: number;
  readonly result: string | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly branch: string | null;
  readonly meta: { readonly usage?: { readonly costUsd?: number } } & Record<string, unknown>;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly completedAt: string | null;
}

export interface IterationView {
  readonly iteration: number;
  readonly record: { readonly feedback?: unknown } & Record<string, unknown>;
}

export interface RunDetail extends RunView {
  readonly iterations: readonly IterationView[];
}

export interface WorkOrderView {
  readonly id: string;
  readonly status: string;
  readonly name: string | null;
  readonly taskPrompt: string | null;
  readonly queuePosition: number | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface WorkOrderDetail extends WorkOrderView {
  readonly runs: readonly RunView[];
}

export interface Ticket {
  readonly ticket: string;
  readonly protocol: string;
}
