// What a GitOps tool that computes health with kstatus (Flux, kpt, Config Sync: sigs.k8s.io/cli-utils)
// concludes about live ModelDeployments on the real control plane, with the operator as its own
// process and kwok fault stages for canaries and first revisions that never become healthy. A tool
// waiting for Current must keep waiting while a rollout runs or a gate holds it, must stop with Failed
// when nothing will progress without a change, and must see Current once the wanted revision serves.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type { ModelDeployment, RolloutSpec } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { Informer } from '../../operator/runtime/informer.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec, type Option } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { kstatusVerdict, kstatusVerdicts, type KstatusStatus, type KstatusVerdict } from '../support/kstatus.js';
import { OperatorProcess } from '../support/operator-process.js';

const kubectl = resolve(fileURLToPath(import.meta.url), '../../../.bin/kubectl');
const client = adminClient();
const namespaces = new TestNamespaces();
let operator: OperatorProcess;

test.before(async () => {
  await installCrd();
  operator = new OperatorProcess({ name: 'kstatus' });
  await operator.start();
});

test.after.always(async () => {
  await operator?.stop();
  await namespaces.deleteAll();
});

type Md = ModelDeployment & KubeObject;
const get = (ns: string, name: string) => client.get<Md>(Resources.ModelDeployment, ns, name);
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);
const observedCurrentSpec = (md: Md) => md.status?.observedGeneration === md.metadata?.generation;
const withRollout = (rollout: RolloutSpec): Option => withSpec({ rollout });
const withFault = (fault: 'never-ready' | 'crash-loop'): Option => (md) => {
  md.spec.runtime = { ...md.spec.runtime, env: [{ name: 'KWOK_FAULT', value: fault }] };
};
const gated: RolloutSpec = { steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] };

/**
 * kstatus' verdict on the live object, polled until it is `expected` or `timeoutMs` passes. The
 * last verdict is returned either way, so a failing assertion shows what kstatus actually said.
 */
async function verdictWithin(ns: string, name: string, expected: KstatusStatus, timeoutMs: number): Promise<KstatusVerdict> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const verdict = await kstatusVerdict(await get(ns, name));
    if (verdict.status === expected || Date.now() > deadline) return verdict;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Serves v1 (Ready), then asks for v2 with `v2` options applied; returns both hashes. */
async function serveThenUpdate(ns: string, opts: Option[], v2: Option[] = []): Promise<{ v1: string; v2: string }> {
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, ...opts));
  const served = await waitFor('v1 serving', async () => {
    const m = await get(ns, 'm');
    return cond(m, 'Ready')?.status === 'True' && m.status?.stableRevision ? m : undefined;
  });
  const next = modelDeployment('m', ns, ...opts);
  next.spec.model = { ...next.spec.model, version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' };
  for (const o of v2) o(next);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: next.spec });
  return { v1: served.status!.stableRevision!.hash, v2: revisionHash(next.spec) };
}

test('a healthy ModelDeployment: kubectl wait --for=condition=Ready returns and kstatus says Current', async (t) => {
  const ns = await namespaces.create('ks-healthy');
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(2)));
  const waited = await promisify(execFile)(kubectl, ['wait', '--for=condition=Ready', 'modeldeployment/m', '-n', ns, '--timeout=90s'],
    { env: { ...process.env, KUBECONFIG: testCluster().state.kubeconfig } });
  t.is(waited.stdout.trim(), 'modeldeployment.modelship.io/m condition met');
  const live = await get(ns, 'm');
  t.true(observedCurrentSpec(live));
  const current = await verdictWithin(ns, 'm', 'Current', 10_000);
  t.log('Ready:', current);
  t.deepEqual(current, { status: 'Current', message: 'Resource is Ready' });
});

test('a canary held at its manual gate is InProgress throughout; promoted, it is Current', async (t) => {
  const ns = await namespaces.create('ks-gate');
  // Every status the operator writes reaches the watch, so no state of the rollout goes unjudged.
  const seen: Md[] = [];
  const watcher = new Informer<Md>(client, Resources.ModelDeployment, { onUpsert: (m) => { seen.push(structuredClone(m)); } }, { namespace: ns });
  await watcher.start();
  t.teardown(() => watcher.stop());
  const { v1, v2 } = await serveThenUpdate(ns, [withReplicas(2), withRollout(gated)]);
  const atGate = await waitFor('at the gate', async () => {
    const m = await get(ns, 'm');
    return m.status?.rollout?.pauseReason === 'ManualGate' && m.status.canaryRevision?.hash === v2 ? m : undefined;
  }, 60_000, 250);
  const gateVerdict = await kstatusVerdict(atGate);
  t.log('at the gate:', gateVerdict);

  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/promote': v2 } } });
  await waitFor('promoted', async () => (await get(ns, 'm')).status?.stableRevision?.hash === v2, 60_000, 250);
  const promoted = await verdictWithin(ns, 'm', 'Current', 30_000);
  t.log('promoted:', promoted);

  // Any verdict but InProgress while v1 still served and v2 was on its way would end a GitOps wait early.
  const rolling = seen.filter((m) => observedCurrentSpec(m) && m.status?.stableRevision?.hash === v1 && m.status.canaryRevision?.hash === v2);
  t.true(rolling.length >= 2, `rollout states seen: ${rolling.length}`);
  const verdicts = await kstatusVerdicts(rolling);
  const early = verdicts.map((v, i) => ({ ...v, position: rolling[i]!.status?.rollout?.position, pauseReason: rolling[i]!.status?.rollout?.pauseReason }))
    .filter((v) => v.status !== 'InProgress');
  t.log(`${rolling.length} rollout states, not InProgress:`, early);
  t.is(gateVerdict.status, 'InProgress', `at the manual gate kstatus said ${JSON.stringify(gateVerdict)}`);
  t.deepEqual(early, [], 'every state of the rollout before promotion is InProgress');
  t.deepEqual(promoted, { status: 'Current', message: 'Resource is Ready' }, 'promoted and settled');
});

test('an aborted canary is Failed; reverting the spec to the serving revision is Current again', async (t) => {
  const ns = await namespaces.create('ks-abort');
  const { v1, v2 } = await serveThenUpdate(ns, [withRollout(gated)]);
  await waitFor('at the gate', async () => (await get(ns, 'm')).status?.rollout?.pauseReason === 'ManualGate', 60_000, 250);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/abort': v2 } } });
  const aborted = await waitFor('aborted', async () => {
    const m = await get(ns, 'm');
    return m.status?.rejectedRevision?.hash === v2 ? m : undefined;
  }, 60_000, 250);
  t.like(cond(aborted, 'Degraded'), { status: 'True', reason: 'Aborted' });
  const failed = await verdictWithin(ns, 'm', 'Failed', 10_000);
  t.log('aborted:', failed);

  // A GitOps revert: the spec goes back to what stable serves, and nothing is left to fail.
  const revert = modelDeployment('m', ns, withRollout(gated));
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: revert.spec });
  t.is(revisionHash(revert.spec), v1);
  const healed = await verdictWithin(ns, 'm', 'Current', 30_000);
  t.log('reverted:', healed);
  t.is(failed.status, 'Failed', `aborted, kstatus said ${JSON.stringify(failed)}`);
  t.deepEqual(healed, { status: 'Current', message: 'Resource is Ready' }, 'reverted');
});

test('a crash-looping canary rolled back by the operator is Failed', async (t) => {
  const ns = await namespaces.create('ks-crash');
  const { v2 } = await serveThenUpdate(ns, [withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }] })], [withFault('crash-loop')]);
  const rolledBack = await waitFor('rolled back', async () => {
    const m = await get(ns, 'm');
    return m.status?.rejectedRevision?.hash === v2 ? m : undefined;
  }, 90_000, 250);
  t.like(cond(rolledBack, 'Degraded'), { status: 'True', reason: 'RolledBack' });
  const failed = await verdictWithin(ns, 'm', 'Failed', 10_000);
  t.log('rolled back:', failed);
  t.is(failed.status, 'Failed', `rolled back, kstatus said ${JSON.stringify(failed)}`);
  t.regex(failed.message, /CrashLoopBackOff|rolled back/);
});

test('a spec the operator rejects as InvalidSpec is Failed', async (t) => {
  const ns = await namespaces.create('ks-invalid');
  // The schema accepts both fields; only the operator knows mlserver cannot load onnx.
  const md = modelDeployment('m', ns, (m) => { m.spec.model.format = 'onnx'; m.spec.runtime = { preset: 'mlserver' }; });
  await client.create(Resources.ModelDeployment, md);
  const invalid = await waitFor('InvalidSpec', async () => {
    const m = await get(ns, 'm');
    return cond(m, 'Ready')?.reason === 'InvalidSpec' && observedCurrentSpec(m) ? m : undefined;
  });
  t.is(cond(invalid, 'Ready')?.status, 'False');
  const failed = await verdictWithin(ns, 'm', 'Failed', 10_000);
  t.log('InvalidSpec:', failed);
  t.is(failed.status, 'Failed', `InvalidSpec, kstatus said ${JSON.stringify(failed)}`);
  t.regex(failed.message, /mlserver cannot serve onnx/);
});

test('a first revision is InProgress while it deploys and Failed once past its progress deadline', async (t) => {
  const ns = await namespaces.create('ks-deadline');
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withRollout({ progressDeadlineSeconds: 10 }), withFault('never-ready')));
  const deploying = await waitFor('deploying', async () => {
    const m = await get(ns, 'm');
    return observedCurrentSpec(m) && cond(m, 'Ready')?.status === 'False' && cond(m, 'Degraded')?.status !== 'True' ? m : undefined;
  });
  const before = await kstatusVerdict(deploying);
  t.log('deploying:', before);
  t.is(before.status, 'InProgress', 'before the deadline');
  const missed = await waitFor('progress deadline exceeded', async () => {
    const m = await get(ns, 'm');
    return cond(m, 'Degraded')?.reason === 'ProgressDeadlineExceeded' ? m : undefined;
  }, 60_000, 250);
  t.is(cond(missed, 'Ready')?.status, 'False');
  const failed = await verdictWithin(ns, 'm', 'Failed', 10_000);
  t.log('past the deadline:', failed);
  t.is(failed.status, 'Failed', `past its progress deadline, kstatus said ${JSON.stringify(failed)}`);
  t.regex(failed.message, /progress deadline/);
});
