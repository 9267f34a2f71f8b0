// The KEDA ScaledObject `<md>` (keda.sh/v1alpha1), written instead of the HPA when KEDA is the scaler.
// It targets the ModelDeployment's /scale subresource, as the HPA does, so there is one scaler for the
// object and the rollout alone splits its replicas between stable and canary. KEDA makes its own HPA
// (keda-hpa-<md>) for 1..max and moves 0 ↔ 1 itself: at minReplicas 0 the model scales to zero once every
// trigger has stayed at or below its activation value for cooldownSeconds, and back to one when one
// rises above it. Pure.
import type { AutoscalingMetric, ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import type { Provider } from '../../tenancy/policy.js';
import { ownedMetadata } from '../labels.js';
import type { PresetName } from '../presets.js';
import { quantityDecimal, signalQuery, signalTypes } from './autoscaling-signals.js';
import { scalerFor } from './hpa.js';

export const scaledObjectApiVersion = 'keda.sh/v1alpha1';

/** KEDA's default cooldownPeriod: how long a model stays up after its last activity. */
export const defaultCooldownSeconds = 300;

/**
 * The ClusterTriggerAuthentication a provider with credentials is read through: KEDA, not the
 * operator, calls Prometheus here, and the credentials stay in the admin's namespace.
 */
export const providerTriggerAuthentication = (provider: string) => `modelship-provider-${provider}`;

export interface PrometheusServer {
  address: string;
  /** A registered provider with credentials: KEDA reads them through a ClusterTriggerAuthentication. */
  authentication?: string;
}

/** Where KEDA sends the queries: the spec's address, or a registered provider's. */
export function prometheusServer(md: ModelDeployment, providers: Provider[]): PrometheusServer | undefined {
  const p = md.spec.autoscaling?.prometheus;
  if (p?.address) return { address: p.address };
  const provider = p?.provider ? providers.find((x) => x.type === 'prometheus' && x.name === p.provider) : undefined;
  if (!provider) return undefined;
  return { address: provider.url, ...(provider.bearerTokenFile || provider.basicAuth ? { authentication: providerTriggerAuthentication(provider.name) } : {}) };
}

/** Whether a metric needs a Prometheus server to query (KEDA) or an adapter's external metric (HPA). */
export const queriesPrometheus = (m: AutoscalingMetric) => m.type === 'Prometheus' || signalTypes.includes(m.type);

function trigger(md: ModelDeployment, preset: PresetName, metric: AutoscalingMetric, index: number, server: PrometheusServer | undefined): Record<string, unknown> | undefined {
  if (metric.type === 'CPU' || metric.type === 'Memory') {
    return { type: metric.type === 'CPU' ? 'cpu' : 'memory', metricType: 'Utilization', metadata: { value: String(metric.targetAverageUtilization) } };
  }
  const q = metric.type === 'Prometheus'
    ? { query: metric.query!, metricType: 'AverageValue' as const, threshold: quantityDecimal(metric.targetAverageValue!) }
    : signalQuery(md, preset, metric);
  // autoscalingProblems refuses a signal the preset lacks, and a missing server, before this is built.
  if ('problem' in q || !server) return undefined;
  return {
    type: 'prometheus',
    name: `${metric.type.toLowerCase()}-${index}`,
    metricType: q.metricType,
    metadata: {
      serverAddress: server.address,
      query: q.query,
      threshold: q.threshold,
      ...(metric.activationValue !== undefined ? { activationThreshold: quantityDecimal(metric.activationValue) } : {}),
      // No data (a model at zero has no server series) is 0, not an error that stops scaling.
      ignoreNullValues: 'true',
    },
    ...(server.authentication ? { authenticationRef: { name: server.authentication, kind: 'ClusterTriggerAuthentication' } } : {}),
  };
}

/** What keeps the autoscaling spec from being served in this cluster with this preset. */
export function autoscalingProblems(md: ModelDeployment, preset: PresetName, kedaAvailable: boolean | undefined): string[] {
  const autoscaling = md.spec.autoscaling;
  if (!autoscaling) return [];
  const problems: string[] = [];
  const keda = scalerFor(md, kedaAvailable) === 'KEDA';
  if (kedaAvailable === false && autoscaling.scaler === 'KEDA') problems.push('autoscaling.scaler KEDA needs KEDA\'s CRDs (ScaledObject, keda.sh/v1alpha1) in the cluster; install KEDA or use scaler HPA');
  else if (kedaAvailable === false && autoscaling.minReplicas === 0) problems.push('autoscaling.minReplicas 0 (scale to zero) needs KEDA\'s CRDs (ScaledObject, keda.sh/v1alpha1) in the cluster; install KEDA or set minReplicas to 1 or more');
  else if (autoscaling.minReplicas === 0 && !autoscaling.prometheus) problems.push('autoscaling.minReplicas 0 (scale to zero): give autoscaling.prometheus, the Prometheus KEDA asks whether to wake the model');
  const metrics = autoscaling.metrics ?? [];
  metrics.forEach((m, i) => {
    if (!signalTypes.includes(m.type)) return;
    const q = signalQuery(md, preset, m);
    if ('problem' in q) problems.push(`autoscaling.metrics[${i}]: ${q.problem}`);
  });
  if (keda && metrics.some(queriesPrometheus) && !autoscaling.prometheus) {
    problems.push('autoscaling.prometheus: KEDA queries Prometheus for the Prometheus and LLM metrics; give its address or a registered provider');
  }
  return problems;
}

export function desiredScaledObject(md: ModelDeployment, preset: PresetName, providers: Provider[]): KubeObject | undefined {
  const autoscaling = md.spec.autoscaling;
  if (!autoscaling) return undefined;
  const metrics = autoscaling.metrics?.length ? autoscaling.metrics : [{ type: 'CPU', targetAverageUtilization: 80 } as AutoscalingMetric];
  const server = prometheusServer(md, providers);
  return {
    apiVersion: scaledObjectApiVersion,
    kind: 'ScaledObject',
    metadata: ownedMetadata(md),
    spec: {
      scaleTargetRef: { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: md.metadata!.name! },
      minReplicaCount: autoscaling.minReplicas ?? 1,
      maxReplicaCount: autoscaling.maxReplicas,
      cooldownPeriod: autoscaling.cooldownSeconds ?? defaultCooldownSeconds,
      ...(autoscaling.behavior ? { advanced: { horizontalPodAutoscalerConfig: { behavior: autoscaling.behavior } } } : {}),
      triggers: metrics.map((m, i) => trigger(md, preset, m, i, server)).filter((x) => x !== undefined),
    },
  };
}
