// The benchmark's own API client: one undici Agent with keep-alive and a fixed number of connections,
// and timeouts long enough for a storm at N = 10,000. It is deliberately not the operator's KubeClient:
// the floor and the load generator must not move when the operator's client changes, or the ratios to
// the floor would measure the client twice.
import { KubeConfig } from '@kubernetes/client-node';
import { Agent, request } from 'undici';
import { apiPath, ApiError, type ObjectLike, type ResourceType } from '../../operator/runtime/kube.js';

export const benchUserAgent = 'modelship-bench/0.1.0';

export interface Tls { ca?: Buffer; cert?: Buffer; key?: Buffer }

export class BenchClient {
  readonly server: string;
  private readonly agent: Agent;
  requests = 0;

  constructor(readonly kc: KubeConfig, tls: Tls, connections = 64) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/$/, '');
    this.agent = new Agent({ connect: { ...tls }, connections, keepAliveTimeout: 30_000, pipelining: 1 });
  }

  static async fromKubeconfig(path: string, connections?: number): Promise<BenchClient> {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    const opts: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
    await kc.applyToHTTPSOptions(opts);
    return new BenchClient(kc, { ca: opts.ca, cert: opts.cert, key: opts.key }, connections);
  }

  async request<T>(method: string, path: string, opts: { body?: unknown; contentType?: string; query?: Record<string, string | number | boolean | undefined> } = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': benchUserAgent };
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/json';
    }
    this.requests++;
    const res = await request(url, { method: method as 'GET', headers, body, dispatcher: this.agent, headersTimeout: 120_000, bodyTimeout: 120_000 });
    const text = await res.body.text();
    if (res.statusCode >= 200 && res.statusCode < 300) return (text ? JSON.parse(text) : undefined) as T;
    let status: { reason?: string; message?: string } = {};
    try {
      status = JSON.parse(text) as typeof status;
    } catch {
      status = { message: text.slice(0, 300) };
    }
    throw new ApiError(res.statusCode, status.reason ?? String(res.statusCode), `${method} ${url.pathname}: ${status.message ?? res.statusCode}`);
  }

  /** A plain-text GET (the apiserver's /metrics). */
  async text(path: string): Promise<string> {
    const res = await request(new URL(this.server + path), { method: 'GET', headers: { 'user-agent': benchUserAgent }, dispatcher: this.agent });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new ApiError(res.statusCode, String(res.statusCode), `GET ${path}: ${text.slice(0, 200)}`);
    return text;
  }

  create<T>(type: ResourceType, obj: ObjectLike & Record<string, unknown>): Promise<T> {
    return this.request<T>('POST', apiPath(type, obj.metadata?.namespace), { body: obj });
  }

  apply<T>(type: ResourceType, obj: ObjectLike & Record<string, unknown>, fieldManager: string, subresource?: string): Promise<T> {
    return this.request<T>('PATCH', apiPath(type, obj.metadata?.namespace, obj.metadata?.name, subresource), {
      body: obj, contentType: 'application/apply-patch+yaml', query: { fieldManager, force: true },
    });
  }

  mergePatch<T>(type: ResourceType, namespace: string, name: string, patch: unknown): Promise<T> {
    return this.request<T>('PATCH', apiPath(type, namespace, name), { body: patch, contentType: 'application/merge-patch+json' });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; resolves when all are done (errors are collected). */
export async function pool<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<Error[]> {
  const errors: Error[] = [];
  const it = items[Symbol.iterator]();
  const worker = async () => {
    for (;;) {
      const next = it.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        errors.push(err as Error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  return errors;
}

/** Retries connection errors, 429 and 5xx a few times: a storm should measure the operator, not one lost request. */
export async function withRetry<T>(fn: () => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const code = err instanceof ApiError ? err.code : 0;
      const transient = !(err instanceof ApiError) || code === 429 || code >= 500;
      if (!transient || i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** i));
    }
  }
}
