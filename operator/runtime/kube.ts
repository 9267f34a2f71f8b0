// A small, kind-agnostic Kubernetes client on Node's own HTTP stack, with keep-alive connections.
// Everything the operator does to the API (list, watch, server-side apply, status, delete, leases,
// events) goes through `request` or `watch`, which count requests for metrics and turn failures into
// one error type.
//
// Two things keep a deposed or throttled operator from doing harm, both enforced here because every
// request passes through here:
//  - a write fence: once a leadership term ends, mutating requests are refused before they leave the
//    process, and those in flight are aborted (`fenceWrites`, `withRequestSignal`);
//  - flow control: a 429 makes the whole client wait for the apiserver's Retry-After, then probe with
//    one request at a time until it is served again (`FlowControl`).
//
// Why not the generated typed clients: they rename fields when serialising (`_from`, `_continue`), pick
// JSON Patch as the default patch type, and need one class per group; an operator that applies
// plain objects wants none of that.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage } from 'node:http';
import { http, https } from './node-http.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterAccess, Connection } from './kubeconfig.js';

// The plain object types live with the API types, so that pure code (api/, the desired builders, the
// decision) never imports the client to name an object.
export type { KubeObject, ObjectLike, ObjectMeta, OwnerReference } from '../api/object.js';
import type { ObjectLike } from '../api/object.js';

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
export const isThrottled = (err: unknown) => err instanceof ApiError && err.code === 429;
/** Refused or cut off because the leadership term it belonged to has ended: never retry it in that term. */
export const isFenced = (err: unknown) => err instanceof ApiError && err.reason === 'NotLeader';
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
  /** The whole request's budget, waits for flow control and retries after a 429 included (default 30 s). */
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

/** A request that got no HTTP answer: unreachable, reset, timed out, cut off, or its credentials unreadable. */
function connectionError(method: string, path: string, err: unknown, signal: AbortSignal): ApiError {
  if (err instanceof ApiError) return err;
  const reason = signal.reason as Error | undefined;
  if (signal.aborted && reason instanceof ApiError) return new ApiError(reason.code, reason.reason, `${method} ${path}: ${reason.message}`);
  if (signal.aborted && reason?.name === 'TimeoutError') return new ApiError(0, 'Timeout', `${method} ${path}: no answer in time`);
  if (signal.aborted) return new ApiError(0, 'Aborted', `${method} ${path}: aborted${reason?.message ? `: ${reason.message}` : ''}`);
  return new ApiError(0, 'ConnectionError', `${method} ${path}: ${(err as Error).message}`);
}

/** Why a fenced request fails: the abort reason of a term that ended, and the error of a write refused after it. */
export function notLeaderError(detail = 'leadership was lost'): ApiError {
  return new ApiError(0, 'NotLeader', `refused: ${detail}`);
}

/**
 * What decides whether writes may be sent: a leadership term, as an AbortSignal that aborts when the
 * term ends (the leader elector implements this). No term, or an ended one, means no writes.
 */
export interface WriteFence {
  readonly term: AbortSignal | undefined;
}

const requestScope = new AsyncLocalStorage<AbortSignal>();

/**
 * Runs `fn` with every API request it makes, however deep in its call tree, bound to `signal`: those in
 * flight are aborted when it aborts, and later ones are refused. The controller runs each reconcile in
 * the scope of the leadership term it started in, so a reconcile that outlives its term can neither
 * read nor write, even once a later term has begun; reconcile code needs no signal of its own.
 */
export function withRequestSignal<T>(signal: AbortSignal, fn: () => T): T {
  return requestScope.run(signal, fn);
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date (RFC 9110); undefined when absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface FlowControlOptions {
  /** The wait after a first 429 without Retry-After; it doubles with each further one. */
  baseBackoffMs: number;
  maxBackoffMs: number;
}

export const defaultFlowControl: FlowControlOptions = { baseBackoffMs: 500, maxBackoffMs: 32_000 };

/** How a request that was let through reports its answer: an HTTP code (0 for none) and the Retry-After header. */
export type Admission = (code: number, retryAfter?: string | string[]) => void;

/**
 * Client-wide back-off on throttling, after client-go's: a 429 (or a 503 with Retry-After) means the
 * apiserver is overloaded as a whole, so every request of this client waits, not only the one that was
 * refused; retrying each on its own (per-key backoff from 5 ms) multiplies the load it asked us to
 * shed. While throttled, requests wait until Retry-After has passed (or, without one, an exponential
 * back-off), then one request at a time probes; the first answer that is not throttling lets all
 * waiting requests through. So a client sends at most one request per Retry-After to an apiserver that
 * only throttles.
 */
export class FlowControl {
  private notBefore = 0;
  private strikes = 0;
  private probing = false;
  private probeEnded: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();

  constructor(private readonly opts: FlowControlOptions = defaultFlowControl, private readonly now: () => number = Date.now) {}

  /** Milliseconds until requests may be sent again: 0 unless throttled. */
  get waitMs(): number {
    return Math.max(0, this.notBefore - this.now());
  }

  get throttled(): boolean {
    return this.strikes > 0;
  }

  /**
   * Waits for a request's turn. Rejects with a 429 ApiError at once when the apiserver asked for a wait
   * that ends after `deadline`: the request could not be sent in time anyway, and its caller may do
   * better with the time (a leader renewing its lease, say).
   */
  async admit(signal: AbortSignal, deadline: number): Promise<Admission> {
    for (;;) {
      signal.throwIfAborted();
      const wait = this.notBefore - this.now();
      if (wait > 0) {
        if (this.now() + wait > deadline) {
          throw new ApiError(429, 'TooManyRequests', `throttled: the apiserver asked for a pause of ${(wait / 1000).toFixed(1)} s, longer than this request may wait`);
        }
        await sleep(wait, undefined, { signal });
        continue;
      }
      if (this.strikes === 0) return (code, retryAfter) => this.answered(code, retryAfter, false);
      if (!this.probing) {
        this.probing = true;
        return (code, retryAfter) => this.answered(code, retryAfter, true);
      }
      await abortable(this.probeEnded.promise, signal);
    }
  }

  private answered(code: number, retryAfter: string | string[] | undefined, probe: boolean): void {
    const hint = retryAfterMs(retryAfter, this.now());
    if (code === 429 || (code === 503 && hint !== undefined)) {
      this.strikes++;
      const backoff = Math.min(this.opts.maxBackoffMs, this.opts.baseBackoffMs * 2 ** Math.min(this.strikes - 1, 20));
      this.notBefore = Math.max(this.notBefore, this.now() + (hint ?? backoff));
    } else if (code !== 0) {
      // Any other answer means the apiserver serves again. No answer at all says nothing either way.
      this.strikes = 0;
      this.notBefore = 0;
    }
    if (probe) {
      this.probing = false;
      const ended = this.probeEnded;
      this.probeEnded = Promise.withResolvers<void>();
      ended.resolve();
    }
  }
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

/** A caller's bounds on one call: an abort signal and a time budget. */
export type CallOptions = Pick<RequestOptions, 'signal' | 'timeoutMs'>;

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

  private fence: WriteFence | undefined;

  /** Shared by every request of this client: throttling is the apiserver's state, not one request's. */
  readonly flow: FlowControl;

  constructor(readonly access: ClusterAccess, identity?: string, product = userAgentPrefix, flow = new FlowControl()) {
    this.userAgent = identity ? `${product} (${identity})` : product;
    this.flow = flow;
  }

  get server(): string {
    return this.access.server;
  }

  onRequest(observer: RequestObserver): void {
    this.observer = observer;
  }

  /**
   * From now on, writes (POST, PUT, PATCH, DELETE) are sent only during a term of `fence`, and are
   * aborted when it ends. A client without a fence writes freely (a single replica, the CLI).
   */
  fenceWrites(fence: WriteFence): void {
    this.fence = fence;
  }

  /**
   * The signals a request is bound to: its own, the caller's scope (`withRequestSignal`) and, for a
   * write, the leadership term. Throws at once when any has already ended, so nothing is sent.
   */
  private bindings(method: string, path: string, own: AbortSignal | undefined): AbortSignal[] {
    const signals: AbortSignal[] = [];
    if (own) signals.push(own);
    const scope = requestScope.getStore();
    if (scope) {
      if (scope.aborted) throw connectionError(method, path, scope.reason, scope);
      signals.push(scope);
    }
    if (this.fence && writeMethods.has(method)) {
      const term = this.fence.term;
      if (!term || term.aborted) throw new ApiError(0, 'NotLeader', `${method} ${path}: refused: this replica does not lead`);
      signals.push(term);
    }
    return signals;
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

  /**
   * Drops the pool's idle keep-alive connections. After a partition they may be dead without either end
   * knowing, and a request sent on one would hang until its timeout instead of opening a fresh one.
   */
  async closeIdleConnections(): Promise<void> {
    const connection = await this.connection?.value.catch(() => undefined);
    for (const sockets of Object.values(connection?.agent.freeSockets ?? {})) for (const socket of sockets ?? []) socket.destroy();
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
    const transport = url.protocol === 'http:' ? http.request : https.request;
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

  /**
   * One API call. A 429 is retried within the request's time budget, after the wait the apiserver asked
   * for (see `FlowControl`); other failures are the caller's to retry.
   */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const signal = AbortSignal.any([...this.bindings(method, path, opts.signal), AbortSignal.timeout(timeoutMs)]);
    for (;;) {
      let admission: Admission;
      try {
        admission = await this.flow.admit(signal, deadline);
      } catch (err) {
        // Never sent, so not counted as a request.
        throw err instanceof ApiError ? new ApiError(err.code, err.reason, `${method} ${path}: ${err.message}`) : connectionError(method, path, err, signal);
      }
      let res: IncomingMessage;
      let text: string;
      try {
        res = await this.send(method, path, opts, signal);
        text = await readBody(res);
      } catch (err) {
        admission(0);
        this.answered(method, path, 0);
        throw err instanceof ApiError ? err : connectionError(method, path, err, signal);
      }
      const code = res.statusCode ?? 0;
      admission(code, res.headers['retry-after']);
      this.answered(method, path, code);
      // Not processed, so safe to send again, POST included; the wait is the flow control's.
      if (code === 429 && Date.now() + this.flow.waitMs < deadline) continue;
      if (code < 200 || code >= 300) throw statusError(method, path, code, text);
      opts.onResponseSize?.(text.length);
      if (!text) return undefined as T;
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ApiError(code, 'InvalidResponse', `${method} ${path}: HTTP ${code} with a body that is not JSON: ${text.slice(0, 200)}`);
      }
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
    const signal = AbortSignal.any([...this.bindings('GET', path, opts.signal), stall.signal]);
    let timer: NodeJS.Timeout | undefined;
    const stalled = () => new ApiError(0, 'WatchStalled', `GET ${path} (watch): no event for ${opts.stallMs / 1000} s`);
    try {
      let admission: Admission;
      try {
        // Waiting out a throttled apiserver is not a stall; a wait longer than a stall fails like one would.
        admission = await this.flow.admit(opts.signal, Date.now() + opts.stallMs);
      } catch (err) {
        if (opts.signal.aborted) return;
        throw err instanceof ApiError ? new ApiError(err.code, err.reason, `GET ${path} (watch): ${err.message}`) : err;
      }
      timer = setTimeout(() => stall.abort(), opts.stallMs);
      let res: IncomingMessage;
      try {
        res = await this.send('GET', path, { query: { ...query, watch: true } }, signal);
      } catch (err) {
        admission(0);
        this.answered('WATCH', path, 0);
        if (opts.signal.aborted) return;
        throw stall.signal.aborted ? stalled() : err;
      }
      const code = res.statusCode ?? 0;
      admission(code, res.headers['retry-after']);
      this.answered('WATCH', path, code);
      if (code !== 200) throw statusError('GET', path, code, await readBody(res).catch(() => ''));
      res.setEncoding('utf8');
      const chunks = (res as AsyncIterable<string>)[Symbol.asyncIterator]();
      // One timer per watch that checks when data last came, instead of one timer per chunk.
      clearTimeout(timer);
      let lastData = Date.now();
      const check = () => {
        const quiet = Date.now() - lastData;
        if (quiet >= opts.stallMs) stall.abort();
        else timer = setTimeout(check, opts.stallMs - quiet);
      };
      timer = setTimeout(check, opts.stallMs);
      // The start of an event whose end has not arrived yet.
      let partial = '';
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
        lastData = Date.now();
        const chunk = next.value;
        // Each event is one line: cut the chunk at its newlines, never re-scanning what was scanned.
        let from = 0;
        let newline;
        while ((newline = chunk.indexOf('\n', from)) >= 0) {
          const line = partial ? partial + chunk.slice(from, newline) : chunk.slice(from, newline);
          partial = '';
          from = newline + 1;
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
        if (from < chunk.length) partial += chunk.slice(from);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  get<T extends ObjectLike>(type: ResourceType, namespace: string | undefined, name: string, call: CallOptions = {}): Promise<T> {
    return this.request<T>('GET', apiPath(type, namespace, name), call);
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

  create<T extends ObjectLike, I extends ObjectLike = ObjectLike>(type: ResourceType, obj: I, call: CallOptions = {}): Promise<T> {
    return this.request<T>('POST', apiPath(type, obj.metadata?.namespace), { ...call, body: obj });
  }

  replace<T extends ObjectLike, I extends ObjectLike = ObjectLike>(type: ResourceType, obj: I, call: CallOptions = {}): Promise<T> {
    return this.request<T>('PUT', apiPath(type, obj.metadata?.namespace, obj.metadata?.name), { ...call, body: obj });
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string, opts: { uid?: string; propagation?: 'Background' | 'Foreground' | 'Orphan' } = {}): Promise<void> {
    await this.request('DELETE', apiPath(type, namespace, name), {
      body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: opts.propagation ?? 'Background', ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}) },
    });
  }
}
