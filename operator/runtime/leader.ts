// Leader election on a coordination.k8s.io Lease, with client-go's semantics:
//  - another holder's lease is expired when its renewTime has not changed for leaseDuration, judged by
//    our own clock from when *we* saw it change (so clock skew between replicas does not matter);
//  - writes use the Lease's resourceVersion, so two candidates can never both win (409 = lost);
//  - a leader that cannot renew within renewDeadline stops leading at once;
//  - on shutdown the leader releases the lease so a standby takes over without waiting.
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, isConflict, isNotFound, type KubeClient, type KubeObject } from './kube.js';
import { Resources } from './resources.js';
import { microTime } from './events.js';
import type { Logger } from './logger.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const defaultLeaderTimings = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export class LeaderElector {
  private observedRecord = '';
  private observedAt = 0;
  private observedDurationMs = 0;
  private leading = false;
  private stopped = false;
  private lease: Lease | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaderElectionOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until leadership is won, calls onStarted, then renews until renewal fails or stop() is
   * called; then calls onStopped. Resolves when leading has ended.
   */
  async run(onStarted: () => void, onStopped: () => void): Promise<void> {
    while (!this.stopped && !(await this.tryAcquireOrRenew())) await sleep(this.nextCampaignDelay());
    if (this.stopped) return;
    this.leading = true;
    this.log.info('became leader', { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
    onStarted();
    let lastRenew = this.now();
    while (!this.stopped) {
      await sleep(this.opts.retryPeriodMs);
      if (this.stopped) break;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = this.now();
      } else if (this.now() - lastRenew > this.opts.renewDeadlineMs) {
        this.log.error('leader lease lost: renewal failed for longer than the renew deadline', { identity: this.opts.identity });
        break;
      }
    }
    this.leading = false;
    onStopped();
  }

  /** Stops campaigning; a leader releases the lease so a standby can take over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (!this.leading || !this.lease) return;
    this.leading = false;
    try {
      await this.client.replace(Resources.Lease, {
        ...this.lease,
        spec: { ...this.lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(new Date(this.now())) },
      });
      this.log.info('released leader lease', { identity: this.opts.identity });
    } catch (err) {
      this.log.warn('could not release leader lease', { error: (err as Error).message });
    }
  }

  /** The retry period, or less when the holder's lease (as we observed it) runs out sooner. */
  private nextCampaignDelay(): number {
    const expiresIn = this.observedAt + this.observedDurationMs - this.now();
    return Math.max(50, Math.min(this.opts.retryPeriodMs, expiresIn + 50));
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity, leaseDurationMs } = this.opts;
    const now = this.now();
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      renewTime: microTime(new Date(now)),
    };
    try {
      let current: Lease;
      try {
        current = await this.client.get<Lease>(Resources.Lease, namespace, name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        this.lease = await this.client.create<Lease, Lease>(Resources.Lease, {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace },
          spec: { ...spec, acquireTime: spec.renewTime, leaseTransitions: 0 },
        });
        return true;
      }
      const record = JSON.stringify([current.spec?.holderIdentity, current.spec?.renewTime, current.spec?.leaseDurationSeconds]);
      if (record !== this.observedRecord) {
        this.observedRecord = record;
        this.observedAt = now;
      }
      const holder = current.spec?.holderIdentity;
      const duration = (current.spec?.leaseDurationSeconds ?? 0) * 1000;
      this.observedDurationMs = duration;
      const heldByOther = !!holder && holder !== identity;
      if (heldByOther && this.observedAt + duration > now) return false;
      const transitions = (current.spec?.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
      this.lease = await this.client.replace<Lease, Lease>(Resources.Lease, {
        ...current,
        spec: {
          ...spec,
          acquireTime: holder === identity ? current.spec?.acquireTime ?? spec.renewTime : spec.renewTime,
          leaseTransitions: transitions,
        },
      });
      this.observedRecord = JSON.stringify([identity, spec.renewTime, spec.leaseDurationSeconds]);
      this.observedAt = now;
      return true;
    } catch (err) {
      if (!isConflict(err)) {
        this.log.warn('leader election request failed', { error: err instanceof ApiError ? `${err.code} ${err.message}` : (err as Error).message });
      }
      return false;
    }
  }
}
