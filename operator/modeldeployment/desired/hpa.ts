// The autoscaling/v2 HPA `<md>`. It scales the ModelDeployment through its /scale subresource, never
// a Deployment: the operator splits the replicas between revisions, so a canary cannot fight the HPA.
import type { AutoscalingMetric, ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { ownedMetadata } from '../labels.js';

/** The External metric name a Prometheus autoscaling metric is published under by an adapter. */
export const externalMetricName = 'modelship_autoscaling_query';

function hpaMetric(md: ModelDeployment, metric: AutoscalingMetric, index: number): Record<string, unknown> {
  switch (metric.type) {
    case 'CPU':
    case 'Memory':
      return {
        type: 'Resource',
        resource: { name: metric.type === 'CPU' ? 'cpu' : 'memory', target: { type: 'Utilization', averageUtilization: metric.targetAverageUtilization } },
      };
    case 'Prometheus':
      // prometheus-adapter or KEDA serves this series; the selector says which ModelDeployment and query.
      return {
        type: 'External',
        external: {
          metric: {
            name: externalMetricName,
            selector: { matchLabels: { 'modelship.io/modeldeployment': md.metadata!.name!, 'modelship.io/metric-index': String(index) } },
          },
          target: { type: 'AverageValue', averageValue: String(metric.targetAverageValue) },
        },
      };
  }
}

export function desiredHpa(md: ModelDeployment): KubeObject | undefined {
  const autoscaling = md.spec.autoscaling;
  if (!autoscaling) return undefined;
  const metrics = autoscaling.metrics?.length ? autoscaling.metrics : [{ type: 'CPU', targetAverageUtilization: 80 } as AutoscalingMetric];
  return {
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: ownedMetadata(md),
    spec: {
      scaleTargetRef: { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: md.metadata!.name! },
      minReplicas: autoscaling.minReplicas ?? 1,
      maxReplicas: autoscaling.maxReplicas,
      metrics: metrics.map((m, i) => hpaMetric(md, m, i)),
      ...(autoscaling.behavior ? { behavior: autoscaling.behavior } : {}),
    },
  };
}

export function usesExternalMetrics(md: ModelDeployment): boolean {
  return (md.spec.autoscaling?.metrics ?? []).some((m) => m.type === 'Prometheus');
}
