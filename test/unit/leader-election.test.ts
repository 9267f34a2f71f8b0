// The leader elector's timing against an in-memory Lease with the apiserver's resourceVersion rules,
// where each replica's connection can be made to hang or fail: a term ends by the renew deadline
// whatever its requests do, a successor's term begins only after it, a brown-out shorter than the
// deadline keeps the term, and a lost term is followed by a new campaign in the same process.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, isFenced, type KubeClient, type KubeObject } from '../../operator/runtime/kube.js';
import { LeaderElector, type LeaderElectionOptions } from '../../operator/runtime/leader.js';
import { createLogger } from '../../operator/runtime/logger.js';

const log = createLogger();
log.silent = true;

// Short timings in about the defaults' proportions (15 s / 10 s / 2 s), so a test takes seconds. The
// Lease stores whole seconds, so the lease duration is a whole number of them.
const timings = { leaseDurationMs: 2_000, renewDeadlineMs: 1_300, retryPeriodMs: 250, renewRetryMs: 50 };

type Lease = KubeObject & { spec?: { holderIdentity?: string | null; renewTime?: string; leaseDurationSeconds?: number } };

/** One Lease, stored as the apiserver stores it: a write must carry the current resourceVersion. */
class LeaseStore {
  lease: Lease | undefined;
  private version = 0;

  write(obj: Lease, create: boolean): Lease {
    if (create ? this.lease : obj.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion) throw new ApiError(409, 'Conflict', 'conflict');
    this.lease = structuredClone({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.version) } });
    return structuredClone(this.lease);
  }
}

type Mode = 'ok' | 'hang' | 'fail';

/** One replica's view of the API: its connection can hang (until the caller's signal or timeout) or fail fast. */
class FakeConnection {
  mode: Mode = 'ok';
  calls = 0;
  abortedCalls = 0;
  readonly timeouts: number[] = [];

  constructor(private readonly store: LeaseStore) {}

  private async io(call: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
    this.calls++;
    this.timeouts.push(call.timeoutMs ?? 30_000);
    if (this.mode === 'fail') throw new ApiError(500, 'InternalError', 'the apiserver is browning out');
    if (this.mode === 'hang') {
      const signal = AbortSignal.any([AbortSignal.timeout(call.timeoutMs ?? 30_000), ...(call.signal ? [call.signal] : [])]);
      await new Promise((_, reject) => signal.addEventListener('abort', () => {
        this.abortedCalls++;
        reject(new ApiError(0, 'Timeout', 'no answer in time'));
      }, { once: true }));
    }
  }

  async get(_type: unknown, _ns: string, _name: string, call?: { signal?: AbortSignal; timeoutMs?: number }): Promise<Lease> {
    await this.io(call);
    if (!this.store.lease) throw new ApiError(404, 'NotFound', 'not found');
    return structuredClone(this.store.lease);
  }

  async create(_type: unknown, obj: Lease, call?: { signal?: AbortSignal; timeoutMs?: number }): Promise<Lease> {
    await this.io(call);
    return this.store.write(obj, true);
  }

  async replace(_type: unknown, obj: Lease, call?: { signal?: AbortSignal; timeoutMs?: number }): Promise<Lease> {
    await this.io(call);
    return this.store.write(obj, false);
  }
}

interface Replica {
  elector: LeaderElector;
  connection: FakeConnection;
  terms: { start: number; end?: number; signal: AbortSignal; reason?: string }[];
}

function replica(t: { teardown(fn: () => Promise<void> | void): void }, store: LeaseStore, identity: string, overrides: Partial<LeaderElectionOptions> = {}): Replica {
  const connection = new FakeConnection(store);
  const opts: LeaderElectionOptions = { namespace: 'ns', name: 'lease', identity, ...timings, ...overrides };
  const elector = new LeaderElector(connection as unknown as KubeClient, opts, log);
  const r: Replica = { elector, connection, terms: [] };
  void elector.run({
    onStartedLeading: (signal) => { r.terms.push({ start: performance.now(), signal }); },
    onStoppedLeading: (reason) => {
      const term = r.terms.at(-1)!;
      term.end = performance.now();
      term.reason = reason;
    },
  });
  t.teardown(() => elector.stop());
  return r;
}

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('a leader whose connection hangs ends its term by the renew deadline, and its successor begins only after that', async (t) => {
  const store = new LeaseStore();
  const a = replica(t, store, 'a');
  await until('a leads', () => a.elector.isLeader);
  const b = replica(t, store, 'b');
  await sleep(500);
  t.false(b.elector.isLeader, 'the standby waits while the leader renews');

  // Just after a renewal would be the worst moment; any moment is bounded by the deadline.
  const hungAt = performance.now();
  a.connection.mode = 'hang';
  await until('a steps down', () => a.terms[0]?.end !== undefined);
  const aEnded = a.terms[0]!.end!;
  t.true(a.terms[0]!.signal.aborted, 'the term signal aborted');
  t.true(isFenced(a.terms[0]!.signal.reason), 'with a NotLeader reason, which the API client reports on cut-off requests');
  t.true(aEnded - hungAt <= timings.renewDeadlineMs + 150, `the term ended ${Math.round(aEnded - hungAt)} ms after the connection hung`);
  t.true(a.connection.timeouts.every((ms) => ms <= timings.renewDeadlineMs), `no attempt may outlast the deadline: ${a.connection.timeouts.join(', ')}`);
  t.true(a.connection.abortedCalls >= 1, 'the hung renewal was cut off');

  await until('b leads', () => b.elector.isLeader);
  const bStarted = b.terms[0]!.start;
  const gap = bStarted - aEnded;
  t.true(gap >= timings.leaseDurationMs - timings.renewDeadlineMs - 150, `b began ${Math.round(gap)} ms after a's term ended`);
  t.is(store.lease?.spec?.holderIdentity, 'b');
  t.log(`term ended ${Math.round(aEnded - hungAt)} ms after the hang; successor ${Math.round(gap)} ms later`);
});

test('a brown-out shorter than the renew deadline keeps the term, retrying quickly inside it', async (t) => {
  const store = new LeaseStore();
  const a = replica(t, store, 'a');
  await until('a leads', () => a.elector.isLeader);
  await sleep(timings.retryPeriodMs + 50);
  const before = a.connection.calls;
  a.connection.mode = 'fail';
  await sleep(800);
  const during = a.connection.calls - before;
  a.connection.mode = 'ok';
  await sleep(timings.renewDeadlineMs);
  t.true(a.elector.isLeader, 'still leading');
  t.is(a.terms.length, 1);
  t.is(a.terms[0]!.end, undefined, 'the term never ended');
  // One attempt per retry period would make about 3 in 800 ms; retries inside the deadline make more.
  t.true(during >= 6, `${during} attempts during the brown-out`);
});

test('a lost term is followed by a new campaign in the same process, with a new term', async (t) => {
  const store = new LeaseStore();
  const a = replica(t, store, 'a');
  await until('a leads', () => a.elector.isLeader);
  a.connection.mode = 'fail';
  await until('a loses', () => a.terms[0]?.end !== undefined, 4_000);
  t.false(a.elector.isLeader);
  t.is(a.elector.term, undefined, 'no term between terms: writes are fenced');
  a.connection.mode = 'ok';
  await until('a leads again', () => a.terms.length === 2, 3_000);
  t.true(a.terms[0]!.signal.aborted);
  t.false(a.terms[1]!.signal.aborted, 'the new term is live');
  t.is(a.elector.term, a.terms[1]!.signal);
  t.regex(a.terms[0]!.reason ?? '', /renew deadline/);
});

test('a leader that sees another holder in the lease ends its term at once, not at the deadline', async (t) => {
  const store = new LeaseStore();
  const a = replica(t, store, 'a');
  await until('a leads', () => a.elector.isLeader);
  // Another replica took the lease over (as it would after a's lease had expired in its view).
  store.write({ ...store.lease!, spec: { ...store.lease!.spec, holderIdentity: 'intruder', renewTime: new Date().toISOString() } }, false);
  const wroteAt = performance.now();
  await until('a steps down', () => a.terms[0]?.end !== undefined, 3_000);
  t.true(a.terms[0]!.end! - wroteAt <= timings.retryPeriodMs + 150, 'within one renewal');
  t.regex(a.terms[0]!.reason ?? '', /held by another/);
});

test('stop with release ends the term first, then hands the lease to a standby without waiting out the lease', async (t) => {
  const store = new LeaseStore();
  const a = replica(t, store, 'a');
  await until('a leads', () => a.elector.isLeader);
  const b = replica(t, store, 'b');
  await sleep(300);
  const stoppedAt = performance.now();
  await a.elector.stop({ release: true });
  t.true(a.terms[0]!.signal.aborted, 'the term ended');
  t.falsy(store.lease?.spec?.holderIdentity === 'a', 'released');
  await until('b leads', () => b.elector.isLeader, 3_000);
  const takeover = performance.now() - stoppedAt;
  t.true(takeover < timings.leaseDurationMs, `the standby took over ${Math.round(takeover)} ms after the release`);
});

test('a candidate judges a holder expired from when it saw the lease change, so a dead leader costs one lease duration', async (t) => {
  const store = new LeaseStore();
  const a = replica(t, store, 'a');
  await until('a leads', () => a.elector.isLeader);
  const b = replica(t, store, 'b');
  await sleep(300);
  // a dies without releasing: its lease stays as it was last renewed.
  a.connection.mode = 'hang';
  const diedAt = performance.now();
  await until('b leads', () => b.elector.isLeader, 5_000);
  const takeover = performance.now() - diedAt;
  t.true(takeover >= timings.leaseDurationMs - timings.retryPeriodMs - 50, `not before the lease ran out (${Math.round(takeover)} ms)`);
  t.true(takeover <= timings.leaseDurationMs + timings.retryPeriodMs + 200, `and soon after (${Math.round(takeover)} ms)`);
});
