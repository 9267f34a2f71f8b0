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
