// Kubernetes Events (events.k8s.io/v1) about the objects the operator manages. Callers emit on
// transitions only, so a steady state produces no events; a failed event write is logged, never fatal.
//
// An event that repeats one recorded within the last 6 minutes (same object, type, reason, action and
// note) is not a new Event but a series on the first, as client-go's events recorder
// (k8s.io/client-go/tools/events) does: the first repeat patches `series` at once, later ones are
// counted and written together at most every 30 s. A user pressing the same wrong button ten times
// gets one Event saying "10 times", not ten Events.
import { randomBytes } from 'node:crypto';
import type { KubeClient, KubeObject } from './kube.js';
import { Resources } from './resources.js';
import type { Logger } from './logger.js';

export type EventType = 'Normal' | 'Warning';

/** MicroTime: RFC 3339 with exactly six fractional digits, as events.k8s.io requires. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** client-go's: an isomorphic event within this long joins a series. */
export const seriesWindowMs = 6 * 60_000;
/** client-go's: how often the counts of a running series are written. */
export const seriesFlushMs = 30_000;
/** Series remembered at most (the oldest are forgotten first): a bound however many objects emit. */
const maxSeries = 4096;

interface Series { namespace: string; name: string; count: number; lastAt: number; written: number }

export class EventRecorder {
  private readonly series = new Map<string, Series>();
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly controller: string,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  async emit(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): Promise<void> {
    const meta = regarding.metadata ?? {};
    const now = this.clock();
    const text = note.slice(0, 1024);
    const key = JSON.stringify([meta.uid ?? `${regarding.kind}/${meta.namespace}/${meta.name}`, type, reason, action, text]);
    this.forgetOld(now);
    const seen = this.series.get(key);
    if (seen) {
      seen.count += 1;
      seen.lastAt = now;
      // Kept in order of last use, so the oldest are at the front for forgetOld.
      this.series.delete(key);
      this.series.set(key, seen);
      // The first repeat opens the series at once; the rest wait for the next flush.
      if (seen.count === 2) await this.writeSeries(seen);
      else this.scheduleFlush();
      return;
    }
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${meta.name ?? 'object'}.${now.toString(16)}${randomBytes(2).toString('hex')}`, namespace: meta.namespace },
      eventTime: microTime(new Date(now)),
      reportingController: this.controller,
      reportingInstance: this.instance,
      action,
      reason,
      type,
      note: text,
      regarding: { apiVersion: regarding.apiVersion, kind: regarding.kind, name: meta.name, namespace: meta.namespace, uid: meta.uid, resourceVersion: meta.resourceVersion },
    };
    try {
      await this.client.create(Resources.Event, event);
      this.series.set(key, { namespace: event.metadata.namespace ?? '', name: event.metadata.name, count: 1, lastAt: now, written: 1 });
    } catch (err) {
      this.log.warn('could not record event', { reason, object: `${meta.namespace}/${meta.name}`, error: (err as Error).message });
    }
  }

  /** Writes every series whose count moved since it was last written; the timer calls it, and shutdown. */
  async flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await Promise.all([...this.series.values()].filter((s) => s.count > s.written).map((s) => this.writeSeries(s)));
  }

  private async writeSeries(s: Series): Promise<void> {
    const count = s.count;
    try {
      await this.client.mergePatch(Resources.Event, s.namespace, s.name, { series: { count, lastObservedTime: microTime(new Date(s.lastAt)) } });
      s.written = count;
    } catch (err) {
      // Gone (its TTL passed) or refused: later repeats start a new Event.
      for (const [k, v] of this.series) if (v === s) this.series.delete(k);
      this.log.warn('could not update event series', { event: `${s.namespace}/${s.name}`, error: (err as Error).message });
    }
  }

  private scheduleFlush(): void {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => void this.flush(), seriesFlushMs);
    this.flushTimer.unref();
  }

  /** Series older than the window end (their last counts written first); the map stays bounded. */
  private forgetOld(now: number): void {
    for (const [k, s] of this.series) {
      if (now - s.lastAt < seriesWindowMs && this.series.size <= maxSeries) break;
      if (s.count > s.written) void this.writeSeries(s);
      this.series.delete(k);
    }
  }
}
