// A small, kind-agnostic Kubernetes client on Node's own HTTP stack, with keep-alive connections.
// Everything the operator does to the API (list, watch, server-side apply, status, delete, leases,
// events) goes through `request` or `watch`, which count requests for metrics and turn failures into
// one error type.
//
// Why not the generated typed clients: they rename fields when serialising (`_from`, `_continue`), pick
// JSON Patch as the default patch type, and need one class per group; an operator that applies
// plain objects wants none of that.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ClusterAccess, Connection } from './kubeconfig.js';

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  managedFields?: unknown[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
  generateName?: string;
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Anything with Kubernetes object metadata: what the client methods accept. */
export interface ObjectLike {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface KubeObject extends ObjectLike {
  [key: string]: unknown;
}

export interface KubeList<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** Identifies a resource type and how to build its URLs. */
export interface ResourceType {
  group: string; // '' for core
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** The methods that change something: what counts as a write (watches are counted as WATCH). */
export const writeMethods: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Identifies the operator's requests in audit logs and apiserver metrics. */
export const userAgentPrefix = 'modelship-operator/0.1.0';

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const isNotFound = (err: unknown) => err instanceof ApiError && err.code === 404;
export const isConflict = (err: unknown) => err instanceof ApiError && err.code === 409;
export const isGone = (err: unknown) => err instanceof ApiError && err.code === 410;
/** Rejected by validation or admission: retrying the same request cannot succeed. */
export const isInvalid = (err: unknown) => err instanceof ApiError && (err.code === 422 || err.code === 400);

export function apiPath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  const ns = type.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const n = name ? `/${encodeURIComponent(name)}` : '';
  const sub = subresource ? `/${subresource}` : '';
  return `${base}${ns}/${type.plural}${n}${sub}`;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Told the size of a successful response body, in characters. */
  onResponseSize?: (chars: number) => void;
}

/** Resolves like `promise`, or rejects as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A request that got no HTTP answer: unreachable, reset, timed out, or its credentials unreadable. */
function connectionError(method: string, path: string, err: unknown, signal: AbortSignal): ApiError {
  if (err instanceof ApiError) return err;
  const reason = signal.reason as Error | undefined;
  if (signal.aborted && reason?.name === 'TimeoutError') return new ApiError(0, 'Timeout', `${method} ${path}: no answer in time`);
  return new ApiError(0, 'ConnectionError', `${method} ${path}: ${(err as Error).message}`);
}

/**
 * An HTTP error. The apiserver answers with a Status object; proxies and load balancers in front of
 * it answer with empty, HTML or plain-text bodies, which still need a message that says what failed.
 */
export function statusError(method: string, path: string, code: number, text: string): ApiError {
  let status: unknown;
  try {
    status = JSON.parse(text);
  } catch {
    status = undefined;
  }
  const s = (status !== null && typeof status === 'object' ? status : {}) as { reason?: unknown; message?: unknown; details?: unknown };
  const reason = typeof s.reason === 'string' && s.reason ? s.reason : String(code);
  const message = typeof s.message === 'string' && s.message ? s.message
    : `${method} ${path}: HTTP ${code}${text.trim() ? `: ${text.trim().slice(0, 300)}` : ''}`;
  return new ApiError(code, reason, message, s.details);
}

async function readBody(res: IncomingMessage): Promise<string> {
  res.setEncoding('utf8');
  let text = '';
  for await (const chunk of res as AsyncIterable<string>) text += chunk;
  return text;
}

export type RequestObserver = (method: string, path: string, code: number) => void;

/** A watch event as the apiserver streams it, one JSON object per line. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export class KubeClient {
  private observer: RequestObserver | undefined;

  private connection: { value: Promise<Connection>; at: number } | undefined;

  private static readonly renewMs = 5 * 60_000;

  private readonly userAgent: string;

  constructor(readonly access: ClusterAccess, identity?: string, product = userAgentPrefix) {
    this.userAgent = identity ? `${product} (${identity})` : product;
  }

  get server(): string {
    return this.access.server;
  }

  onRequest(observer: RequestObserver): void {
    this.observer = observer;
  }

  /**
   * Credentials and the keep-alive connection pool, read again every `renewMs` or at once after a 401,
   * so rotated tokens and certificates are picked up. A renewal that fails (a token file caught
   * mid-rotation) keeps the last good credentials, as client-go does; with none yet, the next request
   * tries again.
   */
  private connect(): Promise<Connection> {
    const now = Date.now();
    if (!this.connection || now - this.connection.at > KubeClient.renewMs) {
      const previous = this.connection?.value;
      const value = this.access.connect().catch((err: unknown) => {
        if (previous) return previous;
        throw err;
      });
      this.connection = { value, at: now };
      value.catch(() => { if (this.connection?.value === value) this.connection = undefined; });
    }
    return this.connection.value;
  }

  /** Counts the request; a 401 means the credentials are stale, so the next request reads them again. */
  private answered(method: string, path: string, code: number): void {
    this.observer?.(method, path, code);
    if (code === 401) this.connection = undefined;
  }

  /**
   * Sends one request and resolves with the response, its body unread. A connection the server had
   * closed while idle fails at once with ECONNRESET; such a request never reached the server and is
   * sent once more on a new connection (not a POST, which is not idempotent; a repeated apply, patch,
   * put or delete yields the same object, a conflict or a 404).
   */
  private async send(method: string, path: string, opts: RequestOptions, signal: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    let connection: Connection;
    try {
      // A hung credential plugin must not outlive the request's own deadline.
      connection = await abortable(this.connect(), signal);
    } catch (err) {
      throw connectionError(method, url.pathname, err, signal);
    }
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = { ...connection.headers, Accept: 'application/json', 'User-Agent': this.userAgent };
    if (body !== undefined) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(body));
    }
    const transport = url.protocol === 'http:' ? httpRequest : httpsRequest;
    for (let attempt = 1; ; attempt++) {
      try {
        return await new Promise<IncomingMessage>((resolve, reject) => {
          const req = transport(url, { method, headers, agent: connection.agent, signal }, resolve);
          req.on('error', (err: NodeJS.ErrnoException) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
          req.end(body);
        });
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { reusedSocket?: boolean };
        if (attempt === 1 && e.reusedSocket && e.code === 'ECONNRESET' && method !== 'POST' && !signal.aborted) continue;
        throw connectionError(method, url.pathname, err, signal);
      }
    }
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 30_000)].filter((s): s is AbortSignal => !!s));
    let res: IncomingMessage;
    let text: string;
    try {
      res = await this.send(method, path, opts, signal);
      text = await readBody(res);
    } catch (err) {
      this.answered(method, path, 0);
      throw err instanceof ApiError ? err : connectionError(method, path, err, signal);
    }
    const code = res.statusCode ?? 0;
    this.answered(method, path, code);
    if (code < 200 || code >= 300) throw statusError(method, path, code, text);
    opts.onResponseSize?.(text.length);
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(code, 'InvalidResponse', `${method} ${path}: HTTP ${code} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
  }

  /**
   * Streams a watch: `onEvent` gets each event as it arrives, ERROR events included (an expired
   * resourceVersion comes as one, inside a 200). Resolves when the server ends the watch (its
   * timeoutSeconds) or `signal` aborts it. Rejects with an ApiError when the watch is refused or the
   * connection breaks, and with reason `WatchStalled` when nothing, not even a bookmark, arrived for
   * `stallMs`: a half-open connection otherwise stalls a watch silently. An exception thrown by
   * `onEvent` ends the watch with that exception.
   */
  async watch<T>(path: string, query: RequestOptions['query'], onEvent: (event: WatchEvent<T>) => void, opts: { signal: AbortSignal; stallMs: number }): Promise<void> {
    const stall = new AbortController();
    const signal = AbortSignal.any([opts.signal, stall.signal]);
    let timer = setTimeout(() => stall.abort(), opts.stallMs);
    const stalled = () => new ApiError(0, 'WatchStalled', `GET ${path} (watch): no event for ${opts.stallMs / 1000} s`);
    try {
      let res: IncomingMessage;
      try {
        res = await this.send('GET', path, { query: { ...query, watch: true } }, signal);
      } catch (err) {
        this.answered('WATCH', path, 0);
        if (opts.signal.aborted) return;
        throw stall.signal.aborted ? stalled() : err;
      }
      const code = res.statusCode ?? 0;
      this.answered('WATCH', path, code);
      if (code !== 200) throw statusError('GET', path, code, await readBody(res).catch(() => ''));
      res.setEncoding('utf8');
      const chunks = (res as AsyncIterable<string>)[Symbol.asyncIterator]();
      let pending = '';
      for (;;) {
        let next: IteratorResult<string>;
        try {
          next = await chunks.next();
        } catch (err) {
          if (opts.signal.aborted) return;
          if (stall.signal.aborted) throw stalled();
          throw connectionError('GET', `${path} (watch)`, err, signal);
        }
        if (next.done) return;
        clearTimeout(timer);
        timer = setTimeout(() => stall.abort(), opts.stallMs);
        pending += next.value;
        let newline;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (!line.trim()) continue;
          let event: WatchEvent<T>;
          try {
            event = JSON.parse(line) as WatchEvent<T>;
          } catch {
            res.destroy();
            throw new ApiError(200, 'InvalidResponse', `GET ${path} (watch): an event that is not JSON: ${line.slice(0, 200)}`);
          }
          try {
            onEvent(event);
          } catch (err) {
            res.destroy();
            throw err;
          }
          if (opts.signal.aborted) {
            res.destroy();
            return;
          }
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  get<T extends ObjectLike>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', apiPath(type, namespace, name));
  }

  /** One page of a list. */
  list<T extends ObjectLike>(type: ResourceType, opts: { namespace?: string; labelSelector?: string; limit?: number; continueToken?: string; resourceVersion?: string; onResponseSize?: (chars: number) => void } = {}): Promise<KubeList<T>> {
    return this.request<KubeList<T>>('GET', apiPath(type, opts.namespace), {
      query: { labelSelector: opts.labelSelector, limit: opts.limit, continue: opts.continueToken, resourceVersion: opts.resourceVersion },
      timeoutMs: 120_000,
      ...(opts.onResponseSize ? { onResponseSize: opts.onResponseSize } : {}),
    });
  }

  /** Server-side apply with one field manager; `force` takes fields over from other managers. */
  apply<T extends ObjectLike, I extends ObjectLike = ObjectLike>(type: ResourceType, obj: I, fieldManager: string, opts: { subresource?: string; force?: boolean; dryRun?: boolean } = {}): Promise<T> {
    const meta = obj.metadata ?? {};
    return this.request<T>('PATCH', apiPath(type, meta.namespace, meta.name, opts.subresource), {
      query: { fieldManager, force: opts.force ?? true, dryRun: opts.dryRun ? 'All' : undefined },
      body: obj,
      contentType: 'application/apply-patch+yaml',
    });
  }

  mergePatch<T extends ObjectLike>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown, subresource?: string): Promise<T> {
    return this.request<T>('PATCH', apiPath(type, namespace, name, subresource), { body: patch, contentType: 'application/merge-patch+json' });
  }

  create<T extends ObjectLike, I extends ObjectLike = ObjectLike>(type: ResourceType, obj: I): Promise<T> {
    return this.request<T>('POST', apiPath(type, obj.metadata?.namespace), { body: obj });
  }

  replace<T extends ObjectLike, I extends ObjectLike = ObjectLike>(type: ResourceType, obj: I): Promise<T> {
    return this.request<T>('PUT', apiPath(type, obj.metadata?.namespace, obj.metadata?.name), { body: obj });
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string, opts: { uid?: string; propagation?: 'Background' | 'Foreground' | 'Orphan' } = {}): Promise<void> {
    await this.request('DELETE', apiPath(type, namespace, name), {
      body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: opts.propagation ?? 'Background', ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}) },
    });
  }
}
