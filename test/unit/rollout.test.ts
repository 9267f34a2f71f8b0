// The canary state machine, driven through whole rollouts in a small simulated world: Deployments get
// the replicas the plan asks for and their pods become ready (or misbehave) one tick later.
import test from 'ava';
import { plan, type Plan } from '../../operator/modeldeployment/plan.js';
import { splitReplicas } from '../../operator/modeldeployment/rollout/capacity.js';
import { bindOperations, requestedOperations } from '../../operator/modeldeployment/rollout/operations.js';
import { weightAt } from '../../operator/modeldeployment/rollout/steps.js';
import { revisionHash } from '../../operator/api/revision.js';
import type { CheckResult, ModelDeployment, RolloutSpec } from '../../operator/api/generated.js';
import type { MonitoringInput } from '../../operator/modeldeployment/monitoring/decide.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { modelDeployment } from '../support/builders.js';

type Fault = 'never-ready' | 'crash-loop' | 'unschedulable';

class World {
  md: ModelDeployment;
  now = Date.parse('2026-11-26T10:00:00Z');
  deployments = new Map<string, { replicas: number; ready: number }>();
  faults = new Map<string, Fault>();
  last!: Plan;
  annotations: Record<string, string> = {};
  analysis: CheckResult[] | undefined;
  monitoring: MonitoringInput | undefined;

  constructor(replicas: number, rollout?: RolloutSpec) {
    this.md = modelDeployment('fraud', 'risk');
    this.md.metadata = { ...this.md.metadata, uid: 'u1', generation: 1 };
    this.md.spec.replicas = replicas;
    if (rollout) this.md.spec.rollout = rollout;
  }

  get hash() { return revisionHash(this.md.spec); }
  get status() { return this.md.status!; }
  cond(type: string) { return this.status.conditions?.find((c) => c.type === type); }
  selector() { return (this.last.apply.find((o) => o.kind === 'Service' && o.metadata?.name === 'fraud') as any).spec.selector; }
  replicasOf(hash: string) { return this.deployments.get(hash)?.replicas ?? 0; }

  setVersion(version: string) {
    this.md = { ...this.md, metadata: { ...this.md.metadata, generation: (this.md.metadata!.generation ?? 0) + 1 }, spec: { ...this.md.spec, model: { ...this.md.spec.model, version } } };
  }

  observations() {
    const deployments = new Map<string, KubeObject>();
    const pods: KubeObject[] = [];
    for (const [hash, d] of this.deployments) {
      deployments.set(hash, { metadata: { name: `fraud-${hash}`, generation: 1, labels: { 'modelship.io/revision': hash } }, spec: { replicas: d.replicas }, status: { readyReplicas: d.ready, updatedReplicas: d.ready, observedGeneration: 1 } });
      const fault = this.faults.get(hash);
      for (let i = 0; i < d.replicas && fault; i++) {
        const labels = { 'modelship.io/revision': hash };
        pods.push(fault === 'unschedulable'
          ? { metadata: { name: `p${i}`, labels }, status: { conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' }] } }
          : fault === 'crash-loop'
            ? { metadata: { name: `p${i}`, labels }, status: { containerStatuses: [{ name: 'server', restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } } }] } }
            : { metadata: { name: `p${i}`, labels }, status: { containerStatuses: [{ name: 'server', restartCount: 0, state: { running: {} } }] } });
      }
    }
    return { deployments, pods };
  }

  /** One reconcile, then the world catches up with what it applied. */
  tick(ms = 1000): Plan {
    this.md.metadata!.annotations = { ...this.annotations };
    const p = plan(this.md, this.observations(), {
      fetcherImage: 'op:1', now: new Date(this.now),
      operations: requestedOperations(this.annotations),
      ...(this.analysis ? { analysis: this.analysis } : {}),
      ...(this.monitoring ? { monitoring: this.monitoring } : {}),
    });
    for (const a of p.removeAnnotations) delete this.annotations[a];
    Object.assign(this.annotations, p.bindAnnotations);
    this.md = { ...this.md, status: p.status };
    for (const d of p.delete) this.deployments.delete(d.metadata!.labels!['modelship.io/revision']!);
    for (const o of p.apply.filter((x) => x.kind === 'Deployment')) {
      const hash = o.metadata!.labels!['modelship.io/revision']!;
      const replicas = (o as any).spec.replicas as number;
      const fault = this.faults.get(hash);
      this.deployments.set(hash, { replicas, ready: fault ? 0 : replicas });
    }
    this.last = p;
    this.now += ms;
    return p;
  }

  /** An operation request: the first reconcile binds it (rollout/operations.ts); the next one acts. */
  request(annotation: string, value: string) {
    this.annotations[annotation] = value;
    this.tick(0);
    if (!/;op=\d+;step=-?\d+$/.test(this.annotations[annotation] ?? '')) throw new Error(`${annotation} was not bound: ${this.annotations[annotation]}`);
  }

  runUntil(pred: (w: World) => boolean, maxTicks = 200, ms = 1000) {
    for (let i = 0; i < maxTicks; i++) {
      if (pred(this)) return;
      this.tick(ms);
    }
    throw new Error(`condition not reached; status: ${JSON.stringify(this.status.conditions)}`);
  }
}

function serving(replicas: number, rollout?: RolloutSpec): World {
  const w = new World(replicas, rollout);
  w.runUntil((x) => x.md.status?.stableRevision !== undefined);
  w.tick();
  return w;
}

test('steps 10% → pause 5 s → 50% → 100% promote, with Surge capacity and weights following ready pods', (t) => {
  const w = serving(4, { steps: [{ setWeight: 10 }, { pause: { duration: '5s' } }, { setWeight: 50 }, { setWeight: 100 }] });
  const v1 = w.hash;
  w.setVersion('2');
  const v2 = w.hash;
  const seen: string[] = [];
  let pauseStarted = 0;
  let pauseEnded = 0;
  w.runUntil((x) => {
    const pos = x.status.rollout?.position;
    if (pos && !seen.includes(pos)) {
      seen.push(pos);
      if (pos === '2/4') pauseStarted = x.now;
      if (pos === '3/4') pauseEnded = x.now;
    }
    if (x.status.canaryRevision) {
      t.is(x.replicasOf(v1), 4, 'Surge: stable keeps every replica during the rollout');
      t.true(x.status.readyReplicas! >= 4, 'stable never loses capacity');
    }
    return x.status.stableRevision?.hash === v2;
  });
  t.deepEqual(seen, ['1/4', '2/4', '3/4', '4/4']);
  t.true(pauseEnded - pauseStarted >= 5000, `the pause lasted ${pauseEnded - pauseStarted} ms`);
  t.deepEqual(w.status.history?.slice(0, 2).map((h) => [h.modelVersion, h.outcome]), [['2', 'Promoted'], ['1', 'Promoted']]);
  t.is(w.status.canaryRevision, undefined);
  t.deepEqual(w.status.retiring?.map((r) => r.hash), [v1]);
  t.is(w.selector()['modelship.io/revision'], v2);
  t.is(w.cond('Progressing')?.reason, 'Complete');
});

test('the Service splits traffic only while the canary has ready pods, and the weight is reported', (t) => {
  const w = serving(4, { steps: [{ setWeight: 50 }, { pause: {} }] });
  w.setVersion('2');
  const p = w.tick();
  t.is(w.selector()['modelship.io/revision'], w.status.stableRevision?.hash, 'no ready canary pod yet: clients reach stable only');
  t.is(p.status.canaryWeight, 0);
  w.tick();
  t.is(w.selector()['modelship.io/revision'], undefined, 'canary ready: the Service selects both revisions');
  t.is(w.status.canaryWeight, 50);
  t.is(w.replicasOf(w.hash), 4);
});

test('a manual gate holds until promote; a promote for another hash is ignored and reported', (t) => {
  const w = serving(2, { steps: [{ setWeight: 20 }, { pause: {} }, { setWeight: 100 }] });
  w.setVersion('2');
  w.runUntil((x) => x.status.rollout?.pauseReason === 'ManualGate');
  for (let i = 0; i < 20; i++) w.tick(60_000);
  t.is(w.status.rollout?.position, '2/3', 'held for 20 minutes');
  t.is(w.status.phase, 'Paused');
  w.request('modelship.io/promote', 'deadbeef00');
  w.tick();
  t.regex(w.status.rollout?.lastOperation?.result ?? '', /^ignored/);
  t.false('modelship.io/promote' in w.annotations, 'the request is removed once answered');
  t.true(w.last.events.some((e) => e.reason === 'OperationIgnored'));
  w.annotations['modelship.io/promote'] = w.hash;
  w.runUntil((x) => x.status.stableRevision?.modelVersion === '2');
  t.pass();
});

test('promote --full skips the remaining steps', (t) => {
  const w = serving(2, { steps: [{ setWeight: 10 }, { pause: {} }, { setWeight: 50 }, { pause: { duration: '1h' } }] });
  w.setVersion('2');
  w.runUntil((x) => x.status.rollout?.pauseReason === 'ManualGate');
  w.annotations['modelship.io/promote'] = `${w.hash}/full`;
  w.runUntil((x) => x.status.stableRevision?.modelVersion === '2', 10);
  t.pass();
});

test('abort returns all traffic to stable at once and rejects the revision until retry', (t) => {
  const w = serving(3, { steps: [{ setWeight: 30 }, { pause: {} }] });
  const v1 = w.hash;
  w.setVersion('2');
  const v2 = w.hash;
  w.runUntil((x) => x.status.rollout?.pauseReason === 'ManualGate');
  t.is(w.selector()['modelship.io/revision'], undefined);
  w.request('modelship.io/abort', v2);
  w.tick();
  t.is(w.selector()['modelship.io/revision'], v1, 'traffic back to stable in the same reconcile');
  t.is(w.status.rejectedRevision?.hash, v2);
  t.like(w.cond('Degraded'), { status: 'True', reason: 'Aborted' });
  t.is(w.status.history?.[0]?.outcome, 'Aborted');
  t.true(w.deployments.has(v2), 'the canary stays warm for scaleDownDelaySeconds');
  for (let i = 0; i < 40; i++) w.tick();
  t.false(w.deployments.has(v2), 'then it is removed');
  t.is(w.status.canaryRevision, undefined, 'the rejected revision is not retried by itself');
  w.request('modelship.io/retry', v2);
  w.tick();
  t.is(w.status.rejectedRevision, undefined);
  t.is(w.status.canaryRevision?.hash, v2);
  t.is(w.status.rollout?.position, '1/2', 'retry starts the steps again');
  t.like(w.status.history?.[0], { revision: v2, outcome: 'Progressing' });
});

test('a canary that never becomes ready is rolled back after the progress deadline', (t) => {
  const w = serving(2, { steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 60 });
  w.setVersion('2');
  w.faults.set(w.hash, 'never-ready');
  const start = w.now;
  w.runUntil((x) => x.status.rejectedRevision !== undefined);
  const took = w.now - start;
  t.true(took >= 60_000 && took <= 70_000, `rolled back after ${took} ms`);
  t.regex(w.status.rejectedRevision?.reason ?? '', /progress deadline: 0\/2 canary replicas ready/);
  t.like(w.status.analysis?.results?.find((r) => r.check === 'pods'), { phase: 'Failed', value: '0/2 ready', passed: false });
  t.like(w.cond('Degraded'), { status: 'True', reason: 'RolledBack' });
  t.is(w.status.phase, 'Degraded');
  t.is(w.status.readyReplicas, 2, 'stable kept all its ready replicas');
});

test('a canary that loads slowly is not judged while it loads: analysis counts from its first ready pod, and status says until when it may load', (t) => {
  const check = { name: 'error-rate', prometheus: { address: 'http://p.monitoring.svc:9090', query: 'q' }, pass: { max: 0.01 } };
  const w = serving(2, { steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 600, analysis: { checks: [check], inconclusive: 'Rollback' } });
  w.setVersion('2');
  w.faults.set(w.hash, 'never-ready');
  w.tick();
  const started = Date.parse(w.status.rollout!.stepStartedAt!);
  t.is(w.status.rollout?.loadingDeadline, new Date(started + 600_000).toISOString());
  t.is(w.status.rollout?.canaryReadyAt, undefined);
  // What a measurement finds while the model loads (a refused connection, no series yet) says nothing
  // about the model; under inconclusive: Rollback it used to roll the canary back at once.
  w.analysis = [{ check: 'error-rate', phase: 'Error', passed: false, failures: 0, message: 'ECONNREFUSED', at: new Date(w.now).toISOString() }];
  const writes = new Set<string>();
  for (let i = 0; i < 300; i++) {
    w.tick(1000);
    writes.add(JSON.stringify(w.status.rollout));
  }
  t.is(w.status.rejectedRevision, undefined, 'five minutes into a ten-minute budget, the loading canary stands');
  t.is(writes.size, 1, 'waiting changes nothing in status');
  t.is(w.status.rollout?.loadingDeadline, new Date(started + 600_000).toISOString());
  t.regex(w.status.analysis?.results?.find((r) => r.check === 'pods')?.message ?? '', /loading/);
  w.faults.delete(w.hash);
  w.tick();
  w.tick();
  const readyAt = w.status.rollout?.canaryReadyAt;
  t.truthy(readyAt, 'the canary clock starts at its first ready pod');
  t.is(w.status.rollout?.loadingDeadline, undefined);
  t.is(w.status.rejectedRevision, undefined, 'the measurement taken while it loaded still does not count');
  w.analysis = [{ check: 'error-rate', phase: 'Inconclusive', passed: false, failures: 0, message: 'no data for the canary', at: new Date(w.now).toISOString() }];
  w.tick();
  t.regex(w.status.rejectedRevision?.reason ?? '', /inconclusive analysis: error-rate: no data/, 'once it is ready, the policy applies');
});

test('a crash-looping canary is rolled back naming CrashLoopBackOff', (t) => {
  const w = serving(2, { steps: [{ setWeight: 50 }, { setWeight: 100 }] });
  w.setVersion('2');
  w.faults.set(w.hash, 'crash-loop');
  w.runUntil((x) => x.status.rejectedRevision !== undefined, 10);
  t.regex(w.status.rejectedRevision?.reason ?? '', /CrashLoopBackOff/);
  t.true(w.last.events.some((e) => e.type === 'Warning' && e.reason === 'RolledBack'));
});

test('a failed analysis check rolls back; failureLimit tolerates that many failures', (t) => {
  const check = { name: 'error-rate', prometheus: { address: 'http://p.monitoring.svc:9090', query: 'q' }, pass: { max: 0.01 }, failureLimit: 1 };
  const w = serving(2, { steps: [{ setWeight: 50 }, { pause: {} }], analysis: { checks: [check] } });
  w.setVersion('2');
  w.tick();
  const result = (failures: number): CheckResult[] => [{ check: 'error-rate', phase: 'Failed', passed: false, value: '0.07', failures, message: '0.07 > 0.01', at: new Date(w.now).toISOString() }];
  w.analysis = result(1);
  w.tick();
  t.is(w.status.rejectedRevision, undefined, 'one failure is within failureLimit 1');
  w.analysis = result(2);
  w.tick();
  t.regex(w.status.rejectedRevision?.reason ?? '', /error-rate: 0\.07 > 0\.01/);
  t.regex(w.cond('Degraded')?.message ?? '', /error-rate: 0\.07 > 0\.01/);
});

test('inconclusive analysis holds the step, or rolls back when the policy says so', (t) => {
  const check = { name: 'error-rate', prometheus: { address: 'http://p.monitoring.svc:9090', query: 'q' }, pass: { max: 0.01 } };
  for (const policy of ['Hold', 'Rollback'] as const) {
    const w = serving(2, { steps: [{ setWeight: 50 }, { setWeight: 100 }], analysis: { checks: [check], inconclusive: policy } });
    w.setVersion('2');
    w.tick();
    w.tick();
    w.analysis = [{ check: 'error-rate', phase: 'Inconclusive', passed: false, failures: 0, samples: 3, message: '3 samples < minSamples 100', at: new Date(w.now).toISOString() }];
    for (let i = 0; i < 5; i++) w.tick();
    if (policy === 'Hold') {
      t.is(w.status.rollout?.pauseReason, 'Inconclusive');
      t.like(w.cond('AnalysisInconclusive'), { status: 'True' });
      t.is(w.status.rollout?.position, '1/2', 'the step does not advance on missing data');
      t.is(w.status.rejectedRevision, undefined);
    } else {
      t.regex(w.status.rejectedRevision?.reason ?? '', /inconclusive analysis/);
    }
  }
});

test('a spec change mid-rollout supersedes the canary and restarts toward the newest revision', (t) => {
  const w = serving(2, { steps: [{ setWeight: 50 }, { pause: {} }] });
  const v1 = w.hash;
  w.setVersion('2');
  const v2 = w.hash;
  w.runUntil((x) => x.status.rollout?.pauseReason === 'ManualGate');
  w.setVersion('3');
  const v3 = w.hash;
  w.tick();
  t.is(w.status.canaryRevision?.hash, v3);
  t.is(w.status.rollout?.position, '1/2');
  t.deepEqual(w.status.history?.slice(0, 3).map((h) => [h.revision, h.outcome]), [[v3, 'Progressing'], [v2, 'Superseded'], [v1, 'Promoted']]);
  t.false(w.deployments.has(v2), 'no orphaned canary');
  t.is(w.replicasOf(v1), 2, 'stable untouched');
  t.is(w.status.stableRevision?.hash, v1);
});

test('a rollback to a recently promoted revision skips the steps but waits for ready pods', (t) => {
  const w = serving(2, { steps: [{ setWeight: 10 }, { pause: {} }] });
  const v1 = w.hash;
  w.setVersion('2');
  w.runUntil((x) => x.status.rollout?.pauseReason === 'ManualGate');
  w.annotations['modelship.io/promote'] = w.hash;
  w.runUntil((x) => x.status.stableRevision?.modelVersion === '2');
  for (let i = 0; i < 40; i++) w.tick();
  w.setVersion('1');
  t.is(w.hash, v1);
  w.faults.set(v1, 'never-ready');
  for (let i = 0; i < 5; i++) w.tick();
  t.is(w.status.stableRevision?.modelVersion, '2', 'not promoted without ready pods');
  t.is(w.status.rollout?.position, undefined, 'no steps');
  t.is(w.replicasOf(v1), 2, 'brought up at full size at once');
  w.faults.delete(v1);
  w.runUntil((x) => x.status.stableRevision?.hash === v1, 5);
  t.pass();
});

test('a canary without capacity reports CapacityBlocked and holds; onUnschedulable Rollback rolls back', (t) => {
  const w = serving(2, { steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 30 });
  w.setVersion('2');
  w.faults.set(w.hash, 'unschedulable');
  for (let i = 0; i < 60; i++) w.tick();
  t.like(w.cond('CapacityBlocked'), { status: 'True', reason: 'Unschedulable' });
  t.is(w.status.rollout?.pauseReason, 'CapacityBlocked');
  t.is(w.status.rejectedRevision, undefined, 'held, past the progress deadline');
  t.is(w.status.readyReplicas, 2);
  const r = serving(2, { steps: [{ setWeight: 50 }], onUnschedulable: 'Rollback' });
  r.setVersion('2');
  r.faults.set(r.hash, 'unschedulable');
  r.runUntil((x) => x.status.rejectedRevision !== undefined, 5);
  t.regex(r.status.rejectedRevision?.reason ?? '', /Insufficient nvidia\.com\/gpu/);
});

test('spec.paused holds the rollout where it is', (t) => {
  const w = serving(2, { steps: [{ setWeight: 50 }, { setWeight: 100 }] });
  w.setVersion('2');
  w.tick();
  w.md.spec.paused = true;
  for (let i = 0; i < 10; i++) w.tick();
  t.is(w.status.rollout?.pauseReason, 'Paused');
  t.is(w.status.rollout?.position, '1/2');
  w.md.spec.paused = false;
  w.runUntil((x) => x.status.stableRevision?.modelVersion === '2', 10);
  t.pass();
});

test('capacity: Surge adds the canary beside stable, Shift moves replicas but keeps stable above its share', (t) => {
  t.deepEqual(splitReplicas(4, 10, 'Surge'), { stable: 4, canary: 1 });
  t.deepEqual(splitReplicas(4, 50, 'Surge'), { stable: 4, canary: 4 });
  t.deepEqual(splitReplicas(4, 100, 'Surge'), { stable: 4, canary: 4 });
  t.deepEqual(splitReplicas(4, 10, 'Shift'), { stable: 4, canary: 1 });
  t.deepEqual(splitReplicas(4, 50, 'Shift'), { stable: 2, canary: 2 });
  t.deepEqual(splitReplicas(4, 75, 'Shift'), { stable: 1, canary: 3 });
  t.deepEqual(splitReplicas(4, 100, 'Shift'), { stable: 0, canary: 4 });
  t.deepEqual(splitReplicas(4, 0, 'Shift'), { stable: 4, canary: 0 });
  for (let total = 1; total <= 12; total++) {
    for (let w = 1; w < 100; w++) {
      const s = splitReplicas(total, w, 'Shift');
      t.true(s.stable >= Math.ceil((total * (100 - w)) / 100), `stable keeps its share at ${total}/${w}`);
      t.true(s.canary >= 1);
    }
  }
});

test('operations are parsed from annotations, bound ones with their id and step', (t) => {
  t.deepEqual(requestedOperations({ 'modelship.io/promote': 'abc/full', 'modelship.io/abort': 'def', other: 'x' }), [
    { kind: 'abort', revision: 'def', annotation: 'modelship.io/abort', value: 'def' },
    { kind: 'promote-full', revision: 'abc', annotation: 'modelship.io/promote', value: 'abc/full' },
  ]);
  t.deepEqual(requestedOperations({ 'modelship.io/promote': 'abc;op=7;step=2' }), [
    { kind: 'promote', revision: 'abc', annotation: 'modelship.io/promote', value: 'abc;op=7;step=2', id: 7, step: 2 },
  ]);
  t.deepEqual(requestedOperations(undefined), []);
  // Numbered after everything seen: the last acted id and any binding already on the object.
  const ops = requestedOperations({ 'modelship.io/abort': 'def', 'modelship.io/promote': 'abc;op=9;step=1', 'modelship.io/retry': 'x;op=3;step=0' });
  t.deepEqual(bindOperations(ops, 4, 1), { 'modelship.io/abort': 'def;op=10;step=1' });
  t.deepEqual(bindOperations(requestedOperations({ 'modelship.io/promote': 'abc/full' }), 0, -1), { 'modelship.io/promote': 'abc/full;op=1;step=-1' });
});

test('rollback under Shift: the canary keeps serving until stable has its replicas back, then traffic is stable-only', (t) => {
  const w = serving(4, { steps: [{ setWeight: 50 }, { pause: {} }], capacity: 'Shift' });
  const v1 = w.hash;
  w.setVersion('2');
  const v2 = w.hash;
  w.runUntil((x) => x.status.rollout?.pauseReason === 'ManualGate');
  t.is(w.replicasOf(v1), 2, 'Shift: stable gave half its replicas');
  t.is(w.replicasOf(v2), 2);
  w.request('modelship.io/abort', v2);
  w.tick(); // decided with stable at 2 ready replicas; the world then brings it to 4
  t.is(w.replicasOf(v1), 4, 'stable is scaled back up at once');
  t.is(w.selector()['modelship.io/revision'], undefined, 'the canary keeps serving while stable is short of capacity');
  t.true(w.status.retiring?.some((r) => r.hash === v2 && r.draining));
  w.tick();
  t.is(w.selector()['modelship.io/revision'], v1, 'stable back at 4 ready replicas: traffic is stable-only');
  t.false(w.status.retiring?.some((r) => r.draining) ?? false);
});

test('property: whatever the pods do and whoever presses what, the invariants hold', async (t) => {
  const fc = await import('fast-check');
  const action = fc.constantFrom('tick', 'slow-tick', 'promote', 'promote-full', 'abort', 'retry', 'new-version', 'fault', 'heal', 'pause', 'resume');
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 6 }),
    fc.constantFrom<'Surge' | 'Shift'>('Surge', 'Shift'),
    fc.array(action, { minLength: 5, maxLength: 60 }),
    (replicas, capacity, actions) => {
      const steps = [{ setWeight: 25 }, { pause: { duration: '10s' } }, { setWeight: 60 }, { pause: {} }, { setWeight: 100 }];
      const w = serving(replicas, { steps, capacity, progressDeadlineSeconds: 30 });
      let version = 1;
      let lastCanary = '';
      let lastStep = -1;
      for (const a of actions) {
        const canary = w.status.canaryRevision?.hash ?? '';
        if (a === 'promote' && canary) w.annotations['modelship.io/promote'] = canary;
        if (a === 'promote-full' && canary) w.annotations['modelship.io/promote'] = `${canary}/full`;
        if (a === 'abort' && canary) w.annotations['modelship.io/abort'] = canary;
        if (a === 'retry' && w.status.rejectedRevision) w.annotations['modelship.io/retry'] = w.status.rejectedRevision.hash;
        if (a === 'new-version') w.setVersion(String(++version));
        if (a === 'fault') w.faults.set(w.hash, 'never-ready');
        if (a === 'heal') w.faults.delete(w.hash);
        if (a === 'pause') w.md.spec.paused = true;
        if (a === 'resume') w.md.spec.paused = false;
        const observedReady = new Map([...w.deployments].map(([h, d]) => [h, d.ready]));
        w.tick(a === 'slow-tick' ? 20_000 : 1_000);
        const s = w.status;
        const stableHash = s.stableRevision!.hash;
        // Surge never touches stable; Shift never takes it below its share at the step's weight.
        const weight = s.canaryWeight ?? 0;
        const stableReplicas = w.replicasOf(stableHash);
        const declared = s.canaryRevision ? weightAt(steps, s.rollout?.step ?? 0) : 0;
        if (capacity === 'Surge' || !s.canaryRevision) t.true(stableReplicas === replicas || !!s.retiring?.some((r) => r.draining), `stable ${stableReplicas}/${replicas}`);
        else t.true(stableReplicas >= Math.ceil((replicas * (100 - declared)) / 100), `stable ${stableReplicas} at declared weight ${declared}`);
        // No weight on a canary without ready pods.
        if (weight > 0) t.true((observedReady.get(s.canaryRevision?.hash ?? '') ?? 0) > 0, 'weight without ready canary pods');
        // The Service never points at a revision that is not stable while no canary takes traffic.
        const pinned = w.selector()['modelship.io/revision'];
        if (pinned) t.is(pinned, stableHash);
        // Steps only move forward within one canary.
        const step = s.rollout?.step ?? -1;
        if (s.canaryRevision?.hash === lastCanary && lastCanary) t.true(step >= lastStep, `step went back from ${lastStep} to ${step}`);
        lastCanary = s.canaryRevision?.hash ?? '';
        lastStep = step;
        // A rejected revision is never the canary.
        if (s.rejectedRevision) t.not(s.canaryRevision?.hash, s.rejectedRevision.hash);
        // History stays bounded and every entry has an outcome.
        t.true((s.history?.length ?? 0) <= 10);
      }
    },
  ), { numRuns: 150 });
});

test('monitoring onFailure Rollback: the previous promoted revision comes back as a canary, gets traffic only once ready, and the drifting one stays rejected', (t) => {
  const w = serving(2);
  w.md.spec.monitoring = { interval: '1m', onFailure: 'Rollback', checks: [{ name: 'score-drift', drift: { histogram: 'h_bucket', prometheus: { address: 'http://prom.monitoring.svc:9090' }, maxPSI: 0.2 } }] };
  const v1 = w.hash;
  w.setVersion('2');
  const v2 = w.hash;
  w.runUntil((x) => x.status.stableRevision?.hash === v2 && !x.deployments.has(v1), 200, 10_000);
  w.tick();
  t.like(w.cond('Drifting'), { status: 'Unknown' });
  w.monitoring = { revision: v2, baselines: [], results: [{ check: 'score-drift', phase: 'Failed', passed: false, value: '0.91', failures: 1, message: 'PSI 0.91 > 0.2', at: new Date(w.now).toISOString() }] };
  const decided = w.tick();
  t.like(w.cond('Drifting'), { status: 'True', reason: 'DriftDetected' });
  t.like(w.status.rejectedRevision, { hash: v2, modelVersion: '2' });
  t.regex(w.status.rejectedRevision?.reason ?? '', /^monitoring: score-drift: PSI 0\.91/);
  t.like(w.status.canaryRevision, { hash: v1, modelVersion: '1' });
  t.true(w.status.rollout?.restoring);
  t.true(decided.events.some((e) => e.reason === 'RolledBack' && e.message.includes(`returning to revision ${v1}`)));
  t.like(w.status.history?.find((h) => h.revision === v2), { outcome: 'RolledBack' });
  t.is(w.selector()['modelship.io/revision'], v2, 'nothing reaches v1 before it exists');
  w.monitoring = undefined;
  w.tick();
  t.is(w.replicasOf(v1), 2, 'v1 comes back at full size, with no steps (it was promoted recently)');
  const restored = w.last.apply.find((o) => o.kind === 'Deployment' && o.metadata?.labels?.['modelship.io/revision'] === v1)!;
  t.is(JSON.parse(restored.metadata!.annotations!['modelship.io/revision-spec']!).model.version, '1', 'built from its own spec, not the rejected one');
  t.is(restored.metadata?.labels?.['modelship.io/model-version'], '1');
  t.is(w.replicasOf(v2), 2, 'v2 keeps its capacity until v1 serves');
  t.like(w.cond('Degraded'), { status: 'True', reason: 'RolledBack' });
  w.runUntil((x) => {
    t.like(x.cond('Degraded'), { status: 'True', reason: 'RolledBack' }, 'Degraded never flaps during the restore');
    return x.status.stableRevision?.hash === v1;
  });
  t.like(w.cond('Degraded'), { status: 'True', reason: 'RolledBack' });
  t.like(w.status.history?.[0], { revision: v1, outcome: 'Promoted', reason: `restored: revision ${v2} failed monitoring` });
  t.is(w.status.rejectedRevision?.hash, v2, 'the spec still names v2, which stays rejected until retried or changed');
  w.runUntil((x) => !x.deployments.has(v2), 100, 10_000);
  w.tick();
  t.is(w.status.canaryRevision, undefined, 'v2 is not rolled out again');
  t.like(w.cond('Degraded'), { status: 'True', reason: 'RolledBack' });
  t.is(w.selector()['modelship.io/revision'], v1);
  t.is(w.status.monitoring?.revision, v1, 'monitoring goes on with the restored revision');
});

test('monitoring onFailure Rollback with no earlier promoted revision only alerts, and says why', (t) => {
  const w = serving(1);
  w.md.spec.monitoring = { onFailure: 'Rollback', checks: [{ name: 'p99', prometheus: { address: 'http://prom.monitoring.svc:9090', query: 'q' }, pass: { max: 1 } }] };
  w.monitoring = { revision: w.hash, baselines: [], results: [{ check: 'p99', phase: 'Failed', passed: false, value: '3', failures: 1, message: '3 > 1', at: new Date(w.now).toISOString() }] };
  w.tick();
  const written = w.tick();
  t.like(w.cond('Drifting'), { status: 'True', reason: 'CheckFailed' });
  t.regex(w.cond('Drifting')?.message ?? '', /no earlier promoted revision in history to roll back to: alert only/);
  t.is(w.status.canaryRevision, undefined);
  t.is(w.status.rejectedRevision, undefined);
  t.false(written.events.some((e) => e.reason === 'Drifting'), 'the Event is emitted once, on the transition');
});
