// The chart's RBAC is exactly what the operator uses. The operator runs on a token of a ServiceAccount
// bound to the chart's own rules (helm template, cluster-wide), through what makes it use every kind of
// request it has: children created, changed and deleted under both routers and an HPA, a canary promoted
// and one aborted, operations bound and removed, Events, leader election, and a reconcile that finds its
// cache behind its own last status write. The apiserver audits every request of the ServiceAccounts in
// modelship-rbac (the audit policy in test/cluster/control-plane.ts); from that record, no request may
// have been refused, and every verb the rules grant must have been used.
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import type { ModelDeployment } from '../../operator/api/generated.js';
import { ApiError, isNotFound, KubeClient, userAgentPrefix, type KubeObject, type ResourceType } from '../../operator/runtime/kube.js';
import { loadClusterAccess } from '../../operator/runtime/kubeconfig.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { requestsBy, type AuditEvent } from '../support/audit.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd, installGatewayApi, installInferencePoolCrd, installKedaCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

// Fixed: the audit policy logs the reads of this namespace's ServiceAccounts, and of no one else's.
const rbacNamespace = 'modelship-rbac';
const root = fileURLToPath(new URL('../../', import.meta.url));
const client = adminClient();
const namespaces = new TestNamespaces();

type Md = ModelDeployment & KubeObject;
interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }
type RbacObject = KubeObject & { rules?: Rule[]; subjects?: unknown[]; roleRef?: unknown };

const types: Record<string, ResourceType> = {
  Namespace: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  ServiceAccount: { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  ClusterRole: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  ClusterRoleBinding: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  Role: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', kind: 'Role', namespaced: true },
  RoleBinding: { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true },
};

function helmTemplate(release: string): Promise<KubeObject[]> {
  return new Promise((resolve, reject) => {
    execFile(join(root, '.bin/helm'), ['template', release, join(root, 'charts/modelship'), '-n', rbacNamespace, '--kube-version', '1.36.0'],
      { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve((yaml.loadAll(stdout) as KubeObject[]).filter(Boolean))));
  });
}

/** The namespace, new: a Lease left by an earlier run would spare the operator its create. */
async function freshNamespace(name: string): Promise<void> {
  await client.delete(types.Namespace!, undefined, name).catch((err: unknown) => { if (!isNotFound(err)) throw err; });
  await waitFor(`namespace ${name} gone`, async () => client.get(types.Namespace!, undefined, name).then(() => false, (err: unknown) => isNotFound(err)), 120_000, 500);
  await client.create(types.Namespace!, { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { 'modelship.io/test': 'true' } } });
}

/** A kubeconfig for a ServiceAccount, with a token from the TokenRequest API, reaching the apiserver at `server`. */
async function serviceAccountKubeconfig(name: string, server: string): Promise<string> {
  const review = await client.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${rbacNamespace}/serviceaccounts/${name}/token`, {
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  const admin = yaml.load(readFileSync(testCluster().state.kubeconfig, 'utf8')) as any;
  const cluster = { ...admin.clusters[0], cluster: { ...admin.clusters[0].cluster, server } };
  const config = { ...admin, clusters: [cluster], users: [{ name: 'sa', user: { token: review.status.token } }], contexts: [{ name: 'sa', context: { cluster: cluster.name, user: 'sa' } }], 'current-context': 'sa' };
  const path = join(testCluster().state.dir, `${rbacNamespace}-${name}.kubeconfig`);
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  return path;
}

/** Whether the apiserver's authorizer lets the ServiceAccount do this (asked as the admin, so the ServiceAccount's own record stays clean). */
async function allowed(serviceAccount: string, verb: string, group: string, resource: string, namespace?: string): Promise<boolean> {
  const review = await client.request<{ status: { allowed: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    body: {
      apiVersion: 'authorization.k8s.io/v1', kind: 'SubjectAccessReview',
      spec: {
        user: `system:serviceaccount:${rbacNamespace}:${serviceAccount}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${rbacNamespace}`, 'system:authenticated'],
        resourceAttributes: { verb, group, resource, ...(namespace ? { namespace } : {}) },
      },
    },
  });
  return review.status.allowed;
}

/**
 * An HTTPS proxy in front of the apiserver that can hold back the stream of the ModelDeployment watch
 * and nothing else: every other request, the operator's writes and its lease renewals included, passes
 * at once. It serves with the apiserver's own certificate and passes the bearer token through, so the
 * operator cannot tell it from the apiserver. Held chunks are delivered in order on release.
 */
class WatchHoldingProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private holding = false;
  private readonly held: (() => void)[] = [];
  port = 0;

  constructor() {
    const pki = join(testCluster().state.dir, 'pki');
    const target = new URL(testCluster().state.server);
    const agent = new Agent({ keepAlive: true, ca: readFileSync(join(pki, 'ca.crt')) });
    this.server = createServer({ cert: readFileSync(join(pki, 'apiserver.crt')), key: readFileSync(join(pki, 'apiserver.key')) }, (req, res) => {
      const url = new URL(req.url ?? '/', target);
      const holdable = url.pathname === '/apis/modelship.io/v1alpha1/modeldeployments' && url.searchParams.get('watch') === 'true';
      const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host }, agent }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        if (!holdable) {
          answer.pipe(res);
          return;
        }
        answer.on('data', (chunk: Buffer) => this.pass(() => res.write(chunk)));
        answer.on('end', () => this.pass(() => res.end()));
      });
      upstream.on('error', () => res.destroy());
      res.on('close', () => { if (!res.writableFinished) upstream.destroy(); });
      req.pipe(upstream);
    });
    this.server.on('secureConnection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  private pass(write: () => void): void {
    if (this.holding || this.held.length) this.held.push(write);
    else write();
  }

  hold(): void {
    this.holding = true;
  }

  release(): void {
    this.holding = false;
    for (const write of this.held.splice(0)) write();
  }

  async close(): Promise<void> {
    this.release();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** What one request was, as RBAC sees it. */
const permission = (group: string, resource: string, verb: string) => `${group || 'core'} ${resource} ${verb}`;

function requestPermissions(e: AuditEvent): string[] {
  const ref = e.objectRef;
  if (!ref?.resource) return [];
  const resource = ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource;
  const used = [permission(ref.apiGroup ?? '', resource, e.verb)];
  // A server-side apply that creates its object is authorized as create as well as patch.
  if (e.verb === 'patch' && e.responseStatus?.code === 201) used.push(permission(ref.apiGroup ?? '', resource, 'create'));
  return used;
}

const get = (ns: string) => client.get<Md>(Resources.ModelDeployment, ns, 'm');
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);
const waitMd = (what: string, ns: string, ok: (m: Md) => boolean, timeoutMs = 60_000) =>
  waitFor(what, async () => { const m = await get(ns); return ok(m) ? m : undefined; }, timeoutMs, 200);
const exists = (type: ResourceType, ns: string, name: string) => client.get(type, ns, name).then(() => true, (err: unknown) => { if (isNotFound(err)) return false; throw err; });
const annotate = (ns: string, key: string, value: string) => client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { [key]: value } } });

let proxy: WatchHoldingProxy | undefined;
const cleanups: (() => Promise<unknown>)[] = [];

test.before(async () => {
  await installCrd();
  await installGatewayApi();
  await installInferencePoolCrd();
  await installKedaCrd();
  await freshNamespace(rbacNamespace);
  proxy = await new WatchHoldingProxy().start();
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await proxy?.close();
  await namespaces.deleteAll();
  await client.delete(types.Namespace!, undefined, rbacNamespace).catch(() => undefined);
});

test('the chart\'s RBAC is exactly what the operator uses: nothing it asks for is refused, and every verb granted is used', async (t) => {
  t.timeout(480_000);
  const since = new Date();
  // Cluster-scoped RBAC outlives the namespace on a reused cluster: a name per run.
  const release = `rbac-${randomBytes(3).toString('hex')}`;
  const rendered = (await helmTemplate(release)).filter((o) => o.kind! in types) as RbacObject[];
  // The operator's rules, the nodes' addresses (cluster-scoped, so a role of their own) and the Lease.
  t.deepEqual(rendered.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRole', 'ClusterRoleBinding', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ServiceAccount']);
  for (const obj of rendered) {
    const type = types[obj.kind!]!;
    await client.create(type, obj);
    if (!type.namespaced) cleanups.push(() => client.delete(type, undefined, obj.metadata!.name!));
  }
  const username = `system:serviceaccount:${rbacNamespace}:${release}`;
  const work = await namespaces.create('rbac-work');
  await waitFor('RBAC in effect', () => allowed(release, 'patch', 'apps', 'deployments', work));

  // As the chart runs it: watching Nodes for their addresses is one of the rights under test.
  const operator = new OperatorProcess({ name: 'rbac', leaderElect: true, leaseNamespace: rbacNamespace, kubeconfig: await serviceAccountKubeconfig(release, proxy!.url), env: { MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES: 'true' } });
  cleanups.push(() => operator.stop('SIGKILL'));
  await operator.start();

  // A refusal shows here first, whatever wait it made time out. Only the authorizer's: a write into a
  // namespace being deleted (an earlier test's, which this cluster-wide operator sees too) is a 403 as
  // well. The create an apply implies is authorized inside the request and has no annotation of its own.
  const denials = () => [...new Set(requestsBy(username, since)
    .filter((e) => e.responseStatus?.code === 403 && (e.annotations?.['authorization.k8s.io/decision'] === 'forbid' || / cannot [a-z]+ resource /.test(e.responseStatus.message ?? '')))
    .map((e) => `${e.verb} ${e.requestURI}: ${e.responseStatus?.message}`))];
  try {
    // Served under the InferencePool router (an HTTPRoute and InferencePools) with an HPA: every child
    // is looked up (get), then applied (create).
    await client.create(Resources.ModelDeployment, modelDeployment('m', work, withReplicas(2), withSpec({
      autoscaling: { minReplicas: 2, maxReplicas: 3, scaler: 'HPA', metrics: [{ type: 'CPU', targetAverageUtilization: 70 }] },
      traffic: { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }] } },
      rollout: { steps: [{ setWeight: 50 }, { pause: {} }], scaleDownDelaySeconds: 0 },
    })));
    const v1 = (await waitMd('v1 serving', work, (m) => cond(m, 'Ready')?.status === 'True' && !!m.status?.stableRevision)).status!.stableRevision!.hash;
    t.true(await exists(Resources.HorizontalPodAutoscaler, work, 'm') && await exists(Resources.HTTPRoute, work, 'm') && await exists(Resources.InferencePool, work, 'm-stable'), 'the HPA, the HTTPRoute and the stable InferencePool exist');

    // A canary promoted at its gate: the promote is bound and removed (patch); the retired revision's
    // Deployment and the canary Service are deleted.
    const version = (n: number) => client.mergePatch(Resources.ModelDeployment, work, 'm', { spec: { model: { version: String(n), uri: `https://models.example.com/iris/v${n}/model.joblib` } } });
    await version(2);
    const v2 = (await waitMd('v2 at its gate', work, (m) => m.status?.rollout?.pauseReason === 'ManualGate')).status!.canaryRevision!.hash;
    t.true(await exists(Resources.Service, work, 'm-canary') && await exists(Resources.InferencePool, work, 'm-canary'));
    // The same wrong promote twice: one Event, then a series on it (patch).
    for (let i = 0; i < 2; i++) {
      await annotate(work, 'modelship.io/promote', v1);
      await waitMd('the wrong promote answered', work, (m) => !m.metadata?.annotations?.['modelship.io/promote']);
    }
    await waitFor('the repeat counted on the first Event', async () => {
      const ignored = (await client.list<KubeObject & { reason?: string; series?: { count?: number } }>(Resources.Event, { namespace: work })).items.filter((e) => e.reason === 'OperationIgnored');
      return ignored.length === 1 && ignored[0]!.series?.count === 2;
    });
    await annotate(work, 'modelship.io/promote', v2);
    await waitMd('v2 promoted', work, (m) => m.status?.stableRevision?.hash === v2 && !m.status?.canaryRevision && !m.metadata?.annotations?.['modelship.io/promote']);
    await waitFor('v1, the canary Service and the canary pool deleted', async () => {
      const deployments = await client.list<KubeObject>(Resources.Deployment, { namespace: work });
      return !deployments.items.some((d) => d.metadata?.labels?.['modelship.io/revision'] === v1) && !await exists(Resources.Service, work, 'm-canary')
        && !await exists(Resources.InferencePool, work, 'm-canary');
    });

    // A canary aborted at its gate.
    await version(3);
    const v3 = (await waitMd('v3 at its gate', work, (m) => m.status?.rollout?.pauseReason === 'ManualGate' && m.status?.canaryRevision?.hash !== v2)).status!.canaryRevision!.hash;
    await annotate(work, 'modelship.io/abort', v3);
    await waitMd('v3 aborted', work, (m) => m.status?.rejectedRevision?.hash === v3 && !m.status?.canaryRevision && !m.metadata?.annotations?.['modelship.io/abort']);

    // The fence: the operator writes status (a stable pod lost readiness) while its ModelDeployment watch
    // is held back, so its cache stays behind its own write past the expectation's 10 s; a child to
    // repair (the stable Service, deleted) then makes it read the object from the apiserver before writing.
    const fenceFrom = new Date();
    const before = await get(work);
    const [pod] = (await client.list<KubeObject>(Resources.Pod, { namespace: work, labelSelector: `modelship.io/revision=${v2}` })).items;
    proxy!.hold();
    try {
      await client.mergePatch(Resources.Pod, work, pod!.metadata!.name!, { metadata: { annotations: { 'kwok.modelship.io/ready': 'false' } } });
      await waitMd('a status written for the lost pod', work, (m) => m.metadata?.resourceVersion !== before.metadata?.resourceVersion && (m.status?.readyReplicas ?? 0) < (before.status?.readyReplicas ?? 0));
      await client.delete(Resources.Service, work, 'm-stable');
      await waitFor('the ModelDeployment read past the stale cache', async () => {
        await sleep(1_000);
        return requestsBy(username, fenceFrom).some((e) => e.verb === 'get' && e.objectRef?.resource === 'modeldeployments' && !e.objectRef.subresource);
      }, 60_000, 0);
    } finally {
      proxy!.release();
    }
    await client.mergePatch(Resources.Pod, work, pod!.metadata!.name!, { metadata: { annotations: { 'kwok.modelship.io/ready': 'true' } } });
    await waitFor('the stable Service repaired', () => exists(Resources.Service, work, 'm-stable'));
    await waitMd('ready again', work, (m) => cond(m, 'Ready')?.status === 'True' && m.status?.readyReplicas === before.status?.readyReplicas);

    // The owner-reference check, where the apiserver makes it (OwnerReferencesPermissionEnforcement): an
    // object owned by a ModelDeployment with blockOwnerDeletion needs update on its finalizers. Asked
    // with the operator's token of a second ServiceAccount bound to the same rules less that one.
    const md = await get(work);
    const owned = {
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'owned-probe', namespace: work, ownerReferences: [{ apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'm', uid: md.metadata!.uid!, controller: true, blockOwnerDeletion: true }] },
      spec: { ports: [{ port: 80 }] },
    };
    const lessFinalizers = `${release}-nf`;
    const clusterRole = rendered.find((o) => o.kind === 'ClusterRole' && o.metadata?.name === release)!;
    await client.create(types.ServiceAccount!, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: lessFinalizers, namespace: rbacNamespace } });
    await client.create(types.ClusterRole!, { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: lessFinalizers }, rules: clusterRole.rules!.filter((r) => !r.resources.includes('modeldeployments/finalizers')) });
    cleanups.push(() => client.delete(types.ClusterRole!, undefined, lessFinalizers));
    await client.create(types.ClusterRoleBinding!, {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: lessFinalizers },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: lessFinalizers }, subjects: [{ kind: 'ServiceAccount', name: lessFinalizers, namespace: rbacNamespace }],
    });
    cleanups.push(() => client.delete(types.ClusterRoleBinding!, undefined, lessFinalizers));
    await waitFor('RBAC in effect', () => allowed(lessFinalizers, 'patch', '', 'services', work));
    const as = async (serviceAccount: string) => new KubeClient(loadClusterAccess({ kubeconfig: await serviceAccountKubeconfig(serviceAccount, testCluster().state.server) }), undefined, 'modelship-tests');
    await (await as(release)).apply(Resources.Service, owned, 'modelship', { dryRun: true });
    const refused = await (await as(lessFinalizers)).apply(Resources.Service, owned, 'modelship', { dryRun: true }).then(() => undefined, (err: unknown) => err);
    // The test apiserver enables the plugin (test/cluster/control-plane.ts): without the grant, the
    // operator could create no child.
    t.true(refused instanceof ApiError && refused.code === 403, `refused without update on modeldeployments/finalizers: ${String(refused)}`);
    t.regex((refused as Error).message, /blockOwnerDeletion/);

    // KEDA as the scaler: the HPA goes first, then the ScaledObject is made.
    await client.mergePatch(Resources.ModelDeployment, work, 'm', { spec: { autoscaling: { scaler: 'KEDA' } } });
    await waitFor('the HPA replaced by a ScaledObject', async () => !await exists(Resources.HorizontalPodAutoscaler, work, 'm') && await exists(Resources.ScaledObject, work, 'm'));

    // Children the spec no longer wants: the ScaledObject, and the HTTPRoute and pools once the router is ReplicaRatio.
    const changed = await client.mergePatch<Md>(Resources.ModelDeployment, work, 'm', { spec: { autoscaling: null, traffic: { router: 'ReplicaRatio', gatewayAPI: null } } });
    await waitMd('the change observed', work, (m) => (m.status?.observedGeneration ?? 0) >= changed.metadata!.generation!);
    await waitFor('the ScaledObject, the HTTPRoute and the pool deleted', async () => !await exists(Resources.ScaledObject, work, 'm') && !await exists(Resources.HTTPRoute, work, 'm')
      && !await exists(Resources.InferencePool, work, 'm-stable'));

    await client.delete(Resources.ModelDeployment, work, 'm');
    await waitFor('the ModelDeployment gone', async () => get(work).then(() => false, (err: unknown) => isNotFound(err)));
  } finally {
    // SIGTERM: the leader hands its Lease back (update) on the way out.
    await operator.stop();
    await sleep(2_500);
    t.deepEqual(denials(), [], 'the apiserver refused the operator nothing');
  }

  // The operator's own requests: the probe above went out on the same token, from the test.
  const requests = requestsBy(username, since).filter((e) => e.userAgent?.startsWith(userAgentPrefix));
  const used = new Set(requests.flatMap(requestPermissions));
  const granted = rendered.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role').flatMap((o) => o.rules!)
    .flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => ({ key: permission(g, res, v), names: r.resourceNames })))));
  const unused = granted.map((g) => g.key).filter((k) => !used.has(k));
  // Authorized inside admission for each child created, never a request of its own (see rbac.yaml).
  t.deepEqual(unused, [permission('modelship.io', 'modeldeployments/finalizers', 'update')], 'every verb granted was used');
  for (const { key, names } of granted.filter((g) => g.names)) {
    const outside = requests.filter((e) => requestPermissions(e).includes(key) && e.objectRef?.name && !names!.includes(e.objectRef.name));
    t.deepEqual(outside, [], `${key} only on ${names!.join(', ')}`);
  }
  const counts = new Map<string, number>();
  for (const e of requests) for (const p of requestPermissions(e)) counts.set(p, (counts.get(p) ?? 0) + 1);
  t.log(`${requests.length} requests by ${username}:`, Object.fromEntries([...counts].sort()));
  const nonResource = [...new Set(requests.filter((e) => !e.objectRef?.resource).map((e) => `${e.verb} ${e.requestURI?.split('?')[0]} ${e.responseStatus?.code}`))];
  t.log('discovery, which system:discovery grants every authenticated user:', nonResource);
});
