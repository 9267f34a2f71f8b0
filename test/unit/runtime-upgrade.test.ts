// Operator upgrades are not rollouts of their own: a serving revision keeps its pod template until a
// runtime upgrade is released, and new rollouts wait for a slot under the cluster-wide limit.
import test from 'ava';
import { plan, type Observations, type Plan, type PlanContext } from '../../operator/modeldeployment/plan.js';
import { requestedOperations } from '../../operator/modeldeployment/rollout/operations.js';
import { RolloutSlots } from '../../operator/runtime/rollout-slots.js';
import { revisionHash } from '../../operator/api/revision.js';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { modelDeployment } from '../support/builders.js';

const now = new Date('2026-11-30T10:00:00Z');
type Dep = KubeObject & { spec: { replicas: number; template: { spec: { initContainers?: { image: string }[]; containers: { image: string }[] } } } };

/** What the apiserver would hold after applying `d`, rolled out and ready. */
function live(d: KubeObject, generation = 1): Dep {
  const dep = JSON.parse(JSON.stringify(d)) as Dep;
  dep.metadata = { ...dep.metadata, generation };
  return { ...dep, status: { replicas: dep.spec.replicas, readyReplicas: dep.spec.replicas, updatedReplicas: dep.spec.replicas, observedGeneration: generation } };
}

function serving(fetcherImage: string): { md: ModelDeployment; dep: Dep } {
  const md = modelDeployment('fraud', 'risk');
  md.metadata = { ...md.metadata, uid: 'u1', generation: 1 };
  md.spec.replicas = 2;
  md.spec.rollout = { steps: [{ setWeight: 50 }, { pause: {} }] };
  const first = plan(md, { deployments: new Map(), pods: [] }, { fetcherImage, now });
  const dep = live(first.apply.find((o) => o.kind === 'Deployment')!);
  const second = plan({ ...md, status: first.status }, { deployments: new Map([[revisionHash(md.spec), dep]]), pods: [] }, { fetcherImage, now });
  return { md: { ...md, status: second.status }, dep };
}

const deploymentOf = (p: Plan, hash: string) => p.apply.find((o) => o.kind === 'Deployment' && o.metadata?.labels?.['modelship.io/revision'] === hash) as Dep | undefined;
const cond = (p: Plan, type: string) => p.status.conditions?.find((c) => c.type === type);

test('an operator upgrade leaves serving pods alone and says a runtime upgrade is available', (t) => {
  const { md, dep } = serving('op:1');
  const hash = md.status!.stableRevision!.hash;
  const obs: Observations = { deployments: new Map([[hash, dep]]), pods: [] };
  const p = plan(md, obs, { fetcherImage: 'op:2', now });
  t.is(deploymentOf(p, hash)!.spec.template.spec.initContainers![0]!.image, 'op:1', 'the pod template is the one its pods run');
  t.like(cond(p, 'RuntimeOutdated'), { status: 'True', reason: 'OperatorUpgraded' });
  t.regex(cond(p, 'RuntimeOutdated')!.message, new RegExp(`runs op:1.*would run op:2.*modelship.io/upgrade-runtime=${hash}`));
  t.is(cond(p, 'Progressing')?.reason, 'Complete', 'nothing rolls by itself');
  const same = plan(md, obs, { fetcherImage: 'op:1', now });
  t.is(cond(same, 'RuntimeOutdated'), undefined, 'no condition while the pods run what the operator would build');
});

test('a hand-edited pod template is repaired to the images its revision recorded', (t) => {
  const { md, dep } = serving('op:1');
  const hash = md.status!.stableRevision!.hash;
  const edited = JSON.parse(JSON.stringify(dep)) as Dep;
  edited.spec.template.spec.containers[0]!.image = 'evil.example/hijack:1';
  edited.spec.template.spec.initContainers![0]!.image = 'evil.example/fetch:1';
  const p = plan(md, { deployments: new Map([[hash, edited]]), pods: [] }, { fetcherImage: 'op:1', now });
  const wanted = deploymentOf(p, hash)!.spec.template.spec;
  t.is(wanted.containers[0]!.image, 'docker.io/seldonio/mlserver:1.7.1');
  t.is(wanted.initContainers![0]!.image, 'op:1');
  t.is(cond(p, 'RuntimeOutdated'), undefined, 'an edit is not an operator upgrade');
});

test('a released runtime upgrade rolls the serving revision over, acts once, and clears when every replica runs it', (t) => {
  const { md: served, dep } = serving('op:1');
  const hash = served.status!.stableRevision!.hash;
  const ctx = (md: ModelDeployment): PlanContext => ({ fetcherImage: 'op:2', now, operations: requestedOperations(md.metadata?.annotations) });
  let md: ModelDeployment = { ...served, metadata: { ...served.metadata, annotations: { 'modelship.io/upgrade-runtime': hash } } };
  let obs: Observations = { deployments: new Map([[hash, dep]]), pods: [] };
  const bound = plan(md, obs, ctx(md));
  t.regex(bound.bindAnnotations['modelship.io/upgrade-runtime'] ?? '', /;op=1;step=-1$/);
  md = { ...md, metadata: { ...md.metadata, annotations: bound.bindAnnotations } };
  const acted = plan(md, obs, ctx(md));
  t.like(acted.status.runtimeUpgrade, { revision: hash });
  t.is(deploymentOf(acted, hash)!.spec.template.spec.initContainers![0]!.image, 'op:2', 'the new template is applied');
  t.like(cond(acted, 'Progressing'), { status: 'True', reason: 'RuntimeUpgrade' });
  t.like(cond(acted, 'Reconciling'), { status: 'True' });
  t.deepEqual(acted.removeAnnotations, ['modelship.io/upgrade-runtime']);
  // The annotation patch is lost: the request is removed again, not acted on again.
  md = { ...md, status: acted.status };
  const replay = plan(md, obs, ctx(md));
  t.deepEqual(replay.removeAnnotations, ['modelship.io/upgrade-runtime']);
  t.false(replay.events.some((e) => e.reason === 'Operation'));
  // Pods roll over; once the Deployment runs the new template everywhere, the upgrade is done.
  md = { ...md, metadata: { ...md.metadata, annotations: {} } };
  obs = { deployments: new Map([[hash, live(deploymentOf(acted, hash)!, 2)]]), pods: [] };
  const done = plan(md, obs, ctx(md));
  t.is(done.status.runtimeUpgrade, undefined);
  t.true(done.events.some((e) => e.reason === 'RuntimeUpgraded'));
  t.is(cond(done, 'RuntimeOutdated'), undefined);
  t.is(cond(done, 'Progressing')?.reason, 'Complete');
});

test('without a rollout slot a new revision waits, queued, and starts once one is free', (t) => {
  const { md: served, dep } = serving('op:1');
  const v1 = served.status!.stableRevision!.hash;
  const md: ModelDeployment = { ...served, metadata: { ...served.metadata, generation: 2 }, spec: { ...served.spec, model: { ...served.spec.model, version: '2' } } };
  const obs: Observations = { deployments: new Map([[v1, dep]]), pods: [] };
  const queued = plan(md, obs, { fetcherImage: 'op:1', now, rolloutSlot: false });
  t.is(queued.status.canaryRevision, undefined);
  t.is(queued.apply.filter((o) => o.kind === 'Deployment').length, 1, 'no canary Deployment');
  t.like(cond(queued, 'Progressing'), { status: 'True', reason: 'Queued' });
  t.like(cond(queued, 'Reconciling'), { status: 'True', reason: 'Queued' });
  t.truthy(queued.requeueAfterMs);
  const started = plan({ ...md, status: queued.status }, obs, { fetcherImage: 'op:1', now, rolloutSlot: true });
  t.is(started.status.canaryRevision?.hash, revisionHash(md.spec));
});

test('rollout slots: a limit across keys, reservations taken synchronously, held while status shows a rollout', (t) => {
  let clock = 0;
  const slots = new RolloutSlots(2, 1000, () => clock);
  t.true(slots.tryAcquire('a'));
  t.true(slots.tryAcquire('b'));
  t.false(slots.tryAcquire('c'), 'two in progress: the third waits');
  t.true(slots.tryAcquire('a'), 'a key that holds a slot keeps it');
  slots.observe('a', true);
  slots.release('b');
  t.true(slots.tryAcquire('c'), 'a slot given back is free');
  slots.observe('a', false);
  t.is(slots.inUse, 1);
  clock = 5000;
  t.true(slots.tryAcquire('d') && slots.tryAcquire('e'), 'a reservation that never showed up in status expires');
  t.true(new RolloutSlots(0).tryAcquire('x'), '0: no limit');
});
