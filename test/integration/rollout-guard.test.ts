// Traffic never runs ahead of capacity, checked on the real control plane by a sampler
// (test/support/traffic-sampler.ts) that watches Deployments, Services, the HTTPRoute and the
// InferencePools through every operation a rollout can go through, for every router and both
// capacity policies.
//
// Model pods load slowly here, as real models do: every revision starts its pods not ready
// (KWOK_FAULT=never-ready) and the test makes each one ready KWOK_READY_AFTER_MS after it appears
// (kwok.modelship.io/ready: "true"). A rollout that moves traffic, or shrinks stable, before the
// pods that will carry it are ready shows up as seconds of violation, well beyond the sampler's grace.
import test, { type ExecutionContext } from 'ava';
import type { ModelDeployment, RolloutStep } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { Informer } from '../../operator/runtime/informer.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withEnv, withReplicas, withSpec, withVersion, type Option } from '../support/builders.js';
import { adminClient, installCrd, installGatewayApi, installInferencePoolCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';
import { TrafficSampler, unreadyByHandAnnotation } from '../support/traffic-sampler.js';

const client = adminClient();
const namespaces = new TestNamespaces();
let operator: OperatorProcess;

test.before(async () => {
  await installCrd();
  await installGatewayApi();
  await installInferencePoolCrd();
  operator = new OperatorProcess({ name: 'rollout-guard' });
  await operator.start();
});

test.after.always(async () => {
  await operator?.stop();
  await namespaces.deleteAll();
});

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };
type Router = 'ReplicaRatio' | 'GatewayAPI' | 'InferencePool';
type Capacity = 'Surge' | 'Shift';

const replicas = 4;
const loadMs = 4_000;
const readyAnnotation = 'kwok.modelship.io/ready';
// Two gates, so that promote releases one step and `/full` the rest; 25 % and 75 % make Shift move
// most of stable's pods to the canary, which is where a guard is needed most.
const steps: RolloutStep[] = [{ setWeight: 25 }, { pause: {} }, { setWeight: 75 }, { pause: {} }, { setWeight: 100 }];

/**
 * Makes each slow pod ready `KWOK_READY_AFTER_MS` after it is first seen: a model that takes seconds
 * to load. Pods without that variable (a crash-looping revision) are left to kwok.
 */
class SlowLoads {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly pods: Informer<Obj>;

  constructor(namespace: string) {
    this.pods = new Informer<Obj>(client, Resources.Pod, { onUpsert: (p) => this.schedule(p) }, { namespace });
  }

  start = () => this.pods.start();

  stop(): void {
    this.pods.stop();
    for (const t of this.timers.values()) clearTimeout(t);
  }

  private schedule(pod: Obj): void {
    const name = pod.metadata?.name;
    if (!name || this.timers.has(name) || pod.metadata?.annotations?.[readyAnnotation]) return;
    const env: { name: string; value?: string }[] = pod.spec?.containers?.flatMap((c: any) => c.env ?? []) ?? [];
    const after = Number(env.find((e) => e.name === 'KWOK_READY_AFTER_MS')?.value);
    if (!after) return;
    this.timers.set(name, setTimeout(() => {
      client.mergePatch(Resources.Pod, pod.metadata!.namespace, name, { metadata: { annotations: { [readyAnnotation]: 'true' } } })
        .catch(() => undefined);
    }, after));
  }
}

const get = (ns: string) => client.get<Md>(Resources.ModelDeployment, ns, 'm');
const deployment = (ns: string, hash: string) => client.get<Obj>(Resources.Deployment, ns, `m-${hash}`).catch(() => undefined);
const annotate = (ns: string, key: string, value: string) => client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { [key]: value } } });

/** Model pods load for `loadMs`, or (crash-loop) never start. */
function spec(ns: string, router: Router, capacity: Capacity, version: number, pods: 'slow' | 'crash-loop' = 'slow'): ModelDeployment {
  const traffic = router === 'ReplicaRatio' ? { router } : { router, gatewayAPI: { parentRefs: [{ name: 'gw' }] } };
  const faults: Option[] = pods === 'slow'
    ? [withEnv('KWOK_FAULT', 'never-ready'), withEnv('KWOK_READY_AFTER_MS', String(loadMs))]
    : [withEnv('KWOK_FAULT', 'crash-loop')];
  return modelDeployment('m', ns,
    withReplicas(replicas),
    withVersion(String(version), `https://models.example.com/iris/v${version}/model.joblib`),
    withSpec({ traffic, rollout: { steps, capacity, scaleDownDelaySeconds: 2, progressDeadlineSeconds: 120 } }),
    ...faults);
}

async function setSpec(ns: string, md: ModelDeployment): Promise<string> {
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: md.spec });
  return revisionHash(md.spec);
}

const waitMd = (what: string, ns: string, ok: (m: Md) => boolean, timeoutMs = 60_000) =>
  waitFor(what, async () => { const m = await get(ns); return ok(m) ? m : undefined; }, timeoutMs, 250);

const atGate = (ns: string, hash: string, position: string) => waitMd(`canary ${hash} at the gate ${position}`, ns, (m) =>
  m.status?.canaryRevision?.hash === hash && m.status.rollout?.position === position && m.status.rollout.pauseReason === 'ManualGate');
const promoted = (ns: string, hash: string) => waitMd(`${hash} promoted`, ns, (m) => m.status?.stableRevision?.hash === hash && !m.status.canaryRevision);
const rejected = (ns: string, hash: string) => waitMd(`${hash} rejected`, ns, (m) => m.status?.rejectedRevision?.hash === hash);
const gone = (ns: string, hash: string) => waitFor(`Deployment m-${hash} removed`, async () => !(await deployment(ns, hash)), 60_000, 250);
const fullyReady = (ns: string, hash: string) => waitFor(`m-${hash} at ${replicas} ready replicas`, async () => {
  const d = await deployment(ns, hash);
  return d?.spec.replicas === replicas && d.status?.readyReplicas === replicas;
}, 60_000, 250);

/**
 * Holds one ready stable pod unready for a while, as a failing node or probe would: an outside cause
 * the sampler must not blame on the operator. The hold outlasts the sampler's grace on purpose.
 */
async function unreadyByHand(ns: string, hash: string): Promise<void> {
  const podReady = (p: Obj | undefined) => !!p?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True');
  // Settled first, so that the pod picked is not one the operator is about to remove.
  await waitFor(`m-${hash} settled`, async () => {
    const d = await deployment(ns, hash);
    return d && d.metadata?.generation === d.status?.observedGeneration && d.status?.readyReplicas === d.spec.replicas;
  }, 30_000, 100);
  const pods = await client.list<Obj>(Resources.Pod, { namespace: ns, labelSelector: `modelship.io/revision=${hash}` });
  const pod = pods.items.find((p) => podReady(p) && !p.metadata?.deletionTimestamp);
  if (!pod) throw new Error(`no ready pod of ${hash}`);
  const name = pod.metadata!.name!;
  const patch = (annotations: Record<string, string | null>) => client.mergePatch(Resources.Pod, ns, name, { metadata: { annotations } });
  const live = () => client.get<Obj>(Resources.Pod, ns, name).catch(() => undefined);
  await patch({ [unreadyByHandAnnotation]: 'true', [readyAnnotation]: 'false' });
  await waitFor(`pod ${name} unready`, async () => !podReady(await live()), 30_000, 100);
  await new Promise((r) => setTimeout(r, 2_500));
  await patch({ [readyAnnotation]: 'true' });
  await waitFor(`pod ${name} ready again and m-${hash} fully ready`, async () => {
    const [p, d] = await Promise.all([live(), deployment(ns, hash)]);
    if (!p || (podReady(p) && d?.status?.readyReplicas === d?.spec.replicas)) return true;
    // Thrown, so that a timeout says where things stood.
    throw new Error(`m-${hash}: ${d?.status?.readyReplicas ?? 0}/${d?.spec.replicas} ready; pod ${JSON.stringify(p.status?.conditions?.find((c: any) => c.type === 'Ready'))}`);
  }, 30_000, 100);
  await patch({ [unreadyByHandAnnotation]: null }).catch(() => undefined);
}

/**
 * Serves v1 with slow pods, starts the sampler, runs `scenario`, and asserts the sampler saw no
 * violation. The sampler's findings are logged even when the scenario stops early, so a failing run
 * still shows what traffic did.
 */
async function guarded(t: ExecutionContext, router: Router, capacity: Capacity, prefix: string,
  scenario: (ns: string, v1: string, sampler: TrafficSampler) => Promise<void>): Promise<void> {
  t.timeout(300_000);
  const ns = await namespaces.create(prefix);
  const loads = new SlowLoads(ns);
  await loads.start();
  const sampler = new TrafficSampler(client, ns, 'm');
  let failure: Error | undefined;
  try {
    const v1 = revisionHash(spec(ns, router, capacity, 1).spec);
    await client.create(Resources.ModelDeployment, spec(ns, router, capacity, 1));
    await promoted(ns, v1);
    await fullyReady(ns, v1);
    await sampler.start();
    await scenario(ns, v1, sampler);
  } catch (err) {
    failure = err as Error;
  } finally {
    sampler.stop();
    loads.stop();
  }
  for (const line of sampler.report().split('\n')) t.log(line);
  t.deepEqual(sampler.violations.map((e) => `(${e.invariant}) ${e.phase}: ${e.message}`), [], 'traffic stayed within ready capacity');
  if (failure) throw failure;
  t.true(sampler.samples.length > 100, `sampled ${sampler.samples.length} times`);
}

// InferencePool shares GatewayAPI's exact weights (one HTTPRoute) with pools as backends; Shift is the
// policy that needs the guard most.
const combos: [Router, Capacity][] = [['ReplicaRatio', 'Surge'], ['ReplicaRatio', 'Shift'], ['GatewayAPI', 'Surge'], ['GatewayAPI', 'Shift'], ['InferencePool', 'Shift']];

for (const [router, capacity] of combos) {
  const prefix = `guard-${({ GatewayAPI: 'gw', ReplicaRatio: 'rr', InferencePool: 'ip' } as const)[router]}-${capacity.toLowerCase()}`;

  test(`${router} + ${capacity}: promote, a stable pod lost by hand, promote --full, abort`, async (t) => {
    await guarded(t, router, capacity, `${prefix}-p`, async (ns, v1, sampler) => {
      sampler.phase('v2 to its first gate');
      const v2 = await setSpec(ns, spec(ns, router, capacity, 2));
      await atGate(ns, v2, '2/5');
      sampler.phase('a stable pod unready by hand');
      await unreadyByHand(ns, v1);
      sampler.phase('promote');
      await annotate(ns, 'modelship.io/promote', v2);
      await atGate(ns, v2, '4/5');
      sampler.phase('promote --full');
      sampler.allowFullTraffic(v2);
      await annotate(ns, 'modelship.io/promote', `${v2}/full`);
      await promoted(ns, v2);
      await gone(ns, v1);
      sampler.phase('v3 to its second gate');
      const v3 = await setSpec(ns, spec(ns, router, capacity, 3));
      await atGate(ns, v3, '2/5');
      await annotate(ns, 'modelship.io/promote', v3);
      await atGate(ns, v3, '4/5');
      sampler.phase('abort');
      await annotate(ns, 'modelship.io/abort', v3);
      await rejected(ns, v3);
      await gone(ns, v3);
      await fullyReady(ns, v2);
    });
  });

  test(`${router} + ${capacity}: supersede, revert, rollback of a crash-looping canary`, async (t) => {
    await guarded(t, router, capacity, `${prefix}-s`, async (ns, v1, sampler) => {
      sampler.phase('v2 to its second gate');
      const v2 = await setSpec(ns, spec(ns, router, capacity, 2));
      await atGate(ns, v2, '2/5');
      await annotate(ns, 'modelship.io/promote', v2);
      await atGate(ns, v2, '4/5');
      sampler.phase('supersede');
      const v3 = await setSpec(ns, spec(ns, router, capacity, 3));
      await atGate(ns, v3, '2/5');
      await gone(ns, v2);
      sampler.phase('revert');
      t.is(await setSpec(ns, spec(ns, router, capacity, 1)), v1);
      await waitMd('back on v1 alone', ns, (m) => m.status?.stableRevision?.hash === v1 && !m.status.canaryRevision);
      await gone(ns, v3);
      await fullyReady(ns, v1);
      sampler.phase('rollback');
      const v4 = await setSpec(ns, spec(ns, router, capacity, 4, 'crash-loop'));
      const back = await rejected(ns, v4);
      t.regex(back.status?.rejectedRevision?.reason ?? '', /CrashLoopBackOff/);
      await gone(ns, v4);
      await fullyReady(ns, v1);
    });
  });
}
