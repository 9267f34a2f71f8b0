// The operator survives its own death, its replicas, and the apiserver's: nothing is duplicated, exactly
// one replica acts, a standby takes over, and changes made during an outage are reconciled.
import test from 'ava';
import { execFile } from 'node:child_process';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { writesSince } from '../support/audit.js';
import { modelDeployment, withReplicas } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const operators: OperatorProcess[] = [];

test.before(async () => {
  await installCrd();
});

// Every test starts the operators it needs; none may linger into the next test and act there.
test.afterEach.always(async () => {
  await Promise.all(operators.splice(0).map((o) => o.stop('SIGKILL')));
});

test.after.always(async () => {
  await namespaces.deleteAll();
});

const namespace = (prefix: string) => namespaces.create(prefix);

function operator(opts: ConstructorParameters<typeof OperatorProcess>[0]) {
  const op = new OperatorProcess(opts);
  operators.push(op);
  return op;
}

type Md = ModelDeployment & KubeObject;
const readyAt = async (ns: string, name: string, pred: (md: Md) => boolean = () => true, timeoutMs = 30_000) =>
  waitFor(`${ns}/${name} ready`, async () => {
    const md = await client.get<Md>(Resources.ModelDeployment, ns, name);
    const ready = md.status?.conditions?.find((c) => c.type === 'Ready');
    return ready?.status === 'True' && ready.observedGeneration === md.metadata?.generation && pred(md) ? md : undefined;
  }, timeoutMs);

const deploymentsOf = async (ns: string, name: string) =>
  (await client.list<KubeObject>(Resources.Deployment, { namespace: ns, labelSelector: `app.kubernetes.io/instance=${name}` })).items;

test.serial('an operator killed mid-flight and restarted creates no duplicates and picks up where it was', async (t) => {
  const ns = await namespace('restart');
  const op = operator({ name: 'restart-1' });
  await op.start();
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(3)));
  const md = await readyAt(ns, 'm');
  const [dep] = await deploymentsOf(ns, 'm');
  await op.stop('SIGKILL');

  // Changed while no operator runs.
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas: 2 } });
  const op2 = operator({ name: 'restart-2' });
  await op2.start();
  const after = await readyAt(ns, 'm', (m) => m.status?.replicas === 2);
  const deps = await deploymentsOf(ns, 'm');
  t.is(deps.length, 1, 'no duplicate Deployment');
  t.is(deps[0]!.metadata?.uid, dep!.metadata?.uid, 'the same Deployment, not a recreated one');
  t.is((deps[0] as any).spec.replicas, 2);
  t.is(after.status?.history?.length, 1, 'no duplicate history entry');
  t.is(after.status?.stableRevision?.since, md.status?.stableRevision?.since);
  await op2.stop();
});

test.serial('with two replicas exactly one acts, and the other takes over within 20 s of the leader being killed', async (t) => {
  const ns = await namespace('leader');
  const leaseNs = await namespace('lease');
  const a = operator({ name: 'leader-a', leaderElect: true, leaseNamespace: leaseNs });
  const b = operator({ name: 'leader-b', leaderElect: true, leaseNamespace: leaseNs });
  await a.start();
  await b.start();
  const leaderOf = async () => {
    const lease = await client.get<KubeObject & { spec?: { holderIdentity?: string } }>(Resources.Lease, leaseNs, 'modelship-operator');
    return lease.spec?.holderIdentity;
  };
  const holder = await waitFor('a leader', leaderOf);
  await waitFor('leader gauge', async () => (await a.metric('modelship_leader')) + (await b.metric('modelship_leader')) === 1);
  const [leader, standby] = (await a.metric('modelship_leader')) === 1 ? [a, b] : [b, a];
  t.true(holder.endsWith(`_${leader.pid}`), `the lease names the replica that says it leads (${holder})`);

  const since = new Date();
  await client.create(Resources.ModelDeployment, modelDeployment('one', ns));
  await readyAt(ns, 'one');
  const writers = new Set((await writesSince(since, 'modelship-operator', ns)).map((w) => w.userAgent));
  t.is(writers.size, 1, `exactly one replica wrote: ${[...writers].join(', ')}`);
  t.is(await standby.metric('modelship_reconcile_total'), 0, 'the standby reconciled nothing');

  const killedAt = Date.now();
  await leader.stop('SIGKILL');
  await client.create(Resources.ModelDeployment, modelDeployment('two', ns));
  await readyAt(ns, 'two', () => true, 30_000);
  const takeover = Date.now() - killedAt;
  t.true(takeover <= 20_000, `the standby took over in ${takeover} ms`);
  t.not(await leaderOf(), holder);
  t.is(await standby.metric('modelship_leader'), 1);
  t.log(`takeover after the leader was killed: ${takeover} ms`);
});

test.serial('a change made while the apiserver restarts is reconciled once it is back', async (t) => {
  const ns = await namespace('apiserver');
  const op = operator({ name: 'apiserver-restart' });
  await op.start();
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns, withReplicas(1)));
  await readyAt(ns, 'm');

  const cluster = testCluster();
  await cluster.component('kube-apiserver', 'stop');
  // The operator's watches break and back off while the apiserver is down.
  await new Promise((r) => setTimeout(r, 3_000));
  await cluster.component('kube-apiserver', 'start');
  // Made at once, before the operator's watches have reconnected.
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas: 3 } });
  const md = await readyAt(ns, 'm', (m) => m.status?.replicas === 3 && m.status?.readyReplicas === 3, 90_000);
  t.is(md.status?.readyReplicas, 3);
  t.true(op.running, 'the operator rode out the outage');
  t.true(await op.metric('modelship_watch_errors_total') > 0, 'it saw the watches break');
});

test.serial('SIGTERM: the leader finishes, releases its lease, and the standby takes over at once', async (t) => {
  const ns = await namespace('sigterm');
  const leaseNs = await namespace('lease-term');
  const a = operator({ name: 'term-a', leaderElect: true, leaseNamespace: leaseNs });
  const b = operator({ name: 'term-b', leaderElect: true, leaseNamespace: leaseNs });
  await a.start();
  await b.start();
  await waitFor('one leader', async () => (await a.metric('modelship_leader')) + (await b.metric('modelship_leader')) === 1);
  const [leader, standby] = (await a.metric('modelship_leader')) === 1 ? [a, b] : [b, a];
  const stoppedAt = Date.now();
  await leader.stop('SIGTERM');
  t.is(leader.exitCode, 0, 'a clean exit');
  await client.create(Resources.ModelDeployment, modelDeployment('after-term', ns));
  await readyAt(ns, 'after-term');
  const takeover = Date.now() - stoppedAt;
  t.true(takeover < 10_000, `the released lease was taken in ${takeover} ms, not after its 15 s expiry`);
  t.is(await standby.metric('modelship_leader'), 1);
});

test.serial('kubectl wait is not fooled by a Ready condition from an older generation', async (t) => {
  const ns = await namespace('stale');
  const op = operator({ name: 'stale' });
  await op.start();
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns));
  await readyAt(ns, 'm');
  await op.stop();
  // The spec moves on while nobody reconciles: Ready=True now describes generation 1, not 2.
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: { version: '2' } } });
  const kubectl = `${process.cwd()}/.bin/kubectl`;
  const env = { ...process.env, KUBECONFIG: testCluster().state.kubeconfig };
  const stale = await run(kubectl, ['wait', '--for=condition=Ready', 'md/m', '-n', ns, '--timeout=3s'], env);
  t.not(stale.code, 0, `kubectl wait must not succeed on a stale condition: ${stale.output}`);
  const op2 = operator({ name: 'stale-2' });
  await op2.start();
  const fresh = await run(kubectl, ['wait', '--for=condition=Ready', 'md/m', '-n', ns, '--timeout=60s'], env);
  t.is(fresh.code, 0, fresh.output);
});

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}
