#!/usr/bin/env node
// modelship: the operator (default) and `modelship fetch` (the model fetcher init container).
// Configuration comes from flags or MODELSHIP_* environment variables; the kubeconfig from
// --kubeconfig, KUBECONFIG, or the in-cluster service account.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ModelDeployment } from './api/generated.js';
import { FlagError, outboundLimits, parseOperatorFlags, tenancyPolicy, type OperatorFlags } from './flags.js';
import { configureOutbound, outbound } from './runtime/outbound.js';
import type { Provider } from './tenancy/policy.js';
import { loadProvidersFile } from './tenancy/providers.js';
import { Controller } from './runtime/controller.js';
import { EventRecorder } from './runtime/events.js';
import { WriteExpectations } from './runtime/expectations.js';
import { RolloutSlots, holdsRolloutSlot } from './runtime/rollout-slots.js';
import { startHealthServer } from './runtime/health.js';
import { StringPool } from './runtime/string-pool.js';
import { Informer, NamespacedInformers, type InformerHandlers, type InformerOptions, type ObjectCache } from './runtime/informer.js';
import { ApiError, KubeClient, userAgentPrefix, writeMethods, type KubeObject, type ResourceType } from './runtime/kube.js';
import { loadClusterAccess } from './runtime/kubeconfig.js';
import { LeaderElector, defaultLeaderTimings } from './runtime/leader.js';
import { createLogger } from './runtime/logger.js';
import { OperatorMetrics } from './runtime/metrics.js';
import { Resources } from './runtime/resources.js';
import { instanceLabel, managedSelector } from './modeldeployment/labels.js';
import { reconcile, type ReconcilerDeps } from './modeldeployment/reconcile.js';
import { AnalysisRunner, clusterIpServiceUrl, inClusterServiceUrl, serviceUrlFromTemplate } from './modeldeployment/analysis/run.js';
import { MonitoringRunner } from './modeldeployment/monitoring/run.js';
import { podChanged, podSummary } from './modeldeployment/status.js';
import { parseEndpointPicker } from './modeldeployment/desired/inferencepool.js';
import { modelCacheConfig, newFetchReport, withFetchReport } from './modeldeployment/model-cache.js';

type NodeAddresses = KubeObject & { status?: { addresses?: { address: string }[] } };

/** A Node as the outbound policy needs it: its name and addresses. */
function nodeAddressesOnly(obj: KubeObject): KubeObject {
  const n = obj as NodeAddresses;
  return { metadata: { name: n.metadata?.name, resourceVersion: n.metadata?.resourceVersion }, status: { addresses: (n.status?.addresses ?? []).map((a) => ({ address: a.address })) } };
}

async function runOperator(argv: string[]): Promise<void> {
  const env = process.env;
  let flags: OperatorFlags;
  try {
    flags = parseOperatorFlags(argv, env);
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    process.stderr.write(`modelship: ${err.message}\n`);
    process.exit(2);
  }
  let providers: Provider[] = [];
  try {
    providers = flags.providersFile ? loadProvidersFile(flags.providersFile) : [];
  } catch (err) {
    process.stderr.write(`modelship: --providers-file: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const tenancy = tenancyPolicy(flags, providers);
  const modelCache = modelCacheConfig(flags.modelCache, flags.modelCacheMaxSize);
  const log = createLogger();
  const access = loadClusterAccess(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {});
  const identity = `${hostname()}_${process.pid}`;
  const expectations = new WriteExpectations();
  const client = new KubeClient(access, identity);
  const exitAfterWrites = Number(env.MODELSHIP_FAULT_EXIT_AFTER_WRITES ?? 0);
  const metrics = new OperatorMetrics();
  configureOutbound(tenancy, outboundLimits(flags), ({ namespace, trust, outcome }) => {
    metrics.outboundCalls.inc({ namespace, trust, outcome: outcome.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase() });
  });
  metrics.inFlightSource = () => outbound.active;
  let writesDone = 0;
  client.onRequest((method, _path, code) => {
    metrics.apiRequests.inc({ method, code: String(code) });
    // Fault injection for the crash-consistency tests: die, as a SIGKILL would, right after the k-th write.
    if (exitAfterWrites > 0 && writeMethods.has(method) && code >= 200 && code < 300 && ++writesDone >= exitAfterWrites) process.kill(process.pid, 'SIGKILL');
  });
  const events = new EventRecorder(client, 'modelship.io/operator', identity, log);

  const controller = new Controller(
    (namespace, name, rlog) => reconcile({ ...deps, log: rlog }, namespace, name),
    log, metrics, flags.concurrency,
  );
  const toOwner: InformerHandlers<KubeObject> = {
    onUpsert: (obj) => enqueueOwner(obj),
    onDelete: (obj) => enqueueOwner(obj),
  };
  // A child changes in bursts: a Deployment's status is written as its ReplicaSet's is, pods go
  // scheduled → running → ready, and the operator's own writes come back. Waiting a moment makes each
  // burst one reconcile instead of one per event. A change to the ModelDeployment itself is not delayed.
  const childEventDelayMs = 200;
  function enqueueOwner(obj: KubeObject) {
    // Until a term starts, the queue already holds every ModelDeployment (its informer's list queued
    // each one, and a later term queues them all again). A child's event would only come back 200 ms
    // later, after the first workers took the key, as a second reconcile of the same object.
    if (!controller.isRunning) return;
    const owner = obj.metadata?.ownerReferences?.find((r) => r.kind === 'ModelDeployment' && r.controller);
    const name = owner?.name ?? obj.metadata?.labels?.[instanceLabel];
    controller.enqueueAfter(obj.metadata?.namespace, name, childEventDelayMs);
  }
  // Children are indexed by the ModelDeployment they belong to, so a reconcile never scans a namespace.
  const byInstance = (obj: KubeObject) => {
    const instance = obj.metadata?.labels?.[instanceLabel];
    return instance ? `${obj.metadata?.namespace}/${instance}` : undefined;
  };
  // Empty: the whole cluster. Otherwise only these namespaces, each with its own watches, which is all
  // a namespaced RBAC (the chart's watchNamespaces) allows.
  const watchNamespaces = flags.watchNamespaces;
  type Transform = InformerOptions['transform'];
  const informer = <T extends KubeObject>(type: ResourceType, handlers: InformerHandlers<T>, labelSelector?: string, transform?: Transform): ObjectCache<T> =>
    watchNamespaces.length
      ? new NamespacedInformers<T>(type, watchNamespaces, (namespace) => oneInformer(type, handlers, labelSelector, transform, namespace))
      : oneInformer(type, handlers, labelSelector, transform);
  // One pool for every cache: a ModelDeployment's name, namespace and image recur in its children too.
  const strings = new StringPool();
  // Every informer, with how many lists it has completed: a new term waits for fresh lists (relistAll).
  const informers: { informer: Informer<KubeObject>; relists: number }[] = [];
  const oneInformer = <T extends KubeObject>(type: ResourceType, handlers: InformerHandlers<T>, labelSelector?: string, transform?: Transform, namespace?: string) => {
    const entry = { informer: undefined as unknown as Informer<KubeObject>, relists: 0 };
    const informer = new Informer<T>(client, type, handlers, {
      strings,
      ...(namespace ? { namespace } : {}),
      ...(transform ? { transform } : {}),
      ...(labelSelector ? { labelSelector, indexBy: byInstance } : {}),
      onError: (err) => {
        metrics.watchErrors.inc({ resource: type.plural });
        log.warn('watch restarting', { resource: type.plural, error: err.message });
      },
      onRelist: () => { entry.relists++; },
    });
    entry.informer = informer;
    informers.push(entry);
    return informer;
  };
  /**
   * A replica that lost its term may have lost it to a partition, and its watches can be stuck on
   * connections that died without a word (they would be noticed only at the 90 s stall timeout). So a
   * term after the first begins with fresh connections and a fresh list of everything, the caches
   * keeping what they had meanwhile; resolves false if the term ends first.
   */
  const relistAll = async (term: AbortSignal): Promise<boolean> => {
    await client.closeIdleConnections();
    const before = informers.map((e) => e.relists);
    for (const { informer } of informers) {
      informer.stop();
      void informer.start();
    }
    while (!informers.every((e, i) => e.relists > before[i]!)) {
      if (term.aborted) return false;
      await sleep(50);
    }
    return !term.aborted;
  };
  const rolloutSlots = new RolloutSlots(flags.maxConcurrentRollouts);
  // Only the leader counts fetches, so the replicas' counters do not add up to twice the fetches.
  let leading = false;
  const countFetchReport = (pod: KubeObject, old: KubeObject | undefined) => {
    const report = leading ? newFetchReport(pod, old) : undefined;
    if (!report) return;
    metrics.modelCacheRequests.inc({ result: report.cache });
    metrics.modelCacheBytes.inc({ result: report.cache }, report.bytes);
  };
  const caches: ReconcilerDeps['caches'] = {
    modelDeployments: informer<ModelDeployment & KubeObject>(Resources.ModelDeployment, {
      onUpsert: (md, old) => {
        expectations.observe(`${md.metadata?.namespace}/${md.metadata?.name}`, md.metadata?.resourceVersion);
        rolloutSlots.observe(`${md.metadata?.namespace}/${md.metadata?.name}`, holdsRolloutSlot(md.status));
        // Status-only updates (our own writes) carry no new generation and need no reconcile, unless
        // annotations changed (manual operations).
        if (old && old.metadata?.generation === md.metadata?.generation
          && JSON.stringify(old.metadata?.annotations) === JSON.stringify(md.metadata?.annotations)) return;
        controller.enqueue(md.metadata?.namespace, md.metadata?.name);
      },
      onDelete: (md) => {
        expectations.forget(`${md.metadata?.namespace}/${md.metadata?.name}`);
        rolloutSlots.forget(`${md.metadata?.namespace}/${md.metadata?.name}`);
        // A deleted object's checks in flight are cancelled, not left to run to their timeouts.
        deps.analysis.forget(`${md.metadata?.namespace}/${md.metadata?.name}`);
        deps.monitoring.forget(`${md.metadata?.namespace}/${md.metadata?.name}`);
        metrics.forget(md.metadata?.namespace ?? '', md.metadata?.name ?? '');
      },
    }),
    deployments: informer(Resources.Deployment, toOwner, managedSelector),
    services: informer(Resources.Service, toOwner, managedSelector),
    hpas: informer(Resources.HorizontalPodAutoscaler, toOwner, managedSelector),
    // Pods keep their fetcher's model cache report, counted once when it appears (model-cache.ts).
    pods: informer(Resources.Pod, {
      onUpsert: (pod, old) => { countFetchReport(pod, old); if (podChanged(pod, old)) enqueueOwner(pod); },
      onDelete: (pod) => enqueueOwner(pod),
    }, managedSelector, (obj) => withFetchReport(podSummary(obj), obj)),
  };
  // HTTPRoutes, InferencePools and KEDA's ScaledObjects are watched only where their CRDs are
  // installed; a later install is picked up at resync (a ModelDeployment that needs them reads
  // InvalidSpec until then).
  const ensureOptionalCache = async (key: 'httpRoutes' | 'inferencePools' | 'scaledObjects', type: ResourceType, what: string) => {
    if (caches[key]) return;
    try {
      const group = await client.request<{ resources?: { name: string }[] }>('GET', `/apis/${type.group}/${type.version}`);
      if (!group.resources?.some((r) => r.name === type.plural)) return;
    } catch {
      return;
    }
    const cache = informer(type, toOwner, managedSelector);
    await cache.start();
    caches[key] = cache;
    log.info(`${what} found: watching ${type.plural}`);
  };
  const ensureOptionalCaches = async () => {
    await ensureOptionalCache('httpRoutes', Resources.HTTPRoute, 'Gateway API');
    await ensureOptionalCache('inferencePools', Resources.InferencePool, 'Gateway API Inference Extension');
    await ensureOptionalCache('scaledObjects', Resources.ScaledObject, 'KEDA');
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
  const serviceUrl = flags.serviceUrlTemplate ? serviceUrlFromTemplate(flags.serviceUrlTemplate)
    : flags.serviceAddress === 'cluster-ip' ? clusterIpServiceUrl((namespace, name) => caches.services.get(namespace, name)) : inClusterServiceUrl;
  const deps: ReconcilerDeps = {
    client, events, log, metrics, fetcherImage: flags.fetcherImage, caches, expectations, rolloutSlots,
    tenancy, modelSizeLimit: flags.modelSizeLimit,
    ...(modelCache ? { modelCache } : {}),
    ...(flags.inferencePoolEndpointPicker ? { endpointPicker: parseEndpointPicker(flags.inferencePoolEndpointPicker)! } : {}),
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
  const server = await startHealthServer(flags.metricsPort, flags.metricsHost, metrics.registry, {
    live: () => Date.now() - lastTick < 30_000,
    ready: () => synced,
  });
  log.info('modelship operator starting', { identity, concurrency: flags.concurrency, leaderElect: flags.leaderElect,
    outbound: { allow: [...tenancy.allowHosts, ...tenancy.allowCidrs], deny: tenancy.denyCidrs, rawUrls: tenancy.rawUrls, providers: providers.map((p) => `${p.type}/${p.name}`), ...outboundLimits(flags) } });

  // The elector has a client of its own, as client-go's leader election does: unfenced (it writes the
  // lease between terms), and with its own flow control, so renewals never queue behind reconcilers'
  // requests waiting out a throttled apiserver.
  const elector = flags.leaderElect
    ? new LeaderElector(new KubeClient(access, identity, `${userAgentPrefix} leader-election`), {
      namespace: flags.leaderElectionNamespace, name: 'modelship-operator', identity, ...defaultLeaderTimings,
    }, log)
    : undefined;
  // Writes only during a term: a deposed leader's reconciles can neither start nor finish a write.
  if (elector) client.fenceWrites(elector);

  let resync: NodeJS.Timeout | undefined;
  // The nodes' addresses, refused to tenant URLs: the kubelet's API and node-local services are no
  // tenant's to call. Readiness waits for them, so no tenant call goes out before they are known.
  const nodes = flags.outboundDenyNodeAddresses
    ? oneInformer<KubeObject>(Resources.Node, {
      onUpsert: () => updateNodeAddresses(),
      onDelete: () => updateNodeAddresses(),
    }, undefined, nodeAddressesOnly)
    : undefined;
  // Recomputed once per burst of events: the initial list of a large cluster is one event per node.
  let nodesDirty = false;
  const refreshNodeAddresses = () => {
    if (nodes) outbound.setNodeAddresses(nodes.list().flatMap((n) => ((n as NodeAddresses).status?.addresses ?? []).map((a) => a.address)));
  };
  const updateNodeAddresses = () => {
    if (nodesDirty) return;
    nodesDirty = true;
    setImmediate(() => {
      nodesDirty = false;
      refreshNodeAddresses();
    });
  };
  const startCaches = async () => {
    await Promise.all([...Object.values(caches), ...(nodes ? [nodes] : [])].map((c: ObjectCache<KubeObject>) => c.start()));
    refreshNodeAddresses();
    synced = true;
    log.info('caches synced', Object.fromEntries(Object.entries(caches).map(([k, c]: [string, ObjectCache<KubeObject>]) => [k, c.size])));
  };
  let terms = 0;
  const startLeading = (term?: AbortSignal) => {
    metrics.leader.set(1);
    leading = true;
    const first = ++terms === 1;
    void (async () => {
      if (!first && term && !(await relistAll(term))) return;
      if (term?.aborted) return;
      controller.start(term);
      // The first term's queue already holds every object (the initial list queued them all, and the
      // queue is only shut down when a term ends); queuing them again would reconcile the ones the
      // workers already hold twice. A later term starts from a queue that was shut down.
      if (!first) for (const md of caches.modelDeployments.list()) controller.enqueue(md.metadata?.namespace, md.metadata?.name);
      // A periodic full pass catches anything a lost event missed; a no-op pass makes no writes.
      clearInterval(resync);
      resync = setInterval(() => {
        void checkExternalMetrics();
        void ensureOptionalCaches();
        for (const md of caches.modelDeployments.list()) controller.enqueue(md.metadata?.namespace, md.metadata?.name);
      }, flags.resyncSeconds * 1000);
    })();
  };
  const stopLeading = () => {
    metrics.leader.set(0);
    leading = false;
    clearInterval(resync);
    // The term's abort has already cut off the reconciles' requests and stopped the workers; this also
    // covers a term that ended while starting.
    void controller.stop();
  };

  let stopping = false;
  const shutdown = async (code: number, graceful: boolean) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { graceful });
    clearInterval(resync);
    clearInterval(tick);
    // Graceful: reconciles in flight finish while the lease is still renewed, then it is released.
    // Otherwise the term ends first (cutting off every request) and only then is the lease released.
    await controller.stop(graceful ? 20_000 : 0);
    // The counts of event series not yet written (a few PATCHes at most).
    if (graceful) await events.flush();
    await elector?.stop({ release: true, timeoutMs: 3_000 });
    for (const c of Object.values(caches) as ObjectCache<KubeObject>[]) c.stop();
    nodes?.stop();
    server.close();
    metrics.leader.set(0);
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown(0, true));
  process.once('SIGINT', () => void shutdown(0, true));
  // A bug that would crash the process still hands the lease over, so the standby need not wait it out.
  const fatal = (err: unknown) => {
    log.error('fatal error', { error: err instanceof Error ? err.stack ?? err.message : String(err) });
    void shutdown(1, false);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);

  await checkExternalMetrics();
  await startCaches();
  await ensureOptionalCaches();
  if (elector) {
    await elector.run({ onStartedLeading: startLeading, onStoppedLeading: stopLeading });
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
