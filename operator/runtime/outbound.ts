// Every HTTP call the operator makes on a tenant's behalf (analysis, monitoring, webhooks) goes through
// here, so each is bounded the same way whoever wrote the spec:
//  - destination: a tenant-given URL must pass the admin's policy (tenancy/policy.ts) before the call,
//    and every address its name resolves to must pass again; the socket connects to the address that
//    was checked, so a second DNS answer cannot swap it;
//  - redirects are never followed: a 3xx is the answer, and its Location is never read;
//  - size: the body is streamed and the call fails once it passes the cap, so a large answer costs at
//    most the cap in memory;
//  - time: the caller's timeout and abort signal cover the connection, the wait for headers and the body;
//  - concurrency: a cap across the operator and a smaller one per namespace, so one namespace's slow or
//    hostile endpoints hold only its own slots and cannot delay another's checks.
// Errors say what went wrong (denied, too large, timed out, refused) and the origin; never the body.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import type { IncomingMessage } from 'node:http';
import { http, https } from './node-http.js';
import { isIP, type LookupFunction } from 'node:net';
import { addressAllowed, canonicalAddress, defaultTenancyPolicy, tenantUrlProblem, urlHost, type TenancyPolicy } from '../tenancy/policy.js';

/**
 * service: a URL the operator built for the tenant's own Service (only the path is the tenant's);
 * tenant: a URL from the spec, checked against the policy; provider: an admin-registered endpoint.
 */
export type Trust = 'service' | 'tenant' | 'provider';

export interface OutboundRequest {
  url: string | URL;
  trust: Trust;
  /** Whose slot the call takes. */
  namespace: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface OutboundResponse {
  status: number;
  body: Buffer;
}

export type OutboundFailure = 'Denied' | 'TooLarge' | 'Timeout' | 'Aborted' | 'Network';

export class OutboundError extends Error {
  override name = 'OutboundError';
  constructor(readonly reason: OutboundFailure, message: string) {
    super(message);
  }
}

export interface OutboundLimits {
  maxResponseBytes: number;
  maxConcurrent: number;
  maxPerNamespace: number;
}

export const defaultOutboundLimits: OutboundLimits = { maxResponseBytes: 1 << 20, maxConcurrent: 32, maxPerNamespace: 4 };

export function formatBytes(n: number): string {
  return n >= 1 << 20 && n % (1 << 20) === 0 ? `${n / (1 << 20)} MiB` : n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}

/**
 * Slots for calls in flight: at most `perKey` per namespace, and at most `max` in all beyond each
 * namespace's first. The first is never refused for want of a global slot, so tenants who fill the
 * global cap together (many namespaces with hung endpoints) still cannot stop another namespace's
 * analysis; the excess is bounded by the number of namespaces with a call in flight. Waiters are served
 * round-robin across namespaces, so a namespace with many queued calls does not starve the others.
 */
export class FairLimiter {
  private inUse = 0;
  private readonly perKeyInUse = new Map<string, number>();
  private readonly waiting = new Map<string, { grant: () => void }[]>();

  constructor(private readonly max: number, private readonly perKey: number) {}

  get active(): number {
    return this.inUse;
  }

  async acquire(key: string, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (!this.canRun(key)) {
      await new Promise<void>((resolve, reject) => {
        const entry = { grant: () => { signal?.removeEventListener('abort', onAbort); resolve(); } };
        const onAbort = () => {
          const queue = this.waiting.get(key) ?? [];
          const i = queue.indexOf(entry);
          if (i >= 0) queue.splice(i, 1);
          if (!queue.length) this.waiting.delete(key);
          reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        const queue = this.waiting.get(key);
        if (queue) queue.push(entry);
        else this.waiting.set(key, [entry]);
      });
    } else {
      this.take(key);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse--;
      const n = (this.perKeyInUse.get(key) ?? 1) - 1;
      if (n) this.perKeyInUse.set(key, n);
      else this.perKeyInUse.delete(key);
      this.dispatch();
    };
  }

  private canRun(key: string): boolean {
    const own = this.perKeyInUse.get(key) ?? 0;
    return own < this.perKey && (own === 0 || this.inUse < this.max);
  }

  private take(key: string): void {
    this.inUse++;
    this.perKeyInUse.set(key, (this.perKeyInUse.get(key) ?? 0) + 1);
  }

  private dispatch(): void {
    // Map order is insertion order: a namespace served goes to the back, which makes this round-robin.
    for (const [key, queue] of [...this.waiting]) {
      if (!this.canRun(key)) continue;
      const entry = queue.shift()!;
      this.waiting.delete(key);
      if (queue.length) this.waiting.set(key, queue);
      this.take(key);
      entry.grant();
    }
  }
}

/** How a call ended, for metrics: ok (any status) or the failure. */
export type OutboundObserver = (call: { namespace: string; trust: Trust; outcome: 'ok' | OutboundFailure }) => void;

export class Outbound {
  private readonly limiter: FairLimiter;

  constructor(readonly policy: TenancyPolicy = defaultTenancyPolicy, readonly limits: OutboundLimits = defaultOutboundLimits, private readonly observe: OutboundObserver = () => undefined) {
    this.limiter = new FairLimiter(limits.maxConcurrent, limits.maxPerNamespace);
  }

  private nodeAddresses: ReadonlySet<string> = new Set();

  /** The cluster's node addresses, refused to tenant URLs (--outbound-deny-node-addresses). */
  setNodeAddresses(addresses: Iterable<string>): void {
    this.nodeAddresses = new Set([...addresses].map(canonicalAddress));
  }

  /** Calls in flight now (for tests and metrics). */
  get active(): number {
    return this.limiter.active;
  }

  async request(req: OutboundRequest): Promise<OutboundResponse> {
    try {
      const res = await this.limitedRequest(req);
      this.observe({ namespace: req.namespace, trust: req.trust, outcome: 'ok' });
      return res;
    } catch (err) {
      this.observe({ namespace: req.namespace, trust: req.trust, outcome: err instanceof OutboundError ? err.reason : 'Network' });
      throw err;
    }
  }

  private async limitedRequest(req: OutboundRequest): Promise<OutboundResponse> {
    const url = new URL(req.url);
    if (req.trust === 'tenant') {
      const problem = tenantUrlProblem(this.policy, url.toString());
      if (problem) throw new OutboundError('Denied', `${url.origin}: ${problem}`);
    }
    const release = await this.limiter.acquire(req.namespace, req.signal).catch((err: unknown) => {
      throw new OutboundError('Aborted', `${url.origin}: abandoned while waiting for a free outbound slot (${(err as Error).message})`);
    });
    try {
      return await this.send(url, req);
    } finally {
      release();
    }
  }

  /** A lookup that refuses the whole name when any address it resolves to is denied. */
  private checkedLookup(origin: string): LookupFunction {
    return (hostname, options, callback) => {
      dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
        if (err) return callback(err, '', 4);
        const denied = addresses.find((a) => !addressAllowed(this.policy, a.address, this.nodeAddresses));
        if (denied || !addresses.length) {
          const e = new OutboundError('Denied', `${origin}: ${hostname} resolves to ${denied?.address ?? 'nothing'}, which the operator's outbound policy denies`);
          return callback(e, '', 4);
        }
        if (options.all) (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      });
    };
  }

  private send(url: URL, req: OutboundRequest): Promise<OutboundResponse> {
    const origin = url.origin;
    const host = urlHost(url);
    if (req.trust === 'tenant' && isIP(host) && !addressAllowed(this.policy, host, this.nodeAddresses)) {
      return Promise.reject(new OutboundError('Denied', `${origin}: address ${host} is denied by the operator's outbound policy`));
    }
    const timeout = AbortSignal.timeout(req.timeoutMs);
    const signal = req.signal ? AbortSignal.any([timeout, req.signal]) : timeout;
    const max = this.limits.maxResponseBytes;
    const client = url.protocol === 'https:' ? https : http;
    return new Promise<OutboundResponse>((resolveOnce, rejectOnce) => {
      // Destroying a stream emits its own errors; the first outcome is the one that counts.
      let settled = false;
      const resolve = (r: OutboundResponse) => { if (!settled) { settled = true; resolveOnce(r); } };
      const reject = (e: OutboundError) => { if (!settled) { settled = true; rejectOnce(e); } };
      const fail = (err: unknown) => reject(classify(err, origin, signal, timeout, req.timeoutMs));
      const request = client.request(url, {
        method: req.method ?? 'GET',
        headers: { ...req.headers, ...(req.body !== undefined ? { 'content-length': Buffer.byteLength(req.body) } : {}) },
        signal,
        // A fresh connection per call: a pooled socket would carry a check past a policy change, and
        // checks are seconds apart, so reuse would save little.
        agent: false,
        ...(req.trust === 'tenant' ? { lookup: this.checkedLookup(origin) } : {}),
      }, (res: IncomingMessage) => {
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > max) {
          reject(new OutboundError('TooLarge', `${origin}: the answer declares ${declared} bytes, more than the ${formatBytes(max)} limit`));
          res.destroy();
          request.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > max) {
            reject(new OutboundError('TooLarge', `${origin}: the answer is larger than the ${formatBytes(max)} limit`));
            res.destroy();
            request.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks, size) }));
        res.on('error', fail);
        res.on('aborted', () => fail(new Error('the connection closed before the answer was complete')));
      });
      request.on('error', fail);
      request.end(req.body);
    });
  }
}

function classify(err: unknown, origin: string, signal: AbortSignal, timeout: AbortSignal, timeoutMs: number): OutboundError {
  if (err instanceof OutboundError) return err;
  if (timeout.aborted) return new OutboundError('Timeout', `${origin}: no answer in ${timeoutMs / 1000}s`);
  if (signal.aborted) return new OutboundError('Aborted', `${origin}: abandoned (the measurement is no longer needed)`);
  const e = err as NodeJS.ErrnoException & { cause?: unknown };
  if (e?.cause instanceof OutboundError) return e.cause;
  return new OutboundError('Network', `${origin}: ${e?.code ?? e?.message ?? String(err)}`);
}

/** The operator's one outbound client; main.ts replaces it with the admin's policy and limits. */
export let outbound = new Outbound();

export function configureOutbound(policy: TenancyPolicy, limits: OutboundLimits, observe?: OutboundObserver): void {
  outbound = new Outbound(policy, limits, observe);
}
