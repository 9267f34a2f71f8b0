// The operator killed right after every single write of a rollout (SIGKILL, as an OOM or a node loss
// would) reaches the same end state as an operator that never dies: no step repeated, no pause timer
// reset, nothing duplicated. All progress lives in status.
import test from 'ava';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
type Md = ModelDeployment & KubeObject;

test.before(async () => {
  await installCrd();
});

test.after.always(async () => {
  await namespaces.deleteAll();
});

const rollout = { steps: [{ setWeight: 50 }, { pause: { duration: '3s' } }, { setWeight: 100 }], scaleDownDelaySeconds: 600 };
const get = (ns: string) => client.get<Md>(Resources.ModelDeployment, ns, 'm');

async function serveV1(ns: string, op: OperatorProcess) {
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(2), withSpec({ rollout })));
  await waitFor('v1 serving', async () => (await get(ns)).status?.stableRevision);
  await op.stop();
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: { version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' } } });
}

/** What must be equal between the two runs (times and names aside). */
function endState(md: Md) {
  const s = md.status!;
  return {
    stable: s.stableRevision?.hash, version: s.stableRevision?.modelVersion, phase: s.phase, canary: s.canaryRevision,
    history: s.history?.map((h) => [h.modelVersion, h.outcome]),
    retiring: s.retiring?.map((r) => r.hash),
    conditions: s.conditions?.map((c) => [c.type, c.status, c.reason]),
  };
}

test.serial('a rollout survives an operator killed after each write', async (t) => {
  const reference = await namespaces.create('crash-ref');
  const crashing = await namespaces.create('crash-kill');
  const setup = new OperatorProcess({ name: 'crash-setup' });
  await setup.start();
  await serveV1(reference, setup);
  await setup.start();
  await serveV1(crashing, setup);

  // The crashing run first, alone, so each life's single write is its own.
  let lives = 0;
  const positions: string[] = [];
  const pauseStarts = new Set<string>();
  while (lives < 120) {
    const md = await get(crashing);
    const pos = md.status?.rollout?.position;
    if (pos && positions.at(-1) !== pos) positions.push(pos);
    if (pos === '2/3' && md.status?.rollout?.stepStartedAt) pauseStarts.add(md.status.rollout.stepStartedAt);
    if (md.status?.stableRevision?.modelVersion === '2' && !md.status.canaryRevision) break;
    const op = new OperatorProcess({ name: `crash-life-${lives}`, env: { MODELSHIP_FAULT_EXIT_AFTER_WRITES: '1' } });
    await op.start({ waitReady: false });
    const exit = await op.exited(8_000);
    // A life that had nothing to write (waiting out the pause) is ended by us.
    if (exit === undefined) await op.stop('SIGKILL');
    lives++;
  }
  const crashed = await get(crashing);
  t.is(crashed.status?.stableRevision?.modelVersion, '2', `promoted after ${lives} operator lives`);
  // A step can pass within one life's reconcile (kwok pods are ready at once), so 1/3 may never be
  // written; what may never happen is a step seen again after a later one.
  const order = ['1/3', '2/3', '3/3'];
  t.true(positions.every((p, k) => k === 0 || order.indexOf(p) > order.indexOf(positions[k - 1]!)), `steps in order, none repeated: ${positions.join(' → ')}`);
  t.true(positions.includes('2/3'), 'the pause step was recorded');
  t.is(pauseStarts.size, 1, 'the pause timer was never restarted');
  const deployments = await client.list<KubeObject>(Resources.Deployment, { namespace: crashing, labelSelector: 'app.kubernetes.io/instance=m' });
  t.is(deployments.items.length, 2, 'the new stable and the old one kept warm: nothing duplicated');

  const op = new OperatorProcess({ name: 'crash-reference' });
  await op.start();
  const ref = await waitFor('reference promoted', async () => {
    const md = await get(reference);
    return md.status?.stableRevision?.modelVersion === '2' && !md.status.canaryRevision ? md : undefined;
  }, 60_000);
  await op.stop();
  t.deepEqual(endState(crashed), endState(ref));
  t.log(`operator lives: ${lives}`);
});
