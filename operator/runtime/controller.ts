// Runs a reconcile function over a work queue with N workers, controller-runtime style:
// level-triggered keys, error = rate-limited retry, requeueAfter for timers, metrics and a reconcile id
// on every log line.
import { randomBytes } from 'node:crypto';
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

  start(): void {
    this.running = true;
    for (let i = 0; i < this.concurrency; i++) this.workers.push(this.work());
  }

  /** Stops taking keys and waits for reconciles in flight to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.queue.shutDown();
    await Promise.all(this.workers);
  }

  private async work(): Promise<void> {
    while (this.running) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const [namespace = '', name = ''] = key.split('/');
      const reconcileId = randomBytes(6).toString('hex');
      const log = this.log.child({ reconcileId, modelDeployment: key });
      const end = this.metrics.reconcileDuration.startTimer();
      try {
        const outcome = await this.reconcileFn(namespace, name, log);
        this.queue.forget(key);
        if (outcome.requeueAfterMs !== undefined) {
          this.queue.addAfter(key, outcome.requeueAfterMs);
          this.metrics.reconcileTotal.inc({ result: 'requeue' });
        } else {
          this.metrics.reconcileTotal.inc({ result: 'success' });
        }
      } catch (err) {
        const delay = this.queue.addRateLimited(key);
        this.metrics.reconcileTotal.inc({ result: 'error' });
        log.warn('reconcile failed; retrying', { error: (err as Error).message, retryInMs: delay, failures: this.queue.failureCount(key) });
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
