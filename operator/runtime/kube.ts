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
   * so rotated tokens and certificates are picked up. The pool is replaced only when the TLS material
   * changed; the old one is closed once requests started on it have had time to finish.
   */
  private connect(): Promise<Connection> {
    const now = Date.now();
    if (!this.connection || now - this.connection.at > KubeClient.renewMs) {
      const previous = this.connection?.value;
      const value = this.access.connect();
      this.connection = { value, at: now };
      // A failed read (a token file mid-rotation) is retried on the next request, not cached.
      value.catch(() => { if (this.connection?.value === value) this.connection = undefined; });
      if (previous) {
        void Promise.all([previous, value]).then(([old, fresh]) => {
          if (old.agent !== fresh.agent) setTimeout(() => old.agent.destroy(), 30_000).unref();
        }, () => undefined);
      }
    }
    return this.connection.value;
  }

  /**
   * Sends one request and resolves with the response, its body unread. A connection the server had
   * closed while idle fails at once with ECONNRESET; such a request never reached the server and is
   * sent once more on a new connection (not a POST, which is not idempotent).
   */
  private async send(method: string, path: string, opts: RequestOptions, signal: AbortSignal): Promise<IncomingMessage> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const { agent, headers } = await this.connect();
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const requestHeaders: Record<string, string> = { ...headers, Accept: 'application/json', 'User-Agent': this.userAgent };
    if (body !== undefined) {
      requestHeaders['Content-Type'] = opts.contentType ?? 'application/json';
      requestHeaders['Content-Length'] = String(Buffer.byteLength(body));
    }
    const transport = url.protocol === 'http:' ? httpRequest : httpsRequest;
    for (let attempt = 1; ; attempt++) {
      try {
        return await new Promise<IncomingMessage>((resolve, reject) => {
          const req = transport(url, { method, headers: requestHeaders, agent, signal }, resolve);
          req.once('error', (err: NodeJS.ErrnoException) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
          req.end(body);
        });
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { reusedSocket?: boolean };
        if (attempt === 1 && e.reusedSocket && e.code === 'ECONNRESET' && method !== 'POST' && !signal.aborted) continue;
        throw new ApiError(0, 'ConnectionError', `${method} ${url.pathname}: ${e.message}`);
      }
    }
  }

  private failure(method: string, path: string, code: number, text: string): ApiError {
    let status: { reason?: string; message?: string; details?: unknown } = {};
    try {
      status = JSON.parse(text) as typeof status;
    } catch {
      status = { message: text.slice(0, 500) };
    }
    return new ApiError(code, status.reason ?? String(code), status.message ?? `${method} ${path} failed with ${code}`, status.details);
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 30_000)].filter((s): s is AbortSignal => !!s));
    let res: IncomingMessage;
    let text: string;
    try {
      res = await this.send(method, path, opts, signal);
      text = await readBody(res);
    } catch (err) {
      this.observer?.(method, path, 0);
      throw err instanceof ApiError ? err : new ApiError(0, 'ConnectionError', `${method} ${path}: ${(err as Error).message}`);
    }
    const code = res.statusCode ?? 0;
    this.observer?.(method, path, code);
    if (code === 401) this.connection = undefined;
    if (code >= 200 && code < 300) {
      opts.onResponseSize?.(text.length);
      return (text ? JSON.parse(text) : undefined) as T;
    }
    throw this.failure(method, path, code, text);
  }

  /**
   * Streams a watch: `onEvent` gets each event as it arrives. Resolves when the server ends the watch
   * (its timeoutSeconds) or `signal` aborts it; rejects with an ApiError on a refused watch (410 Gone
   * among them) or a broken connection, and with reason `WatchStalled` when nothing, not even a
   * bookmark, arrived for `stallMs`: a half-open connection otherwise stalls a watch silently.
   */
  async watch<T>(path: string, query: RequestOptions['query'], onEvent: (event: WatchEvent<T>) => void, opts: { signal: AbortSignal; stallMs: number }): Promise<void> {
    const stall = new AbortController();
    const signal = AbortSignal.any([opts.signal, stall.signal]);
    let timer = setTimeout(() => stall.abort(), opts.stallMs);
    const stalled = () => new ApiError(0, 'WatchStalled', `GET ${path}: no event for ${opts.stallMs / 1000} s`);
    try {
      let res: IncomingMessage;
      try {
        res = await this.send('GET', path, { query: { ...query, watch: true } }, signal);
      } catch (err) {
        this.observer?.('WATCH', path, 0);
        if (opts.signal.aborted) return;
        throw stall.signal.aborted ? stalled() : err;
      }
      const code = res.statusCode ?? 0;
      this.observer?.('WATCH', path, code);
      if (code === 401) this.connection = undefined;
      if (code !== 200) throw this.failure('GET', path, code, await readBody(res).catch(() => ''));
      res.setEncoding('utf8');
      let pending = '';
      try {
        for await (const chunk of res as AsyncIterable<string>) {
          clearTimeout(timer);
          timer = setTimeout(() => stall.abort(), opts.stallMs);
          pending += chunk;
          let newline;
          while ((newline = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, newline);
            pending = pending.slice(newline + 1);
            if (line.trim()) onEvent(JSON.parse(line) as WatchEvent<T>);
          }
        }
      } catch (err) {
        if (opts.signal.aborted) return;
        if (stall.signal.aborted) throw stalled();
        throw err instanceof ApiError ? err : new ApiError(0, 'ConnectionError', `GET ${path} (watch): ${(err as Error).message}`);
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
