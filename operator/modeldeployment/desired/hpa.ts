// The autoscaling/v2 HPA `<md>`, when KEDA is not the scaler (scaledobject.ts). It scales the
// ModelDeployment through its /scale subresource, never a Deployment: the operator splits the replicas
// between revisions, so a canary cannot fight the HPA.
import type { AutoscalingMetric, ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { ownedMetadata } from '../labels.js';
import type { PresetName } from '../presets.js';
import { signalQuery, signalTypes } from './autoscaling-signals.js';

/** The External metric name a Prometheus autoscaling metric is published under by an adapter. */
export const externalMetricName = 'modelship_autoscaling_query';

function hpaMetric(md: ModelDeployment, metric: AutoscalingMetric, index: number): Record<string, unknown> {
  if (metric.type === 'CPU' || metric.type === 'Memory') {
    return {
      type: 'Resource',
      resource: { name: metric.type === 'CPU' ? 'cpu' : 'memory', target: { type: 'Utilization', averageUtilization: metric.targetAverageUtilization } },
    };
  }
  // Prometheus and the LLM signals: an adapter (prometheus-adapter) serves this series; the selector
  // says which ModelDeployment and metric, and the HPA's annotations carry the query to serve.
  const target = metric.type === 'Prometheus' || metric.type === 'RequestsWaiting'
    ? { type: 'AverageValue', averageValue: String(metric.targetAverageValue) }
    : { type: 'Value', value: String(metric.type === 'KVCacheUsage' ? `${metric.targetAverageUtilization! * 10}m` : metric.targetValue) };
  return {
    type: 'External',
    external: {
      metric: {
        name: externalMetricName,
        selector: { matchLabels: { 'modelship.io/modeldeployment': md.metadata!.name!, 'modelship.io/metric-index': String(index) } },
      },
      target,
    },
  };
}

/** The query each external metric stands for, for the adapter's rules: `modelship.io/metric-<i>-query`. */
function queryAnnotations(md: ModelDeployment, preset: PresetName | undefined, metrics: AutoscalingMetric[]): Record<string, string> {
  const out: Record<string, string> = {};
  metrics.forEach((m, i) => {
    const q = m.type === 'Prometheus' ? m.query : preset && signalTypes.includes(m.type) ? signalQuery(md, preset, m) : undefined;
    const text = typeof q === 'string' ? q : q && 'query' in q ? q.query : undefined;
    if (text) out[`modelship.io/metric-${i}-query`] = text;
  });
  return out;
}

export function desiredHpa(md: ModelDeployment, preset?: PresetName): KubeObject | undefined {
  const autoscaling = md.spec.autoscaling;
  if (!autoscaling) return undefined;
  const metrics = autoscaling.metrics?.length ? autoscaling.metrics : [{ type: 'CPU', targetAverageUtilization: 80 } as AutoscalingMetric];
  const annotations = queryAnnotations(md, preset, metrics);
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: { ...ownedMetadata(md), ...(Object.keys(annotations).length ? { annotations } : {}) },
    spec: {
      scaleTargetRef: { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: md.metadata!.name! },
      // An HPA never goes below one (KEDA alone scales to zero; the CRD refuses 0 with scaler HPA).
      minReplicas: Math.max(1, autoscaling.minReplicas ?? 1),
      maxReplicas: autoscaling.maxReplicas,
      metrics: metrics.map((m, i) => hpaMetric(md, m, i)),
      ...(autoscaling.behavior ? { behavior: autoscaling.behavior } : {}),
    },
  };
}

/**
 * Which scaler the ModelDeployment gets: the one asked for; or (Auto) KEDA when its CRDs are in the
 * cluster and the spec says which Prometheus KEDA would query (or needs none). A spec written for an
 * HPA on prometheus-adapter's external metrics keeps its HPA when KEDA is installed beside it.
 */
export function scalerFor(md: ModelDeployment, kedaAvailable: boolean | undefined): 'KEDA' | 'HPA' {
  const autoscaling = md.spec.autoscaling;
  const asked = autoscaling?.scaler ?? 'Auto';
  if (asked !== 'Auto') return asked;
  if (kedaAvailable !== true) return 'HPA';
  const queries = (autoscaling?.metrics ?? []).some((m) => m.type === 'Prometheus' || signalTypes.includes(m.type));
  return queries && !autoscaling?.prometheus ? 'HPA' : 'KEDA';
}

export function usesExternalMetrics(md: ModelDeployment): boolean {
  return (md.spec.autoscaling?.metrics ?? []).some((m) => m.type === 'Prometheus' || signalTypes.includes(m.type));
}
