// Operator upgrades are not rollouts of every model at once: a new operator (here, a new fetcher
// image) leaves serving pods alone until a runtime upgrade is released, and the cluster-wide limit on
// rollouts in progress queues the rest.
import test from 'ava';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec, withVersion } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const operators: OperatorProcess[] = [];

test.before(async () => {
  await installCrd();
});

test.after.always(async () => {
  await Promise.all(operators.map((o) => o.stop('SIGKILL')));
  await namespaces.deleteAll();
});

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };
const get = (ns: string, name = 'm') => client.get<Md>(Resources.ModelDeployment, ns, name);
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);
const replicaSets: Parameters<typeof client.list>[0] = { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet', namespaced: true };

async function operator(name: string, env: Record<string, string>): Promise<OperatorProcess> {
  const op = new OperatorProcess({ name, env });
  operators.push(op);
  await op.start();
  return op;
}

test.serial('a new operator leaves serving pods alone; a released runtime upgrade rolls them over once', async (t) => {
  const ns = await namespaces.create('upgrade');
  const first = await operator('upgrade-before', { MODELSHIP_WATCH_NAMESPACES: ns, MODELSHIP_FETCHER_IMAGE: 'example.invalid/modelship:1' });
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(2)));
  const served = await waitFor('serving', async () => { const m = await get(ns); return m.status?.stableRevision && cond(m, 'Ready')?.status === 'True' ? m : undefined; }, 30_000, 200);
  const hash = served.status!.stableRevision!.hash;
  const rsBefore = (await client.list<Obj>(replicaSets, { namespace: ns })).items.map((r) => r.metadata?.name).sort();
  await first.stop();

  await operator('upgrade-after', { MODELSHIP_WATCH_NAMESPACES: ns, MODELSHIP_FETCHER_IMAGE: 'example.invalid/modelship:2' });
  const outdated = await waitFor('RuntimeOutdated', async () => { const m = await get(ns); return cond(m, 'RuntimeOutdated')?.status === 'True' ? m : undefined; }, 30_000, 200);
  t.regex(cond(outdated, 'RuntimeOutdated')!.message, /runs example\.invalid\/modelship:1.*would run example\.invalid\/modelship:2/);
  await new Promise((r) => setTimeout(r, 3_000));
  const dep = await client.get<Obj>(Resources.Deployment, ns, `m-${hash}`);
  t.is(dep.spec.template.spec.initContainers[0].image, 'example.invalid/modelship:1', 'the serving pods keep their template');
  t.deepEqual((await client.list<Obj>(replicaSets, { namespace: ns })).items.map((r) => r.metadata?.name).sort(), rsBefore, 'no new ReplicaSet: nothing restarted');
  t.is(cond(await get(ns), 'Progressing')?.reason, 'Complete');

  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/upgrade-runtime': hash } } });
  const upgraded = await waitFor('runtime upgraded', async () => {
    const m = await get(ns);
    return !m.status?.runtimeUpgrade && !cond(m, 'RuntimeOutdated') && m.status?.rollout?.lastOperation?.kind === 'upgrade-runtime' ? m : undefined;
  }, 60_000, 200);
  t.regex(upgraded.status?.rollout?.lastOperation?.result ?? '', /rolling the pods over to .*modelship:2/);
  const after = await client.get<Obj>(Resources.Deployment, ns, `m-${hash}`);
  t.is(after.spec.template.spec.initContainers[0].image, 'example.invalid/modelship:2');
  t.is(after.spec.strategy.rollingUpdate.maxUnavailable, 0, 'the pods roll over without losing capacity');
  t.is(upgraded.status?.stableRevision?.hash, hash, 'the same revision, its pods rolled over');
  t.is(upgraded.metadata?.annotations?.['modelship.io/upgrade-runtime'], undefined);
});

test.serial('with --max-concurrent-rollouts=1, a second rollout waits until the first is done', async (t) => {
  const ns = await namespaces.create('limit');
  await operator('limit', { MODELSHIP_WATCH_NAMESPACES: ns, MODELSHIP_MAX_CONCURRENT_ROLLOUTS: '1' });
  const gated = withSpec({ rollout: { steps: [{ setWeight: 50 }, { pause: {} }] } });
  for (const name of ['a', 'b']) await client.create(Resources.ModelDeployment, modelDeployment(name, ns, withReplicas(1), gated));
  await waitFor('both serving', async () => (await Promise.all(['a', 'b'].map((n) => get(ns, n)))).every((m) => m.status?.stableRevision) || undefined, 30_000, 200);
  await client.mergePatch(Resources.ModelDeployment, ns, 'a', { spec: { model: { version: '2' } } });
  await waitFor('a at its gate', async () => (await get(ns, 'a')).status?.rollout?.pauseReason === 'ManualGate' || undefined, 30_000, 200);
  const b2 = modelDeployment('b', ns, withVersion('2'));
  await client.mergePatch(Resources.ModelDeployment, ns, 'b', { spec: { model: b2.spec.model } });
  const queued = await waitFor('b queued', async () => { const m = await get(ns, 'b'); return cond(m, 'Progressing')?.reason === 'Queued' ? m : undefined; }, 30_000, 200);
  t.is(queued.status?.canaryRevision, undefined, 'b does not start while a holds the only slot');
  t.like(cond(queued, 'Reconciling'), { status: 'True', reason: 'Queued' });
  const a = await get(ns, 'a');
  await client.mergePatch(Resources.ModelDeployment, ns, 'a', { metadata: { annotations: { 'modelship.io/promote': a.status!.canaryRevision!.hash } } });
  const started = await waitFor('b starts once a is promoted', async () => { const m = await get(ns, 'b'); return m.status?.canaryRevision ? m : undefined; }, 30_000, 200);
  t.is(started.status?.canaryRevision?.modelVersion, '2');
  t.is((await get(ns, 'a')).status?.stableRevision?.modelVersion, '2');
});
