// The Helm chart: it lints and renders, its values schema accepts good values and refuses bad ones,
// it installs, and its RBAC is exactly enough: the operator, running on the chart's ServiceAccount
// token, serves and rolls out a model; it cannot read Secrets; restricted to watchNamespaces it acts
// nowhere else.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import yaml from 'js-yaml';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const chart = join(root, 'charts/modelship');
const helmBin = join(root, '.bin/helm');
const client = adminClient();
const namespaces = new TestNamespaces();

function helm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(helmBin, [...args, '--kubeconfig', testCluster().state.kubeconfig], { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const render = async (...sets: string[]) => {
  const out = await helm('template', 'ms', chart, '-n', 'modelship-system', '--kube-version', '1.36.0', ...sets.flatMap((s) => ['--set', s]));
  if (out.code !== 0) throw new Error(out.stderr);
  return (yaml.loadAll(out.stdout) as KubeObject[]).filter(Boolean);
};

test.before(async () => {
  await installCrd();
});

test.after.always(async () => {
  await namespaces.deleteAll();
});

test('helm lint passes, and the chart carries the same CRD as crds/', async (t) => {
  const lint = await helm('lint', chart);
  t.is(lint.code, 0, lint.stdout + lint.stderr);
  t.is(readFileSync(join(chart, 'crds/modeldeployments.modelship.io.yaml'), 'utf8'), readFileSync(join(root, 'crds/modeldeployments.modelship.io.yaml'), 'utf8'));
});

test('the default render: 2 replicas with leader election, probes, restricted and read-only, spread; least-privilege RBAC', async (t) => {
  const objects = await render();
  const deployment = objects.find((o) => o.kind === 'Deployment') as any;
  t.is(deployment.spec.replicas, 2);
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  t.like(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
  t.like(container.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  t.is(container.readinessProbe.httpGet.path, '/readyz');
  t.is(container.livenessProbe.httpGet.path, '/healthz');
  t.truthy(pod.topologySpreadConstraints);
  t.true(container.env.some((e: any) => e.name === 'MODELSHIP_LEADER_ELECT' && e.value === 'true'));
  t.truthy(objects.find((o) => o.kind === 'PodDisruptionBudget'));
  t.truthy(objects.find((o) => o.kind === 'Service' && o.metadata?.name === 'ms-metrics'));
  t.falsy(objects.find((o) => o.kind === 'CustomResourceDefinition'), 'the CRD comes from crds/ unless templated');
  for (const role of objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role') as any[]) {
    for (const rule of role.rules) {
      t.false(rule.resources.includes('secrets'), `${role.metadata.name} reads no Secrets`);
      t.false([...rule.resources, ...rule.verbs, ...rule.apiGroups].includes('*'), `${role.metadata.name} has no wildcards`);
      t.false(rule.verbs.some((v: string) => ['escalate', 'bind', 'impersonate'].includes(v)));
    }
  }
});

test('edited values: watchNamespaces gives a Role per namespace and no ClusterRole; the CRD can be templated and kept', async (t) => {
  const objects = await render('watchNamespaces={team-a,team-b}', 'crds.templated=true', 'replicaCount=3');
  t.falsy(objects.find((o) => o.kind === 'ClusterRole'));
  t.deepEqual(objects.filter((o) => o.kind === 'Role' && o.metadata?.name === 'ms').map((o) => o.metadata?.namespace).sort(), ['team-a', 'team-b']);
  const crd = objects.find((o) => o.kind === 'CustomResourceDefinition');
  t.is(crd?.metadata?.annotations?.['helm.sh/resource-policy'], 'keep');
  t.is((objects.find((o) => o.kind === 'Deployment') as any).spec.replicas, 3);
});

test('optional monitoring: a ServiceMonitor, alert rules that promtool accepts, and a NetworkPolicy', async (t) => {
  const objects = await render('metrics.serviceMonitor.enabled=true', 'metrics.prometheusRule.enabled=true', 'networkPolicy.enabled=true');
  t.truthy(objects.find((o) => o.kind === 'ServiceMonitor'));
  t.truthy(objects.find((o) => o.kind === 'NetworkPolicy'));
  const rule = objects.find((o) => o.kind === 'PrometheusRule') as any;
  t.deepEqual(rule.spec.groups[0].rules.map((r: any) => r.alert), ['ModelshipRollback', 'ModelshipRolloutStuck', 'ModelshipReconcileErrors', 'ModelshipOperatorDown']);
  const file = join(testCluster().state.dir, 'modelship-rules.yaml');
  writeFileSync(file, yaml.dump({ groups: rule.spec.groups }));
  const check = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile('promtool', ['check', 'rules', file], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
  });
  t.is(check.code, 0, check.out);
  t.regex(check.out, /SUCCESS: 4 rules found/);
  const defaults = await render();
  t.falsy(defaults.find((o) => ['ServiceMonitor', 'PrometheusRule', 'NetworkPolicy'].includes(o.kind!)), 'all off by default');
});

test('values.schema.json accepts good values and refuses bad ones', async (t) => {
  const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as object;
  const validate = new Ajv({ strict: false }).compile(schema);
  t.true(validate(yaml.load(readFileSync(join(chart, 'values.yaml'), 'utf8'))), JSON.stringify(validate.errors));
  t.true(validate({ replicaCount: 3, watchNamespaces: ['team-a'], logLevel: 'debug' }));
  for (const bad of [{ replicaCount: 'two' }, { replicaCount: 0 }, { watchNamespaces: ['Not_A_Namespace'] }, { logLevel: 'loud' }, { typo: true }, { metrics: { port: 70000 } }]) {
    t.false(validate(bad), `accepted ${JSON.stringify(bad)}`);
  }
  const refused = await helm('template', 'ms', chart, '--kube-version', '1.36.0', '--set', 'replicaCount=two');
  t.not(refused.code, 0, 'helm itself refuses values the schema rejects');
});

/** A kubeconfig for a ServiceAccount, with a token from the TokenRequest API. */
async function serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
  const review = await client.request<{ status: { token: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  const admin = yaml.load(readFileSync(testCluster().state.kubeconfig, 'utf8')) as any;
  const config = { ...admin, users: [{ name: 'sa', user: { token: review.status.token } }], contexts: [{ name: 'sa', context: { cluster: admin.clusters[0].name, user: 'sa' } }], 'current-context': 'sa' };
  const path = join(testCluster().state.dir, `${namespace}-${name}.kubeconfig`);
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  return path;
}

async function canI(kubeconfig: string, verb: string, resource: string, namespace: string): Promise<boolean> {
  const group = resource === 'deployments' ? 'apps' : '';
  const review = await new OperatorlessClient(kubeconfig).request<{ status: { allowed: boolean } }>('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
    body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { verb, group, resource, namespace } } },
  });
  return review.status.allowed;
}

class OperatorlessClient {
  constructor(private readonly kubeconfig: string) {}
  async request<T>(method: string, path: string, opts: { body?: unknown } = {}): Promise<T> {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const { KubeClient } = await import('../../operator/runtime/kube.js');
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfig);
    return new KubeClient(kc, undefined, 'modelship-tests').request<T>(method, path, opts);
  }
}

type Md = ModelDeployment & KubeObject;

/** Lines where the apiserver's authorizer refused the ServiceAccount (other 403s, such as writes into a terminating namespace, are not RBAC). */
function rbacDenials(logFile: string): string[] {
  return readFileSync(logFile, 'utf8').split('\n').filter((l) => /serviceaccount:[^ ]+\\?" cannot /.test(l) || /User \\?"system:serviceaccount/.test(l));
}

test.serial('installed: the operator on the chart\'s ServiceAccount serves and rolls out, and cannot read Secrets', async (t) => {
  const system = await namespaces.create('ms-system');
  const work = await namespaces.create('ms-work');
  // A release name per run: cluster-scoped RBAC outlives namespaces on a reused cluster.
  const release = `ms-${system.split('-').pop()}`;
  const install = await helm('install', release, chart, '-n', system, '--set', 'image.repository=example.invalid/modelship', '--wait=false');
  t.is(install.code, 0, install.stderr);
  t.regex(install.stdout, /Modelship .* is installed/);
  t.teardown(async () => { await helm('uninstall', release, '-n', system); });
  await waitFor('operator Deployment', async () => client.get(Resources.Deployment, system, release));
  const kubeconfig = await serviceAccountKubeconfig(system, release);
  // The apiserver's RBAC cache takes a moment to see the new bindings.
  await waitFor('RBAC in effect', () => canI(kubeconfig, 'patch', 'deployments', work));
  t.false(await canI(kubeconfig, 'get', 'secrets', work), 'no Secrets read');
  t.false(await canI(kubeconfig, 'list', 'secrets', system));

  const operator = new OperatorProcess({ name: 'chart-sa', leaderElect: true, leaseNamespace: system, env: { KUBECONFIG: kubeconfig } });
  await operator.start();
  try {
    await client.create(Resources.ModelDeployment, modelDeployment('m', work, withReplicas(2), withSpec({ rollout: { steps: [{ setWeight: 50 }, { setWeight: 100 }] } })));
    await waitFor('v1 serving', async () => (await client.get<Md>(Resources.ModelDeployment, work, 'm')).status?.stableRevision);
    await client.mergePatch(Resources.ModelDeployment, work, 'm', { spec: { model: { version: '2' } } });
    const promoted = await waitFor('v2 promoted', async () => {
      const m = await client.get<Md>(Resources.ModelDeployment, work, 'm');
      return m.status?.stableRevision?.modelVersion === '2' ? m : undefined;
    }, 60_000, 250);
    t.deepEqual(promoted.status?.history?.slice(0, 2).map((h) => h.outcome), ['Promoted', 'Promoted']);
    t.deepEqual(rbacDenials(operator.logFile), [], 'RBAC denied nothing the operator asked for');
  } finally {
    await operator.stop();
  }
});

test.serial('restricted to watchNamespaces, the operator acts there and creates nothing anywhere else', async (t) => {
  const system = await namespaces.create('ms-restricted');
  const allowed = await namespaces.create('ms-allowed');
  const other = await namespaces.create('ms-other');
  const release = `msr-${system.split('-').pop()}`;
  const install = await helm('install', release, chart, '-n', system, '--set', `watchNamespaces={${allowed}}`, '--wait=false');
  t.is(install.code, 0, install.stderr);
  t.teardown(async () => { await helm('uninstall', release, '-n', system); });
  const kubeconfig = await serviceAccountKubeconfig(system, release);
  await waitFor('RBAC in effect', () => canI(kubeconfig, 'patch', 'deployments', allowed));
  t.false(await canI(kubeconfig, 'list', 'deployments', other));
  const operator = new OperatorProcess({ name: 'chart-restricted', leaderElect: true, leaseNamespace: system, env: { KUBECONFIG: kubeconfig, MODELSHIP_WATCH_NAMESPACES: allowed } });
  await operator.start();
  try {
    await client.create(Resources.ModelDeployment, modelDeployment('m', allowed));
    await client.create(Resources.ModelDeployment, modelDeployment('m', other));
    await waitFor('served in the watched namespace', async () => (await client.get<Md>(Resources.ModelDeployment, allowed, 'm')).status?.stableRevision);
    await new Promise((r) => setTimeout(r, 3_000));
    const elsewhere = await client.get<Md>(Resources.ModelDeployment, other, 'm');
    t.is(elsewhere.status, undefined, 'not touched');
    const created = await client.list<KubeObject>(Resources.Deployment, { namespace: other });
    t.is(created.items.length, 0, 'no objects outside the watched namespaces');
    t.deepEqual(rbacDenials(operator.logFile), []);
  } finally {
    await operator.stop();
  }
});
