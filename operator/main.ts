#!/usr/bin/env node
// modelship: the operator (default) and `modelship fetch` (the model fetcher init container).
// Configuration comes from flags or MODELSHIP_* environment variables; the kubeconfig from
// --kubeconfig, KUBECONFIG, or the in-cluster service account.
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import type { ModelDeployment } from './api/generated.js';
import { Controller } from './runtime/controller.js';
import { EventRecorder } from './runtime/events.js';
import { WriteExpectations } from './runtime/expectations.js';
import { startHealthServer } from './runtime/health.js';
import { Informer, NamespacedInformers, type InformerHandlers, type InformerOptions, type ObjectCache } from './runtime/informer.js';
import { ApiError, KubeClient, writeMethods, type KubeObject, type ResourceType } from './runtime/kube.js';
import { loadClusterAccess } from './runtime/kubeconfig.js';
import { LeaderElector, defaultLeaderTimings } from './runtime/leader.js';
import { createLogger } from './runtime/logger.js';
import { OperatorMetrics } from './runtime/metrics.js';
import { Resources } from './runtime/resources.js';
import { instanceLabel, managedSelector } from './modeldeployment/labels.js';
import { reconcile, type ReconcilerDeps } from './modeldeployment/reconcile.js';
import { AnalysisRunner, clusterIpServiceUrl, inClusterServiceUrl, serviceUrlFromTemplate } from './modeldeployment/analysis/run.js';
import { MonitoringRunner } from './modeldeployment/monitoring/run.js';
import { podSummary } from './modeldeployment/status.js';

async function runOperator(argv: string[]): Promise<void> {
  const env = process.env;
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      'metrics-port': { type: 'string', default: env.MODELSHIP_METRICS_PORT ?? '8080' },
      'metrics-host': { type: 'string', default: env.MODELSHIP_METRICS_HOST ?? '0.0.0.0' },
      concurrency: { type: 'string', default: env.MODELSHIP_CONCURRENCY ?? '4' },
      'leader-elect': { type: 'boolean', default: (env.MODELSHIP_LEADER_ELECT ?? 'true') !== 'false' },
      'leader-election-namespace': { type: 'string', default: env.MODELSHIP_LEADER_ELECTION_NAMESPACE ?? env.POD_NAMESPACE ?? 'default' },
      'fetcher-image': { type: 'string', default: env.MODELSHIP_FETCHER_IMAGE ?? 'ghcr.io/modelship/modelship:0.1.0' },
      'resync-seconds': { type: 'string', default: env.MODELSHIP_RESYNC_SECONDS ?? '600' },
      'service-url-template': { type: 'string', default: env.MODELSHIP_SERVICE_URL_TEMPLATE ?? '' },
      // dns: http://<service>.<namespace>.svc; cluster-ip: the Service's ClusterIP from the cache, for
      // clusters without cluster DNS or an operator outside the cluster that routes to the service network.
      'service-address': { type: 'string', default: env.MODELSHIP_SERVICE_ADDRESS ?? 'dns' },
      'watch-namespaces': { type: 'string', default: env.MODELSHIP_WATCH_NAMESPACES ?? '' },
    },
  });
  const log = createLogger();
  const access = loadClusterAccess(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {});
  const identity = `${hostname()}_${process.pid}`;
  const expectations = new WriteExpectations();
  const client = new KubeClient(access, identity);
  const exitAfterWrites = Number(env.MODELSHIP_FAULT_EXIT_AFTER_WRITES ?? 0);
  const metrics = new OperatorMetrics();
  let writesDone = 0;
  client.onRequest((method, _path, code) => {
    metrics.apiRequests.inc({ method, code: String(code) });
    // Fault injection for the crash-consistency tests: die, as a SIGKILL would, right after the k-th write.
    if (exitAfterWrites > 0 && writeMethods.has(method) && code >= 200 && code < 300 && ++writesDone >= exitAfterWrites) process.kill(process.pid, 'SIGKILL');
  });
  const events = new EventRecorder(client, 'modelship.io/operator', identity, log);

  const controller = new Controller(
    (namespace, name, rlog) => reconcile({ ...deps, log: rlog }, namespace, name),
    log, metrics, Number(values.concurrency),
  );
  const toOwner: InformerHandlers<KubeObject> = {
    onUpsert: (obj) => enqueueOwner(obj),
    onDelete: (obj) => enqueueOwner(obj),
  };
  function enqueueOwner(obj: KubeObject) {
    const owner = obj.metadata?.ownerReferences?.find((r) => r.kind === 'ModelDeployment' && r.controller);
    const name = owner?.name ?? obj.metadata?.labels?.[instanceLabel];
    controller.enqueue(obj.metadata?.namespace, name);
  }
  // Children are indexed by the ModelDeployment they belong to, so a reconcile never scans a namespace.
  const byInstance = (obj: KubeObject) => {
    const instance = obj.metadata?.labels?.[instanceLabel];
    return instance ? `${obj.metadata?.namespace}/${instance}` : undefined;
  };
  // Empty: the whole cluster. Otherwise only these namespaces, each with its own watches, which is all
  // a namespaced RBAC (the chart's watchNamespaces) allows.
  const watchNamespaces = values['watch-namespaces'].split(',').map((n) => n.trim()).filter(Boolean);
  type Transform = InformerOptions['transform'];
  const informer = <T extends KubeObject>(type: ResourceType, handlers: InformerHandlers<T>, labelSelector?: string, transform?: Transform): ObjectCache<T> =>
    watchNamespaces.length
      ? new NamespacedInformers<T>(type, watchNamespaces, (namespace) => oneInformer(type, handlers, labelSelector, transform, namespace))
      : oneInformer(type, handlers, labelSelector, transform);
  const oneInformer = <T extends KubeObject>(type: ResourceType, handlers: InformerHandlers<T>, labelSelector?: string, transform?: Transform, namespace?: string) =>
    new Informer<T>(client, type, handlers, {
      ...(namespace ? { namespace } : {}),
      ...(transform ? { transform } : {}),
      ...(labelSelector ? { labelSelector, indexBy: byInstance } : {}),
      onError: (err) => {
        metrics.watchErrors.inc({ resource: type.plural });
        log.warn('watch restarting', { resource: type.plural, error: err.message });
      },
    });
  const caches: ReconcilerDeps['caches'] = {
    modelDeployments: informer<ModelDeployment & KubeObject>(Resources.ModelDeployment, {
      onUpsert: (md, old) => {
        expectations.observe(`${md.metadata?.namespace}/${md.metadata?.name}`, md.metadata?.resourceVersion);
        // Status-only updates (our own writes) carry no new generation and need no reconcile, unless
        // annotations changed (manual operations).
        if (old && old.metadata?.generation === md.metadata?.generation
          && JSON.stringify(old.metadata?.annotations) === JSON.stringify(md.metadata?.annotations)) return;
        controller.enqueue(md.metadata?.namespace, md.metadata?.name);
      },
      onDelete: (md) => {
        expectations.forget(`${md.metadata?.namespace}/${md.metadata?.name}`);
        metrics.forget(md.metadata?.namespace ?? '', md.metadata?.name ?? '');
      },
    }),
    deployments: informer(Resources.Deployment, toOwner, managedSelector),
    services: informer(Resources.Service, toOwner, managedSelector),
    hpas: informer(Resources.HorizontalPodAutoscaler, toOwner, managedSelector),
    pods: informer(Resources.Pod, toOwner, managedSelector, podSummary),
  };
  // HTTPRoutes are watched only where the Gateway API is installed; a later install is picked up at resync.
  const ensureHttpRouteCache = async () => {
    if (caches.httpRoutes) return;
    try {
      const group = await client.request<{ resources?: { name: string }[] }>('GET', '/apis/gateway.networking.k8s.io/v1');
      if (!group.resources?.some((r) => r.name === 'httproutes')) return;
    } catch {
      return;
    }
    const cache = informer(Resources.HTTPRoute, toOwner, managedSelector);
    await cache.start();
    caches.httpRoutes = cache;
    log.info('Gateway API found: watching HTTPRoutes');
  };
  let externalMetrics: boolean | undefined;
  const checkExternalMetrics = async () => {
    try {
      await client.request('GET', '/apis/external.metrics.k8s.io/v1beta1');
      externalMetrics = true;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) externalMetrics = false;
    }
  };
  const serviceAddress = values['service-address'];
  if (serviceAddress !== 'dns' && serviceAddress !== 'cluster-ip') throw new Error(`--service-address must be dns or cluster-ip, not ${serviceAddress}`);
  const serviceUrl = values['service-url-template'] ? serviceUrlFromTemplate(values['service-url-template'])
    : serviceAddress === 'cluster-ip' ? clusterIpServiceUrl((namespace, name) => caches.services.get(namespace, name)) : inClusterServiceUrl;
  const deps: ReconcilerDeps = {
    client, events, log, metrics, fetcherImage: values['fetcher-image'], caches, expectations,
    externalMetricsAvailable: () => externalMetrics,
    analysis: new AnalysisRunner(serviceUrl, (namespace, name) => controller.enqueue(namespace, name)),
    monitoring: new MonitoringRunner(serviceUrl, (namespace, name) => controller.enqueue(namespace, name)),
  };

  let synced = false;
  let lastTick = Date.now();
  const tick = setInterval(() => {
    lastTick = Date.now();
    for (const c of Object.values(caches) as ObjectCache<KubeObject>[]) metrics.cacheObjects.set({ resource: c.type.plural }, c.size);
  }, 1000);
  const server = await startHealthServer(Number(values['metrics-port']), values['metrics-host'], metrics.registry, {
    live: () => Date.now() - lastTick < 30_000,
    ready: () => synced,
  });
  log.info('modelship operator starting', { identity, concurrency: values.concurrency, leaderElect: values['leader-elect'] });

  const elector = values['leader-elect']
    ? new LeaderElector(client, {
      namespace: values['leader-election-namespace'], name: 'modelship-operator', identity, ...defaultLeaderTimings,
    }, log)
    : undefined;

  let resync: NodeJS.Timeout | undefined;
  const startCaches = async () => {
    await Promise.all(Object.values(caches).map((c: ObjectCache<KubeObject>) => c.start()));
    synced = true;
    log.info('caches synced', Object.fromEntries(Object.entries(caches).map(([k, c]: [string, ObjectCache<KubeObject>]) => [k, c.size])));
  };
  const startLeading = () => {
    metrics.leader.set(1);
    for (const md of caches.modelDeployments.list()) controller.enqueue(md.metadata?.namespace, md.metadata?.name);
    controller.start();
    // A periodic full pass catches anything a lost event missed; a no-op pass makes no writes.
    resync = setInterval(() => {
      void checkExternalMetrics();
      void ensureHttpRouteCache();
      for (const md of caches.modelDeployments.list()) controller.enqueue(md.metadata?.namespace, md.metadata?.name);
    }, Number(values['resync-seconds']) * 1000);
  };

  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down');
    clearInterval(resync);
    clearInterval(tick);
    await controller.stop();
    await elector?.stop();
    for (const c of Object.values(caches) as ObjectCache<KubeObject>[]) c.stop();
    server.close();
    metrics.leader.set(0);
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown(0));
  process.once('SIGINT', () => void shutdown(0));

  await checkExternalMetrics();
  await startCaches();
  await ensureHttpRouteCache();
  if (elector) {
    // Losing the lease ends the process: a restarted pod starts clean as a candidate.
    await elector.run(startLeading, () => void shutdown(1));
  } else {
    startLeading();
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'fetch') {
  const { runFetch } = await import('./cli/fetch.js');
  process.exitCode = await runFetch(rest);
} else {
  await runOperator(command === 'run' ? rest : process.argv.slice(2));
}
