// The test control plane behaves like a real cluster: the scheduler binds pods to kwok nodes, the
// controller manager runs Deployments and garbage collection, kwok's fault stages misbehave on request,
// and a restarted apiserver is the same cluster to a watching client.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppsV1Api, PatchStrategy, Watch, setHeaderOptions, type CoreV1Event, type V1ConfigMap, type V1Deployment, type V1Pod } from '@kubernetes/client-node';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';

const cluster = testCluster();
const apps = cluster.kc.makeApiClient(AppsV1Api);
const namespaces = new TestNamespaces();

test.after.always(async () => {
  await namespaces.deleteAll();
});

const namespace = (prefix: string) => namespaces.create(prefix);

function deployment(name: string, opts: { replicas?: number; podLabels?: Record<string, string>; gpus?: number } = {}): V1Deployment {
  const labels = { app: name, ...opts.podLabels };
  return {
    metadata: { name },
    spec: {
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels },
        spec: {
          containers: [{
            name: 'server',
            image: 'example.invalid/server:1',
            resources: opts.gpus ? { limits: { 'nvidia.com/gpu': String(opts.gpus) } } : {},
          }],
          tolerations: opts.gpus ? [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] : [],
        },
      },
    },
  };
}

function barePod(name: string, opts: { labels?: Record<string, string>; gpus?: number } = {}): V1Pod {
  return {
    metadata: { name, labels: opts.labels ?? {} },
    spec: {
      containers: [{
        name: 'server',
        image: 'example.invalid/server:1',
        resources: opts.gpus ? { limits: { 'nvidia.com/gpu': String(opts.gpus) } } : {},
      }],
      tolerations: opts.gpus ? [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }] : [],
    },
  };
}

const isReady = (pod: V1Pod) => pod.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';

test('a Deployment\'s pods are scheduled onto kwok nodes and become Running and Ready', async (t) => {
  const ns = await namespace('cp-deploy');
  await apps.createNamespacedDeployment({ namespace: ns, body: deployment('web', { replicas: 3 }) });
  const pods = await waitFor('3 ready pods', async () => {
    const list = await cluster.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=web' });
    return list.items.length === 3 && list.items.every(isReady) ? list.items : undefined;
  });
  for (const pod of pods) {
    t.is(pod.status?.phase, 'Running');
    t.regex(pod.spec?.nodeName ?? '', /^kwok-cpu-/, 'a CPU pod lands on a CPU node: GPU nodes are tainted');
    t.truthy(pod.status?.podIP);
  }
  const dep = await waitFor('deployment available', async () => {
    const d = await apps.readNamespacedDeployment({ name: 'web', namespace: ns });
    return d.status?.availableReplicas === 3 ? d : undefined;
  });
  t.is(dep.status?.readyReplicas, 3);
});

test('a pod labelled never-ready runs but stays NotReady', async (t) => {
  const ns = await namespace('cp-never-ready');
  await cluster.core.createNamespacedPod({ namespace: ns, body: barePod('stuck', { labels: { 'kwok.modelship.io/fault': 'never-ready' } }) });
  const running = await waitFor('pod running', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'stuck', namespace: ns });
    return p.status?.phase === 'Running' ? p : undefined;
  });
  t.false(isReady(running));
  // Give kwok ample time to (wrongly) make it ready.
  await new Promise((r) => setTimeout(r, 3_000));
  const later = await cluster.core.readNamespacedPod({ name: 'stuck', namespace: ns });
  t.false(isReady(later));
  t.is(later.status?.containerStatuses?.[0]?.ready, false);
});

test('a container environment can choose a fault too (KWOK_FAULT), so a model revision can carry it', async (t) => {
  const ns = await namespace('cp-env-fault');
  const pod = barePod('env-stuck');
  pod.spec!.containers[0]!.env = [{ name: 'KWOK_FAULT', value: 'never-ready' }];
  const crash = barePod('env-crash');
  crash.spec!.containers[0]!.env = [{ name: 'KWOK_FAULT', value: 'crash-loop' }];
  await cluster.core.createNamespacedPod({ namespace: ns, body: pod });
  await cluster.core.createNamespacedPod({ namespace: ns, body: crash });
  const running = await waitFor('pod running', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'env-stuck', namespace: ns });
    return p.status?.phase === 'Running' ? p : undefined;
  });
  t.false(isReady(running));
  await waitFor('restarts', async () => ((await cluster.core.readNamespacedPod({ name: 'env-crash', namespace: ns })).status?.containerStatuses?.[0]?.restartCount ?? 0) >= 2);
});

test('a crash-looping pod reports CrashLoopBackOff with a growing restartCount', async (t) => {
  const ns = await namespace('cp-crash');
  await cluster.core.createNamespacedPod({ namespace: ns, body: barePod('crashy', { labels: { 'kwok.modelship.io/fault': 'crash-loop' } }) });
  const first = await waitFor('first restart', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'crashy', namespace: ns });
    const n = p.status?.containerStatuses?.[0]?.restartCount ?? 0;
    return n >= 1 ? n : undefined;
  });
  const later = await waitFor('more restarts', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'crashy', namespace: ns });
    const s = p.status?.containerStatuses?.[0];
    return s && s.restartCount >= first + 2 ? p : undefined;
  });
  t.is(later.status?.containerStatuses?.[0]?.state?.waiting?.reason, 'CrashLoopBackOff');
  t.false(isReady(later));
});

test('readiness lost at run time is seen, and regained', async (t) => {
  const ns = await namespace('cp-ready-lost');
  await cluster.core.createNamespacedPod({ namespace: ns, body: barePod('flaky') });
  await waitFor('pod ready', async () => isReady(await cluster.core.readNamespacedPod({ name: 'flaky', namespace: ns })));
  const annotate = (value: string) => cluster.core.patchNamespacedPod({
    name: 'flaky', namespace: ns, body: { metadata: { annotations: { 'kwok.modelship.io/ready': value } } },
  }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  await annotate('false');
  const lost = await waitFor('readiness lost', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'flaky', namespace: ns });
    return !isReady(p) ? p : undefined;
  });
  t.is(lost.status?.phase, 'Running');
  await annotate('true');
  await waitFor('readiness regained', async () => isReady(await cluster.core.readNamespacedPod({ name: 'flaky', namespace: ns })));
  t.pass();
});

test('deleting an owner garbage-collects what it owns', async (t) => {
  const ns = await namespace('cp-gc');
  const owner = await cluster.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'owner' } } });
  await cluster.core.createNamespacedConfigMap({
    namespace: ns,
    body: {
      metadata: {
        name: 'owned',
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid!, controller: true, blockOwnerDeletion: true }],
      },
    },
  });
  await apps.createNamespacedDeployment({ namespace: ns, body: deployment('gc', { replicas: 2 }) });
  await waitFor('2 pods', async () => (await cluster.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=gc' })).items.length === 2);

  await cluster.core.deleteNamespacedConfigMap({ name: 'owner', namespace: ns });
  await apps.deleteNamespacedDeployment({ name: 'gc', namespace: ns });
  await waitFor('owned ConfigMap collected', async () => {
    const list = await cluster.core.listNamespacedConfigMap({ namespace: ns });
    return !list.items.some((c) => c.metadata?.name === 'owned');
  });
  await waitFor('ReplicaSet and pods collected', async () => {
    const rs = await apps.listNamespacedReplicaSet({ namespace: ns });
    const pods = await cluster.core.listNamespacedPod({ namespace: ns, labelSelector: 'app=gc' });
    return rs.items.length === 0 && pods.items.length === 0;
  }, 60_000);
  t.pass();
});

test('GPU pods land on GPU nodes; asking for more GPUs than any node has stays Pending as Unschedulable', async (t) => {
  const ns = await namespace('cp-gpu');
  await cluster.core.createNamespacedPod({ namespace: ns, body: barePod('one-gpu', { gpus: 1 }) });
  await cluster.core.createNamespacedPod({ namespace: ns, body: barePod('too-many-gpus', { gpus: 64 }) });
  const placed = await waitFor('GPU pod ready', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'one-gpu', namespace: ns });
    return isReady(p) ? p : undefined;
  });
  t.regex(placed.spec?.nodeName ?? '', /^kwok-gpu-/);

  const pending = await waitFor('unschedulable condition', async () => {
    const p = await cluster.core.readNamespacedPod({ name: 'too-many-gpus', namespace: ns });
    const c = p.status?.conditions?.find((x) => x.type === 'PodScheduled');
    return c?.status === 'False' ? { pod: p, condition: c } : undefined;
  });
  t.is(pending.pod.status?.phase, 'Pending');
  t.is(pending.condition.reason, 'Unschedulable');
  t.regex(pending.condition.message ?? '', /Insufficient nvidia\.com\/gpu/);
  const events = await cluster.core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=too-many-gpus' });
  t.true(events.items.some((e: CoreV1Event) => e.reason === 'FailedScheduling'));
});

test.serial('a watching client resumes after the apiserver restarts', async (t) => {
  const ns = await namespace('cp-restart');
  const seen = new Set<string>();
  let resourceVersion: string | undefined;
  let stopped = false;
  let reconnects = 0;
  const watch = new Watch(cluster.kc);
  let abort: AbortController | undefined;

  // What every watch client has to do: on any end of the stream, reconnect from the last version seen.
  const startWatch = async (): Promise<void> => {
    if (stopped) return;
    try {
      abort = await watch.watch(`/api/v1/namespaces/${ns}/configmaps`, { allowWatchBookmarks: true, ...(resourceVersion ? { resourceVersion } : {}) },
        (type: string, obj: V1ConfigMap) => {
          // An ERROR event (410 Gone: the restarted apiserver's watch cache no longer has our version)
          // means start over from a fresh list.
          if (type === 'ERROR') { resourceVersion = undefined; return; }
          resourceVersion = obj.metadata?.resourceVersion ?? resourceVersion;
          if (type === 'ADDED' && obj.metadata?.name) seen.add(obj.metadata.name);
        },
        () => { reconnects++; setTimeout(() => void startWatch(), 250); });
    } catch {
      reconnects++;
      setTimeout(() => void startWatch(), 250);
    }
  };
  await startWatch();
  await cluster.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'before' } } });
  await waitFor('event before restart', async () => seen.has('before'));

  await cluster.component('kube-apiserver', 'restart');
  await cluster.core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'after' } } });
  await waitFor('event after restart', async () => seen.has('after'), 60_000);
  stopped = true;
  abort?.abort();
  t.true(reconnects >= 1, 'the watch was cut by the restart and reconnected');
});

test.serial('a supervisor killed with SIGKILL leaves no control-plane process behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'orphans-'));
  const supervisor = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../cluster/supervisor.ts', import.meta.url)), 'up', '--dir', dir], {
    stdio: 'ignore', env: { ...process.env, MODELSHIP_CPU_NODES: '1', MODELSHIP_GPU_NODES: '0' },
  });
  const state = await waitFor('second control plane up', async () => {
    if (!existsSync(join(dir, 'state.json'))) return undefined;
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { pids: Record<string, number> };
  }, 90_000);
  const pids = Object.values(state.pids);
  t.is(pids.length, 5, 'etcd, apiserver, controller manager, scheduler and kwok were running');
  supervisor.kill('SIGKILL');
  const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  await waitFor('every component gone', async () => pids.every((p) => !alive(p)), 15_000);
  rmSync(dir, { recursive: true, force: true });
  t.pass();
});

test('the pinned InferencePool and KEDA CRDs install, and take a pool of a revision\'s pods and a scaler of a ModelDeployment\'s /scale', async (t) => {
  const { adminClient, installInferencePoolCrd, installKedaCrd } = await import('../support/crd.js');
  await Promise.all([installInferencePoolCrd(), installKedaCrd()]);
  const client = adminClient();
  const ns = await namespaces.create('llm-crds');
  const pool = {
    apiVersion: 'inference.networking.k8s.io/v1', kind: 'InferencePool', metadata: { name: 'llm-canary', namespace: ns },
    spec: { selector: { matchLabels: { 'app.kubernetes.io/instance': 'llm', 'modelship.io/revision': 'abc123' } }, targetPorts: [{ number: 8000 }], endpointPickerRef: { name: 'llm-epp', port: { number: 9002 } } },
  };
  const scaler = {
    apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', metadata: { name: 'llm', namespace: ns },
    spec: {
      scaleTargetRef: { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'llm' }, minReplicaCount: 0, maxReplicaCount: 4,
      triggers: [{ type: 'prometheus', metadata: { serverAddress: 'http://prometheus.monitoring.svc:9090', query: 'sum(vllm:num_requests_waiting{namespace="x"})', threshold: '5', activationThreshold: '0' } }],
    },
  };
  const poolType = { group: 'inference.networking.k8s.io', version: 'v1', plural: 'inferencepools', kind: 'InferencePool', namespaced: true } as const;
  const scalerType = { group: 'keda.sh', version: 'v1alpha1', plural: 'scaledobjects', kind: 'ScaledObject', namespaced: true } as const;
  const dryPool = await client.apply<typeof pool>(poolType, pool, 'modelship-tests', { dryRun: true });
  t.deepEqual(dryPool.spec.targetPorts, [{ number: 8000 }]);
  const dryScaler = await client.apply<typeof scaler>(scalerType, scaler, 'modelship-tests', { dryRun: true });
  t.is(dryScaler.spec.minReplicaCount, 0, 'scale to zero is a valid ScaledObject');
  // The CRDs' own rules hold: a pool needs target ports.
  const bad = { ...pool, metadata: { ...pool.metadata, name: 'no-ports' }, spec: { ...pool.spec, targetPorts: [] } };
  await t.throwsAsync(client.apply(poolType, bad, 'modelship-tests', { dryRun: true }), { message: /targetPorts/ });
});
