// Timestamps each ModelDeployment's transitions from outside, through watches (a poll would miss
// short states and cost the apiserver what it measures): children exist (its Deployment for the
// expected revision and its Service), status.observedGeneration current, Ready=True, canary started,
// promoted, old revision removed.
import type { ModelDeployment } from '../../operator/api/generated.js';
import { Informer } from '../../operator/runtime/informer.js';
import { KubeClient, type KubeObject } from '../../operator/runtime/kube.js';
import { loadClusterAccess } from '../../operator/runtime/kubeconfig.js';
import { Resources } from '../../operator/runtime/resources.js';
import { setTimeout as sleep } from 'node:timers/promises';

export type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };

const instanceLabel = 'app.kubernetes.io/instance';
const revisionLabel = 'modelship.io/revision';

/** One object's journey in one round (a create, a rollout, a spec change). */
export interface Track {
  sentAt: number;
  /** Generation the change produced: observedGeneration ≥ this is "observed". */
  generation: number;
  /** Revision hash the change asks for. */
  revision: string;
  /** Revision being replaced (rollouts): its Deployment's deletion is "cleaned". */
  oldRevision?: string;
  deploymentAt?: number;
  serviceAt?: number;
  childrenAt?: number;
  observedAt?: number;
  readyAt?: number;
  canaryAt?: number;
  promotedAt?: number;
  cleanedAt?: number;
}

/** A spec change waiting for its observedGeneration (churn: many per object). */
interface PendingChange { generation: number; sentAt: number; resolve: (at: number) => void }

export class Observer {
  readonly mds: Informer<Md>;
  readonly deployments: Informer<Obj>;
  readonly services: Informer<Obj>;
  readonly tracks = new Map<string, Track>();
  private readonly pending = new Map<string, PendingChange[]>();
  /** Called for every Deployment event (the floor reacts to readiness). */
  onDeployment: ((d: Obj) => void) | undefined;
  events = 0;

  constructor(kubeconfig: string, readonly namespace: string) {
    const client = new KubeClient(loadClusterAccess({ kubeconfig }), undefined, 'modelship-bench-observer/0.1.0');
    this.mds = new Informer<Md>(client, Resources.ModelDeployment, {
      onUpsert: (md) => this.md(md),
    }, { namespace, stallMs: 600_000 });
    this.deployments = new Informer<Obj>(client, Resources.Deployment, {
      onUpsert: (d) => this.deployment(d),
      onDelete: (d) => this.deploymentGone(d),
    }, { namespace, stallMs: 600_000, indexBy: (d) => d.metadata?.labels?.[instanceLabel] });
    this.services = new Informer<Obj>(client, Resources.Service, {
      onUpsert: (s) => this.service(s),
    }, { namespace, stallMs: 600_000 });
  }

  async start(): Promise<void> {
    await Promise.all([this.mds.start(), this.deployments.start(), this.services.start()]);
  }

  stop(): void {
    this.mds.stop();
    this.deployments.stop();
    this.services.stop();
  }

  /** Starts a round for `name`; catches up with what the caches already hold. */
  track(name: string, t: Track): void {
    this.tracks.set(name, t);
    const md = this.mds.get(this.namespace, name);
    if (md) this.md(md);
    for (const d of this.deploymentsOf(name)) this.deployment(d);
    const svc = this.services.get(this.namespace, name);
    if (svc) this.service(svc);
  }

  /** The Deployments of one ModelDeployment (by its instance label). */
  deploymentsOf(name: string): Obj[] {
    return this.deployments.byIndex(name);
  }

  /** Resolves with the time observedGeneration reached `generation`. */
  change(name: string, generation: number, sentAt: number): Promise<number> {
    const md = this.mds.get(this.namespace, name);
    if ((md?.status?.observedGeneration ?? 0) >= generation) return Promise.resolve(Date.now());
    return new Promise((resolve) => {
      let list = this.pending.get(name);
      if (!list) this.pending.set(name, (list = []));
      list.push({ generation, sentAt, resolve });
    });
  }

  private md(md: Md): void {
    this.events++;
    const now = Date.now();
    const name = md.metadata?.name ?? '';
    const observed = md.status?.observedGeneration ?? 0;
    const list = this.pending.get(name);
    if (list) {
      const left = list.filter((p) => {
        if (observed < p.generation) return true;
        p.resolve(now);
        return false;
      });
      if (left.length) this.pending.set(name, left);
      else this.pending.delete(name);
    }
    const t = this.tracks.get(name);
    if (!t) return;
    if (t.observedAt === undefined && observed >= t.generation) t.observedAt = now;
    const ready = md.status?.conditions?.find((c) => c.type === 'Ready');
    if (t.readyAt === undefined && ready?.status === 'True' && (ready.observedGeneration ?? 0) >= t.generation && observed >= t.generation) t.readyAt = now;
    if (t.canaryAt === undefined && md.status?.canaryRevision?.hash === t.revision) t.canaryAt = now;
    if (t.promotedAt === undefined && md.status?.stableRevision?.hash === t.revision) t.promotedAt = now;
  }

  private deployment(d: Obj): void {
    this.events++;
    this.onDeployment?.(d);
    const name = d.metadata?.labels?.[instanceLabel];
    const t = name ? this.tracks.get(name) : undefined;
    if (!t || d.metadata?.labels?.[revisionLabel] !== t.revision) return;
    t.deploymentAt ??= Date.now();
    this.children(t);
  }

  private deploymentGone(d: Obj): void {
    this.events++;
    const name = d.metadata?.labels?.[instanceLabel];
    const t = name ? this.tracks.get(name) : undefined;
    if (t?.oldRevision && d.metadata?.labels?.[revisionLabel] === t.oldRevision) t.cleanedAt ??= Date.now();
  }

  private service(s: Obj): void {
    this.events++;
    const t = this.tracks.get(s.metadata?.name ?? '');
    if (!t) return;
    t.serviceAt ??= Date.now();
    this.children(t);
  }

  private children(t: Track): void {
    if (t.childrenAt === undefined && t.deploymentAt !== undefined && t.serviceAt !== undefined) t.childrenAt = Math.max(t.deploymentAt, t.serviceAt);
  }

  /** Waits until `done(track)` holds for every tracked name, or the deadline; returns how many do. */
  waitAll(names: string[], done: (t: Track) => boolean, timeoutMs: number, progress?: (n: number) => void): Promise<number> {
    return waitAllTracks(this.tracks, names, done, timeoutMs, progress);
  }
}

/** Waits until `done(track)` holds for every name in `names`, or the deadline; returns how many do. */
export async function waitAllTracks(tracks: Map<string, Track>, names: string[], done: (t: Track) => boolean, timeoutMs: number, progress?: (n: number) => void): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let lastReport = 0;
  for (;;) {
    const count = names.filter((n) => { const t = tracks.get(n); return !!t && done(t); }).length;
    if (count === names.length || Date.now() > deadline) return count;
    if (progress && Date.now() - lastReport > 10_000) { lastReport = Date.now(); progress(count); }
    await sleep(100);
  }
}
