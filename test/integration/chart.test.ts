// The Helm chart: it lints and renders, its values schema accepts good values and refuses bad ones,
// it installs, and its RBAC is enough: the operator, running on the chart's ServiceAccount token, serves
// and rolls out a model; it cannot read Secrets; restricted to watchNamespaces it acts nowhere else
// (rbac.test.ts shows the rules are no more than it uses). Its Grafana dashboard queries only metrics
// the operator exports. Its admission policy refuses what the outbound and gateway limits refuse, its
// registered providers reach the operator as a file and mounted Secrets, and its NetworkPolicies are
// ones the apiserver accepts.
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
import { parseOperatorFlags } from '../../operator/flags.js';
import { modelCacheConfig } from '../../operator/modeldeployment/model-cache.js';
import type { ApiError, ResourceType } from '../../operator/runtime/kube.js';
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

let valuesFiles = 0;
/** Renders with `values` from a file, as an admin would give them (numbers stay numbers, lists stay lists). */
async function renderValues(values: object, opts: { release?: string; namespace?: string } = {}): Promise<{ code: number; objects: KubeObject[]; stderr: string }> {
  const file = join(testCluster().state.dir, `chart-values-${process.pid}-${valuesFiles++}.yaml`);
  writeFileSync(file, yaml.dump(values));
  const out = await helm('template', opts.release ?? 'ms', chart, '-n', opts.namespace ?? 'modelship-system', '--kube-version', '1.36.0', '-f', file);
  return { code: out.code, stderr: out.stderr, objects: out.code === 0 ? (yaml.loadAll(out.stdout) as KubeObject[]).filter(Boolean) : [] };
}

const namespaceType: ResourceType = { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false };
const networkPolicies: ResourceType = { group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true };

const envOf = (objects: KubeObject[]): Record<string, string> => Object.fromEntries(
  ((objects.find((o) => o.kind === 'Deployment') as any).spec.template.spec.containers[0].env as { name: string; value?: string }[])
    .filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));

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
  const lease = objects.find((o) => o.kind === 'Role' && o.metadata?.name === 'ms-leader-election') as any;
  t.deepEqual(lease.rules, [
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['modelship-operator'], verbs: ['get', 'update'] },
  ], 'the Lease is pinned wherever RBAC can pin it');
  t.falsy((await render('leaderElection.enabled=false')).find((o) => o.kind === 'Role'), 'no Lease rights without leader election');

  // The outbound policy's defaults, as the operator reads them from a real render.
  const env = envOf(objects);
  t.like(env, {
    MODELSHIP_OUTBOUND_ALLOW: '*.svc,*.svc.cluster.local', MODELSHIP_OUTBOUND_DENY: '', MODELSHIP_OUTBOUND_RAW_URLS: 'true',
    MODELSHIP_MAX_RESPONSE_BYTES: '1048576', MODELSHIP_MAX_CONCURRENT_CHECKS: '32', MODELSHIP_MAX_CONCURRENT_CHECKS_PER_NAMESPACE: '4',
    MODELSHIP_GATEWAY_PARENTS: '', MODELSHIP_GATEWAY_HOSTNAMES: '', MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES: 'true', MODELSHIP_MODEL_SIZE_LIMIT: '100Gi',
  });
  t.false('MODELSHIP_PROVIDERS_FILE' in env, 'no providers file without providers');
  t.notThrows(() => parseOperatorFlags([], env), 'the operator accepts every variable the chart sets');
  t.deepEqual(objects.filter((o) => o.kind?.startsWith('ValidatingAdmissionPolicy')).map((o) => `${o.kind} ${o.metadata?.name}`),
    ['ValidatingAdmissionPolicy ms-modeldeployments', 'ValidatingAdmissionPolicyBinding ms-modeldeployments']);
  t.is((objects.find((o) => o.kind === 'ValidatingAdmissionPolicyBinding') as any).spec.matchResources, undefined, 'bound in every namespace');
  t.falsy((await render('outbound.admissionPolicy=false')).find((o) => o.kind?.startsWith('ValidatingAdmissionPolicy')));
});

test('edited values: watchNamespaces gives a Role per namespace and no ClusterRole but the nodes\' addresses; the CRD can be templated and kept', async (t) => {
  const objects = await render('watchNamespaces={team-a,team-b}', 'crds.templated=true', 'replicaCount=3');
  // Nodes belong to no namespace: reading their addresses is the one cluster-wide right, and only that.
  t.deepEqual(objects.filter((o) => o.kind === 'ClusterRole').map((o: any) => [o.metadata.name, o.rules]), [
    ['ms-node-addresses', [{ apiGroups: [''], resources: ['nodes'], verbs: ['list', 'watch'] }]],
  ]);
  t.falsy((await render('watchNamespaces={team-a}', 'outbound.denyNodeAddresses=false')).find((o) => o.kind === 'ClusterRole'), 'and none without it');
  t.deepEqual(objects.filter((o) => o.kind === 'Role' && o.metadata?.name === 'ms').map((o) => o.metadata?.namespace).sort(), ['team-a', 'team-b']);
  const crd = objects.find((o) => o.kind === 'CustomResourceDefinition');
  t.is(crd?.metadata?.annotations?.['helm.sh/resource-policy'], 'keep');
  t.is((objects.find((o) => o.kind === 'Deployment') as any).spec.replicas, 3);
  t.deepEqual((objects.find((o) => o.kind === 'ValidatingAdmissionPolicyBinding') as any).spec.matchResources.namespaceSelector,
    { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['team-a', 'team-b'] }] }, 'the admission policy polices only the watched namespaces');
});

test('modelCache: off by default; a hostPath or a PVC reaches the operator as --model-cache, which it accepts; bad values are refused', async (t) => {
  t.false('MODELSHIP_MODEL_CACHE' in envOf(await render()), 'no cache unless enabled');
  const host = parseOperatorFlags([], envOf(await render('modelCache.enabled=true')));
  t.deepEqual(modelCacheConfig(host.modelCache, host.modelCacheMaxSize), { volume: { hostPath: '/var/lib/modelship/model-cache' }, maxBytes: 100 * 1024 ** 3 });
  const pvc = parseOperatorFlags([], envOf(await render('modelCache.enabled=true', 'modelCache.persistentVolumeClaim=model-cache', 'modelCache.maxSize=20Gi')));
  t.deepEqual(modelCacheConfig(pvc.modelCache, pvc.modelCacheMaxSize), { volume: { claim: 'model-cache' }, maxBytes: 20 * 1024 ** 3 });
  for (const bad of ['modelCache.hostPath=relative/dir', 'modelCache.maxSize=20GB', 'modelCache.persistentVolumeClaim=Not_A_Claim', 'modelCache.size=1Gi']) {
    t.not((await helm('template', 'ms', chart, '--kube-version', '1.36.0', '--set', 'modelCache.enabled=true', '--set', bad)).code, 0, bad);
  }
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
  t.true(validate({
    outbound: {
      allow: ['*.svc', 'prometheus.example.com', '10.0.0.0/8', 'fd00::/8', '192.0.2.7'], deny: ['10.96.0.0/12', 'fd00:1::/32'], rawURLs: false, maxResponseBytes: 65536,
      providers: [
        { name: 'prometheus', type: 'prometheus', url: 'http://prometheus.monitoring.svc:9090', namespaces: ['team-a'], bearerTokenSecret: { name: 'prometheus-token', key: 'token' } },
        { name: 'alerts', type: 'webhook', url: 'https://alerts.example.com/hook', basicAuthSecret: { name: 'alerts-auth' } },
      ],
      admissionPolicy: true, admissionPolicyNamespaceSelector: { matchLabels: { tenant: 'yes' } },
    },
    gateway: { allowedParents: ['gateways/shared'], allowedHostnames: ['*.apps.example.com', 'api.example.com'] },
    networkPolicy: { enabled: true, metricsFrom: [{ podSelector: { matchLabels: { app: 'prometheus' } } }], egress: { enabled: true, apiServerCIDRs: ['10.0.0.1/32'] } },
  }), JSON.stringify(validate.errors));
  const provider = { name: 'p', type: 'prometheus', url: 'http://p.monitoring.svc' };
  for (const bad of [{ replicaCount: 'two' }, { replicaCount: 0 }, { watchNamespaces: ['Not_A_Namespace'] }, { logLevel: 'loud' }, { typo: true }, { metrics: { port: 70000 } },
    { grafana: { dashboard: { enabled: 'yes' } } }, { grafana: { dashboard: { labelKey: 'not a label' } } }, { grafana: { dashboard: { namespace: 'Monitoring' } } }, { grafana: { dashboards: {} } },
    { outbound: { allow: ['*'] } }, { outbound: { allow: ['http://x.svc'] } }, { outbound: { allow: ['10.0.0.0/33'] } }, { outbound: { deny: ['example.com'] } }, { outbound: { rawURLs: 'no' } },
    { outbound: { maxResponseBytes: 1e9 } }, { outbound: { maxConcurrentChecks: 0 } }, { outbound: { providers: [{ ...provider, type: 'graphite' }] } },
    { outbound: { providers: [{ ...provider, url: 'ftp://p' }] } }, { outbound: { providers: [{ ...provider, name: 'Prom' }] } },
    { outbound: { providers: [{ ...provider, bearerTokenSecret: { name: 's', key: 't' }, basicAuthSecret: { name: 's' } }] } },
    { outbound: { providers: [{ ...provider, bearerTokenSecret: { name: 's' } }] } }, { outbound: { admissionPolicy: 'yes' } },
    { gateway: { allowedParents: ['shared'] } }, { gateway: { allowedHostnames: ['*'] } }, { gateway: { allowedHostnames: ['10.0.0.0/8'] } },
    { networkPolicy: { metricsFrom: {} } }, { networkPolicy: { egress: { apiServerCIDRs: ['kubernetes.default'] } } }, { networkPolicy: { egress: { enable: true } } }]) {
    t.false(validate(bad), `accepted ${JSON.stringify(bad)}`);
  }
  const refused = await helm('template', 'ms', chart, '--kube-version', '1.36.0', '--set', 'replicaCount=two');
  t.not(refused.code, 0, 'helm itself refuses values the schema rejects');
});

test('registered providers: a ConfigMap the operator reads, their Secrets mounted read-only, and a new registry rolls the pods', async (t) => {
  const providers = [
    { name: 'prometheus', type: 'prometheus', url: 'http://prometheus.monitoring.svc:9090', namespaces: ['team-a'], bearerTokenSecret: { name: 'prometheus-token', key: 'token' } },
    { name: 'alerts', type: 'webhook', url: 'https://alerts.example.com/hook', basicAuthSecret: { name: 'alerts-auth' } },
    { name: 'audit', type: 'webhook', url: 'https://audit.example.com/', bearerTokenSecret: { name: 'prometheus-token', key: 'audit' } },
  ];
  const { objects, stderr } = await renderValues({ outbound: { providers } });
  t.is(stderr, '');
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata?.name === 'ms-providers') as any;
  t.deepEqual(yaml.load(configMap.data['providers.yaml']), {
    providers: [
      { name: 'prometheus', type: 'prometheus', url: 'http://prometheus.monitoring.svc:9090', namespaces: ['team-a'], bearerTokenFile: '/etc/modelship/provider-secrets/prometheus-token/token' },
      { name: 'alerts', type: 'webhook', url: 'https://alerts.example.com/hook', namespaces: [],
        basicAuth: { usernameFile: '/etc/modelship/provider-secrets/alerts-auth/username', passwordFile: '/etc/modelship/provider-secrets/alerts-auth/password' } },
      { name: 'audit', type: 'webhook', url: 'https://audit.example.com/', namespaces: [], bearerTokenFile: '/etc/modelship/provider-secrets/prometheus-token/audit' },
    ],
  }, 'credentials appear as file paths only');
  const deployment = objects.find((o) => o.kind === 'Deployment') as any;
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  t.is(envOf(objects).MODELSHIP_PROVIDERS_FILE, '/etc/modelship/providers/providers.yaml');
  const mounts = Object.fromEntries(container.volumeMounts.map((m: any) => [m.mountPath, m]));
  const volumes = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v]));
  const source = (path: string) => volumes[mounts[path].name];
  t.true(mounts['/etc/modelship/providers'].readOnly);
  t.deepEqual(source('/etc/modelship/providers').configMap, { name: 'ms-providers' });
  for (const secret of ['prometheus-token', 'alerts-auth']) {
    t.true(mounts[`/etc/modelship/provider-secrets/${secret}`].readOnly);
    t.deepEqual(source(`/etc/modelship/provider-secrets/${secret}`).secret, { secretName: secret });
  }
  t.is(pod.volumes.filter((v: any) => v.secret).length, 2, 'a Secret two providers use is mounted once');

  // The operator parses the file the chart writes.
  const { loadProvidersFile } = await import('../../operator/tenancy/providers.js');
  const file = join(testCluster().state.dir, `providers-${process.pid}.yaml`);
  writeFileSync(file, configMap.data['providers.yaml']);
  t.deepEqual(loadProvidersFile(file).map((p) => `${p.type}/${p.name}`), ['prometheus/prometheus', 'webhook/alerts', 'webhook/audit']);
  t.notThrows(() => parseOperatorFlags([], { ...envOf(objects), MODELSHIP_PROVIDERS_FILE: file }));

  const checksum = (objs: KubeObject[]) => (objs.find((o) => o.kind === 'Deployment') as any).spec.template.metadata.annotations?.['checksum/providers'];
  t.regex(checksum(objects), /^[0-9a-f]{64}$/);
  t.is(checksum((await renderValues({ outbound: { providers } })).objects), checksum(objects), 'the same registry, the same pods');
  const changed = (await renderValues({ outbound: { providers: [{ ...providers[0], namespaces: ['team-a', 'team-b'] }, providers[1]] } })).objects;
  t.not(checksum(changed), checksum(objects), 'a changed registry restarts the operator');
  t.is(checksum(await render()), undefined);

  const twice = await renderValues({ outbound: { providers: [providers[0], { ...providers[0], url: 'http://other.monitoring.svc' }] } });
  t.not(twice.code, 0);
  t.regex(twice.stderr, /a prometheus provider named prometheus is registered twice/);
});

test('NetworkPolicies: metrics only from where Prometheus runs; egress to the apiserver, DNS, pods and the allowed CIDRs, less deny and link-local; the apiserver accepts both', async (t) => {
  const ns = await namespaces.create('ms-netpol');
  const values = {
    networkPolicy: {
      enabled: true,
      egress: { enabled: true, apiServerCIDRs: ['10.0.0.1/32', '192.168.10.0/28'], extraRules: [{ to: [{ ipBlock: { cidr: '203.0.113.0/24' } }], ports: [{ port: 443, protocol: 'TCP' }] }] },
    },
    outbound: {
      allow: ['*.svc', '*.svc.cluster.local', '0.0.0.0/0', '10.0.0.0/8', '198.51.100.7', 'fd00::/8', '169.254.169.254/32', '172.16.0.0/12'],
      deny: ['10.96.0.0/12', '100.64.0.0/10', 'fd00:1::/32', '172.16.0.0/12'],
    },
  };
  const { objects, stderr } = await renderValues(values, { namespace: ns });
  t.is(stderr, '');
  const ingress = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata?.name === 'ms') as any;
  t.deepEqual(ingress.spec.policyTypes, ['Ingress']);
  t.deepEqual(ingress.spec.ingress, [{ ports: [{ port: 8080, protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] }]);
  const egress = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata?.name === 'ms-egress') as any;
  t.deepEqual(egress.spec.podSelector, ingress.spec.podSelector);
  t.deepEqual(egress.spec.policyTypes, ['Egress']);
  t.deepEqual(egress.spec.egress, [
    { to: [{ ipBlock: { cidr: '10.0.0.1/32' } }, { ipBlock: { cidr: '192.168.10.0/28' } }], ports: [{ port: 443, protocol: 'TCP' }, { port: 6443, protocol: 'TCP' }] },
    { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } } }], ports: [{ port: 53, protocol: 'UDP' }, { port: 53, protocol: 'TCP' }] },
    { to: [{ namespaceSelector: {} }] },
    {
      to: [
        // Every deny CIDR inside it, and link-local.
        { ipBlock: { cidr: '0.0.0.0/0', except: ['10.96.0.0/12', '100.64.0.0/10', '172.16.0.0/12', '169.254.0.0/16'] } },
        { ipBlock: { cidr: '10.0.0.0/8', except: ['10.96.0.0/12'] } },
        { ipBlock: { cidr: '198.51.100.7/32' } },
        { ipBlock: { cidr: 'fd00::/8', except: ['fd00:1::/32'] } },
        // Inside link-local: the admin named it on purpose. 172.16.0.0/12 is denied whole, so it is left out.
        { ipBlock: { cidr: '169.254.169.254/32' } },
      ],
    },
    { to: [{ ipBlock: { cidr: '203.0.113.0/24' } }], ports: [{ port: 443, protocol: 'TCP' }] },
  ], 'host patterns need no ipBlock: cluster Services are reached through their pods');
  for (const policy of [ingress, egress]) {
    const applied = await client.apply<KubeObject>(networkPolicies, policy, 'modelship-tests', { dryRun: true });
    t.deepEqual((applied as any).spec, policy.spec, `${policy.metadata.name} as the apiserver stores it`);
  }
  t.deepEqual((await renderValues({ networkPolicy: { enabled: true, metricsFrom: [] } })).objects.find((o) => o.kind === 'NetworkPolicy')!.spec,
    { ...ingress.spec, ingress: [{ ports: [{ port: 8080, protocol: 'TCP' }] }] }, 'an empty metricsFrom admits every source');
  t.is((await render('networkPolicy.enabled=true')).filter((o) => o.kind === 'NetworkPolicy').length, 1, 'egress is off by default');

  const noApiserver = await renderValues({ networkPolicy: { egress: { enabled: true } } });
  t.not(noApiserver.code, 0);
  t.regex(noApiserver.stderr, /networkPolicy\.egress\.apiServerCIDRs is required with networkPolicy\.egress\.enabled/);
  const hostBits = await renderValues({ outbound: { deny: ['10.1.2.3/8'] } });
  t.not(hostBits.code, 0);
  t.regex(hostBits.stderr, /10\.1\.2\.3\/8 is no network address/);
});

const admissionTypes: Record<string, ResourceType> = {
  ValidatingAdmissionPolicy: { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicies', kind: 'ValidatingAdmissionPolicy', namespaced: false },
  ValidatingAdmissionPolicyBinding: { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicybindings', kind: 'ValidatingAdmissionPolicyBinding', namespaced: false },
};

test('the admission policy refuses URLs outside the outbound policy, unknown providers, foreign Gateways and hostnames, with messages that say why', async (t) => {
  t.timeout(180_000);
  const [teamA, teamB, elsewhere] = [await namespaces.create('vap-a'), await namespaces.create('vap-b'), await namespaces.create('vap-other')];
  const scope = teamA.split('-').pop()!;
  for (const ns of [teamA, teamB]) await client.mergePatch(namespaceType, undefined, ns, { metadata: { labels: { 'modelship.io/vap-test': scope } } });
  // Cluster-scoped: a release name per run, and a binding that reaches this test's namespaces only.
  const release = `vap-${scope}`;
  const values = (rawURLs: boolean) => ({
    outbound: {
      allow: ['*.svc', 'metrics.example.com', '10.0.0.0/8'], deny: ['10.96.0.0/12'], rawURLs,
      providers: [
        { name: 'prom', type: 'prometheus', url: 'http://prometheus.monitoring.svc:9090', namespaces: [teamA] },
        { name: 'alerts', type: 'webhook', url: 'https://alerts.example.com/hook' },
      ],
      admissionPolicyNamespaceSelector: { matchLabels: { 'modelship.io/vap-test': scope } },
    },
    gateway: { allowedParents: ['gateways/shared'], allowedHostnames: ['*.apps.example.com'] },
  });
  const install = async (rawURLs: boolean) => {
    const { objects, stderr } = await renderValues(values(rawURLs), { release });
    t.is(stderr, '');
    const policy = objects.filter((o) => o.kind! in admissionTypes);
    t.is(policy.length, 2);
    for (const obj of policy) await client.apply(admissionTypes[obj.kind!]!, obj, 'modelship-tests');
    // The apiserver type-checks what it can of the expressions against the CRD's schema (the validations;
    // variables it takes as dyn): a warning there is an expression that cannot do what it says.
    const checked = await waitFor('the policy type-checked', async () => {
      const live = await client.get<KubeObject & { status?: { observedGeneration?: number; typeChecking?: { expressionWarnings?: unknown[] } } }>(
        admissionTypes.ValidatingAdmissionPolicy!, undefined, `${release}-modeldeployments`);
      return live.status?.typeChecking && live.status.observedGeneration === live.metadata?.generation ? live : undefined;
    });
    t.deepEqual(checked.status?.typeChecking?.expressionWarnings ?? [], []);
  };
  t.teardown(async () => {
    for (const type of Object.values(admissionTypes).reverse()) await client.delete(type, undefined, `${release}-modeldeployments`).catch(() => undefined);
  });
  await install(true);

  const md = (ns: string, spec: object) => modelDeployment('m', ns, withSpec(spec));
  // A refusal is a 422 (Invalid), as the CRD's own validation is, with the policy's message.
  const refusal = (ns: string, spec: object) => client.request('POST', `/apis/modelship.io/v1alpha1/namespaces/${ns}/modeldeployments`, { query: { dryRun: 'All' }, body: md(ns, spec) })
    .then(() => undefined, (err: ApiError) => `${err.code} ${err.message}`);
  const webhook = (url: string) => ({ monitoring: { checks: [{ name: 'judge', webhook: { url } }] } });
  const metadataServer = webhook('http://169.254.169.254/latest/meta-data/');
  const policyMessage = /^422 .*ValidatingAdmissionPolicy 'vap-\w+-modeldeployments' with binding 'vap-\w+-modeldeployments' denied request: /;
  // The policy is in force once the apiserver's admission has seen it.
  await waitFor('the admission policy in force', async () => (await refusal(teamA, metadataServer)) !== undefined);

  const allowed = {
    rollout: { analysis: { checks: [{ name: 'errors', prometheus: { provider: 'prom', query: 'sum(rate(errors[1m]))' }, pass: { max: 0.01 } }] } },
    monitoring: {
      checks: [{ name: 'judge', webhook: { url: 'http://judge.models.svc:8080/verdict' } }, { name: 'latency', prometheus: { address: 'https://Metrics.example.com./', query: 'p99' }, pass: { max: 1 } }],
      webhook: { provider: 'alerts' },
    },
    traffic: { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'own' }, { name: 'own', namespace: teamA }, { name: 'shared', namespace: 'gateways' }], hostnames: ['iris.apps.example.com', '*.models.apps.example.com'] } },
  };
  t.is(await refusal(teamA, allowed), undefined, 'everything within the policy is admitted');

  const cases: [string, string, object, RegExp][] = [
    ['a metadata server', teamA, metadataServer, /outbound policy: http:\/\/169\.254\.169\.254\/latest\/meta-data\/ is not allowed: URLs may name hosts matching \*\.svc, metrics\.example\.com, or IP addresses in 10\.0\.0\.0\/8 but not in 10\.96\.0\.0\/12/],
    ['a name outside the patterns', teamA, webhook('https://collector.evil.example.org/hook'), /outbound policy: https:\/\/collector\.evil\.example\.org\/hook is not allowed/],
    ['a Service address in deny', teamA, { monitoring: { checks: [{ name: 'p', prometheus: { address: 'http://10.96.0.10:9090', query: 'up' }, pass: { max: 1 } }] } }, /http:\/\/10\.96\.0\.10:9090 is not allowed/],
    ['a name that only looks allowed', teamA, { monitoring: { webhook: { url: 'http://x.svc@evil.example.org/' } } }, /a URL carries credentials/],
    ['the Prometheus KEDA would query', teamA, { autoscaling: { maxReplicas: 2, scaler: 'HPA', prometheus: { address: 'http://prometheus.example.net' }, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1 }] } }, /http:\/\/prometheus\.example\.net is not allowed/],
    ['an InferencePool route to a Gateway in another namespace', teamA, { traffic: { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw', namespace: 'other' }] } } }, /Gateway parent refused: other\/gw/],
    ['a drift check\'s Prometheus', teamA, { monitoring: { checks: [{ name: 'drift', drift: { histogram: 'h', maxPSI: 0.2, prometheus: { address: 'http://prometheus.example.net' } } }] } }, /http:\/\/prometheus\.example\.net is not allowed/],
    ['an unknown provider', teamA, { rollout: { analysis: { checks: [{ name: 'e', prometheus: { provider: 'nope', query: 'up' }, pass: { max: 1 } }] } } },
      /unknown provider: prometheus provider nope is not registered for namespace vap-a-\w+ \(providers this namespace may use: prom \(prometheus\), alerts \(webhook\)\)/],
    ['a provider of the wrong type', teamA, { monitoring: { webhook: { provider: 'prom' } } }, /unknown provider: webhook provider prom is not registered/],
    ['a provider registered for another namespace', teamB, { rollout: { analysis: { checks: [{ name: 'e', prometheus: { provider: 'prom', query: 'up' }, pass: { max: 1 } }] } } },
      /unknown provider: prometheus provider prom is not registered for namespace vap-b-\w+ \(providers this namespace may use: alerts \(webhook\)\)/],
    ['a Gateway in another namespace', teamA, { traffic: { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'gw', namespace: 'other' }] } } },
      /Gateway parent refused: other\/gw is in another namespace and not among the Gateways this cluster allows \(allowed: gateways\/shared\)/],
    ['a hostname outside the patterns', teamA, { traffic: { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'gw' }], hostnames: ['iris.apps.example.com', 'iris.example.org'] } } },
      /hostname refused: iris\.example\.org must match \*\.apps\.example\.com/],
    ['a wildcard wider than the pattern', teamA, { traffic: { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'gw' }], hostnames: ['*.example.com'] } } }, /hostname refused: \*\.example\.com must match/],
  ];
  for (const [what, ns, spec, message] of cases) {
    const refused = await refusal(ns, spec);
    t.regex(refused ?? 'admitted', policyMessage, what);
    t.regex(refused ?? 'admitted', message, what);
  }
  t.is(await refusal(elsewhere, metadataServer), undefined, 'a namespace the binding does not select is not policed');

  // Tenants may name registered providers only. An object admitted before keeps its metadata writable
  // (the operator binds and removes operation annotations); its spec must now comply.
  await client.create(Resources.ModelDeployment, modelDeployment('admitted-before', teamA, withSpec(webhook('http://judge.models.svc:8080/verdict'))));
  await install(false);
  await waitFor('rawURLs off in force', async () => /only registered providers/.test((await refusal(teamA, webhook('http://judge.models.svc:8080/verdict'))) ?? ''));
  t.regex((await refusal(teamA, allowed)) ?? 'admitted', /only registered providers: this cluster lets ModelDeployments name no address or url of their own \(https:\/\/Metrics\.example\.com\.\/, http:\/\/judge\.models\.svc:8080\/verdict\); name a provider instead \(providers this namespace may use: prom \(prometheus\), alerts \(webhook\)\)/);
  t.is(await refusal(teamA, { rollout: allowed.rollout, monitoring: { webhook: { provider: 'alerts' } }, traffic: allowed.traffic }), undefined, 'providers alone are admitted');
  await client.mergePatch(Resources.ModelDeployment, teamA, 'admitted-before', { metadata: { annotations: { 'modelship.io/promote': 'abc' } } });
  const specWrite = await client.mergePatch(Resources.ModelDeployment, teamA, 'admitted-before', { spec: { replicas: 2 } }).then(() => undefined, (err: Error) => err.message);
  t.regex(specWrite ?? 'admitted', /only registered providers/);
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
  // Its admission policy is cluster-wide by default: here it polices this test's namespace only.
  const install = await helm('install', release, chart, '-n', system, '--set', 'image.repository=example.invalid/modelship', '--wait=false',
    '--set-json', `outbound.admissionPolicyNamespaceSelector=${JSON.stringify({ matchLabels: { 'kubernetes.io/metadata.name': work } })}`);
  t.is(install.code, 0, install.stderr);
  t.regex(install.stdout, /Modelship .* is installed/);
  t.teardown(async () => { await helm('uninstall', release, '-n', system); });
  await waitFor('operator Deployment', async () => client.get(Resources.Deployment, system, release));
  const kubeconfig = await serviceAccountKubeconfig(system, release);
  // The apiserver's RBAC cache takes a moment to see the new bindings.
  await waitFor('RBAC in effect', () => canI(kubeconfig, 'patch', 'deployments', work));
  t.false(await canI(kubeconfig, 'get', 'secrets', work), 'no Secrets read');
  t.false(await canI(kubeconfig, 'list', 'secrets', system));

  const operator = new OperatorProcess({ name: 'chart-sa', leaderElect: true, leaseNamespace: system, env: { KUBECONFIG: kubeconfig, MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES: 'true' } });
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
  const operator = new OperatorProcess({ name: 'chart-restricted', leaderElect: true, leaseNamespace: system, env: { KUBECONFIG: kubeconfig, MODELSHIP_WATCH_NAMESPACES: allowed, MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES: 'true' } });
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
