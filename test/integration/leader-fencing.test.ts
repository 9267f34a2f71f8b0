// A leader that is partitioned from the apiserver, or throttled by it, does no harm and does not die:
//  - partitioned (a proxy in front of it blackholes its connections), it stops writing before its
//    successor starts, as the apiserver's own audit log records; when the partition heals it stays a
//    standby, and it leads again in the same process once the other replica goes;
//  - throttled (the proxy answers every request 429 with Retry-After), it keeps to the rate the
//    apiserver asks for, keeps its lease through a short brown-out, and after a long one steps down,
//    campaigns again and leads again without a restart.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ModelDeployment } from '../../operator/api/generated.js';
import { userAgentPrefix, type KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { ApiserverProxy } from '../support/apiserver-proxy.js';
import { writesSince, type AuditEvent } from '../support/audit.js';
import { modelDeployment, withReplicas } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const operators: OperatorProcess[] = [];
const proxies: ApiserverProxy[] = [];

test.before(async () => {
  await installCrd();
});

test.afterEach.always(async () => {
  await Promise.all(operators.splice(0).map((o) => o.stop('SIGKILL')));
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

test.after.always(async () => {
  await namespaces.deleteAll();
});

function operator(opts: ConstructorParameters<typeof OperatorProcess>[0]) {
  const op = new OperatorProcess(opts);
  operators.push(op);
  return op;
}

async function proxy(retryAfterSeconds?: number): Promise<{ proxy: ApiserverProxy; kubeconfig: string }> {
  const p = await new ApiserverProxy(retryAfterSeconds).start();
  proxies.push(p);
  return { proxy: p, kubeconfig: p.writeKubeconfig(join(testCluster().state.dir, `proxied-${p.port}.kubeconfig`)) };
}

type Lease = KubeObject & { spec?: { holderIdentity?: string | null; leaseTransitions?: number } };
const holderOf = async (leaseNs: string) =>
  (await client.get<Lease>(Resources.Lease, leaseNs, 'modelship-operator').catch(() => undefined))?.spec?.holderIdentity ?? undefined;

type Md = ModelDeployment & KubeObject;
const reconciled = (ns: string, name: string, pred: (md: Md) => boolean = () => true, timeoutMs = 30_000) =>
  waitFor(`${ns}/${name} reconciled`, async () => {
    const md = await client.get<Md>(Resources.ModelDeployment, ns, name).catch(() => undefined);
    const ready = md?.status?.conditions?.find((c) => c.type === 'Ready');
    return md && ready?.observedGeneration === md.metadata?.generation && pred(md) ? md : undefined;
  }, timeoutMs);

const logLines = (op: OperatorProcess, message: string) =>
  readFileSync(op.logFile, 'utf8').split('\n').filter((l) => l.includes(`"message":"${message}`));

const receivedAt = (e: AuditEvent) => new Date(e.requestReceivedTimestamp).getTime();

/** Keeps both replicas busy: the spec changes every 500 ms and a new ModelDeployment appears every 3 s. */
function churn(ns: string): { stop: () => Promise<void> } {
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas: 1 + (i % 2) } }).catch(() => undefined);
      if (i % 6 === 0) await client.create(Resources.ModelDeployment, modelDeployment(`churn-${i}`, ns)).catch(() => undefined);
      await sleep(500);
    }
  })();
  return { stop: async () => { running = false; await loop; } };
}

test.serial('a partitioned leader stops writing before its successor starts, and leads again in the same process later', async (t) => {
  const ns = await namespaces.create('fence');
  const leaseNs = await namespaces.create('fence-lease');
  const { proxy: partition, kubeconfig } = await proxy();
  const a = operator({ name: 'fence-a', leaderElect: true, leaseNamespace: leaseNs, kubeconfig, env: { MODELSHIP_WATCH_NAMESPACES: ns } });
  await a.start();
  await waitFor('a leads', async () => (await holderOf(leaseNs)) === a.identity);
  const b = operator({ name: 'fence-b', leaderElect: true, leaseNamespace: leaseNs, env: { MODELSHIP_WATCH_NAMESPACES: ns } });
  await b.start();
  const since = new Date();
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(1)));
  await reconciled(ns, 'm');
  const work = churn(ns);
  await sleep(3_000);

  const partitionedAt = Date.now();
  partition.setMode('blackhole');
  await waitFor('b takes over', async () => (await holderOf(leaseNs)) === b.identity, 40_000, 100);
  const takeoverMs = Date.now() - partitionedAt;
  // Heal while a hung request would still be waiting for its 30 s timeout: a leader that had not
  // fenced itself would now write through fresh connections.
  await sleep(2_000);
  partition.setMode('forward');
  await sleep(20_000);
  await work.stop();

  t.true(a.running, 'the deposed leader is still running');
  t.is(await a.metric('modelship_leader'), 0);
  t.is(await b.metric('modelship_leader'), 1);
  const [steppedDown] = logLines(a, 'stopped leading').map((l) => new Date((JSON.parse(l) as { timestamp: string }).timestamp).getTime());
  t.truthy(steppedDown, 'it knows it stopped leading');
  // Its last renewal started at most one retry period before the partition.
  const steppedDownMs = steppedDown! - partitionedAt;
  t.true(steppedDownMs <= 10_500, `it stepped down ${steppedDownMs} ms after the partition`);

  const writesOf = async (op: OperatorProcess) => (await writesSince(since, op.userAgent!, ns)).filter((e) => e.userAgent === op.userAgent);
  const aWrites = await writesOf(a);
  const bWrites = await writesOf(b);
  t.true(aWrites.length > 0 && bWrites.length > 0, `a wrote ${aWrites.length} times, b ${bWrites.length}`);
  const lastA = Math.max(...aWrites.map(receivedAt));
  const firstB = Math.min(...bWrites.map(receivedAt));
  t.true(lastA < firstB, `a's last write (${new Date(lastA).toISOString()}) comes before b's first (${new Date(firstB).toISOString()})`);
  t.true(lastA < partitionedAt + 10_000, 'and within the renew deadline of the partition');
  t.true(takeoverMs <= 20_000, `b took over ${takeoverMs} ms after the partition`);
  t.log(`a stepped down ${steppedDownMs} ms after the partition; takeover ${takeoverMs} ms after it; a's last write ${lastA - partitionedAt} ms after it; b's first write ${firstB - partitionedAt} ms after it; gap ${firstB - lastA} ms`);

  // b goes gracefully: it releases the lease, and a, still the same process, leads again at once.
  const stoppedAt = Date.now();
  await b.stop('SIGTERM');
  await waitFor('a leads again', async () => (await holderOf(leaseNs)) === a.identity, 20_000, 100);
  const againMs = Date.now() - stoppedAt;
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas: 3 } });
  await reconciled(ns, 'm', (md) => md.status?.replicas === 3);
  t.is(await a.metric('modelship_leader'), 1);
  t.is(logLines(a, 'became leader').length, 2, 'a second term in the same process');
  t.true(againMs < 5_000, `a led again ${againMs} ms after b's SIGTERM`);
  t.log(`a led again ${againMs} ms after b's SIGTERM (lease released)`);
});

test.serial('throttled: the operator keeps to Retry-After, rides out a short brown-out, and a long one costs its term, not its process', async (t) => {
  const retryAfter = 2;
  const ns = await namespaces.create('throttle');
  const leaseNs = await namespaces.create('throttle-lease');
  const { proxy: apiserver, kubeconfig } = await proxy(retryAfter);
  const a = operator({ name: 'throttled', leaderElect: true, leaseNamespace: leaseNs, kubeconfig, env: { MODELSHIP_WATCH_NAMESPACES: ns } });
  await a.start();
  await waitFor('a leads', async () => (await holderOf(leaseNs)) === a.identity);
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(1)));
  await reconciled(ns, 'm');

  // A brown-out shorter than the renew deadline: the term survives.
  apiserver.setMode('throttle');
  await sleep(5_000);
  apiserver.setMode('forward');
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas: 2 } });
  await reconciled(ns, 'm', (md) => md.status?.replicas === 2);
  t.is(logLines(a, 'stopped leading').length, 0, 'a 5 s brown-out did not end the term');
  t.is(logLines(a, 'became leader').length, 1);

  // A sustained one: the lease is lost after the renew deadline, the process stays.
  const work = churn(ns);
  const from = Date.now();
  apiserver.setMode('throttle');
  await sleep(30_000);
  const to = Date.now();
  apiserver.setMode('forward');
  await work.stop();
  t.true(a.running, 'still running');
  t.is(a.exitCode, null);
  t.true(logLines(a, 'stopped leading').length >= 1, 'it stepped down');

  const seen = apiserver.requests.filter((r) => r.at >= from + 1_000 && r.at <= to);
  const rate = seen.length / ((to - from - 1_000) / 1000);
  // Two clients (the reconcilers' and the lease's) at one request per Retry-After each.
  t.true(rate <= 2 / retryAfter + 0.25, `${seen.length} requests in ${Math.round((to - from) / 1000)} s: ${rate.toFixed(2)}/s`);
  for (const agent of new Set(seen.map((r) => r.userAgent))) {
    t.true(agent.startsWith(userAgentPrefix), agent);
    const times = seen.filter((r) => r.userAgent === agent).map((r) => r.at);
    const gaps = times.slice(1).map((at, i) => at - times[i]!);
    t.true(gaps.every((g) => g >= retryAfter * 1000 - 100), `${agent}: requests ${gaps.join(', ')} ms apart`);
  }
  t.log(`under 429 with Retry-After ${retryAfter} s: ${rate.toFixed(2)} requests/s from ${new Set(seen.map((r) => r.userAgent)).size} clients`);

  await waitFor('a leads again', async () => (await a.metric('modelship_leader')) === 1, 30_000);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas: 3 } });
  await reconciled(ns, 'm', (md) => md.status?.replicas === 3);
  t.true(logLines(a, 'became leader').length >= 2, 'a new term in the same process');
  t.true(a.running);
});
