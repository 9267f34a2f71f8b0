// The Deployment that serves one revision of a model. Pure: same inputs, same object.
import type { ModelDeployment, Toleration } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { commonLabels, deploymentName, ownedMetadata, podLabels, revisionLabel, modelVersionLabel } from '../labels.js';
import { modelCacheArgs, modelCacheMountPath, modelCacheVolume, modelCacheVolumeName, type ModelCache } from '../model-cache.js';
import { modelMountPath } from '../presets.js';
import type { ResolvedRuntime } from '../resolve.js';
import { revisionSpecAnnotation, revisionSpecRecord } from '../rollout/revisions.js';
import { runtimeImagesAnnotation, runtimeImagesRecord } from '../rollout/runtime-pin.js';

export interface DeploymentInput {
  md: ModelDeployment;
  hash: string;
  runtime: ResolvedRuntime;
  replicas: number;
  /** The operator's own image: its `modelship fetch` command downloads and verifies the model. */
  fetcherImage: string;
  /** The sizeLimit of the emptyDir the model is downloaded into; unset: none (a Deployment built before limits). */
  modelSizeLimit?: string;
  /**
   * The admin's model cache (--model-cache), for a revision built with it (model-cache.ts modelCacheFor:
   * a serving revision keeps what it was built with). Used only for a fetched model with a digest.
   */
  modelCache?: ModelCache;
}

const startupProbePeriodSeconds = 2;
const drainSeconds = 5;

/** Where the fetcher finds the certificates of spec.model.caConfigMap. */
const modelCaMountPath = '/etc/modelship/model-ca';

const gpuToleration: Toleration = { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' };

const restrictedContainer = (readOnlyRootFilesystem: boolean) => ({
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  readOnlyRootFilesystem,
  runAsNonRoot: true,
});

/** The progress deadline: a model that loads slowly gets the time its startup timeout allows. */
export function progressDeadlineSeconds(md: ModelDeployment, runtime: ResolvedRuntime): number {
  return md.spec.rollout?.progressDeadlineSeconds ?? runtime.startupTimeoutSeconds + runtime.downloadBudgetSeconds + 120;
}

interface ModelSourcing {
  volumes: Record<string, unknown>[];
  initContainers: Record<string, unknown>[];
  serverMountSubPath?: string;
}

/** How the model reaches /mnt/models: fetched into an emptyDir, mounted from a PVC, or an image volume. */
function modelSourcing(input: DeploymentInput): ModelSourcing {
  const { md, fetcherImage } = input;
  const { uri, digest, credentialsSecret, caConfigMap } = md.spec.model;
  const fetchArgs = ['fetch', '--uri', uri, '--dest', modelMountPath, ...(digest ? ['--digest', digest] : [])];
  const fetcher = (extraMounts: Record<string, unknown>[], args: string[]) => ({
    name: 'fetch-model',
    image: fetcherImage,
    args,
    ...(credentialsSecret ? { envFrom: [{ secretRef: { name: credentialsSecret } }] } : {}),
    env: [
      { name: 'HOME', value: '/tmp' },
      // Node adds these certificates to its trusted roots at start, for every request the fetcher makes.
      ...(caConfigMap ? [{ name: 'NODE_EXTRA_CA_CERTS', value: `${modelCaMountPath}/ca.crt` }] : []),
    ],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
    securityContext: restrictedContainer(true),
    // Why a fetch failed (a digest mismatch, a refused connection) reaches the pod status, and so the
    // rollback reason, from the last line of the fetcher's log.
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: [
      { name: 'tmp', mountPath: '/tmp' },
      ...(caConfigMap ? [{ name: 'model-ca', mountPath: modelCaMountPath, readOnly: true }] : []),
      ...extraMounts,
    ],
  });
  const caVolumes = caConfigMap ? [{ name: 'model-ca', configMap: { name: caConfigMap, items: [{ key: 'ca.crt', path: 'ca.crt' }] } }] : [];

  if (uri.startsWith('oci://')) {
    const ref = uri.slice('oci://'.length);
    // Pinning the reference to the digest makes the kubelet verify it; no fetcher needed.
    const reference = digest && !ref.includes('@') ? `${ref.replace(/:[\w][\w.-]*$/, '')}@${digest}` : ref;
    return { volumes: [{ name: 'model', image: { reference, pullPolicy: 'IfNotPresent' } }], initContainers: [] };
  }
  if (uri.startsWith('pvc://')) {
    const [claim = '', ...path] = uri.slice('pvc://'.length).split('/');
    const subPath = path.filter(Boolean).join('/');
    return {
      volumes: [{ name: 'model', persistentVolumeClaim: { claimName: claim, readOnly: true } }],
      // The model is served in place; the fetcher only verifies the digest when one is given.
      initContainers: digest
        ? [fetcher([{ name: 'model', mountPath: modelMountPath, readOnly: true, ...(subPath ? { subPath } : {}) }],
          ['fetch', '--verify-only', '--dest', modelMountPath, '--digest', digest])]
        : [],
      ...(subPath ? { serverMountSubPath: subPath } : {}),
    };
  }
  // The cache is keyed and checked by the digest, so only a model with one uses it. It is mounted into
  // the fetcher alone: the server reads its own verified copy in the emptyDir, never the shared cache.
  const cache = digest && input.modelCache ? input.modelCache : undefined;
  return {
    // Without a limit, one tenant's model download could fill the node's disk under every other pod.
    volumes: [
      { name: 'model', emptyDir: input.modelSizeLimit ? { sizeLimit: canonicalSize(input.modelSizeLimit) } : {} }, ...caVolumes,
      ...(cache ? [modelCacheVolume(cache)] : []),
    ],
    initContainers: [fetcher(
      [{ name: 'model', mountPath: modelMountPath }, ...(cache ? [{ name: modelCacheVolumeName, mountPath: modelCacheMountPath }] : [])],
      [...fetchArgs, ...(cache ? modelCacheArgs(cache) : [])],
    )],
  };
}

export function desiredDeployment(input: DeploymentInput): KubeObject {
  const { md, hash, runtime, replicas } = input;
  const spec = md.spec;
  const labels = podLabels(md, hash);
  const sourcing = modelSourcing(input);
  const scheduling = spec.scheduling ?? {};
  const tolerations: Toleration[] = [...(scheduling.tolerations ?? [])];
  if (runtime.gpus > 0 && !tolerations.some((t) => t.key === 'nvidia.com/gpu' || (t.operator === 'Exists' && !t.key))) {
    // GPU node pools are tainted nvidia.com/gpu in managed clusters; a GPU model must tolerate it.
    tolerations.push(gpuToleration);
  }
  const ports = [{ name: 'http', containerPort: runtime.port, protocol: 'TCP' }];
  if (runtime.metricsPort !== runtime.port) ports.push({ name: 'metrics', containerPort: runtime.metricsPort, protocol: 'TCP' });
  const probe = { httpGet: { path: runtime.readinessPath, port: 'http' } };
  const volumes = [
    ...sourcing.volumes,
    { name: 'tmp', emptyDir: {} },
    ...(runtime.sharedMemory ? [{ name: 'dshm', emptyDir: { medium: 'Memory' } }] : []),
  ];
  const server = {
    name: 'server',
    image: runtime.image,
    ...(runtime.args.length ? { args: runtime.args } : {}),
    env: [{ name: 'HOME', value: '/tmp' }, ...runtime.env],
    ports,
    resources: spec.resources ?? {},
    readinessProbe: { ...probe, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 },
    // Large models load slowly: the startup probe gives them startupTimeoutSeconds before the kubelet acts.
    // A short period lets a pod count as ready about when its server is, not up to 10 s later.
    startupProbe: { ...probe, periodSeconds: startupProbePeriodSeconds, timeoutSeconds: 3, failureThreshold: Math.max(1, Math.ceil(runtime.startupTimeoutSeconds / startupProbePeriodSeconds)) },
    securityContext: restrictedContainer(runtime.readOnlyRootFilesystem),
    // A stopping pod keeps serving while kube-proxies and gateways drop it from their endpoints, so
    // scaling a revision down fails no request in flight. The kubelet sleeps; no shell is needed.
    lifecycle: { preStop: { sleep: { seconds: drainSeconds } } },
    terminationMessagePolicy: 'FallbackToLogsOnError',
    volumeMounts: [
      { name: 'model', mountPath: modelMountPath, readOnly: true, ...(sourcing.serverMountSubPath ? { subPath: sourcing.serverMountSubPath } : {}) },
      { name: 'tmp', mountPath: '/tmp' },
      ...(runtime.sharedMemory ? [{ name: 'dshm', mountPath: '/dev/shm' }] : []),
    ],
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      // No stable/canary role label: it would change at every promotion, one patch per rollout for a
      // label status.stableRevision already says. Pods are selected by revision.
      ...ownedMetadata(md, deploymentName(md, hash), { [revisionLabel]: hash, [modelVersionLabel]: spec.model.version }),
      // The revision's spec lives as long as its pods: trimming status.history cannot lose what serves.
      // The images it runs are recorded too, so an operator upgrade does not change them (runtime-pin.ts).
      annotations: {
        [revisionSpecAnnotation]: revisionSpecRecord(spec),
        [runtimeImagesAnnotation]: runtimeImagesRecord({ server: runtime.image, ...(sourcing.initContainers.length ? { fetcher: input.fetcherImage } : {}) }),
      },
    },
    spec: {
      replicas,
      selector: { matchLabels: { [revisionLabel]: hash, ...commonLabels(md) } },
      // Never below the serving capacity during a rollout of the operator's own template changes.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      progressDeadlineSeconds: progressDeadlineSeconds(md, runtime),
      revisionHistoryLimit: 2,
      template: {
        metadata: { labels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
          ...(sourcing.initContainers.length ? { initContainers: sourcing.initContainers } : {}),
          containers: [server],
          volumes,
          ...(scheduling.nodeSelector ? { nodeSelector: scheduling.nodeSelector } : {}),
          ...(tolerations.length ? { tolerations } : {}),
          ...(scheduling.affinity ? { affinity: scheduling.affinity } : {}),
          ...(scheduling.priorityClassName ? { priorityClassName: scheduling.priorityClassName } : {}),
          terminationGracePeriodSeconds: 30,
        },
      },
    },
  };
}

/**
 * A size in the apiserver's canonical form (1024Mi is stored as 1Gi), so the live Deployment compares
 * equal to the desired one and no reconcile rewrites it. Sizes are whole Mi, Gi or Ti (the CRD's pattern).
 */
export function canonicalSize(q: string): string {
  const m = /^(\d+)(Mi|Gi|Ti)$/.exec(q);
  if (!m) return q;
  const units = ['Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  let n = Number(m[1]);
  let u = units.indexOf(m[2]!);
  while (n % 1024 === 0 && n > 0 && u < units.length - 1) { n /= 1024; u++; }
  return `${n}${units[u]}`;
}

/** The sizeLimit a Deployment's model emptyDir was built with, if any. */
export function modelVolumeSizeLimit(deployment: KubeObject): string | undefined {
  const volumes = (deployment as { spec?: { template?: { spec?: { volumes?: { name?: string; emptyDir?: { sizeLimit?: string } }[] } } } }).spec?.template?.spec?.volumes;
  return volumes?.find((v) => v.name === 'model')?.emptyDir?.sizeLimit;
}
