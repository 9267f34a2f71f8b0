// What LLM servers are really loaded by, as Prometheus queries per runtime preset. GPU utilisation is
// pegged near 100 % whatever the load, so an LLM scales on requests waiting in the server's queue, on
// KV-cache use, or on a latency target (time to first token). Each signal is one query over every pod
// of the ModelDeployment (all revisions: one scaler for the object, the rollout splits the replicas),
// and a KEDA metric type:
//  - AverageValue: the query is a sum over pods and the target is per pod (KEDA and the HPA divide by
//    the replicas), as a queue is;
//  - Value: the query is already a per-pod figure (a mean, a quantile) and the target is compared as is.
// Series are selected by the `namespace` and `pod` labels Prometheus' Kubernetes pod discovery gives
// them (a PodMonitor, or the usual relabelling); pods are `<md>-<revision hash>-<replica set>-<id>`.
// Pure.
import type { AutoscalingMetric, ModelDeployment } from '../../api/generated.js';
import type { PresetName } from '../presets.js';

export type SignalType = 'RequestsWaiting' | 'KVCacheUsage' | 'TimeToFirstToken';
export const signalTypes: readonly string[] = ['RequestsWaiting', 'KVCacheUsage', 'TimeToFirstToken'];

export interface ScalingQuery {
  query: string;
  metricType: 'AverageValue' | 'Value';
  /** The target in the query's unit, as KEDA's threshold (a decimal string). */
  threshold: string;
}

/** The selector of every pod of the ModelDeployment, any revision. */
export function podMatcher(md: ModelDeployment): string {
  return `namespace="${md.metadata!.namespace!}",pod=~"${md.metadata!.name!}-[0-9a-f]{10}-[a-z0-9]+-[a-z0-9]+"`;
}

/**
 * Series per preset. TGI 3.3 exports its queue (tgi_queue_size) but no KV-cache use and no time to
 * first token (its histograms time whole requests, queueing and batches), so those two are refused for
 * it rather than approximated by a figure that means something else.
 */
const series: Partial<Record<PresetName, Partial<Record<SignalType, (m: string) => string>>>> = {
  vllm: {
    RequestsWaiting: (m) => `sum(vllm:num_requests_waiting{${m}})`,
    KVCacheUsage: (m) => `avg(vllm:kv_cache_usage_perc{${m}})`,
    TimeToFirstToken: (m) => `histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{${m}}[1m])))`,
  },
  tgi: {
    RequestsWaiting: (m) => `sum(tgi_queue_size{${m}})`,
  },
};

/** A quantity (as the CRD allows: 5, "500m", "1.5", "2k") in plain decimal, for KEDA's thresholds. */
export function quantityDecimal(value: number | string): string {
  if (typeof value === 'number') return String(value);
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(.*)$/.exec(value);
  if (!m) return value;
  const scale: Record<string, number> = { '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, Pi: 1024 ** 5, Ei: 1024 ** 6 };
  const suffix = m[2]!;
  const factor = scale[suffix] ?? (/^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : undefined);
  if (factor === undefined) return value;
  return String(Number((Number(m[1]) * factor).toPrecision(12)));
}

/** The query, metric type and threshold of an LLM signal for a preset, or why there is none. */
export function signalQuery(md: ModelDeployment, preset: PresetName, metric: AutoscalingMetric): ScalingQuery | { problem: string } {
  const type = metric.type as SignalType;
  const build = series[preset]?.[type];
  if (!build) {
    const offered = Object.keys(series[preset] ?? {});
    return { problem: `autoscaling metric ${type}: the ${preset} runtime exports no such series${offered.length ? ` (it offers ${offered.join(', ')})` : '; LLM signals are known for the vllm and tgi presets; use a Prometheus metric with your own query'}` };
  }
  const query = build(podMatcher(md));
  switch (type) {
    case 'RequestsWaiting':
      return { query, metricType: 'AverageValue', threshold: quantityDecimal(metric.targetAverageValue!) };
    case 'KVCacheUsage':
      return { query, metricType: 'Value', threshold: String(metric.targetAverageUtilization! / 100) };
    case 'TimeToFirstToken':
      return { query, metricType: 'Value', threshold: quantityDecimal(metric.targetValue!) };
  }
}
