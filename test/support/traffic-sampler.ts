// Watches one ModelDeployment's traffic during a rollout and checks that traffic never runs ahead of
// the capacity that serves it. The promise of a canary is that users meet the new model only through
// its steps and only on pods that are ready; these are the observable halves of that promise.
//
// What a sample holds (from watches on the namespace, read every 250 ms and after every event):
//   - per revision (label modelship.io/revision): its Deployment's spec.replicas and status.readyReplicas,
//     and how many of its pods the test holds unready by hand (`unreadyByHandAnnotation`);
//   - the revisions `<md>-stable` and `<md>-canary` select;
//   - ReplicaRatio: the revisions the Service `<md>` selects (one, or every revision when it has no
//     revision in its selector);
//   - GatewayAPI and InferencePool: each revision's share of the HTTPRoute's main rule (the one without
//     header matches), found through the backendRef's selector (the Service's, or the InferencePool's
//     selector.matchLabels), so a backend pointing at a revision that is leaving or a Service or pool
//     that is gone is seen for what it is;
//   - spec.replicas (R), and from status the stable and canary revisions, the step and the rejected one.
//
// The invariants, with R = spec.replicas and ready' = ready pods, counting those held unready by hand:
//   (a) GatewayAPI: a revision other than stable never gets a share its ready pods cannot carry:
//       share ≤ 100 × ready' / R.
//   (b) GatewayAPI: stable's ready pods cover its share, ready' ≥ ceil(R × share / 100), whenever the
//       shortfall is the operator's doing: stable's Deployment is sized below that share, or traffic
//       sits on stable while other revisions' ready pods could carry more than they are given (their
//       ready pods are counted as they were just before the shortfall began too, so scaling the canary
//       down right after moving its traffic is no excuse). A shortfall nobody could serve (the canary
//       never became ready and stable is growing back) is not held against the operator.
//       ReplicaRatio: the ready' pods behind the Service `<md>` never drop below R.
//   (c) No revision gets all traffic before it walked its steps: it must have been seen as the canary at
//       its last pause step (the last step, when there is none), or have served before the sampler
//       started (stable, or Promoted in history), or have been promoted with `<hash>/full` by the test
//       (`allowFullTraffic`).
//   (d) GatewayAPI: while a revision is the canary (not rejected, not replaced, spec.paused unset), its share does not fall
//       below the highest share it had while its ready pods could still carry that share: on a step
//       advance the previous weight holds until the new share is ready (the CRD keeps setWeight steps
//       in ascending order, so a lower weight is never what a step asks for).
// ReplicaRatio has no (a) or (d): the Service spreads requests over ready pods, so the canary's share
// is its share of ready pods by construction.
//
// What is fair to assert from a sampler: the operator writes Deployments, Services, the route and
// status one after the other, and the watches of different kinds deliver independently, so a sample
// can see the state between two writes of one reconcile. A violation therefore counts only when it
// lasts `graceMs` (1.5 s by default): from the first sample that shows it to the first that does not.
// Shorter ones are kept as transients for the log. The defects this is written against last as long
// as a pod takes to load (seconds); a reconcile's writes land within a few hundred milliseconds.
// Readiness comes from Deployment status, as the operator sees it; a pod the test made unready by hand
// is an outside cause and counts as ready.
import type { ModelDeployment, RolloutStep } from '../../operator/api/generated.js';
import { Informer } from '../../operator/runtime/informer.js';
import type { KubeClient, KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';

/** Put on a pod (with kwok.modelship.io/ready: "false") while the test holds it unready on purpose. */
export const unreadyByHandAnnotation = 'modelship.io/test-unready-by-hand';

const revisionLabel = 'modelship.io/revision';
const instanceLabel = 'app.kubernetes.io/instance';

export type Invariant = 'a' | 'b' | 'c' | 'd';
export type Router = 'ReplicaRatio' | 'GatewayAPI' | 'InferencePool';

export interface RevisionView {
  /** Deployment spec.replicas; 0 when it has no Deployment. */
  spec: number;
  /** Deployment status.readyReplicas. */
  ready: number;
  /** Pods the test holds unready by hand (ready or not at this moment). */
  byHand: number;
}

export interface Sample {
  at: number;
  phase: string;
  router: Router;
  replicas: number;
  revisions: Record<string, RevisionView>;
  /** The revisions `<md>-stable` and `<md>-canary` select. */
  stable: string | undefined;
  canary: string | undefined;
  /** ReplicaRatio: the revisions the Service `<md>` selects. */
  selects?: string[];
  /** GatewayAPI: percent of the main rule's traffic per revision (a gone backend Service counts as `(no Service)`). */
  shares?: Record<string, number>;
  status: { stable?: string; canary?: string; step?: number; steps?: number; rejected?: string; paused?: boolean };
}

export interface Episode {
  invariant: Invariant;
  key: string;
  phase: string;
  start: number;
  end?: number;
  message: string;
  sample: Sample;
}

export interface SamplerOptions {
  intervalMs?: number;
  graceMs?: number;
}

type Obj = KubeObject & { spec?: any; status?: any };
type Md = ModelDeployment & KubeObject;

const noService = '(no Service)';
const short = (h: string | undefined) => (!h ? '-' : h === noService ? h : h.slice(0, 7));

/**
 * Ready pods, with the ones the test holds unready counted as ready. A held pod may be ready or not
 * and Deployment status lags the pod, so the sum is capped at the Deployment's size.
 */
const ready = (v: RevisionView) => (v.byHand ? Math.min(v.spec, v.ready + v.byHand) : v.ready);

/** The step at which a canary has walked its steps: its last pause, or its last step. */
function walkedIndex(steps: RolloutStep[]): number {
  let last = -1;
  steps.forEach((s, i) => { if (s.pause) last = i; });
  return last >= 0 ? last : Math.max(0, steps.length - 1);
}

export class TrafficSampler {
  readonly samples: Sample[] = [];
  private readonly episodes: Episode[] = [];
  private readonly open = new Map<string, Episode>();
  private readonly trusted = new Set<string>();
  private readonly walked = new Set<string>();
  private readonly held = new Map<string, number>();
  /** Other revisions' ready pods just before the current (b) shortfall began. */
  private readyOthersBeforeShortfall: number | undefined;
  private readonly informers: Informer<Obj>[] = [];
  private readonly md: Informer<Md>;
  private readonly deployments: Informer<Obj>;
  private readonly services: Informer<Obj>;
  private readonly pods: Informer<Obj>;
  private routes: Informer<Obj> | undefined;
  private pools: Informer<Obj> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private currentPhase = 'start';
  private startedAt = 0;
  private readonly graceMs: number;
  private readonly intervalMs: number;

  constructor(private readonly client: KubeClient, readonly namespace: string, readonly name: string, opts: SamplerOptions = {}) {
    this.graceMs = opts.graceMs ?? 1_500;
    this.intervalMs = opts.intervalMs ?? 250;
    const onChange = { onUpsert: () => this.sample(), onDelete: () => this.sample() };
    const mine = { namespace, labelSelector: `${instanceLabel}=${name}` };
    this.md = new Informer<Md>(client, Resources.ModelDeployment, onChange, { namespace });
    this.deployments = new Informer<Obj>(client, Resources.Deployment, onChange, mine);
    this.services = new Informer<Obj>(client, Resources.Service, onChange, { namespace });
    this.pods = new Informer<Obj>(client, Resources.Pod, onChange, mine);
    this.informers.push(this.deployments, this.services, this.pods);
  }

  /**
   * Starts sampling. Revisions that serve now, or were Promoted before, may take all traffic without
   * walking steps again (a rollback to them skips the steps).
   */
  async start(): Promise<void> {
    const served = await this.client.request('GET', '/apis/gateway.networking.k8s.io/v1').then(() => true, () => false);
    if (served) {
      this.routes = new Informer<Obj>(this.client, Resources.HTTPRoute, { onUpsert: () => this.sample(), onDelete: () => this.sample() }, { namespace: this.namespace });
      this.informers.push(this.routes);
    }
    if (await this.client.request('GET', '/apis/inference.networking.k8s.io/v1').then(() => true, () => false)) {
      this.pools = new Informer<Obj>(this.client, Resources.InferencePool, { onUpsert: () => this.sample(), onDelete: () => this.sample() }, { namespace: this.namespace });
      this.informers.push(this.pools);
    }
    await Promise.all([this.md.start(), ...this.informers.map((i) => i.start())]);
    const md = this.md.get(this.namespace, this.name);
    if (md?.status?.stableRevision?.hash) this.trusted.add(md.status.stableRevision.hash);
    for (const h of md?.status?.history ?? []) if (h.outcome === 'Promoted' && h.revision) this.trusted.add(h.revision);
    this.startedAt = Date.now();
    this.running = true;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  /** Names what the test does next; each violation reports the phase it began in. */
  phase(name: string): void {
    this.currentPhase = name;
  }

  /** A `promote <hash>/full` skips the steps on purpose. */
  allowFullTraffic(hash: string): void {
    this.trusted.add(hash);
  }

  stop(): void {
    if (!this.running) return;
    this.sample();
    this.running = false;
    clearInterval(this.timer);
    this.md.stop();
    for (const i of this.informers) i.stop();
    const now = Date.now();
    for (const e of this.open.values()) e.end = now;
    this.open.clear();
  }

  /** Violations that lasted at least the grace period. */
  get violations(): Episode[] {
    return this.episodes.filter((e) => (e.end ?? Date.now()) - e.start >= this.graceMs);
  }

  get transients(): Episode[] {
    return this.episodes.filter((e) => (e.end ?? Date.now()) - e.start < this.graceMs);
  }

  describe(e: Episode): string {
    const took = ((e.end ?? Date.now()) - e.start) / 1000;
    const at = ((e.start - this.startedAt) / 1000).toFixed(2);
    return `(${e.invariant}) at +${at} s (${new Date(e.start).toISOString()}) for ${took.toFixed(2)} s, during "${e.phase}": ${e.message} | ${formatSample(e.sample)}`;
  }

  /** Every violation, one per line, the transients, then a count of both and of the samples. */
  report(): string {
    const lines = [...this.violations.map((e) => this.describe(e)), ...this.transients.map((e) => `not counted, shorter than the grace: ${this.describe(e)}`)];
    lines.push(`${this.samples.length} samples over ${((Date.now() - this.startedAt) / 1000).toFixed(1)} s; ${this.violations.length} violations; ${this.transients.length} shorter than ${this.graceMs} ms (not counted)`);
    return lines.join('\n');
  }

  private sample(): void {
    if (!this.running) return;
    const md = this.md.get(this.namespace, this.name);
    if (!md) return;
    const s = this.observe(md);
    this.samples.push(s);
    const found = this.check(s);
    for (const [key, e] of this.open) {
      if (found.has(key)) continue;
      e.end = s.at;
      this.open.delete(key);
    }
    for (const [key, v] of found) {
      if (this.open.has(key)) continue;
      const e: Episode = { invariant: v.invariant, key, phase: this.currentPhase, start: s.at, message: v.message, sample: s };
      this.open.set(key, e);
      this.episodes.push(e);
    }
  }

  private observe(md: Md): Sample {
    const revisions: Record<string, RevisionView> = {};
    const view = (h: string) => (revisions[h] ??= { spec: 0, ready: 0, byHand: 0 });
    for (const d of this.deployments.list(this.namespace)) {
      const h = d.metadata?.labels?.[revisionLabel];
      if (!h) continue;
      const v = view(h);
      v.spec = d.spec?.replicas ?? 0;
      v.ready = d.status?.readyReplicas ?? 0;
    }
    for (const p of this.pods.list(this.namespace)) {
      const h = p.metadata?.labels?.[revisionLabel];
      if (h && !p.metadata?.deletionTimestamp && p.metadata?.annotations?.[unreadyByHandAnnotation]) view(h).byHand++;
    }
    const svc = (n: string) => this.services.get(this.namespace, n);
    const selected = (n: string): string | undefined => {
      const s = svc(n);
      return s ? s.spec?.selector?.[revisionLabel] ?? '*' : undefined;
    };
    const router: Router = md.spec.traffic?.router ?? 'ReplicaRatio';
    const st = md.status;
    const sample: Sample = {
      at: Date.now(),
      phase: this.currentPhase,
      router,
      replicas: md.spec.replicas ?? 1,
      revisions,
      stable: selected(`${this.name}-stable`),
      canary: selected(`${this.name}-canary`),
      status: {
        ...(st?.stableRevision?.hash ? { stable: st.stableRevision.hash } : {}),
        ...(st?.canaryRevision?.hash ? { canary: st.canaryRevision.hash } : {}),
        ...(st?.rollout?.step !== undefined ? { step: st.rollout.step } : {}),
        ...(st?.rollout?.steps !== undefined ? { steps: st.rollout.steps } : {}),
        ...(st?.rejectedRevision?.hash ? { rejected: st.rejectedRevision.hash } : {}),
        ...(md.spec.paused ? { paused: true } : {}),
      },
    };
    if (router === 'ReplicaRatio') {
      const main = selected(this.name);
      sample.selects = main === undefined ? [] : main === '*' ? Object.keys(revisions) : [main];
    } else {
      const route = this.routes?.get(this.namespace, this.name);
      const poolSelects = (n: string): string | undefined => {
        const pool = this.pools?.get(this.namespace, n);
        return pool ? pool.spec?.selector?.matchLabels?.[revisionLabel] ?? '*' : undefined;
      };
      if (route) sample.shares = routeShares(route, (ref) => (ref.kind === 'InferencePool' ? poolSelects(ref.name) : selected(ref.name)));
    }
    // (c) needs to know which canaries reached their last pause; status is the only place that says so.
    const steps = md.spec.rollout?.steps ?? [];
    if (sample.status.canary && sample.status.step !== undefined && sample.status.step >= walkedIndex(steps)) this.walked.add(sample.status.canary);
    return sample;
  }

  private check(s: Sample): Map<string, { invariant: Invariant; message: string }> {
    const out = new Map<string, { invariant: Invariant; message: string }>();
    const R = s.replicas;
    const rev = (h: string | undefined) => (h ? s.revisions[h] : undefined) ?? { spec: 0, ready: 0, byHand: 0 };
    const readyish = (h: string | undefined) => ready(rev(h));
    const need = (share: number) => Math.ceil((R * share) / 100 - 1e-9);
    const allowed = (h: string) => this.trusted.has(h) || this.walked.has(h);
    const prev = this.samples.at(-2);

    if (s.router !== 'ReplicaRatio' && s.shares) {
      const shares = s.shares;
      // (a)
      for (const h of Object.keys(shares).filter((x) => x !== s.stable)) {
        const share = shares[h]!;
        if (share > 0 && readyish(h) < need(share)) {
          out.set(`a:${h}`, { invariant: 'a', message: `revision ${short(h)} gets ${share} % of traffic with ${readyish(h)} ready pods, which carry ${Math.floor((100 * readyish(h)) / R)} % of ${R} replicas` });
        }
      }
      // (b)
      const stableShare = s.stable ? shares[s.stable] ?? 0 : 0;
      const shortfall = stableShare > 0 && readyish(s.stable) < need(stableShare);
      // Other revisions' ready pods, and the share they are given: could they carry more?
      const readyElsewhere = (x: Sample) => Object.entries(x.revisions).filter(([h]) => h !== x.stable).reduce((n, [, v]) => n + ready(v), 0);
      const otherShare = Object.entries(shares).filter(([h]) => h !== s.stable).reduce((n, [, w]) => n + w, 0);
      if (!shortfall) this.readyOthersBeforeShortfall = undefined;
      else {
        this.readyOthersBeforeShortfall ??= prev ? readyElsewhere(prev) : 0;
        const undersized = rev(s.stable).spec < need(stableShare);
        const couldCarry = Math.max(readyElsewhere(s), this.readyOthersBeforeShortfall) * 100 > otherShare * R;
        if (undersized || couldCarry) {
          const why = undersized ? `its Deployment asks for only ${rev(s.stable).spec}` : `other revisions' ${Math.max(readyElsewhere(s), this.readyOthersBeforeShortfall)} ready pods (when the shortfall began or now) could carry more than their ${otherShare} %`;
          out.set('b', { invariant: 'b', message: `stable ${short(s.stable)} gets ${stableShare} % of traffic with ${readyish(s.stable)} ready pods of the ${need(stableShare)} that share needs; ${why}` });
        }
      }
      // (c)
      const taking = Object.entries(shares).filter(([, w]) => w > 0).map(([h]) => h);
      if (taking.length === 1 && taking[0] !== noService && !allowed(taking[0]!)) {
        out.set(`c:${taking[0]}`, { invariant: 'c', message: `revision ${short(taking[0])} gets all traffic without having walked its steps` });
      }
      // (d)
      const c = s.canary;
      if (c && c !== s.stable && s.status.canary === c && s.status.rejected !== c && !s.status.paused) {
        const share = shares[c] ?? 0;
        const held = this.held.get(c) ?? 0;
        if (share < held && readyish(c) >= need(held)) {
          out.set(`d:${c}`, { invariant: 'd', message: `canary ${short(c)} fell back from ${held} % to ${share} % although its ${readyish(c)} ready pods carry ${held} %` });
        }
        if (readyish(c) >= need(share)) this.held.set(c, Math.max(held, share));
      }
    } else if (s.router === 'ReplicaRatio' && s.selects) {
      // (b)
      const endpoints = s.selects.reduce((n, h) => n + readyish(h), 0);
      if (endpoints < R) {
        out.set('b', { invariant: 'b', message: `the Service ${this.name} has ${endpoints} ready pods behind it (${s.selects.map((h) => `${short(h)}:${readyish(h)}`).join(', ')}) of the ${R} the spec asks for` });
      }
      // (c)
      const taking = s.selects.filter((h) => rev(h).ready > 0);
      if (taking.length === 1 && !allowed(taking[0]!)) {
        out.set(`c:${taking[0]}`, { invariant: 'c', message: `revision ${short(taking[0])} gets all traffic without having walked its steps` });
      }
    }
    return out;
  }
}

/** Percent of the main rule's traffic per revision, through each backend's (Service or pool) selector. */
function routeShares(route: Obj, revisionOf: (ref: { name: string; kind?: string }) => string | undefined): Record<string, number> {
  const rules: any[] = route.spec?.rules ?? [];
  const main = rules.filter((r) => !(r.matches ?? []).some((m: any) => m.headers?.length)).at(-1);
  const refs: { name: string; kind?: string; weight?: number }[] = main?.backendRefs ?? [];
  const total = refs.reduce((n, b) => n + (b.weight ?? 1), 0);
  const shares: Record<string, number> = {};
  if (total === 0) return shares;
  for (const b of refs) {
    const h = revisionOf(b) ?? noService;
    shares[h] = (shares[h] ?? 0) + Math.round((100 * (b.weight ?? 1)) / total);
  }
  return shares;
}

function formatSample(s: Sample): string {
  const revs = Object.entries(s.revisions).map(([h, v]) => `${short(h)}${h === s.stable ? '(stable)' : h === s.canary ? '(canary)' : ''} ${v.ready}/${v.spec} ready${v.byHand ? ` (${v.byHand} held unready by hand)` : ''}`).join(', ');
  const traffic = s.shares
    ? `route ${Object.entries(s.shares).map(([h, w]) => `${short(h)}=${w}`).join(' ')}`
    : `Service selects ${s.selects?.map(short).join(',') || 'nothing'}`;
  const st = s.status;
  const status = `status stable ${short(st.stable)} canary ${short(st.canary)}${st.step !== undefined ? (st.step >= (st.steps ?? Infinity) ? ' all steps done' : ` step ${st.step + 1}/${st.steps ?? '?'}`) : ''}${st.rejected ? ` rejected ${short(st.rejected)}` : ''}`;
  return `${traffic}; ${revs || 'no Deployments'}; R=${s.replicas}; ${status}`;
}
