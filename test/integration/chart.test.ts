// The Helm chart: it lints and renders, its values schema accepts good values and refuses bad ones,
// it installs, and its RBAC is exactly enough: the operator, running on the chart's ServiceAccount
// token, serves and rolls out a model; it cannot read Secrets; restricted to watchNamespaces it acts
// nowhere else. Its Grafana dashboard queries only metrics the operator exports.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import yaml from 'js-yaml';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { OperatorMetrics } from '../../operator/runtime/metrics.js';
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
  const heap = container.env.find((e: any) => e.name === 'NODE_OPTIONS')?.value as string;
  const oldSpaceMb = Number(/--max-old-space-size=(\d+)/.exec(heap)?.[1]);
  const limitMi = Number(/^(\d+)Mi$/.exec(container.resources.limits.memory as string)?.[1]);
  t.true(oldSpaceMb > 0 && oldSpaceMb < limitMi, `the heap cap (${oldSpaceMb} MB) stays under the memory limit (${limitMi} Mi)`);
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
  const monitor = objects.find((o) => o.kind === 'ServiceMonitor') as any;
  t.true(monitor.spec.endpoints[0].honorLabels, 'the models\' namespace label is kept, not renamed to exported_namespace');
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

/** Metric names a PromQL expression selects: what is left once strings, label matchers, ranges, groupings and function calls are gone. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);
  return [...bare.matchAll(/\b([a-zA-Z_][a-zA-Z0-9_]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((n) => !keywords.has(n.toLowerCase()));
}

/** Every series name the operator exports: its own metrics and prom-client's defaults, histograms as _bucket/_sum/_count. */
function exportedSeries(): Set<string> {
  const names = new Set<string>();
  for (const metric of new OperatorMetrics().registry.getMetricsAsArray() as unknown as { name: string; type: string }[]) {
    if (metric.type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    else names.add(metric.name);
  }
  return names;
}

// Post-promotion monitoring exports these; they may not be registered yet where the dashboard is built.
const monitoringMetrics = ['modelship_monitoring_value', 'modelship_monitoring_passed', 'modelship_drifting', 'modelship_drift_transitions_total'];

test('the Grafana dashboard: a ConfigMap for the sidecar when enabled, none by default; it queries only metrics the operator exports', async (t) => {
  t.falsy((await render()).find((o) => o.kind === 'ConfigMap'), 'off by default');
  const defaults = (await render('grafana.dashboard.enabled=true')).find((o) => o.kind === 'ConfigMap') as any;
  t.is(defaults.metadata.namespace, 'modelship-system');
  t.is(defaults.metadata.labels.grafana_dashboard, '1', 'the Grafana sidecar convention');
  const objects = await render('grafana.dashboard.enabled=true', 'grafana.dashboard.namespace=monitoring', 'grafana.dashboard.labelKey=example.com/dashboard',
    'grafana.dashboard.labelValue=modelship', 'grafana.dashboard.annotations.grafana_folder=Models');
  const configMap = objects.find((o) => o.kind === 'ConfigMap') as any;
  t.like(configMap.metadata, { name: 'ms-dashboard', namespace: 'monitoring', annotations: { grafana_folder: 'Models' } });
  t.is(configMap.metadata.labels['example.com/dashboard'], 'modelship');
  t.is(configMap.metadata.labels.grafana_dashboard, undefined);
  t.is(configMap.data['modelship.json'].trim(), readFileSync(join(chart, 'dashboards/modelship.json'), 'utf8').trim(), 'the file, unchanged');

  const dashboard = JSON.parse(configMap.data['modelship.json']);
  t.true(dashboard.schemaVersion >= 39);
  const variables = Object.fromEntries(dashboard.templating.list.map((v: any) => [v.name, v]));
  t.like(variables.datasource, { type: 'datasource', query: 'prometheus' });
  const variableQuery = (v: any): string => (typeof v.query === 'string' ? v.query : v.query.query);
  for (const name of ['namespace', 'name']) {
    t.is(variables[name]?.type, 'query');
    t.regex(variableQuery(variables[name]), new RegExp(`^label_values\\(modelship_modeldeployment_phase\\b.*, ${name}\\)$`));
  }

  const rows = dashboard.panels.filter((p: any) => p.type === 'row').map((p: any) => p.title);
  t.deepEqual(rows, ['Operator health', 'Rollouts', 'Analysis', 'Monitoring and drift']);
  // Panels belong to the row above them.
  const byRow = new Map<string, string[]>();
  let row = '';
  const exprs: string[] = [];
  for (const panel of dashboard.panels) {
    if (panel.type === 'row') { row = panel.title; continue; }
    t.deepEqual(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, `${panel.title}: the datasource variable`);
    t.true(panel.targets.length > 0, `${panel.title} queries something`);
    for (const target of panel.targets) {
      t.deepEqual(target.datasource, { type: 'prometheus', uid: '${datasource}' });
      exprs.push(target.expr);
      byRow.set(row, [...(byRow.get(row) ?? []), ...metricNames(target.expr)]);
      // Per-model series follow the namespace and name variables.
      if (/modelship_(modeldeployment|canary|rollbacks|analysis|monitoring|drift|invalid)/.test(target.expr)) {
        t.true(target.expr.includes('namespace=~"$namespace"') && target.expr.includes('name=~"$name"'), `${panel.title}: ${target.expr}`);
      }
    }
  }
  const covers = (title: string, metrics: string[]) => {
    for (const m of metrics) t.true(byRow.get(title)?.includes(m), `${title} shows ${m}`);
  };
  covers('Operator health', ['modelship_reconcile_total', 'modelship_reconcile_duration_seconds_bucket', 'modelship_workqueue_depth', 'modelship_workqueue_queue_duration_seconds_bucket',
    'modelship_api_requests_total', 'modelship_watch_errors_total', 'modelship_leader', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds']);
  covers('Rollouts', ['modelship_modeldeployment_phase', 'modelship_modeldeployment_ready', 'modelship_canary_weight_percent', 'modelship_rollbacks_total']);
  covers('Analysis', ['modelship_analysis_value', 'modelship_analysis_passed']);
  covers('Monitoring and drift', monitoringMetrics);

  // A renamed or removed metric breaks the dashboard, and this test.
  const exported = exportedSeries();
  t.true(exported.has('modelship_reconcile_total') && exported.has('modelship_reconcile_duration_seconds_bucket') && exported.has('nodejs_eventloop_lag_p99_seconds'));
  const queries = [...exprs, ...dashboard.annotations.list.filter((a: any) => a.expr).map((a: any) => a.expr), ...['namespace', 'name', 'job'].filter((v) => variables[v]).map((v) => variableQuery(variables[v]).replace(/^label_values\((.*),\s*\w+\)$/, '$1'))];
  const unknown = [...new Set(queries.flatMap(metricNames))].filter((m) => !exported.has(m) && !monitoringMetrics.includes(m));
  t.deepEqual(unknown, [], 'every metric the dashboard queries is exported');

  // Every query is valid PromQL once Grafana has filled in its variables.
  const grafanaVariables = (expr: string) => expr.replaceAll('$__rate_interval', '2m').replaceAll('$__range', '6h').replace(/\$\w+/g, '.*');
  const file = join(testCluster().state.dir, 'modelship-dashboard-queries.yaml');
  writeFileSync(file, yaml.dump({ groups: [{ name: 'dashboard', rules: queries.map((q, i) => ({ record: `modelship_dashboard:query_${i}`, expr: grafanaVariables(q) })) }] }));
  const check = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile('promtool', ['check', 'rules', file], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
  });
  t.is(check.code, 0, check.out);
  t.regex(check.out, new RegExp(`SUCCESS: ${queries.length} rules found`));
});

test('the metric-name check sees through PromQL', (t) => {
  t.deepEqual(metricNames('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job",x="y{z}"}[$__rate_interval])))'), ['a_bucket']);
  t.deepEqual(metricNames('count by (phase) (b{n=~"$n"} == 1) or on (namespace) c_total offset 5m'), ['b', 'c_total']);
  t.deepEqual(metricNames('sum without (pod) (rate(renamed_metric_total[5m])) > bool 0'), ['renamed_metric_total']);
});

test('values.schema.json accepts good values and refuses bad ones', async (t) => {
  const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as object;
  const validate = new Ajv({ strict: false }).compile(schema);
  t.true(validate(yaml.load(readFileSync(join(chart, 'values.yaml'), 'utf8'))), JSON.stringify(validate.errors));
  t.true(validate({ replicaCount: 3, watchNamespaces: ['team-a'], logLevel: 'debug' }));
  t.true(validate({ grafana: { dashboard: { enabled: true, namespace: 'monitoring', labelKey: 'grafana_dashboard', labelValue: '1', annotations: { grafana_folder: 'Models' } } } }));
  for (const bad of [{ replicaCount: 'two' }, { replicaCount: 0 }, { watchNamespaces: ['Not_A_Namespace'] }, { logLevel: 'loud' }, { typo: true }, { metrics: { port: 70000 } },
    { grafana: { dashboard: { enabled: 'yes' } } }, { grafana: { dashboard: { labelKey: 'not a label' } } }, { grafana: { dashboard: { namespace: 'Monitoring' } } }, { grafana: { dashboards: {} } }]) {
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
    const { KubeClient } = await import('../../operator/runtime/kube.js');
    const { loadClusterAccess } = await import('../../operator/runtime/kubeconfig.js');
    return new KubeClient(loadClusterAccess({ kubeconfig: this.kubeconfig }), undefined, 'modelship-tests').request<T>(method, path, opts);
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
