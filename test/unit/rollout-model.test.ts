// The model-based test of the decision core: the world, the crash modes and the invariants are in
// test/support/rollout-model.ts.
import test from 'ava';
import fc from 'fast-check';
import { runScenario, scenarios, World } from '../support/rollout-model.js';

export const modelRuns = Number(process.env.MODELSHIP_MODEL_RUNS ?? 400);

test('model: under random rollouts, pod delays and crashes between writes, every traffic, step and operation invariant holds', (t) => {
  fc.assert(fc.property(scenarios, (s) => {
    const v = runScenario(s);
    if (v.length) throw new Error(`${v[0]!.rule} after "${v[0]!.action}": ${v[0]!.detail}`);
  }), { numRuns: modelRuns });
  t.pass();
});

test('model: five rollouts in a row with revisionHistoryLimit 1 each stop at their first gate', (t) => {
  const w = new World({ replicas: 2, router: 'ReplicaRatio', capacity: 'Surge', historyLimit: 1, delays: [1], actions: [] });
  const step = () => { const p = w.decide(w.md); w.applyChildren(p); w.md = { ...w.md, status: p.status }; w.applyAnnotations(p); w.now += 1000; return p; };
  for (let i = 0; i < 10 && !w.status.stableRevision; i++) step();
  for (let v = 2; v <= 6; v++) {
    w.setVersion(String(v));
    for (let i = 0; i < 10 && w.status.rollout?.pauseReason !== 'ManualGate'; i++) step();
    t.is(w.status.rollout?.pauseReason, 'ManualGate', `rollout ${v - 1} stops at its gate`);
    t.is(w.status.canaryRevision?.modelVersion, String(v));
    w.annotations['modelship.io/promote'] = w.status.canaryRevision!.hash;
    for (let i = 0; i < 40 && w.status.stableRevision?.modelVersion !== String(v); i++) step();
    t.is(w.status.stableRevision?.modelVersion, String(v));
    t.is(w.status.history?.length, 1);
  }
});

test('model: a promote whose annotation survives its status write (a crash, or a cache without the patch) releases one gate', (t) => {
  const w = new World({ replicas: 2, router: 'GatewayAPI', capacity: 'Shift', historyLimit: 2, delays: [1], actions: [] });
  let acted = 0;
  const reconcile = (writeAnnotations = true) => {
    const p = w.decide(w.md);
    acted += p.events.filter((e) => e.reason === 'Operation').length;
    w.applyChildren(p);
    w.md = { ...w.md, status: p.status };
    if (writeAnnotations) w.applyAnnotations(p);
    w.now += 1000;
    return p;
  };
  for (let i = 0; i < 10 && !w.status.stableRevision; i++) reconcile();
  w.setVersion('2');
  for (let i = 0; i < 10 && w.status.rollout?.pauseReason !== 'ManualGate'; i++) reconcile();
  t.is(w.status.rollout?.position, '2/4');
  w.request('modelship.io/promote', w.status.canaryRevision!.hash);
  reconcile(); // binds
  t.regex(w.annotations['modelship.io/promote'] ?? '', /;op=1;step=1$/);
  reconcile(false); // acts; the annotation patch is lost
  t.is(w.status.rollout?.lastOperation?.id, 1);
  t.true('modelship.io/promote' in w.annotations, 'the request survived');
  for (let i = 0; i < 10; i++) reconcile(i % 2 === 0);
  t.false('modelship.io/promote' in w.annotations, 'then it is only removed');
  t.is(w.status.rollout?.lastOperation?.id, 1, 'and never acted on again');
  t.is(acted, 1, 'one Operation event: acted on once');
  t.is(w.status.rollout?.position, '4/4', 'released the gate, walked setWeight 60, and holds in the timed pause');
});
