// The operator's Prometheus metrics. Names follow Prometheus conventions (base units, _total for
// counters) and the modelship_ prefix; per-object series are removed when the object goes away.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal = new Counter({ name: 'modelship_reconcile_total', help: 'Reconciles by result (success, error, requeue).', labelNames: ['result'], registers: [this.registry] });
  readonly reconcileDuration = new Histogram({
    name: 'modelship_reconcile_duration_seconds', help: 'Time spent in one reconcile.',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry],
  });
  readonly queueDepth = new Gauge({ name: 'modelship_workqueue_depth', help: 'Keys waiting in the work queue.', registers: [this.registry] });
  readonly queueLatency = new Histogram({
    name: 'modelship_workqueue_queue_duration_seconds', help: 'Time a key waits in the queue before a worker takes it.',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300], registers: [this.registry],
  });
  readonly apiRequests = new Counter({ name: 'modelship_api_requests_total', help: 'Requests to the Kubernetes API by method and status code.', labelNames: ['method', 'code'], registers: [this.registry] });
  readonly watchErrors = new Counter({ name: 'modelship_watch_errors_total', help: 'Watch or list failures by resource; each one restarts the watch.', labelNames: ['resource'], registers: [this.registry] });
  readonly cacheObjects = new Gauge({ name: 'modelship_cache_objects', help: 'Objects held in the informer caches.', labelNames: ['resource'], registers: [this.registry] });
  readonly leader = new Gauge({ name: 'modelship_leader', help: '1 while this replica holds the leader lease.', registers: [this.registry] });
  readonly phase = new Gauge({ name: 'modelship_modeldeployment_phase', help: '1 for the phase a ModelDeployment is in.', labelNames: ['namespace', 'name', 'phase'], registers: [this.registry] });
  readonly ready = new Gauge({ name: 'modelship_modeldeployment_ready', help: '1 when the ModelDeployment is Ready.', labelNames: ['namespace', 'name'], registers: [this.registry] });
  readonly rollbacks = new Counter({ name: 'modelship_rollbacks_total', help: 'Canaries rolled back or aborted.', labelNames: ['namespace', 'name', 'reason'], registers: [this.registry] });
  readonly canaryWeight = new Gauge({ name: 'modelship_canary_weight_percent', help: 'Share of traffic on the canary revision.', labelNames: ['namespace', 'name'], registers: [this.registry] });
  readonly analysisValue = new Gauge({ name: 'modelship_analysis_value', help: 'Last measured value of an analysis check.', labelNames: ['namespace', 'name', 'check'], registers: [this.registry] });
  readonly analysisPassed = new Gauge({ name: 'modelship_analysis_passed', help: '1 when the last measurement of a check passed.', labelNames: ['namespace', 'name', 'check'], registers: [this.registry] });
  readonly monitoringValue = new Gauge({ name: 'modelship_monitoring_value', help: 'Last measured value of a monitoring check on the stable revision (PSI for drift checks).', labelNames: ['namespace', 'name', 'check'], registers: [this.registry] });
  readonly monitoringPassed = new Gauge({ name: 'modelship_monitoring_passed', help: '1 when the last measurement of a monitoring check passed.', labelNames: ['namespace', 'name', 'check'], registers: [this.registry] });
  readonly drifting = new Gauge({ name: 'modelship_drifting', help: '1 while the Drifting condition is True.', labelNames: ['namespace', 'name'], registers: [this.registry] });
  readonly driftTransitions = new Counter({ name: 'modelship_drift_transitions_total', help: 'Transitions of the Drifting condition, by the status it moved to.', labelNames: ['namespace', 'name', 'to'], registers: [this.registry] });
  // Per namespace, not per object: a namespace whose calls are denied or cut is what an admin looks for.
  readonly outboundCalls = new Counter({ name: 'modelship_outbound_calls_total', help: 'Calls made for analysis, monitoring and webhooks, by whose destination (service, tenant, provider) and how they ended.', labelNames: ['namespace', 'trust', 'outcome'], registers: [this.registry] });
  /** Read when scraped, so a call that hangs shows while it hangs. */
  inFlightSource: () => number = () => 0;
  readonly outboundInFlight: Gauge = new Gauge({
    name: 'modelship_outbound_in_flight', help: 'Outbound calls in flight (each holds a slot under --max-concurrent-checks).', registers: [this.registry],
    collect: (): void => this.outboundInFlight.set(this.inFlightSource()),
  });
  // Counted from the fetchers' termination messages as the leader sees their pods' init containers finish:
  // a fetcher lives seconds, too short to be scraped.
  readonly modelCacheRequests = new Counter({ name: 'modelship_model_cache_requests_total', help: 'Model fetches that used the model cache, by result (hit, miss, corrupt, unavailable).', labelNames: ['result'], registers: [this.registry] });
  readonly modelCacheBytes = new Counter({ name: 'modelship_model_cache_bytes_total', help: 'Bytes those fetches put in place, by result: a hit\'s came from the cache, the others\' were downloaded.', labelNames: ['result'], registers: [this.registry] });
  readonly invalidSpecs = new Counter({ name: 'modelship_invalid_spec_total', help: 'Reconciles that found a spec the operator cannot serve.', labelNames: ['namespace', 'name'], registers: [this.registry] });

  /** Check names with series, per object and kind: prom-client removes a series only by its full label set. */
  private readonly checkSeries = new Map<string, { analysis: Set<string>; monitoring: Set<string> }>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
  }

  /**
   * The series of an object's analysis or monitoring checks: one pair per check it has now. Series of
   * checks it no longer has (removed from the spec) go.
   */
  setChecks(kind: 'analysis' | 'monitoring', namespace: string, name: string, results: { check: string; value?: string | number; passed?: boolean }[]): void {
    const key = `${namespace}/${name}`;
    const known = this.checkSeries.get(key) ?? { analysis: new Set<string>(), monitoring: new Set<string>() };
    this.checkSeries.set(key, known);
    const [value, passed] = kind === 'analysis' ? [this.analysisValue, this.analysisPassed] : [this.monitoringValue, this.monitoringPassed];
    const now = new Set(results.map((r) => r.check));
    for (const check of known[kind]) {
      if (now.has(check)) continue;
      value.remove({ namespace, name, check });
      passed.remove({ namespace, name, check });
      known[kind].delete(check);
    }
    for (const r of results) {
      const v = Number(r.value);
      if (!Number.isNaN(v)) value.set({ namespace, name, check: r.check }, v);
      passed.set({ namespace, name, check: r.check }, r.passed ? 1 : 0);
      known[kind].add(r.check);
    }
  }

  /** Every series of a deleted object. */
  forget(namespace: string, name: string): void {
    this.ready.remove({ namespace, name });
    this.canaryWeight.remove({ namespace, name });
    for (const phase of ['Pending', 'Progressing', 'Paused', 'Healthy', 'Degraded']) this.phase.remove({ namespace, name, phase });
    this.invalidSpecs.remove({ namespace, name });
    this.drifting.remove({ namespace, name });
    for (const reason of ['RolledBack', 'Aborted']) this.rollbacks.remove({ namespace, name, reason });
    for (const to of ['True', 'False']) this.driftTransitions.remove({ namespace, name, to });
    this.setChecks('analysis', namespace, name, []);
    this.setChecks('monitoring', namespace, name, []);
    this.checkSeries.delete(`${namespace}/${name}`);
  }
}
