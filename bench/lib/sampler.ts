// Samples the operator (and the control plane, and the benchmark itself) from outside while a scenario
// runs: /proc every `procMs`, /metrics every `metricsMs`, and both at the start and end of each phase,
// so counter differences cover a phase exactly.
//
// prom-client resets its event-loop delay histogram at every scrape, so each scrape's
// nodejs_eventloop_lag_p99_seconds is the p99 of the window since the previous one. The p99 of a phase
// is at most the largest window p99 inside it (if no window has more than 1% of its samples above x,
// neither has their union), and that bound is what is reported.
import { writeMethods } from '../../operator/runtime/kube.js';
import { Metrics, procStat, type SampledProcess } from './operator.js';
import { bucketDelta, histogramQuantile, percentile, round, type Bucket } from './stats.js';

/** `pid` tells samples of a restarted operator apart: its counters start again from 0. */
export interface ProcPoint { t: number; pid: number; cpuSeconds: number; rssBytes: number; fds: number }
export interface Scrape { t: number; pid: number; ms: number; bytes: number; metrics: Metrics }

/** The apiserver's own view of a phase: requests by verb and resource, and their mean latency. */
export interface ApiserverPhase {
  requests: { verb: string; resource: string; count: number; meanMs: number }[];
  etcd: { operation: string; type: string; count: number; meanMs: number }[];
}

export interface PhaseSummary {
  name: string;
  seconds: number;
  operator: {
    cpuSeconds?: number;
    /** CPU seconds per wall second: 1 = one core busy. */
    cpuCores?: number;
    rssPeakMB?: number;
    rssEndMB?: number;
    /** Open file descriptors (mostly sockets to the apiserver), peak. */
    fdsPeak?: number;
    heapUsedPeakMB?: number;
    heapUsedEndMB?: number;
    eventLoopLagP99Ms?: number;
    /** The median of the window p99s: the typical window, where eventLoopLagP99Ms is the worst. */
    eventLoopLagP99MedianWindowMs?: number;
    eventLoopLagMaxMs?: number;
    requests: Record<string, number>;
    writes: number;
    reconciles: Record<string, number>;
    queueLatencyP99Ms?: number;
    queueLatencyP99UpperMs?: number;
    reconcileP99Ms?: number;
    scrapes: number;
    scrapeMsMax?: number;
    metricsBytes?: number;
  };
  /** CPU seconds of each control-plane component and of the benchmark process in this phase. */
  cpuSeconds: Record<string, number>;
  apiserver?: ApiserverPhase;
}

const MB = 1024 * 1024;

export class Sampler {
  readonly proc: ProcPoint[] = [];
  readonly scrapes: Scrape[] = [];
  private readonly others = new Map<string, { t: number; cpuSeconds: number }[]>();
  private procTimer: NodeJS.Timeout | undefined;
  private metricsTimer: NodeJS.Timeout | undefined;
  private scraping: Promise<void> | undefined;
  readonly phases: PhaseSummary[] = [];
  private readonly apiserverScrapes: { t: number; metrics: Metrics }[] = [];

  constructor(
    private operator: SampledProcess | undefined,
    private readonly components: Record<string, number>,
    private readonly opts: { procMs: number; metricsMs: number; apiserverMetrics?: () => Promise<string> },
  ) {}

  /** Points the sampler at another operator process (a restart); earlier samples stay. */
  setOperator(operator: SampledProcess | undefined): void {
    this.operator = operator;
  }

  start(): void {
    this.sampleProc();
    this.procTimer = setInterval(() => this.sampleProc(), this.opts.procMs);
    this.metricsTimer = setInterval(() => void this.scrape(), this.opts.metricsMs);
  }

  stop(): void {
    clearInterval(this.procTimer);
    clearInterval(this.metricsTimer);
  }

  private sampleProc(): void {
    const t = Date.now();
    const pid = this.operator?.pid;
    const p = this.operator?.proc();
    if (p && pid) this.proc.push({ t, pid, ...p });
    const self = process.cpuUsage();
    this.push('bench', t, (self.user + self.system) / 1e6);
    for (const [name, pid] of Object.entries(this.components)) {
      const s = procStat(pid);
      if (s) this.push(name, t, s.cpuSeconds);
    }
  }

  private push(name: string, t: number, cpuSeconds: number): void {
    let list = this.others.get(name);
    if (!list) this.others.set(name, (list = []));
    list.push({ t, cpuSeconds });
  }

  /** One scrape now (waits for a scrape already in flight first, so windows never overlap). */
  async scrape(): Promise<void> {
    if (this.scraping) await this.scraping;
    const op = this.operator;
    if (!op?.running) return;
    this.scraping = (async () => {
      const s = await op.scrape();
      if (s && op.pid) this.scrapes.push({ t: Date.now(), pid: op.pid, ...s });
    })();
    await this.scraping;
    this.scraping = undefined;
  }

  /** Samples /proc and scrapes /metrics now. */
  async sampleNow(): Promise<number> {
    this.sampleProc();
    await this.scrape();
    return Date.now();
  }

  /** Marks a phase boundary: samples /proc, scrapes /metrics and the apiserver's metrics now. */
  async mark(): Promise<number> {
    const t = await this.sampleNow();
    if (this.opts.apiserverMetrics) {
      const text = await this.opts.apiserverMetrics().catch((err: Error) => {
        process.stderr.write(`[bench] apiserver /metrics: ${err.message}\n`);
        return undefined;
      });
      if (text) {
        const keep = /^(apiserver_request_duration_seconds_(sum|count)|etcd_request_duration_seconds_(sum|count))\{/;
        this.apiserverScrapes.push({ t, metrics: Metrics.parse(text.split('\n').filter((l) => keep.test(l)).join('\n')) });
      }
    }
    return t;
  }

  private apiserverPhase(from: number, to: number): ApiserverPhase | undefined {
    const a = lastAtOrBefore(this.apiserverScrapes, from);
    const b = lastAtOrBefore(this.apiserverScrapes, to);
    if (!a || !b || a === b) return undefined;
    const table = (metric: string, keys: string[]) => {
      const sums = new Map<string, { count: number; sum: number }>();
      for (const [m, sign] of [[b.metrics, 1], [a.metrics, -1]] as const) {
        for (const s of m.samples) {
          const which = s.name === `${metric}_count` ? 'count' : s.name === `${metric}_sum` ? 'sum' : undefined;
          if (!which) continue;
          const key = keys.map((k) => s.labels[k] ?? '').join('|');
          const e = sums.get(key) ?? { count: 0, sum: 0 };
          e[which] += sign * s.value;
          sums.set(key, e);
        }
      }
      return [...sums.entries()].filter(([, e]) => e.count > 0).sort((x, y) => y[1].sum - x[1].sum)
        .map(([key, e]) => ({ key: key.split('|'), count: Math.round(e.count), meanMs: round((e.sum / e.count) * 1000, 1)! }));
    };
    return {
      requests: table('apiserver_request_duration_seconds', ['verb', 'resource', 'subresource']).filter((r) => r.key[0] !== 'WATCH').slice(0, 15)
        .map((r) => ({ verb: r.key[0]!, resource: r.key[2] ? `${r.key[1]}/${r.key[2]}` : r.key[1]!, count: r.count, meanMs: r.meanMs })),
      etcd: table('etcd_request_duration_seconds', ['operation', 'type']).slice(0, 10)
        .map((r) => ({ operation: r.key[0]!, type: r.key[1]!, count: r.count, meanMs: r.meanMs })),
    };
  }

  /** Summarises [from, to]; both should come from mark(). */
  summarize(name: string, from: number, to: number): PhaseSummary {
    const last = lastAtOrBefore(this.proc, to);
    const end = lastAtOrBefore(this.scrapes, to);
    // Only samples of the process that is running at the end of the phase; a process that started
    // inside the phase counts from zero.
    const procIn = this.proc.filter((p) => p.t >= from && p.t <= to && p.pid === last?.pid);
    const priorProc = lastAtOrBefore(this.proc, from);
    const first = priorProc && priorProc.pid === last?.pid ? priorProc : last ? { t: from, pid: last.pid, cpuSeconds: 0, rssBytes: 0, fds: 0 } : undefined;
    const scrapesIn = this.scrapes.filter((s) => s.t > from && s.t <= to && s.pid === end?.pid);
    const priorScrape = lastAtOrBefore(this.scrapes, from);
    const base = priorScrape && priorScrape.pid === end?.pid ? priorScrape : undefined;
    const diff = (f: (m: Metrics) => Record<string, number>): Record<string, number> => {
      const a: Record<string, number> = base ? f(base.metrics) : {};
      const b: Record<string, number> = end ? f(end.metrics) : {};
      const out: Record<string, number> = {};
      for (const k of Object.keys({ ...a, ...b })) {
        const d = (b[k] ?? 0) - (a[k] ?? 0);
        if (d !== 0) out[k] = d;
      }
      return out;
    };
    const requests = diff((m) => m.by('modelship_api_requests_total', 'method'));
    const writes = Object.entries(requests).filter(([m]) => writeMethods.has(m)).reduce((n, [, v]) => n + v, 0);
    const hist = (metric: string) => {
      if (!end) return undefined;
      const after: Bucket[] = end.metrics.buckets(metric);
      const delta = base ? bucketDelta(after, base.metrics.buckets(metric)) : after;
      return histogramQuantile(0.99, delta);
    };
    const queue = hist('modelship_workqueue_queue_duration_seconds');
    const reconcile = hist('modelship_reconcile_duration_seconds');
    const lagP99 = scrapesIn.map((s) => s.metrics.sum('nodejs_eventloop_lag_p99_seconds'));
    const lagMax = scrapesIn.map((s) => s.metrics.sum('nodejs_eventloop_lag_max_seconds'));
    const heap = scrapesIn.map((s) => s.metrics.sum('nodejs_heap_size_used_bytes'));
    const rss = procIn.map((p) => p.rssBytes);
    const seconds = (to - from) / 1000;
    const cpu = first && last ? last.cpuSeconds - first.cpuSeconds : undefined;
    const cpuSeconds: Record<string, number> = {};
    for (const [component, list] of this.others) {
      const a = lastAtOrBefore(list, from);
      const b = lastAtOrBefore(list, to);
      if (a && b) cpuSeconds[component] = round(b.cpuSeconds - a.cpuSeconds, 2)!;
    }
    const summary: PhaseSummary = {
      name,
      seconds: round(seconds, 2)!,
      operator: {
        cpuSeconds: round(cpu, 2),
        cpuCores: cpu !== undefined && seconds > 0 ? round(cpu / seconds, 2) : undefined,
        rssPeakMB: rss.length ? round(Math.max(...rss) / MB, 1) : undefined,
        rssEndMB: last ? round(last.rssBytes / MB, 1) : undefined,
        fdsPeak: procIn.length ? Math.max(...procIn.map((p) => p.fds)) : undefined,
        heapUsedPeakMB: heap.length ? round(Math.max(...heap) / MB, 1) : undefined,
        heapUsedEndMB: end ? round(end.metrics.sum('nodejs_heap_size_used_bytes') / MB, 1) : undefined,
        eventLoopLagP99Ms: lagP99.length ? round(Math.max(...lagP99) * 1000, 1) : undefined,
        eventLoopLagP99MedianWindowMs: lagP99.length ? round(percentile(lagP99, 50)! * 1000, 1) : undefined,
        eventLoopLagMaxMs: lagMax.length ? round(Math.max(...lagMax) * 1000, 1) : undefined,
        requests,
        writes,
        reconciles: diff((m) => m.by('modelship_reconcile_total', 'result')),
        queueLatencyP99Ms: queue ? round(queue.value * 1000, 1) : undefined,
        queueLatencyP99UpperMs: queue ? round(queue.upper * 1000, 1) : undefined,
        reconcileP99Ms: reconcile ? round(reconcile.value * 1000, 1) : undefined,
        scrapes: scrapesIn.length,
        scrapeMsMax: scrapesIn.length ? round(Math.max(...scrapesIn.map((s) => s.ms)), 1) : undefined,
        metricsBytes: end?.bytes,
      },
      cpuSeconds,
      apiserver: this.apiserverPhase(from, to),
    };
    this.phases.push(summary);
    return summary;
  }

  /** The operator's memory now: RSS from /proc, heap used from /metrics (call after sampleNow or mark). */
  memory(): { rssMB?: number; heapUsedMB?: number; fds?: number } {
    const p = this.proc.at(-1);
    const h = this.scrapes.at(-1)?.metrics.sum('nodejs_heap_size_used_bytes');
    return { rssMB: p ? round(p.rssBytes / MB, 1) : undefined, heapUsedMB: h === undefined ? undefined : round(h / MB, 1), fds: p?.fds };
  }

  /** The latest value of a metric (sum over its series), from the newest scrape. */
  latest(name: string, match: Record<string, string> = {}): number | undefined {
    return this.scrapes.at(-1)?.metrics.sum(name, match);
  }
}

function lastAtOrBefore<T extends { t: number }>(list: T[], t: number): T | undefined {
  let found: T | undefined;
  for (const x of list) {
    if (x.t <= t) found = x;
    else break;
  }
  return found;
}
