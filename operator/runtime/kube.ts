// A small, kind-agnostic Kubernetes client on top of client-node's authentication. Everything the
// operator does to the API (list, watch, server-side apply, status, delete, leases, events) goes through
// `request`, which counts requests for metrics and turns failures into one error type.
//
// Why not the generated typed clients: they rename fields when serialising (`_from`, `_continue`), pick
// JSON Patch as the default patch type, and need one class per group; an operator that applies
// plain objects wants none of that.
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { fetch, type Dispatcher } from 'undici';

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
}

export type RequestObserver = (method: string, path: string, code: number) => void;

export class KubeClient {
  private observer: RequestObserver | undefined;

  private auth: { headers: Record<string, string>; dispatcher: Dispatcher | undefined; at: number } | undefined;

  private static readonly authTtlMs = 5 * 60_000;

  private readonly userAgent: string;

  constructor(readonly kc: KubeConfig, identity?: string, product = userAgentPrefix) {
    this.userAgent = identity ? `${product} (${identity})` : product;
  }

  get server(): string {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    return cluster.server;
  }

  onRequest(observer: RequestObserver): void {
    this.observer = observer;
  }

  /**
   * Authentication headers and TLS dispatcher, as client-node computes them. client-node builds a new
   * undici Agent on every call, which means a TLS handshake and a connection pool per request: under
   * load that costs most of the CPU and hundreds of MB. One is kept and reused (keep-alive connections),
   * and renewed every `authTtlMs`, or at once after a 401, so rotated tokens and certificates are
   * picked up.
   */
  async prepare(url: URL, method: HttpMethod = HttpMethod.GET): Promise<{ headers: Record<string, string>; dispatcher: Dispatcher | undefined }> {
    const now = Date.now();
    if (!this.auth || now - this.auth.at > KubeClient.authTtlMs) {
      const ctx = new RequestContext(url.toString(), method);
      await this.kc.applySecurityAuthentication(ctx);
      const old = this.auth?.dispatcher;
      this.auth = { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher(), at: now };
      // Requests may still be starting on the old one; close() lets those finish.
      if (old && old !== this.auth.dispatcher) setTimeout(() => void old.close().catch(() => undefined), 30_000).unref();
    }
    return { headers: { ...this.auth.headers }, dispatcher: this.auth.dispatcher };
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const { headers, dispatcher } = await this.prepare(url, method as HttpMethod);
    headers.Accept = 'application/json';
    headers['User-Agent'] = this.userAgent;
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['Content-Type'] = opts.contentType ?? 'application/json';
    }
    const signals = [opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 30_000)].filter((s): s is AbortSignal => !!s);
    let res;
    try {
      res = await fetch(url, { method, headers, body, dispatcher, signal: AbortSignal.any(signals) });
    } catch (err) {
      this.observer?.(method, path, 0);
      throw new ApiError(0, 'ConnectionError', `${method} ${url.pathname}: ${(err as Error).message}`);
    }
    this.observer?.(method, path, res.status);
    if (res.status === 401) this.auth = undefined;
    const text = await res.text();
    if (res.status >= 200 && res.status < 300) return (text ? JSON.parse(text) : undefined) as T;
    let status: { reason?: string; message?: string; details?: unknown } = {};
    try {
      status = JSON.parse(text) as typeof status;
    } catch {
      status = { message: text.slice(0, 500) };
    }
    throw new ApiError(res.status, status.reason ?? String(res.status), status.message ?? `${method} ${url.pathname} failed with ${res.status}`, status.details);
  }

  get<T extends ObjectLike>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', apiPath(type, namespace, name));
  }

  /** One page of a list. */
  list<T extends ObjectLike>(type: ResourceType, opts: { namespace?: string; labelSelector?: string; limit?: number; continueToken?: string; resourceVersion?: string } = {}): Promise<KubeList<T>> {
    return this.request<KubeList<T>>('GET', apiPath(type, opts.namespace), {
      query: { labelSelector: opts.labelSelector, limit: opts.limit, continue: opts.continueToken, resourceVersion: opts.resourceVersion },
      timeoutMs: 120_000,
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
