// Leader election on a coordination.k8s.io Lease, with client-go's semantics, and fencing on top:
//  - another holder's lease is expired when its renewTime has not changed for leaseDuration, judged by
//    our own clock from when *we* saw it change (so clock skew between replicas does not matter);
//  - writes use the Lease's resourceVersion, so two candidates can never both win (409 = lost);
//  - a leader's term ends at `renewDeadline` after the start of its last successful renewal, by a
//    timer, whatever its requests are doing: every renewal attempt is bounded by the time left, and a
//    hung connection cannot stretch the term. A standby can take the lease no earlier than
//    `leaseDuration` after it saw that renewal, so the term ends at least leaseDuration − renewDeadline
//    (5 s) before anyone else's can begin;
//  - the term is an AbortSignal (`term`): the API client refuses writes outside it and aborts those in
//    flight when it ends (see kube.ts);
//  - a replica that loses its term campaigns again in the same process;
//  - on shutdown the leader releases the lease so a standby takes over without waiting.
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, isConflict, isNotFound, notLeaderError, type KubeClient, type KubeObject, type WriteFence } from './kube.js';
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
  /** The pause after a failed renewal before the next attempt within the deadline. */
  renewRetryMs?: number;
}

export const defaultLeaderTimings = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, renewRetryMs: 250 };

export interface LeadershipCallbacks {
  /** A term began; `term` aborts the moment it ends, before `onStoppedLeading` is called. */
  onStartedLeading(term: AbortSignal): void;
  onStoppedLeading(reason: string): void;
}

interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** What one attempt found: `held` when the lease is ours now. */
type Attempt = { held: true } | { held: false; error?: string };

export class LeaderElector implements WriteFence {
  private observedRecord = '';
  private observedAt = 0;
  private observedDurationMs = 0;
  private lease: Lease | undefined;
  private current: AbortController | undefined;
  private termDeadline = 0;
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;

  /**
   * `client` should be the elector's own (client-go's leader election has one too): it must not be
   * fenced, and its flow control must not make renewals wait behind the reconcilers' requests.
   */
  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaderElectionOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get isLeader(): boolean {
    return !!this.current && !this.current.signal.aborted;
  }

  /**
   * The current term, aborted once it ends; undefined between terms. Read before every write: it checks
   * the deadline against the clock too, so a process that was paused (a long GC, a frozen VM) cannot
   * send a write between waking up and its expiry timer firing.
   */
  get term(): AbortSignal | undefined {
    if (this.current && !this.current.signal.aborted && this.now() >= this.termDeadline) {
      this.current.abort(notLeaderError('the lease was not renewed within the renew deadline'));
    }
    return this.isLeader ? this.current?.signal : undefined;
  }

  /** Campaigns, leads, and campaigns again after a lost term, until `stop()`. */
  run(callbacks: LeadershipCallbacks): Promise<void> {
    this.running ??= this.loop(callbacks);
    return this.running;
  }

  private async loop(callbacks: LeadershipCallbacks): Promise<void> {
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      const acquiredAt = await this.campaign();
      if (acquiredAt === undefined) return;
      const term = new AbortController();
      this.termDeadline = acquiredAt + this.opts.renewDeadlineMs;
      this.current = term;
      this.log.info('became leader', { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
      callbacks.onStartedLeading(term.signal);
      const reason = await this.lead(term, acquiredAt);
      if (!term.signal.aborted) term.abort(notLeaderError(reason));
      this.current = undefined;
      if (stop.aborted) {
        callbacks.onStoppedLeading('stopping');
        return;
      }
      this.log.error('stopped leading; campaigning again', { identity: this.opts.identity, reason });
      callbacks.onStoppedLeading(reason);
    }
  }

  /** Tries until the lease is ours; resolves with the start of the winning attempt, or undefined once stopped. */
  private async campaign(): Promise<number | undefined> {
    const stop = this.stopping.signal;
    let lastError: string | undefined;
    while (!stop.aborted) {
      const startedAt = this.now();
      const attempt = await this.tryAcquireOrRenew(stop, this.opts.renewDeadlineMs);
      if (attempt.held) return startedAt;
      if (attempt.error && attempt.error !== lastError) this.log.warn('leader election request failed', { error: attempt.error });
      lastError = attempt.error;
      try {
        await sleep(this.nextCampaignDelay(), undefined, { signal: stop });
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  /**
   * Renews until the term ends; resolves with why it ended. The term's own timer ends it at the
   * deadline even while an attempt hangs, and every attempt is bounded by the time left.
   */
  private async lead(term: AbortController, acquiredAt: number): Promise<string> {
    const { renewDeadlineMs, retryPeriodMs } = this.opts;
    const renewRetryMs = this.opts.renewRetryMs ?? defaultLeaderTimings.renewRetryMs;
    const stop = this.stopping.signal;
    let renewedAt = acquiredAt;
    let expiry: NodeJS.Timeout | undefined;
    let lastError = '';
    const armExpiry = () => {
      this.termDeadline = renewedAt + renewDeadlineMs;
      clearTimeout(expiry);
      expiry = setTimeout(() => {
        term.abort(notLeaderError('the lease was not renewed within the renew deadline'));
      }, Math.max(0, renewedAt + renewDeadlineMs - this.now()));
    };
    armExpiry();
    const bounded = AbortSignal.any([term.signal, stop]);
    try {
      let wait = retryPeriodMs;
      for (;;) {
        try {
          await sleep(Math.max(0, Math.min(wait, renewedAt + renewDeadlineMs - this.now())), undefined, { signal: bounded });
        } catch {
          break;
        }
        const left = renewedAt + renewDeadlineMs - this.now();
        if (left <= 0) {
          term.abort(notLeaderError('the lease was not renewed within the renew deadline'));
          break;
        }
        const startedAt = this.now();
        const attempt = await this.tryAcquireOrRenew(bounded, left);
        if (bounded.aborted) break;
        if (attempt.held) {
          renewedAt = startedAt;
          armExpiry();
          wait = retryPeriodMs;
          lastError = '';
          continue;
        }
        if (!attempt.error) {
          // Someone else holds the lease (or won a race for it): the term is over now, not at the deadline.
          term.abort(notLeaderError('the lease is held by another replica'));
          break;
        }
        if (attempt.error !== lastError) this.log.warn('lease renewal failed; retrying within the renew deadline', { error: attempt.error, msLeft: renewedAt + renewDeadlineMs - this.now() });
        lastError = attempt.error;
        wait = renewRetryMs;
      }
    } finally {
      clearTimeout(expiry);
    }
    if (stop.aborted) return 'stopping';
    const reason = term.signal.reason as Error | undefined;
    return reason?.message ?? 'leadership ended';
  }

  /**
   * Stops campaigning and ends the term (the fence closes at once). With `release`, a leader then hands
   * the lease back so a standby takes over without waiting out the lease; it gives up after `timeoutMs`.
   */
  async stop(opts: { release?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const wasLeading = this.isLeader;
    this.current?.abort(notLeaderError('the operator is stopping'));
    this.stopping.abort();
    await this.running;
    if (!opts.release || !wasLeading || !this.lease) return;
    const deadline = this.now() + (opts.timeoutMs ?? 3_000);
    const released = (lease: Lease): Lease => ({
      ...lease,
      spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(new Date(this.now())) },
    });
    try {
      try {
        await this.client.replace(Resources.Lease, released(this.lease), { timeoutMs: Math.max(1, deadline - this.now()) });
      } catch (err) {
        // A renewal cut off by stop() may have landed after all: release from the lease as it is now.
        if (!isConflict(err)) throw err;
        const current = await this.client.get<Lease>(Resources.Lease, this.opts.namespace, this.opts.name, { timeoutMs: Math.max(1, deadline - this.now()) });
        if (current.spec?.holderIdentity !== this.opts.identity) return;
        await this.client.replace(Resources.Lease, released(current), { timeoutMs: Math.max(1, deadline - this.now()) });
      }
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

  private async tryAcquireOrRenew(signal: AbortSignal, timeoutMs: number): Promise<Attempt> {
    const { namespace, name, identity, leaseDurationMs } = this.opts;
    const deadline = this.now() + timeoutMs;
    const call = () => ({ signal, timeoutMs: Math.max(1, deadline - this.now()) });
    const now = this.now();
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      renewTime: microTime(new Date(now)),
    };
    try {
      let current: Lease;
      try {
        current = await this.client.get<Lease>(Resources.Lease, namespace, name, call());
      } catch (err) {
        if (!isNotFound(err)) throw err;
        this.lease = await this.client.create<Lease, Lease>(Resources.Lease, {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace },
          spec: { ...spec, acquireTime: spec.renewTime, leaseTransitions: 0 },
        }, call());
        return { held: true };
      }
      // Observed when the answer arrived, not when it was asked for: a slow GET must not make the
      // holder's lease look older than it is.
      const observedNow = this.now();
      const record = JSON.stringify([current.spec?.holderIdentity, current.spec?.renewTime, current.spec?.leaseDurationSeconds]);
      if (record !== this.observedRecord) {
        this.observedRecord = record;
        this.observedAt = observedNow;
      }
      const holder = current.spec?.holderIdentity;
      const duration = (current.spec?.leaseDurationSeconds ?? 0) * 1000;
      this.observedDurationMs = duration;
      const heldByOther = !!holder && holder !== identity;
      if (heldByOther && this.observedAt + duration > observedNow) return { held: false };
      const transitions = (current.spec?.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
      this.lease = await this.client.replace<Lease, Lease>(Resources.Lease, {
        ...current,
        spec: {
          ...spec,
          acquireTime: holder === identity ? current.spec?.acquireTime ?? spec.renewTime : spec.renewTime,
          leaseTransitions: transitions,
        },
      }, call());
      this.observedRecord = JSON.stringify([identity, spec.renewTime, spec.leaseDurationSeconds]);
      this.observedAt = now;
      return { held: true };
    } catch (err) {
      // A 409 means another replica wrote the lease first: lost, not failed.
      if (isConflict(err)) return { held: false };
      return { held: false, error: err instanceof ApiError ? `${err.code} ${err.message}` : (err as Error).message };
    }
  }
}
