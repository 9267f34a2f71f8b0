// The floor: the writes the operator makes for a ModelDeployment, made directly. The objects and the
// status come from the operator's own pure decision function (plan), so they are byte for byte what
// the operator would write; but there is no informer cache, no work queue, no reconcile loop and no
// per-request TLS handshake around them: `concurrency` workers write through one keep-alive client.
// What is left is the cost the apiserver, etcd and the controllers behind them set on this machine.
import { randomBytes } from 'node:crypto';
import { plan, type Plan } from '../../operator/modeldeployment/plan.js';
import { appliedHash, appliedHashAnnotation, fieldManager } from '../../operator/modeldeployment/reconcile.js';
import { statusEquals } from '../../operator/modeldeployment/status.js';
import { microTime } from '../../operator/runtime/events.js';
import type { KubeObject, ResourceType } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { withRetry, type BenchClient } from './client.js';
import type { Md, Observer } from './observer.js';

export const benchFetcherImage = 'example.invalid/modelship:bench';

const typeOf: Record<string, ResourceType> = {
  Deployment: Resources.Deployment,
  Service: Resources.Service,
  HorizontalPodAutoscaler: Resources.HorizontalPodAutoscaler,
};

interface State {
  md: Md;
  applied: Map<string, string>;
  initialDone: boolean;
  readyQueued: boolean;
}

type Task = { kind: 'initial' | 'ready' | 'change'; name: string };

const instanceLabel = 'app.kubernetes.io/instance';
const revisionLabel = 'modelship.io/revision';

function deploymentReady(d: KubeObject & { spec?: any; status?: any }): boolean {
  const want = d.spec?.replicas ?? 0;
  return (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0)
    && (d.status?.readyReplicas ?? 0) >= want && (d.status?.updatedReplicas ?? 0) >= want && (d.status?.replicas ?? 0) === want;
}

export class FloorController {
  private readonly state = new Map<string, State>();
  private readonly queue: Task[] = [];
  private readonly waiters: (() => void)[] = [];
  /** The newest changed object per name whose change task is still queued: like a work queue, changes coalesce. */
  private readonly changes = new Map<string, Md>();
  private stopped = false;
  private workers: Promise<void>[] = [];
  writes = 0;
  errors: string[] = [];

  constructor(
    private readonly client: BenchClient,
    private readonly observer: Observer,
    private readonly concurrency: number,
  ) {
    observer.onDeployment = (d) => {
      const name = d.metadata?.labels?.[instanceLabel];
      const s = name ? this.state.get(name) : undefined;
      if (!s || !s.initialDone || s.readyQueued || !deploymentReady(d)) return;
      s.readyQueued = true;
      this.push({ kind: 'ready', name: name! });
    };
  }

  start(): void {
    for (let i = 0; i < this.concurrency; i++) this.workers.push(this.work());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.waiters.splice(0)) w();
    await Promise.all(this.workers);
  }

  /** A ModelDeployment was created (the create's response): write its children and first status. */
  created(md: Md): void {
    this.state.set(md.metadata!.name!, { md, applied: new Map(), initialDone: false, readyQueued: false });
    this.push({ kind: 'initial', name: md.metadata!.name! });
  }

  /** A spec change was made (the patch's response): write the status that observes it. */
  changed(md: Md): void {
    const name = md.metadata!.name!;
    const queued = this.changes.get(name);
    if (queued && (queued.metadata?.generation ?? 0) >= (md.metadata?.generation ?? 0)) return;
    this.changes.set(name, md);
    if (!queued) this.push({ kind: 'change', name });
  }

  private push(task: Task): void {
    this.queue.push(task);
    this.waiters.shift()?.();
  }

  private async next(): Promise<Task | undefined> {
    while (!this.stopped) {
      const task = this.queue.shift();
      if (task) return task;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    return undefined;
  }

  private async work(): Promise<void> {
    for (;;) {
      const task = await this.next();
      if (!task) return;
      try {
        await this.run(task);
      } catch (err) {
        if (this.errors.length < 20) this.errors.push(`${task.kind} ${task.name}: ${(err as Error).message}`);
      }
    }
  }

  private decide(md: Md): Plan {
    const deployments = new Map<string, KubeObject>();
    for (const d of this.observer.deploymentsOf(md.metadata!.name!)) {
      const hash = d.metadata?.labels?.[revisionLabel];
      if (hash) deployments.set(hash, d);
    }
    return plan(md, { deployments, pods: [] }, { fetcherImage: benchFetcherImage, now: new Date(), gatewayApiAvailable: false });
  }

  private async run(task: Task): Promise<void> {
    const s = this.state.get(task.name);
    if (!s) return;
    if (task.kind === 'change') {
      const md = this.changes.get(task.name);
      this.changes.delete(task.name);
      if (!md) return;
      s.md = md;
    }
    const decision = this.decide(s.md);
    for (const desired of decision.apply) {
      const hash = appliedHash(desired);
      const key = `${desired.kind}/${desired.metadata!.name}`;
      if (s.applied.get(key) === hash) continue;
      desired.metadata!.annotations = { ...desired.metadata!.annotations, [appliedHashAnnotation]: hash };
      await withRetry(() => this.client.apply(typeOf[desired.kind!]!, desired, fieldManager));
      this.writes++;
      s.applied.set(key, hash);
    }
    if (!statusEquals(s.md.status, decision.status)) {
      const { name, namespace } = s.md.metadata!;
      const written = await withRetry(() => this.client.apply<Md>(Resources.ModelDeployment, {
        apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', metadata: { name, namespace }, status: decision.status,
      }, fieldManager, 'status'));
      this.writes++;
      s.md = written;
    }
    for (const e of decision.events) {
      await this.event(s.md, e.type, e.reason, e.message);
      this.writes++;
    }
    if (task.kind === 'initial') {
      s.initialDone = true;
      // The Deployment may have become ready before this task finished.
      const d = this.observer.deploymentsOf(task.name)[0];
      if (d && !s.readyQueued && deploymentReady(d)) {
        s.readyQueued = true;
        this.push({ kind: 'ready', name: task.name });
      }
    }
  }

  private async event(md: Md, type: string, reason: string, note: string): Promise<void> {
    const meta = md.metadata ?? {};
    await this.client.create(Resources.Event, {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${meta.name ?? 'object'}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`, namespace: meta.namespace },
      eventTime: microTime(new Date()),
      reportingController: 'modelship.io/operator',
      reportingInstance: 'modelship-bench-floor',
      action: 'Reconcile',
      reason,
      type,
      note: note.slice(0, 1024),
      regarding: { apiVersion: md.apiVersion, kind: md.kind, name: meta.name, namespace: meta.namespace, uid: meta.uid, resourceVersion: meta.resourceVersion },
    }).catch(() => undefined);
  }
}
