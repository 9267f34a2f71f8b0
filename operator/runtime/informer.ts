// A list/watch cache for one resource type, the piece client-go calls a reflector plus a store.
//  - The initial list is paginated, and every stored object has metadata.managedFields stripped:
//    it is most of an object's bytes and the operator never reads it.
//  - The watch asks for bookmarks and a server-side timeout, resumes from the last resourceVersion,
//    and restarts with backoff after *any* error, not only 410 Gone. A 410 (or an ERROR event) relists.
//  - A watch that goes quiet for longer than `stallMs` (no events, no bookmarks) is presumed dead and
//    restarted: half-open TCP connections otherwise stall a watch silently.
import { apiPath, ApiError, isGone, type KubeClient, type KubeObject, type ResourceType } from './kube.js';
import type { StringPool } from './string-pool.js';
import { backoffDelay } from './workqueue.js';

export interface InformerHandlers<T> {
  onUpsert?(obj: T, old: T | undefined): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions {
  labelSelector?: string;
  namespace?: string;
  /** The first page's size; later pages adapt to the objects' size (`nextPageSize`). */
  pageSize?: number;
  /** No event or bookmark for this long: restart the watch. */
  stallMs?: number;
  onError?(err: Error): void;
  onRelist?(): void;
  /** A secondary index (e.g. the owning object): reconciles read their children without scanning. */
  indexBy?(obj: KubeObject): string | undefined;
  /**
   * Keeps only what the operator reads of each object (client-go's TransformFunc). Pods are most of
   * a cluster's objects and most of their bytes are a spec the operator never looks at.
   */
  transform?: (obj: KubeObject) => KubeObject;
  /** Shares the strings that the kept objects repeat (string-pool.ts); one pool may serve every informer. */
  strings?: StringPool;
}

/**
 * A page of a list is parsed in one piece (JSON.parse cannot yield), so its bytes are time the event
 * loop stands still: 500 model pods with their managedFields are about 9 MB, 100 ms of parsing. Pages
 * are sized to about `targetBytes` from the bytes per object of the page before, between 25 and 500
 * objects (client-go's 500 when objects are small).
 */
export function nextPageSize(limit: number, items: number, bytes: number, targetBytes = 1_000_000): number {
  if (items === 0 || bytes === 0) return limit;
  return Math.max(25, Math.min(500, Math.floor(targetBytes / (bytes / items))));
}

export const objectKey = (obj: KubeObject) => `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;

function strip<T extends KubeObject>(obj: T, options: InformerOptions): T {
  if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
  const kept = options.transform ? options.transform(obj) : obj;
  return (options.strings ? options.strings.internAll(kept) : kept) as T;
}

export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T>();
  private readonly index = new Map<string, Set<string>>();
  private resourceVersion: string | undefined;
  private abort: AbortController | undefined;
  private stopped = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private syncedResolve: (() => void) | undefined;
  readonly synced: Promise<void>;
  hasSynced = false;
  lastEventAt = 0;

  constructor(
    private readonly client: KubeClient,
    readonly type: ResourceType,
    private readonly handlers: InformerHandlers<T>,
    private readonly options: InformerOptions = {},
  ) {
    this.synced = new Promise((r) => { this.syncedResolve = r; });
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(`${namespace ?? ''}/${name}`);
  }

  /** Objects whose `indexBy` value is `value`. */
  byIndex(value: string): T[] {
    return [...(this.index.get(value) ?? [])].map((k) => this.store.get(k)).filter((o): o is T => o !== undefined);
  }

  private put(key: string, obj: T): void {
    this.unindex(key);
    this.store.set(key, obj);
    const value = this.options.indexBy?.(obj);
    if (value === undefined) return;
    let keys = this.index.get(value);
    if (!keys) this.index.set(value, (keys = new Set()));
    keys.add(key);
  }

  private remove(key: string): void {
    this.unindex(key);
    this.store.delete(key);
  }

  private unindex(key: string): void {
    const old = this.store.get(key);
    const value = old ? this.options.indexBy?.(old) : undefined;
    if (value === undefined) return;
    const keys = this.index.get(value);
    keys?.delete(key);
    if (keys?.size === 0) this.index.delete(value);
  }

  list(namespace?: string): T[] {
    const all = [...this.store.values()];
    return namespace === undefined ? all : all.filter((o) => o.metadata?.namespace === namespace);
  }

  get size(): number {
    return this.store.size;
  }

  start(): Promise<void> {
    this.stopped = false;
    void this.relist();
    return this.synced;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.abort?.abort();
  }

  private scheduleRestart(relist: boolean, err?: Error): void {
    if (this.stopped) return;
    if (err) this.options.onError?.(err);
    this.failures++;
    // 0.5 s, 1 s, 2 s … 30 s: a down apiserver is retried briskly but never hammered.
    const delay = Math.min(30_000, backoffDelay(this.failures, { baseMs: 500, maxMs: 30_000 }));
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void (relist ? this.relist() : this.watch()), delay);
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    try {
      const fresh = new Map<string, T>();
      let continueToken: string | undefined;
      let resourceVersion: string | undefined;
      let limit = this.options.pageSize ?? 100;
      do {
        let bytes = 0;
        const page = await this.client.list<T>(this.type, {
          namespace: this.options.namespace,
          labelSelector: this.options.labelSelector,
          limit,
          continueToken,
          onResponseSize: (n) => { bytes = n; },
        });
        limit = nextPageSize(limit, page.items.length, bytes);
        for (const item of page.items) {
          // List items carry no apiVersion/kind; watch events do. Keep them uniform.
          item.apiVersion ??= this.type.group ? `${this.type.group}/${this.type.version}` : this.type.version;
          item.kind ??= this.type.kind;
          fresh.set(objectKey(item), strip(item, this.options));
        }
        continueToken = page.metadata?.continue || undefined;
        resourceVersion = page.metadata?.resourceVersion;
        // Long lists are parsed page by page; yield so timers and the health server keep running.
        await new Promise((r) => setImmediate(r));
      } while (continueToken && !this.stopped);
      if (this.stopped) return;
      this.options.onRelist?.();
      this.replaceStore(fresh);
      this.resourceVersion = resourceVersion;
      this.lastEventAt = Date.now();
      if (!this.hasSynced) {
        this.hasSynced = true;
        this.syncedResolve?.();
      }
      void this.watch();
    } catch (err) {
      this.scheduleRestart(true, err as Error);
    }
  }

  private replaceStore(fresh: Map<string, T>): void {
    const old = new Map(this.store);
    this.store.clear();
    this.index.clear();
    for (const [k, v] of fresh) this.put(k, v);
    for (const [k, v] of fresh) {
      const prev = old.get(k);
      if (!prev || prev.metadata?.resourceVersion !== v.metadata?.resourceVersion) this.handlers.onUpsert?.(v, prev);
    }
    for (const [k, v] of old) if (!fresh.has(k)) this.handlers.onDelete?.(v);
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    const abort = new AbortController();
    this.abort = abort;
    let needRelist = false;
    let events = 0;
    const startedAt = Date.now();
    try {
      await this.client.watch<T>(apiPath(this.type, this.options.namespace), {
        allowWatchBookmarks: true,
        resourceVersion: this.resourceVersion,
        labelSelector: this.options.labelSelector,
        // Randomised like client-go (5-10 min) so many watches do not all reconnect at once.
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      }, ({ type, object: obj }) => {
        this.lastEventAt = Date.now();
        events++;
        if (type === 'ERROR') {
          // Not a success: a server answering every watch with ERROR must meet the back-off.
          const status = obj as unknown as { code?: number; reason?: string; message?: string };
          needRelist = true;
          this.options.onError?.(new ApiError(status.code ?? 0, status.reason ?? 'WatchError', status.message ?? 'watch error'));
          abort.abort();
          return;
        }
        this.failures = 0;
        const rv = obj.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
        if (type === 'BOOKMARK') return;
        const kept = strip(obj, this.options);
        const key = objectKey(kept);
        if (type === 'DELETED') {
          const prev = this.store.get(key);
          this.remove(key);
          this.handlers.onDelete?.(prev ?? kept);
        } else {
          const prev = this.store.get(key);
          this.put(key, kept);
          this.handlers.onUpsert?.(kept, prev);
        }
      }, { signal: abort.signal, stallMs: this.options.stallMs ?? 90_000 });
      if (this.stopped) return;
      // An ERROR event (our resourceVersion is too old) relists; a clean end (the server-side
      // timeout) reconnects at once from the last resourceVersion, unless the watch ended at once
      // with nothing in it (a proxy closing it, say): client-go's "very short watch", met with back-off.
      if (needRelist) this.scheduleRestart(true);
      else if (events === 0 && Date.now() - startedAt < 1000) this.scheduleRestart(false, new ApiError(0, 'ShortWatch', `watch of ${this.type.plural} ended at once with no events`));
      else void this.watch();
    } catch (err) {
      if (this.stopped) return;
      // 410 means our resourceVersion is gone; after repeated failures a relist is the safe reset too.
      const relist = isGone(err) || this.failures >= 3;
      this.scheduleRestart(relist, err as Error);
    }
  }
}

/** What reconcilers read: one informer, or one per watched namespace behind the same face. */
export interface ObjectCache<T extends KubeObject> {
  readonly type: ResourceType;
  readonly size: number;
  get(namespace: string | undefined, name: string): T | undefined;
  list(namespace?: string): T[];
  byIndex(value: string): T[];
  start(): Promise<void>;
  stop(): void;
}

/**
 * One informer per namespace, for an operator limited to `watchNamespaces` (its RBAC allows nothing
 * cluster-wide). Keys and index values carry the namespace, so lookups go to one informer.
 */
export class NamespacedInformers<T extends KubeObject> implements ObjectCache<T> {
  private readonly byNamespace: Map<string, Informer<T>>;

  constructor(readonly type: ResourceType, namespaces: string[], make: (namespace: string) => Informer<T>) {
    this.byNamespace = new Map(namespaces.map((ns) => [ns, make(ns)]));
  }

  get size(): number {
    return [...this.byNamespace.values()].reduce((n, i) => n + i.size, 0);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return namespace === undefined ? undefined : this.byNamespace.get(namespace)?.get(namespace, name);
  }

  list(namespace?: string): T[] {
    if (namespace !== undefined) return this.byNamespace.get(namespace)?.list(namespace) ?? [];
    return [...this.byNamespace.values()].flatMap((i) => i.list());
  }

  byIndex(value: string): T[] {
    const namespace = value.slice(0, value.indexOf('/'));
    return this.byNamespace.get(namespace)?.byIndex(value) ?? [];
  }

  async start(): Promise<void> {
    await Promise.all([...this.byNamespace.values()].map((i) => i.start()));
  }

  stop(): void {
    for (const i of this.byNamespace.values()) i.stop();
  }
}
