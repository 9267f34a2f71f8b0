// Runs a reconcile function over a work queue with N workers, controller-runtime style:
// level-triggered keys, error = rate-limited retry, requeueAfter for timers, metrics and a reconcile id
// on every log line.
//
// A controller runs during leadership terms and can be started again after it was stopped: the queue
// survives a stop (so a key still being reconciled by a worker of the last term is not handed to a
// worker of the next one), and each reconcile runs in the scope of its term's signal, so when the term
// ends its API requests are cut off and refused (kube.ts, `withRequestSignal`).
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isFenced, withRequestSignal } from './kube.js';
import type { Logger } from './logger.js';
import type { OperatorMetrics } from './metrics.js';
import { WorkQueue } from './workqueue.js';

export interface ReconcileOutcome {
  requeueAfterMs?: number;
}

export type ReconcileFn = (namespace: string, name: string, log: Logger) => Promise<ReconcileOutcome>;

export class Controller {
  readonly queue: WorkQueue;
  private workers: Promise<void>[] = [];
  private running = false;
  private generation = 0;

  constructor(
    private readonly reconcileFn: ReconcileFn,
    private readonly log: Logger,
    private readonly metrics: OperatorMetrics,
    private readonly concurrency: number,
  ) {
    this.queue = new WorkQueue(undefined, {
      onDepth: (d) => metrics.queueDepth.set(d),
      onLatency: (ms) => metrics.queueLatency.observe(ms / 1000),
    });
  }

  enqueue(namespace: string | undefined, name: string | undefined): void {
    if (namespace && name) this.queue.add(`${namespace}/${name}`);
  }

  /** Enqueues after `ms`: the events of one burst (a key queued already or due sooner) are one reconcile. */
  enqueueAfter(namespace: string | undefined, name: string | undefined, ms: number): void {
    if (namespace && name) this.queue.addAfter(`${namespace}/${name}`, ms);
  }

  get isRunning(): boolean {
    return this.running;
  }

  /**
   * Starts `concurrency` workers. With `term`, every reconcile runs bound to it: when it aborts, their
   * requests are aborted and no new ones are sent, and the workers stop taking keys.
   */
  start(term?: AbortSignal): void {
    this.generation++;
    this.running = true;
    this.queue.restart();
    const generation = this.generation;
    for (let i = 0; i < this.concurrency; i++) this.workers.push(this.work(generation, term));
    term?.addEventListener('abort', () => { if (this.generation === generation) void this.halt(); }, { once: true });
  }

  /**
   * Stops taking keys. Waits up to `drainMs` for the reconciles in flight to finish (a graceful
   * shutdown, while still leading); after a lost term there is nothing to wait for, since its requests
   * were already cut off.
   */
  async stop(drainMs = 0): Promise<void> {
    const workers = this.halt();
    if (drainMs > 0) await Promise.race([Promise.all(workers), sleep(drainMs, undefined, { ref: false })]);
  }

  private halt(): Promise<void>[] {
    this.generation++;
    this.running = false;
    this.queue.shutDown();
    return this.workers.splice(0);
  }

  private async work(generation: number, term: AbortSignal | undefined): Promise<void> {
    while (this.generation === generation) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const [namespace = '', name = ''] = key.split('/');
      const reconcileId = randomBytes(6).toString('hex');
      const log = this.log.child({ reconcileId, modelDeployment: key });
      const end = this.metrics.reconcileDuration.startTimer();
      try {
        const outcome = term
          ? await withRequestSignal(term, () => this.reconcileFn(namespace, name, log))
          : await this.reconcileFn(namespace, name, log);
        this.queue.forget(key);
        if (outcome.requeueAfterMs !== undefined) {
          this.queue.addAfter(key, outcome.requeueAfterMs);
          this.metrics.reconcileTotal.inc({ result: 'requeue' });
        } else {
          this.metrics.reconcileTotal.inc({ result: 'success' });
        }
      } catch (err) {
        if (isFenced(err) || term?.aborted) {
          // The term ended under it; the next term reconciles every key again.
          this.metrics.reconcileTotal.inc({ result: 'error' });
          log.info('reconcile cut off: leadership ended', { error: (err as Error).message });
        } else {
          const delay = this.queue.addRateLimited(key);
          this.metrics.reconcileTotal.inc({ result: 'error' });
          log.warn('reconcile failed; retrying', { error: (err as Error).message, retryInMs: delay, failures: this.queue.failureCount(key) });
        }
      } finally {
        end();
        this.queue.done(key);
      }
      // A reconcile that makes no request settles in microtasks, and the workers would drain a whole
      // queue (a resync of thousands) without the event loop turning: watches, timers and /healthz
      // would wait. One macrotask turn per reconcile keeps them served.
      await new Promise((r) => setImmediate(r));
    }
  }
}
