// Revisions that outlive their history entry, operations that act once across a crash, children the
// spec no longer wants, and objects the ModelDeployment does not own. Each test runs its own operator
// limited to its namespace, so the crash test's operator lives are alone with their writes.
import test from 'ava';
import type { ModelDeployment, RolloutStep } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { userAgentPrefix, type KubeObject, type ResourceType } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { writesSince, type AuditEvent } from '../support/audit.js';
import { modelDeployment, withEnv, withReplicas, withSpec, withVersion, type Option } from '../support/builders.js';
import { adminClient, installCrd, installGatewayApi } from '../support/crd.js';
import { health } from '../support/lua.js';
import { OperatorProcess } from '../support/operator-process.js';
import { TrafficSampler } from '../support/traffic-sampler.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const operators: OperatorProcess[] = [];

test.before(async () => {
  await installCrd();
  await installGatewayApi();
});

test.after.always(async () => {
  await Promise.all(operators.map((o) => o.stop('SIGKILL')));
  await namespaces.deleteAll();
});

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };

const get = (ns: string) => client.get<Md>(Resources.ModelDeployment, ns, 'm');
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);
const annotate = (ns: string, key: string, value: string | null) => client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { [key]: value } } });
const version = (n: number): Option => withVersion(String(n), `https://models.example.com/iris/v${n}/model.joblib`);
const waitMd = (what: string, ns: string, ok: (m: Md) => boolean, timeoutMs = 30_000) =>
  waitFor(what, async () => { const m = await get(ns); return ok(m) ? m : undefined; }, timeoutMs, 200);
const configMaps: ResourceType = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };
const exists = (type: ResourceType, ns: string, name: string) =>
  client.get<Obj>(type, ns, name).then(() => true, () => false);

/** An operator that sees only `ns`. */
async function operatorFor(ns: string, name: string, env: Record<string, string> = {}, waitReady = true): Promise<OperatorProcess> {
  const op = new OperatorProcess({ name, env: { MODELSHIP_WATCH_NAMESPACES: ns, ...env } });
  operators.push(op);
  await op.start({ waitReady });
  return op;
}

/** Asserting that nothing happens needs a window: polls `ok` for `ms` and returns the first failure. */
async function holds(ms: number, ok: () => Promise<string | undefined>): Promise<string | undefined> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const problem = await ok();
    if (problem) return problem;
    await new Promise((r) => setTimeout(r, 200));
  }
  return undefined;
}

/** Waits like `waitFor`, but records a timeout as a problem instead of ending the test. */
async function expectEventually(problems: string[], what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<boolean> {
  try {
    await waitFor(what, async () => await check(), timeoutMs, 250);
    return true;
  } catch (err) {
    problems.push((err as Error).message);
    return false;
  }
}

test('five rollouts in a row with revisionHistoryLimit 1: each stops at its first pause until promoted', async (t) => {
  t.timeout(180_000);
  const ns = await namespaces.create('history-1');
  await operatorFor(ns, 'history-1');
  const steps: RolloutStep[] = [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }];
  const model = (n: number) => modelDeployment('m', ns, withReplicas(2), version(n), withSpec({ revisionHistoryLimit: 1, rollout: { steps, scaleDownDelaySeconds: 1 } }));
  const spec = (n: number) => model(n).spec;
  await client.create(Resources.ModelDeployment, model(1));
  let stable = revisionHash(spec(1));
  await waitMd('v1 serving', ns, (m) => m.status?.stableRevision?.hash === stable);
  const sampler = new TrafficSampler(client, ns, 'm');
  await sampler.start();
  const problems: string[] = [];
  try {
    for (let n = 2; n <= 6; n++) {
      sampler.phase(`rollout ${n - 1}`);
      const hash = revisionHash(spec(n));
      await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: spec(n) });
      // A canary promoted without its steps never reaches the gate: stop waiting as soon as it serves.
      const m = await waitMd(`rollout ${n - 1} at its gate or promoted`, ns, (x) =>
        (x.status?.canaryRevision?.hash === hash && x.status.rollout?.pauseReason === 'ManualGate') || x.status?.stableRevision?.hash === hash);
      if (m.status?.stableRevision?.hash === hash) {
        problems.push(`rollout ${n - 1}: revision ${hash} (model ${n}) became stable without a promote; history: ${JSON.stringify(m.status.history?.map((h) => [h.revision, h.outcome]))}`);
        stable = hash;
        continue;
      }
      const moved = await holds(2_000, async () => {
        const x = await get(ns);
        if (x.status?.stableRevision?.hash !== stable) return `stable changed to ${x.status?.stableRevision?.hash} at the gate`;
        if (x.status?.rollout?.position !== '2/3' || x.status.rollout.pauseReason !== 'ManualGate') return `left the gate: ${JSON.stringify(x.status?.rollout)}`;
        return undefined;
      });
      if (moved) problems.push(`rollout ${n - 1}: ${moved}`);
      else await annotate(ns, 'modelship.io/promote', hash);
      const done = await waitMd(`rollout ${n - 1} promoted`, ns, (x) => x.status?.stableRevision?.hash === hash && !x.status.canaryRevision);
      if ((done.status?.history?.length ?? 0) > 1) problems.push(`rollout ${n - 1}: history shows ${done.status?.history?.length} entries with revisionHistoryLimit 1`);
      stable = hash;
    }
  } finally {
    sampler.stop();
  }
  for (const e of sampler.violations) t.log(sampler.describe(e));
  for (const p of problems) t.log(p);
  t.deepEqual(problems, [], 'every rollout stopped at its gate');
  t.deepEqual(sampler.violations.map((e) => `(${e.invariant}) ${e.phase}: ${e.message}`), [], 'no revision took all traffic before its steps');
});

test('a SIGKILL between the status write and the annotation removal leaves a promote acted on once', async (t) => {
  t.timeout(180_000);
  const ns = await namespaces.create('promote-once');
  // The canary never becomes ready, so the setWeight step after the first gate cannot complete on
  // its own: only a second promote (a replay) would take the rollout past it.
  const steps: RolloutStep[] = [{ pause: {} }, { setWeight: 50 }, { pause: {} }, { setWeight: 100 }];
  const options = [withReplicas(2), withSpec({ rollout: { steps, progressDeadlineSeconds: 600 } })];
  const setup = await operatorFor(ns, 'promote-once-setup');
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, ...options, version(1)));
  await waitMd('v1 serving', ns, (m) => !!m.status?.stableRevision);
  const v2spec = modelDeployment('m', ns, ...options, version(2), withEnv('KWOK_FAULT', 'never-ready')).spec;
  const v2 = revisionHash(v2spec);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: v2spec });
  await waitMd('v2 at the first gate', ns, (m) => m.status?.canaryRevision?.hash === v2 && m.status.rollout?.position === '1/4' && m.status.rollout.pauseReason === 'ManualGate');
  await setup.stop();
  await annotate(ns, 'modelship.io/promote', v2);

  // Each life dies after its first write. The lives before the status write apply what the promote
  // changes (the canary's size); the life whose one write is the status write dies with the
  // annotation still in place: exactly the window between the two writes.
  let landed: Date | undefined;
  for (let life = 0; life < 12 && !landed; life++) {
    const since = new Date();
    const op = await operatorFor(ns, `promote-once-life-${life}`, { MODELSHIP_FAULT_EXIT_AFTER_WRITES: '1' }, false);
    if (await op.exited(15_000) === undefined) await op.stop('SIGKILL');
    const m = await get(ns);
    const promote = m.metadata?.annotations?.['modelship.io/promote'];
    if (!promote) t.fail(`life ${life} removed the annotation; with one write per life the status write must come first`);
    if (m.status?.rollout?.position !== '1/4') landed = since;
  }
  if (!landed) return t.fail('no life wrote a status that records the promote');
  const recorded = await get(ns);
  t.log(`status after the killed life: ${JSON.stringify(recorded.status?.rollout)}`);
  // The apiserver's record: the killed life's one write was the status, not the annotation patch. No
  // other operator ran in this namespace since that life started.
  const writes: AuditEvent[] = await writesSince(landed, userAgentPrefix, ns);
  t.deepEqual(writes.map((w) => [w.verb, w.objectRef?.resource, w.objectRef?.subresource ?? '']), [['patch', 'modeldeployments', 'status']], 'killed right after the status write');

  await operatorFor(ns, 'promote-once-after');
  const settled = await waitMd('the promote answered', ns, (m) => !m.metadata?.annotations?.['modelship.io/promote'] && m.status?.rollout?.position !== undefined);
  const replayed = await holds(3_000, async () => {
    const m = await get(ns);
    return m.status?.rollout?.position === '2/4' ? undefined : `the rollout is at ${m.status?.rollout?.position} (${m.status?.rollout?.pauseReason || 'no pause'}); lastOperation: ${JSON.stringify(m.status?.rollout?.lastOperation)}`;
  });
  t.is(replayed, undefined, 'one promote released one gate: the rollout waits at setWeight 50 for a canary that is not ready');
  t.is(settled.status?.canaryRevision?.hash, v2);
  t.is(settled.status?.stableRevision?.hash, recorded.status?.stableRevision?.hash);
});

test('removing autoscaling deletes the HPA; switching from GatewayAPI to ReplicaRatio deletes the HTTPRoute', async (t) => {
  t.timeout(120_000);
  const ns = await namespaces.create('leftovers');
  await operatorFor(ns, 'leftovers');
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(1), withSpec({
    // scaler HPA: other tests may have installed KEDA's CRDs on this cluster, and Auto would pick KEDA.
    autoscaling: { minReplicas: 1, maxReplicas: 3, scaler: 'HPA', metrics: [{ type: 'CPU', targetAverageUtilization: 70 }] },
    traffic: { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'gw' }] } },
  })));
  await waitMd('serving', ns, (m) => cond(m, 'Ready')?.status === 'True');
  await waitFor('HPA and HTTPRoute', async () => await exists(Resources.HorizontalPodAutoscaler, ns, 'm') && await exists(Resources.HTTPRoute, ns, 'm'));
  const problems: string[] = [];

  const noHpa = await client.mergePatch<Md>(Resources.ModelDeployment, ns, 'm', { spec: { autoscaling: null } });
  await waitMd('the change observed', ns, (m) => (m.status?.observedGeneration ?? 0) >= noHpa.metadata!.generation!);
  await expectEventually(problems, 'the HPA deleted once autoscaling is removed', async () => !await exists(Resources.HorizontalPodAutoscaler, ns, 'm'));

  const noRoute = await client.mergePatch<Md>(Resources.ModelDeployment, ns, 'm', { spec: { traffic: { router: 'ReplicaRatio', gatewayAPI: null } } });
  await waitMd('the change observed', ns, (m) => (m.status?.observedGeneration ?? 0) >= noRoute.metadata!.generation!);
  await expectEventually(problems, 'the HTTPRoute deleted once the router is ReplicaRatio', async () => !await exists(Resources.HTTPRoute, ns, 'm'));
  t.deepEqual(problems, []);
  t.like(cond(await get(ns), 'Ready'), { status: 'True' });
});

test('a Service the ModelDeployment does not own, named like its main Service, is left untouched and reported', async (t) => {
  t.timeout(120_000);
  const ns = await namespaces.create('ownership');
  await operatorFor(ns, 'ownership');
  const users = await client.create<Obj, Obj>(Resources.Service, {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: 'm', namespace: ns, labels: { team: 'payments' }, annotations: { owner: 'payments' } },
    spec: { type: 'ClusterIP', selector: { app: 'payments-api' }, ports: [{ name: 'web', port: 8443, targetPort: 8443, protocol: 'TCP' }] },
  });
  const created = await client.create<Md>(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(1)));
  // Something the garbage collector must delete with the ModelDeployment: once it is gone, the
  // collector has processed the ModelDeployment's dependents, and the user's Service can be judged.
  await client.create(configMaps, {
    apiVersion: 'v1', kind: 'ConfigMap',
    metadata: { name: 'gc-witness', namespace: ns, ownerReferences: [{ apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'm', uid: created.metadata!.uid!, blockOwnerDeletion: false }] },
  });
  const problems: string[] = [];
  await waitMd('reconciled', ns, (m) => m.status?.observedGeneration === created.metadata?.generation);
  await expectEventually(problems, 'Ready=False with reason OwnershipConflict', async () => cond(await get(ns), 'Ready')?.reason === 'OwnershipConflict');
  const md = await get(ns);
  const ready = cond(md, 'Ready');
  if (ready?.reason === 'OwnershipConflict') {
    if (ready.status !== 'False') problems.push(`Ready is ${ready.status} with reason OwnershipConflict`);
    if (!/Service/.test(ready.message ?? '') || !/\bm\b/.test(ready.message ?? '')) problems.push(`the message does not name Service m: ${ready.message}`);
  } else problems.push(`Ready: ${JSON.stringify(ready)}`);
  // GitOps tools read it as a failure, not as something still on its way.
  if (cond(md, 'Stalled')?.status !== 'True') problems.push(`Stalled: ${JSON.stringify(cond(md, 'Stalled'))}`);
  const argo = await health(md);
  if (argo.status !== 'Degraded' || !/^OwnershipConflict: /.test(argo.message)) problems.push(`Argo CD health: ${JSON.stringify(argo)}`);
  await expectEventually(problems, 'a Warning Event with reason OwnershipConflict', async () => {
    const events = await client.list<Obj & { reason?: string; type?: string; regarding?: { name?: string } }>(Resources.Event, { namespace: ns });
    return events.items.some((e) => e.reason === 'OwnershipConflict' && e.type === 'Warning' && e.regarding?.name === 'm');
  }, 10_000);

  const untouched = (svc: Obj) => {
    const out: string[] = [];
    if (svc.metadata?.resourceVersion !== users.metadata?.resourceVersion) out.push(`resourceVersion ${users.metadata?.resourceVersion} → ${svc.metadata?.resourceVersion}`);
    if (svc.metadata?.ownerReferences?.length) out.push(`ownerReferences ${JSON.stringify(svc.metadata.ownerReferences)}`);
    if (JSON.stringify(svc.spec.selector) !== JSON.stringify(users.spec.selector)) out.push(`selector ${JSON.stringify(svc.spec.selector)}`);
    if (JSON.stringify(svc.spec.ports) !== JSON.stringify(users.spec.ports)) out.push(`ports ${JSON.stringify(svc.spec.ports)}`);
    if (JSON.stringify(svc.metadata?.labels) !== JSON.stringify(users.metadata?.labels)) out.push(`labels ${JSON.stringify(svc.metadata?.labels)}`);
    if (JSON.stringify(svc.metadata?.annotations) !== JSON.stringify(users.metadata?.annotations)) out.push(`annotations ${JSON.stringify(svc.metadata?.annotations)}`);
    const before = new Set((users.metadata?.managedFields ?? []).map((f: any) => f.manager));
    const managers = (svc.metadata?.managedFields ?? []).map((f: any) => f.manager).filter((m: string) => !before.has(m));
    if (managers.length) out.push(`new field managers: ${managers.join(', ')}`);
    return out;
  };
  for (const p of untouched(await client.get<Obj>(Resources.Service, ns, 'm'))) problems.push(`while the ModelDeployment exists: ${p}`);

  await client.delete(Resources.ModelDeployment, ns, 'm');
  await waitFor('the ModelDeployment and its dependents collected', async () => !await exists(Resources.ModelDeployment, ns, 'm') && !await exists(configMaps, ns, 'gc-witness'), 60_000, 250);
  // The collector deletes dependents one by one: give it the moment it would need for the Service too.
  const deleted = await holds(2_000, async () => (await exists(Resources.Service, ns, 'm') ? undefined : 'deleted'));
  if (deleted) problems.push('the user\'s Service was garbage-collected with the ModelDeployment');
  else for (const p of untouched(await client.get<Obj>(Resources.Service, ns, 'm'))) problems.push(`after the ModelDeployment was deleted: ${p}`);
  t.deepEqual(problems, []);
});
