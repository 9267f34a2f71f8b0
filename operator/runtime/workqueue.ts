// A de-duplicating work queue with client-go's semantics: a key waits in the queue at most once, is
// never processed by two workers at once (a key added while it is processed is queued again when
// processing ends), failures back off exponentially per key, and timers re-add keys later.

import { backoffDelay, defaultBackoff, type BackoffOptions } from '../backoff.js';

export { backoffDelay, defaultBackoff, type BackoffOptions };

export interface QueueObserver {
  onDepth?(depth: number): void;
  /** Time a key waited between being added and being handed to a worker. */
  onLatency?(ms: number): void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;

  constructor(
    private readonly backoff: BackoffOptions = defaultBackoff,
    private readonly observer: QueueObserver = {},
    private readonly now: () => number = Date.now,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  get activeCount(): number {
    return this.processing.size;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      // Picked up again when the current run is done, so the newest state is always reconciled.
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.addedAt.set(key, this.now());
    const waiter = this.waiters.shift();
    if (waiter) {
      this.handOut(key, waiter);
      return;
    }
    this.queue.push(key);
    this.observer.onDepth?.(this.queue.length);
  }

  /** Adds the key after `ms`; an earlier pending timer for the key wins over a later one. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.now() + ms;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, { at, timer });
  }

  /** Re-adds the key after its backoff delay and counts the failure. */
  addRateLimited(key: string): number {
    const failures = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, failures);
    const delay = backoffDelay(failures, this.backoff);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears a key's failure count after a success. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Resolves with the next key, or undefined once the queue shuts down. */
  get(): Promise<string | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.observer.onDepth?.(this.queue.length);
      return new Promise((resolve) => this.handOut(key, resolve));
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private handOut(key: string, resolve: (key: string) => void): void {
    this.queued.delete(key);
    this.processing.add(key);
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (added !== undefined) this.observer.onLatency?.(this.now() - added);
    resolve(key);
  }

  /** Marks the key's processing finished; re-queues it if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  /**
   * Stops handing out keys and drops those waiting, their timers and failure counts: whoever restarts
   * the queue adds every key again. Keys being processed stay marked, so a restarted queue hands none of
   * them to a second worker before `done`.
   */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const key of this.queue.splice(0)) {
      this.queued.delete(key);
      this.addedAt.delete(key);
    }
    this.dirty.clear();
    this.failures.clear();
    this.observer.onDepth?.(0);
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }

  /** Takes keys again after `shutDown`. */
  restart(): void {
    this.shuttingDown = false;
  }
}
