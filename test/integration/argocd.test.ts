// The Argo CD health script and resource actions, run with Lua 5.1 against ModelDeployments the real
// operator produced on the way through a rollout.
import test from 'ava';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { action, discovery, health } from '../support/lua.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
type Md = ModelDeployment & KubeObject;
const get = (ns: string) => client.get<Md>(Resources.ModelDeployment, ns, 'm');

test.before(async () => {
  await installCrd();
});

test.after.always(async () => {
  await namespaces.deleteAll();
});

test.serial('health follows the rollout: Progressing, Healthy, Suspended at a gate, Degraded after a rollback; actions drive it', async (t) => {
  const ns = await namespaces.create('argocd');
  const created = await client.create<Md>(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(2),
    withSpec({ rollout: { steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }], progressDeadlineSeconds: 10 } })));
  t.like(await health(created), { status: 'Progressing', message: 'Waiting for the operator to observe generation 1' });

  const operator = new OperatorProcess({ name: 'argocd' });
  await operator.start();
  try {
    const healthy = await waitFor('Healthy', async () => {
      const m = await get(ns);
      return (await health(m)).status === 'Healthy' ? m : undefined;
    });
    t.regex((await health(healthy)).message, /serves 2\/2 ready replicas/);
    t.deepEqual(await discovery(healthy), { promote: true, 'promote-full': true, abort: true, retry: true }, 'nothing to act on');

    await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: { version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' } } });
    const gated = await waitFor('at the gate', async () => {
      const m = await get(ns);
      return m.status?.rollout?.pauseReason === 'ManualGate' ? m : undefined;
    }, 30_000, 250);
    t.like(await health(gated), { status: 'Suspended' });
    t.regex((await health(gated)).message, /waiting for promote/);
    t.like(await discovery(gated), { promote: false, abort: false, retry: true });
    const promote = await action('promote', gated);
    t.is(promote['modelship.io/promote'], gated.status!.canaryRevision!.hash);
    await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: promote } });
    const promoted = await waitFor('promoted', async () => {
      const m = await get(ns);
      return m.status?.stableRevision?.modelVersion === '2' && (await health(m)).status === 'Healthy' ? m : undefined;
    }, 30_000, 250);
    t.truthy(promoted);

    // A canary that never becomes ready is rolled back: Degraded, and retry becomes available.
    await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: { version: '3' }, runtime: { env: [{ name: 'KWOK_FAULT', value: 'never-ready' }] } } });
    const rolledBack = await waitFor('rolled back', async () => {
      const m = await get(ns);
      return m.status?.rejectedRevision ? m : undefined;
    }, 60_000, 250);
    const degraded = await health(rolledBack);
    t.is(degraded.status, 'Degraded');
    t.regex(degraded.message, /^RolledBack: revision \w+ \(model 3\) rolled back: progress deadline/);
    t.like(await discovery(rolledBack), { retry: false, promote: true });
    t.is((await action('retry', rolledBack))['modelship.io/retry'], rolledBack.status!.rejectedRevision!.hash);

    // A spec the operator cannot serve is Degraded too.
    await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: { format: 'onnx' }, runtime: { preset: 'mlserver', env: null } } });
    const invalid = await waitFor('invalid', async () => {
      const m = await get(ns);
      return m.status?.conditions?.some((c) => c.reason === 'InvalidSpec') && m.status.observedGeneration === m.metadata?.generation ? m : undefined;
    });
    t.like(await health(invalid), { status: 'Degraded' });
    t.regex((await health(invalid)).message, /^Invalid spec: runtime preset mlserver cannot serve onnx/);
  } finally {
    await operator.stop();
  }
  // With no operator running, a new spec is not mistaken for the old one's health.
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: { format: 'sklearn' }, runtime: null } });
  const stale = await get(ns);
  t.like(await health(stale), { status: 'Progressing', message: `Waiting for the operator to observe generation ${stale.metadata!.generation}` });
});
