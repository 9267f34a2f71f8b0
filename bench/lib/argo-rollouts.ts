// The peer controller of `make bench PEER=argo-rollouts`: Argo Rollouts' controller, built from its Go
// module by hack/build-bins.sh (hack/argo-rollouts), run as its own process against the benchmark's
// control plane, and read from outside exactly as the operator is: /proc for CPU and memory, the
// apiserver's audit log for writes.
//
// Its workload is the operator's: each Rollout carries the pod template of the Deployment the
// operator would create for the ModelDeployment of the same name (taken from the operator's own pure
// plan()), the same replicas and the same canary steps.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import yaml from 'js-yaml';
import { freePort, probe } from '../../test/cluster/control-plane.js';
import { plan } from '../../operator/modeldeployment/plan.js';
import type { KubeObject, ResourceType } from '../../operator/runtime/kube.js';
import { benchFetcherImage } from './floor.js';
import type { Md } from './observer.js';
import { procStat, repoRoot, scrapeMetrics, stopProcess, type Metrics, type ProcStat, type SampledProcess } from './operator.js';
import type { BenchClient } from './client.js';

export const argoRolloutsBinary = join(repoRoot, '.bin', 'rollouts-controller');
export const argoRolloutsCrds = join(repoRoot, '.bin', 'argo-rollouts-crds');
/** What the controller's client-go calls itself (rest.DefaultKubernetesUserAgent: the binary's name). */
export const argoRolloutsUserAgent = 'rollouts-controller/';

export const RolloutResource = {
  group: 'argoproj.io', version: 'v1alpha1', plural: 'rollouts', kind: 'Rollout', namespaced: true,
} as const satisfies ResourceType;

const crdType: ResourceType = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };

export interface ArgoRollout extends KubeObject {
  spec?: Record<string, unknown>;
  status?: {
    phase?: string;
    observedGeneration?: string;
    currentPodHash?: string;
    stableRS?: string;
    replicas?: number;
    availableReplicas?: number;
    updatedReplicas?: number;
  };
}

/** Its five CRDs (Rollout, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Experiment): its informers need all. */
export async function installArgoRolloutsCrds(client: BenchClient): Promise<void> {
  if (!existsSync(argoRolloutsCrds)) throw new Error('.bin/argo-rollouts-crds is missing: run `hack/build-bins.sh argo-rollouts`');
  const names: string[] = [];
  for (const file of readdirSync(argoRolloutsCrds).filter((f) => f.endsWith('-crd.yaml'))) {
    const crd = yaml.load(readFileSync(join(argoRolloutsCrds, file), 'utf8')) as KubeObject;
    await client.apply(crdType, crd, 'modelship-bench');
    names.push(crd.metadata!.name!);
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await client.text('/apis/argoproj.io/v1alpha1/rollouts?limit=1');
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`Argo Rollouts' CRDs (${names.join(', ')}) not served: ${(err as Error).message}`, { cause: err });
      await sleep(200);
    }
  }
}

/** The pod template the operator gives a ModelDeployment's Deployment, from its own pure decision. */
export function operatorPodTemplate(md: Md): Record<string, unknown> {
  const decision = plan(md, { deployments: new Map(), pods: [] }, { fetcherImage: benchFetcherImage, now: new Date(), gatewayApiAvailable: false });
  const deployment: (KubeObject & { spec?: { template?: Record<string, unknown> } }) | undefined = decision.apply.find((o) => o.kind === 'Deployment');
  if (!deployment?.spec?.template) throw new Error(`the operator's plan for ${md.metadata?.name} has no Deployment`);
  return deployment.spec.template;
}

const instanceLabel = 'app.kubernetes.io/instance';

/**
 * The Rollout that matches a ModelDeployment: the same pod template, replicas and steps. The selector is
 * the instance label alone, because the template's revision label changes with each model version.
 */
export function argoRolloutFor(md: Md): ArgoRollout {
  const name = md.metadata!.name!;
  const steps = (md.spec.rollout?.steps ?? []).map((s) => (s.setWeight !== undefined ? { setWeight: s.setWeight } : { pause: s.pause }));
  return {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Rollout',
    metadata: { name, namespace: md.metadata!.namespace, labels: { [instanceLabel]: name } },
    spec: {
      replicas: md.spec.replicas ?? 1,
      selector: { matchLabels: { [instanceLabel]: name } },
      template: operatorPodTemplate(md),
      strategy: { canary: { steps } },
    },
  };
}

/** The Service a user of Argo Rollouts writes beside each Rollout: one, selecting its pods. */
export function userService(md: Md): KubeObject {
  const name = md.metadata!.name!;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: md.metadata!.namespace },
    spec: { selector: { [instanceLabel]: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  };
}

/** Ready as `kubectl argo rollouts status` says Healthy: the current generation, every replica available. */
export function rolloutHealthy(r: ArgoRollout, generation: number): boolean {
  return r.status?.phase === 'Healthy' && Number(r.status.observedGeneration ?? 0) >= generation;
}

/** Promoted: the stable ReplicaSet is the current pod template, and it is not the one the rollout replaced. */
export function rolloutPromoted(r: ArgoRollout, oldHash: string | undefined): boolean {
  const s = r.status;
  return !!s?.stableRS && s.stableRS === s.currentPodHash && s.stableRS !== oldHash;
}

export interface ArgoRolloutsOptions {
  kubeconfig: string;
  logDir: string;
  /** Client-side rate limit: Argo's defaults are 40 QPS, burst 80. */
  qps: number;
  burst: number;
}

export class ArgoRolloutsController implements SampledProcess {
  private child: ChildProcess | undefined;
  metricsPort = 0;
  healthzPort = 0;
  readonly logFile: string;

  constructor(private readonly opts: ArgoRolloutsOptions) {
    mkdirSync(opts.logDir, { recursive: true });
    this.logFile = join(opts.logDir, 'argo-rollouts.log');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    if (!existsSync(argoRolloutsBinary)) throw new Error('.bin/rollouts-controller is missing: run `hack/build-bins.sh argo-rollouts`');
    this.metricsPort = await freePort();
    this.healthzPort = await freePort();
    const fd = openSync(this.logFile, 'a');
    const setpriv = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--'] : [];
    // Its defaults otherwise, as the operator runs with its own: 10 rollout workers, log level info
    // (the operator's is info too). Leader election is off for both: one replica runs.
    const argv = [...setpriv, argoRolloutsBinary, `--kubeconfig=${this.opts.kubeconfig}`, '--leader-elect=false',
      `--metricsPort=${this.metricsPort}`, `--healthzPort=${this.healthzPort}`, `--qps=${this.opts.qps}`, `--burst=${this.opts.burst}`];
    this.child = spawn(argv[0]!, argv.slice(1), {
      cwd: repoRoot,
      stdio: ['ignore', fd, fd],
      // Its ConfigMap namespace (none exists there: defaults apply).
      env: { ...process.env, POD_NAMESPACE: 'argo-rollouts' },
    });
    closeSync(fd);
  }

  /** Waits until its metrics endpoint answers: the controller serves it once its informers started. */
  async waitReady(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`the Argo Rollouts controller exited; see ${this.logFile}`);
      const ok = await probe(`http://127.0.0.1:${this.metricsPort}/metrics`, {}, 5_000).then((r) => r.status === 200, () => false);
      if (ok) return;
      await sleep(100);
    }
    throw new Error(`the Argo Rollouts controller was not ready within ${timeoutMs} ms; see ${this.logFile}`);
  }

  scrape(): Promise<{ metrics: Metrics; ms: number; bytes: number } | undefined> {
    return scrapeMetrics(this.metricsPort);
  }

  proc(): ProcStat | undefined {
    return this.pid ? procStat(this.pid) : undefined;
  }

  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.child && this.running) await stopProcess(this.child, timeoutMs);
  }
}
