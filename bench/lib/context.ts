// What every scenario starts from: the control plane `supervisor run` started for it, enough kwok
// nodes for its pods, the CRD, a namespace, the watches that timestamp transitions, and the sampler.
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { createNamespace, testCluster } from '../../test/cluster/cluster.js';
import type { ClusterState } from '../../test/cluster/supervisor.js';
import { ensureNodes, fakeNode } from '../../test/cluster/nodes.js';
import { installCrd } from '../../test/support/crd.js';
import { modelDeployment, withSpec } from '../../test/support/builders.js';
import { revisionHash } from '../../operator/api/revision.js';
import type { RolloutSpec } from '../../operator/api/generated.js';
import { Resources } from '../../operator/runtime/resources.js';
import { BenchClient, pool, withRetry } from './client.js';
import { BenchOperator } from './operator.js';
import { Observer, type Md } from './observer.js';
import { Sampler } from './sampler.js';
import type { Result, Row, Scenario } from './report.js';
import { summarize, round, type Summary } from './stats.js';

export interface Params {
  /** Operator --concurrency, and the floor's number of writers. */
  concurrency: number;
  /** Requests the benchmark keeps in flight when it applies or patches N objects "at once". */
  applyConcurrency: number;
  procMs: number;
  metricsMs: number;
  /** Longest wait for a storm to finish. */
  timeoutS: number;
  /** --resync-seconds of the operator whose no-op resync is counted (steady state). */
  resyncSeconds: number;
  churnRate: number;
  churnSeconds: number;
  profile: boolean;
  maxPodsPerNode: number;
}

export function paramsFromEnv(n: number): Params {
  const num = (name: string, dflt: number) => (process.env[name] ? Number(process.env[name]) : dflt);
  return {
    concurrency: num('CONCURRENCY', 4),
    applyConcurrency: num('APPLY_CONCURRENCY', 50),
    procMs: num('PROC_MS', 500),
    metricsMs: num('METRICS_MS', n > 2000 ? 5000 : 2000),
    timeoutS: num('TIMEOUT', Math.max(300, Math.ceil(n * 0.6))),
    resyncSeconds: num('RESYNC', n > 2000 ? 180 : 30),
    churnRate: num('CHURN_RATE', 50),
    churnSeconds: num('CHURN_SECONDS', 60),
    profile: ['1', 'true', 'yes'].includes(process.env.PROFILE ?? ''),
    maxPodsPerNode: num('MAX_PODS', 500),
  };
}

/** The rollout every benchmark ModelDeployment carries: two short steps, a short scale-down delay. */
export const benchRollout: RolloutSpec = { steps: [{ setWeight: 50 }, { pause: { duration: '1s' } }], scaleDownDelaySeconds: 5 };

export const mdName = (i: number) => `m-${String(i).padStart(5, '0')}`;

/** The quickstart's shape (sklearn on MLServer, replicas 1) with the benchmark's rollout. */
export function benchModel(i: number, namespace: string): Md {
  return modelDeployment(mdName(i), namespace, withSpec({ rollout: benchRollout })) as Md;
}

export const v2Spec = (md: Md) => ({
  ...md.spec, model: { ...md.spec.model, version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' },
});

export class BenchContext {
  readonly state: ClusterState;
  readonly kc: KubeConfig;
  client!: BenchClient;
  observer!: Observer;
  sampler!: Sampler;
  namespace = '';
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  readonly details: Record<string, unknown> = {};
  readonly logDir: string;
  readonly diagnosticDir: string | undefined;
  operator: BenchOperator | undefined;
  nodes = 0;
  /** The floor result for this N that ratios refer to (none for the floor itself). */
  floor: Result | undefined;
  floorFile: string | undefined;

  constructor(readonly scenario: Scenario, readonly n: number, readonly params: Params, readonly profileDir: string) {
    const cluster = testCluster();
    this.state = cluster.state;
    this.kc = cluster.kc;
    this.logDir = join(this.state.dir, 'bench');
    this.diagnosticDir = params.profile ? profileDir : undefined;
  }

  log(msg: string): void {
    process.stderr.write(`[bench ${this.scenario} N=${this.n}] ${new Date().toISOString().slice(11, 19)} ${msg}\n`);
  }

  /** Nodes for `pods` pods at maxPodsPerNode each, with a margin; the CRD; a namespace; watches; sampling. */
  async setUp(pods: number): Promise<void> {
    this.client = await BenchClient.fromKubeconfig(this.state.kubeconfig, Math.max(16, this.params.applyConcurrency + this.params.concurrency));
    const count = Math.max(1, Math.ceil((pods * 1.2 + 20) / this.params.maxPodsPerNode));
    const nodes = Array.from({ length: count }, (_, i) => fakeNode(`kwok-bench-${i}`, { maxPods: this.params.maxPodsPerNode }));
    await ensureNodes(this.kc.makeApiClient(CoreV1Api), nodes, 120_000);
    this.nodes = count;
    await installCrd();
    this.namespace = await createNamespace('bench');
    this.observer = new Observer(this.state.kubeconfig, this.namespace);
    await this.observer.start();
    const components: Record<string, number> = { supervisor: this.state.supervisorPid };
    for (const [name, pid] of Object.entries(this.state.pids)) if (pid) components[name] = pid;
    this.sampler = new Sampler(undefined, components, {
      procMs: this.params.procMs, metricsMs: this.params.metricsMs, apiserverMetrics: () => this.client.text('/metrics'),
    });
    this.sampler.start();
    this.log(`control plane up (${(this.state.startedInMs / 1000).toFixed(1)} s), ${count} bench nodes × ${this.params.maxPodsPerNode} pods, namespace ${this.namespace}`);
  }

  async startOperator(name: string, opts: { resyncSeconds?: number; profile?: boolean } = {}): Promise<BenchOperator> {
    const profile = opts.profile ?? this.params.profile;
    const op = new BenchOperator({
      kubeconfig: this.state.kubeconfig,
      logDir: this.logDir,
      name,
      concurrency: this.params.concurrency,
      ...(opts.resyncSeconds ? { resyncSeconds: opts.resyncSeconds } : {}),
      // OPERATOR_NODE_ARGS: Node flags for the operator only; by default the heap settings the chart
      // ships, sized for N as docs/operations.md says.
      nodeArgs: [...(process.env.OPERATOR_NODE_ARGS ?? operatorHeapFlags(this.n)).split(/\s+/).filter(Boolean), ...(profile ? ['--cpu-prof', `--cpu-prof-name=${name}.cpuprofile`] : [])],
      ...(profile ? { diagnosticDir: this.profileDir } : {}),
    });
    await op.start();
    this.operator = op;
    this.sampler.setOperator(op);
    return op;
  }

  async stopOperator(): Promise<void> {
    await this.operator?.stop();
    this.sampler.setOperator(undefined);
    this.operator = undefined;
  }

  /** Creates N ModelDeployments at once; each create starts a track. Returns when all creates returned. */
  async createAll(onCreated?: (md: Md) => void): Promise<{ began: number; ended: number; errors: number }> {
    const began = Date.now();
    const errors = await pool(Array.from({ length: this.n }, (_, i) => i), this.params.applyConcurrency, async (i) => {
      const md = benchModel(i, this.namespace);
      const sentAt = Date.now();
      this.observer.track(md.metadata!.name!, { sentAt, generation: 1, revision: revisionHash(md.spec) });
      const created = await withRetry(() => this.client.create<Md>(Resources.ModelDeployment, md));
      onCreated?.(created);
    });
    for (const e of errors.slice(0, 5)) this.notes.push(`create failed: ${e.message}`);
    return { began, ended: Date.now(), errors: errors.length };
  }

  names(): string[] {
    return Array.from({ length: this.n }, (_, i) => mdName(i));
  }

  /** Per-object latencies (ms) from `from` to `to` for every track that has both. */
  latencies(from: 'sentAt', to: 'childrenAt' | 'observedAt' | 'readyAt' | 'canaryAt' | 'promotedAt' | 'cleanedAt'): Summary {
    const values: number[] = [];
    for (const t of this.observer.tracks.values()) {
      const a = t[from];
      const b = t[to];
      if (b !== undefined) values.push(b - a);
    }
    const s = summarize(values);
    return { count: s.count, p50: round(s.p50, 0), p90: round(s.p90, 0), p99: round(s.p99, 0), max: round(s.max, 0) };
  }

  /** Waits until the operator has made no write for `quietMs` (or `maxMs` passed). */
  async settle(quietMs = 5_000, maxMs = 120_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    let last = -1;
    let since = Date.now();
    while (Date.now() < deadline) {
      await this.sampler.scrape();
      const writes = ['POST', 'PATCH', 'PUT', 'DELETE'].reduce((n, m) => n + (this.sampler.latest('modelship_api_requests_total', { method: m }) ?? 0), 0);
      if (writes !== last) { last = writes; since = Date.now(); }
      if (Date.now() - since >= quietMs && (this.sampler.latest('modelship_workqueue_depth') ?? 0) === 0) return;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    this.notes.push(`the operator was still writing ${maxMs / 1000} s after the storm`);
  }

  row(r: Row): void {
    this.rows.push(r);
  }

  async tearDown(): Promise<void> {
    this.sampler?.stop();
    await this.stopOperator();
    this.observer?.stop();
    await this.client?.close();
  }
}

/**
 * The operator's heap settings for n ModelDeployments: a small young generation, and an old space of
 * about 128 MB plus 80 KB per ModelDeployment, so garbage is collected long before it costs RSS.
 */
export function operatorHeapFlags(n: number): string {
  return `--max-semi-space-size=4 --max-old-space-size=${128 + Math.ceil(n * 0.08)}`;
}
