// A model-based test of the decision core. A small world holds what the cluster would: Deployments
// whose pods become ready after random delays, lose readiness, or crash-loop; the main Service's
// selector; the canary Service; the HTTPRoute; the object's status and annotations. Random sequences of
// spec changes, operations, pod behaviour and crashes drive plan(). The world takes a reconcile's
// writes in the operator's order (children, then status, then the annotation patch), and a crash is
// one of the ways a reconcile can end early or act on old state:
//   lose-status       children were written, then the process died before the status write;
//   lose-annotations  children and status were written, then it died before the annotation patch;
//   stale             a reconcile decided from the status before the last write (a cache past its
//                     write expectation): the operator reads the object before writing from such a
//                     cache, finds it newer, and decides again: nothing lands.
// After every reconcile the invariants of issue "rollouts you can trust" are checked against the
// observations that reconcile decided from.
import fc from 'fast-check';
import { plan, type Plan } from '../../operator/modeldeployment/plan.js';
import { requestedOperations } from '../../operator/modeldeployment/rollout/operations.js';
import { podsFor } from '../../operator/modeldeployment/rollout/guard.js';
import { revisionHash } from '../../operator/api/revision.js';
import type { ModelDeployment, ModelDeploymentStatus, RolloutStep } from '../../operator/api/generated.js';
import type { MonitoringInput } from '../../operator/modeldeployment/monitoring/decide.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { modelDeployment } from './builders.js';

const revisionLabel = 'modelship.io/revision';
const steps: RolloutStep[] = [{ setWeight: 25 }, { pause: {} }, { setWeight: 60 }, { pause: { duration: '10s' } }];

interface Pod { readyAt: number; unreadyUntil: number; crash: boolean }
interface Dep { replicas: number; pods: Pod[]; annotations: Record<string, string> }

export type Action =
  | 'tick' | 'slow-tick' | 'new-version' | 'revert' | 'promote' | 'promote-full' | 'abort' | 'retry'
  | 'unready' | 'crash-loop' | 'heal' | 'lose-status' | 'lose-annotations' | 'stale' | 'monitoring-fail';

export interface Scenario {
  replicas: number;
  router: 'ReplicaRatio' | 'GatewayAPI' | 'InferencePool';
  capacity: 'Surge' | 'Shift';
  historyLimit: number;
  delays: number[];
  actions: Action[];
}

export class World {
  md: ModelDeployment;
  /** The object as it was before the last status write: what a stale reconcile decides from. */
  previous: ModelDeployment;
  now = Date.parse('2026-11-26T10:00:00Z');
  deps = new Map<string, Dep>();
  crashing = new Set<string>();
  selector: Record<string, string> = {};
  canaryService: string | undefined;
  /** InferencePool: the revision each pool selects, by pool name. */
  pools = new Map<string, string>();
  route: KubeObject | undefined;
  annotations: Record<string, string> = {};
  /** Which user request each annotation holds now: a request must act at most once. */
  requests: Record<string, number> = {};
  private requestCount = 0;
  monitoring: MonitoringInput | undefined;
  private delayIndex = 0;
  versions = new Map<string, string>();

  constructor(readonly s: Scenario) {
    this.md = modelDeployment('fraud', 'risk');
    this.md.metadata = { ...this.md.metadata, uid: 'u1', generation: 1 };
    this.md.spec.replicas = s.replicas;
    this.md.spec.revisionHistoryLimit = s.historyLimit;
    this.md.spec.rollout = { steps, capacity: s.capacity, progressDeadlineSeconds: 30, scaleDownDelaySeconds: 5 };
    this.md.spec.monitoring = { interval: '1m', onFailure: 'Rollback', checks: [{ name: 'p99', prometheus: { address: 'http://prom.monitoring.svc:9090', query: 'q' }, pass: { max: 1 } }] };
    if (s.router !== 'ReplicaRatio') this.md.spec.traffic = { router: s.router, gatewayAPI: { parentRefs: [{ name: 'gw' }], canaryHeader: { name: 'x-canary', value: 'always' } } };
    this.previous = this.md;
  }

  get hash() { return revisionHash(this.md.spec); }
  get status(): ModelDeploymentStatus { return this.md.status ?? {}; }
  ready(hash: string | undefined): number {
    return hash ? (this.deps.get(hash)?.pods.filter((p) => this.isReady(p)).length ?? 0) : 0;
  }
  isReady(p: Pod) { return !p.crash && this.now >= p.readyAt && this.now >= p.unreadyUntil; }

  setVersion(version: string) {
    this.md = { ...this.md, metadata: { ...this.md.metadata, generation: (this.md.metadata!.generation ?? 0) + 1 }, spec: { ...this.md.spec, model: { ...this.md.spec.model, version } } };
    this.versions.set(this.hash, version);
  }

  observations() {
    const deployments = new Map<string, KubeObject>();
    const pods: KubeObject[] = [];
    for (const [hash, d] of this.deps) {
      const ready = d.pods.filter((p) => this.isReady(p)).length;
      deployments.set(hash, {
        metadata: { name: `fraud-${hash}`, generation: 1, labels: { [revisionLabel]: hash }, annotations: d.annotations },
        spec: { replicas: d.replicas },
        status: { replicas: d.pods.length, readyReplicas: ready, updatedReplicas: d.pods.length, observedGeneration: 1 },
      });
      d.pods.forEach((p, i) => pods.push({
        metadata: { name: `${hash}-${i}`, labels: { [revisionLabel]: hash } },
        status: {
          conditions: [{ type: 'Ready', status: this.isReady(p) ? 'True' : 'False' }],
          containerStatuses: [{ name: 'server', restartCount: p.crash ? 3 : 0, state: p.crash ? { waiting: { reason: 'CrashLoopBackOff' } } : { running: {} } }],
        },
      }));
    }
    const service = { metadata: { name: 'fraud' }, spec: { selector: this.selector } };
    return { deployments, pods, service, ...(this.route ? { route: this.route } : {}) };
  }

  decide(from: ModelDeployment): Plan {
    const md = { ...from, metadata: { ...from.metadata, annotations: { ...this.annotations } } };
    return plan(md, this.observations(), {
      fetcherImage: 'op:1', now: new Date(this.now), gatewayApiAvailable: true,
      operations: requestedOperations(this.annotations),
      ...(this.monitoring ? { monitoring: this.monitoring } : {}),
    });
  }

  /** The child writes of a plan land in the world. */
  applyChildren(p: Plan) {
    for (const o of p.apply) {
      const name = o.metadata!.name!;
      if (o.kind === 'Deployment') {
        const hash = o.metadata!.labels![revisionLabel]!;
        const d = this.deps.get(hash) ?? { replicas: 0, pods: [], annotations: {} };
        d.replicas = (o as { spec: { replicas: number } }).spec.replicas;
        d.annotations = { ...o.metadata!.annotations };
        // The ReplicaSet controller removes pods that are not ready first.
        d.pods.sort((a, b) => Number(this.isReady(b)) - Number(this.isReady(a)));
        d.pods = d.pods.slice(0, d.replicas);
        while (d.pods.length < d.replicas) {
          const delay = this.s.delays[this.delayIndex++ % this.s.delays.length]!;
          d.pods.push({ readyAt: this.now + delay * 1000, unreadyUntil: 0, crash: this.crashing.has(hash) });
        }
        this.deps.set(hash, d);
      } else if (o.kind === 'Service' && name === 'fraud') {
        this.selector = (o as { spec: { selector: Record<string, string> } }).spec.selector;
      } else if (o.kind === 'Service' && name === 'fraud-canary') {
        this.canaryService = (o as { spec: { selector: Record<string, string> } }).spec.selector[revisionLabel];
      } else if (o.kind === 'InferencePool') {
        this.pools.set(name, (o as { spec: { selector: { matchLabels: Record<string, string> } } }).spec.selector.matchLabels[revisionLabel]!);
      } else if (o.kind === 'HTTPRoute') {
        // As the apiserver stores it: the Gateway API CRD defaults every match's path to PathPrefix /.
        const route = JSON.parse(JSON.stringify(o)) as { spec: { rules: { matches?: { path?: unknown }[] }[] } };
        for (const rule of route.spec.rules) for (const m of rule.matches ?? []) m.path ??= { type: 'PathPrefix', value: '/' };
        this.route = route;
      }
    }
    for (const d of p.delete) this.deps.delete(d.metadata!.labels![revisionLabel]!);
    for (const r of p.remove) {
      if (r.kind === 'Service' && r.name === 'fraud-canary') this.canaryService = undefined;
      if (r.kind === 'HTTPRoute') this.route = undefined;
      if (r.kind === 'InferencePool') this.pools.delete(r.name);
    }
  }

  request(annotation: string, value: string) {
    this.annotations[annotation] = value;
    this.requests[annotation] = ++this.requestCount;
  }

  applyAnnotations(p: Plan) {
    for (const a of p.removeAnnotations) { delete this.annotations[a]; delete this.requests[a]; }
    Object.assign(this.annotations, p.bindAnnotations);
  }
}

/** The route's main-rule weights: stable and canary. */
function routeWeights(route: KubeObject | undefined): { stable: number; canary: number } {
  const rules = (route as { spec?: { rules?: { matches?: { path?: unknown }[]; backendRefs?: { name: string; weight: number }[] }[] } } | undefined)?.spec?.rules ?? [];
  const main = rules.find((r) => r.backendRefs?.some((b) => b.name === 'fraud-stable'));
  const weight = (n: string) => main?.backendRefs?.find((b) => b.name === n)?.weight ?? 0;
  return { stable: weight('fraud-stable'), canary: weight('fraud-canary') };
}

interface Violation { at: number; action: Action; rule: string; detail: string }

/** Runs one scenario; returns the first violations found (empty when every invariant held). */
export function runScenario(s: Scenario): Violation[] {
  const w = new World(s);
  const R = s.replicas;
  const violations: Violation[] = [];
  const promotedBefore = new Set<string>();
  const walked = new Set<string>();
  const actedRequests = new Set<number>();
  const stepOf = new Map<string, number>();
  const outcomes = new Map<string, string>();
  let version = 1;
  w.versions.set(w.hash, '1');

  const reconcile = (action: Action) => {
    const before = { selector: { ...w.selector }, route: routeWeights(w.route), canaryService: w.canaryService };
    const requestsBefore = { ...w.requests };
    const readyAtDecision = new Map([...w.deps.keys()].map((h) => [h, w.ready(h)]));
    const ready = (h: string | undefined) => (h ? readyAtDecision.get(h) ?? 0 : 0);
    const stale = action === 'stale';
    const p = w.decide(stale ? w.previous : w.md);
    if (!stale) w.applyChildren(p);
    const written = !stale && action !== 'lose-status';
    if (written) {
      w.previous = w.md;
      w.md = { ...w.md, status: p.status };
      if (action !== 'lose-annotations') w.applyAnnotations(p);
    }
    const fail = (rule: string, detail: string) => violations.push({ at: w.now, action, rule, detail });
    // The traffic rules judge what a reconcile told the router and the Deployments, by the status it
    // decided, whether or not that status was then written.
    const childrenWritten = !stale;
    const status = childrenWritten ? p.status : w.status;
    const stableHash = status.stableRevision?.hash;

    // 1. The canary's weight never exceeds the share its ready pods carry.
    const weights = routeWeights(w.route);
    // The canary backend is the revision the canary pool selects under InferencePool, the canary
    // Service's under GatewayAPI; a route naming a pool that does not exist sends its share nowhere.
    const pools = s.router === 'InferencePool';
    const backend = pools ? w.pools.get('fraud-canary') : w.canaryService;
    if (childrenWritten && pools && w.route) {
      const refs = (w.route as { spec: { rules: { backendRefs?: { kind?: string; name: string; weight?: number }[] }[] } }).spec.rules.flatMap((r) => r.backendRefs ?? []);
      for (const ref of refs) {
        if (ref.kind !== 'InferencePool') fail('route backend is not a pool', `${ref.kind} ${ref.name}`);
        else if ((ref.weight ?? 1) > 0 && !w.pools.has(ref.name)) fail('route names a missing pool', `${ref.name} weight ${ref.weight}`);
      }
      if (stableHash && w.pools.get('fraud-stable') !== stableHash) fail('stable pool selects another revision', `${w.pools.get('fraud-stable')} vs stable ${stableHash}`);
    }
    if (childrenWritten && s.router !== 'ReplicaRatio' && weights.canary * R > 100 * ready(backend)) {
      fail('weight ahead of ready canary', `weight ${weights.canary} on ${backend} with ${ready(backend)}/${R} ready`);
    }
    // 2. Stable's ready pods cover its share; nothing moves traffic onto, or shrinks, a stable that cannot carry it.
    const stableReady = ready(stableHash);
    const stableReplicas = stableHash ? w.deps.get(stableHash)?.replicas ?? 0 : 0;
    if (childrenWritten && s.router !== 'ReplicaRatio' && stableHash && w.route) {
      const stableShare = 100 - weights.canary;
      const covered = stableReady * 100 >= stableShare * R;
      const canaryCould = backend ? Math.floor((100 * ready(backend)) / R) : 0;
      if (!covered && weights.canary < Math.min(before.route.canary, canaryCould)) {
        fail('traffic moved onto a stable that cannot carry it', `canary ${before.route.canary}→${weights.canary} (it could carry ${canaryCould}), stable ${stableReady}/${R} ready`);
      }
      if (stableReplicas < podsFor(R, stableShare)) fail('stable shrunk below its share', `stable ${stableReplicas} replicas for ${stableShare}%`);
    }
    if (childrenWritten && s.router === 'ReplicaRatio' && stableHash) {
      const pinned = w.selector[revisionLabel];
      const othersReady = [...readyAtDecision].filter(([h]) => h !== stableHash).reduce((n, [, r]) => n + r, 0);
      if (pinned && !before.selector[revisionLabel] && ready(pinned) < R && othersReady > 0 && pinned === stableHash) {
        fail('Service narrowed to a stable that cannot carry it', `stable ${ready(pinned)}/${R} ready, ${othersReady} other ready pods dropped`);
      }
      const inService = pinned ? 0 : othersReady;
      if (stableReplicas < R - inService && stableReplicas < R) fail('stable shrunk below what the Service needs', `stable ${stableReplicas} replicas, ${inService} other pods serve`);
    }
    // 4. A rejected revision gets no traffic beyond what stable cannot carry yet.
    const rejected = status.rejectedRevision?.hash;
    if (childrenWritten && rejected && rejected !== status.canaryRevision?.hash) {
      const uncovered = Math.max(0, 100 - Math.floor((100 * stableReady) / R));
      if (s.router !== 'ReplicaRatio' && backend === rejected && weights.canary > uncovered) fail('rejected revision keeps traffic', `weight ${weights.canary}, stable ${stableReady}/${R}`);
      if (s.router === 'ReplicaRatio' && !w.selector[revisionLabel] && ready(rejected) > 0 && stableReady >= R && !status.canaryRevision) fail('rejected revision keeps traffic', `Service selects it with stable at ${stableReady}/${R}`);
    }
    if (!written) return;
    // 3. No revision serves all traffic without having walked its steps, unless promoted before.
    for (const e of p.events) {
      // Said once: by StepAdvanced when promotion then waits, or by Promoted when it follows at once.
      const m = e.reason === 'StepAdvanced' ? /all \d+ steps done: promoting (\w+)/.exec(e.message) : e.reason === 'Promoted' ? /revision (\w+) .* is serving after all \d+ steps/.exec(e.message) : null;
      if (m) walked.add(m[1]!);
    }
    const op = status.rollout?.lastOperation;
    if (op && op.kind === 'promote-full' && !op.result?.startsWith('ignored')) walked.add(op.revision!);
    const previousStable = w.previous.status?.stableRevision?.hash;
    if (stableHash && stableHash !== previousStable) {
      if (previousStable && !walked.has(stableHash) && !promotedBefore.has(stableHash)) fail('promoted without its steps', `${stableHash} replaced ${previousStable}`);
      promotedBefore.add(stableHash);
    }
    // 5. Steps and history never go backwards.
    const canary = status.canaryRevision?.hash;
    if (canary) {
      // Per attempt: a retry or a new spec starts the steps again, as it should.
      const attempt = `${canary}@${status.rollout?.startedAt}`;
      const step = status.rollout?.step ?? 0;
      if (step < (stepOf.get(attempt) ?? 0)) fail('step went back', `${attempt}: ${stepOf.get(attempt)} → ${step}`);
      stepOf.set(attempt, step);
    }
    for (const h of status.history ?? []) {
      const key = `${h.revision}@${h.startedAt}`;
      const was = outcomes.get(key);
      if (was && was !== 'Progressing' && was !== h.outcome && !(was === 'Promoted' && h.outcome === 'RolledBack')) fail('history went back', `${key}: ${was} → ${h.outcome}`);
      outcomes.set(key, h.outcome!);
    }
    // 6. Each operation acts at most once: a new lastOperation is charged to the request its
    // annotation holds, and no request may be charged twice.
    const priorOp = w.previous.status?.rollout?.lastOperation;
    if (op && op.at !== priorOp?.at && !op.result?.startsWith('ignored')) {
      const annotation = op.kind!.startsWith('promote') ? 'modelship.io/promote' : `modelship.io/${op.kind}`;
      const request = requestsBefore[annotation];
      if (request !== undefined && actedRequests.has(request)) fail('operation acted twice', `${op.kind} ${op.revision}: ${op.result}`);
      if (request !== undefined) actedRequests.add(request);
    }
  };

  reconcile('tick');
  for (let i = 0; i < 40 && !w.status.stableRevision; i++) { w.now += 1000; reconcile('tick'); }
  for (const action of s.actions) {
    const canary = w.status.canaryRevision?.hash;
    if (action === 'new-version') w.setVersion(String(++version));
    if (action === 'revert' && w.status.stableRevision) w.setVersion(w.status.stableRevision.modelVersion ?? '1');
    if (action === 'promote' && canary) w.request('modelship.io/promote', canary);
    if (action === 'promote-full' && canary) w.request('modelship.io/promote', `${canary}/full`);
    if (action === 'abort' && canary) w.request('modelship.io/abort', canary);
    if (action === 'retry' && w.status.rejectedRevision) w.request('modelship.io/retry', w.status.rejectedRevision.hash);
    if (action === 'unready') {
      const pods = [...w.deps.values()].flatMap((d) => d.pods).filter((p) => w.isReady(p));
      if (pods.length) pods[version % pods.length]!.unreadyUntil = w.now + 4000;
    }
    if (action === 'crash-loop') { w.crashing.add(w.hash); for (const p of w.deps.get(w.hash)?.pods ?? []) if (w.hash !== w.status.stableRevision?.hash) p.crash = true; }
    if (action === 'heal') { w.crashing.clear(); for (const d of w.deps.values()) for (const p of d.pods) p.crash = false; }
    w.monitoring = action === 'monitoring-fail' && w.status.stableRevision && !w.status.canaryRevision
      ? { revision: w.status.stableRevision.hash, baselines: [], results: [{ check: 'p99', phase: 'Failed', passed: false, value: '3', failures: 1, message: '3 > 1', at: new Date(w.now).toISOString() }] }
      : undefined;
    reconcile(action);
    w.now += action === 'slow-tick' ? 20_000 : 1000;
    if (violations.length) break;
  }
  return violations;
}

export const actions: Action[] = ['tick', 'tick', 'tick', 'slow-tick', 'new-version', 'revert', 'promote', 'promote', 'promote-full', 'abort', 'retry',
  'unready', 'crash-loop', 'heal', 'lose-status', 'lose-annotations', 'stale', 'monitoring-fail'];

export const scenarios = fc.record<Scenario>({
  replicas: fc.integer({ min: 1, max: 6 }),
  router: fc.constantFrom('ReplicaRatio', 'GatewayAPI', 'InferencePool'),
  capacity: fc.constantFrom('Surge', 'Shift'),
  historyLimit: fc.integer({ min: 1, max: 10 }),
  delays: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 8 }),
  actions: fc.array(fc.constantFrom(...actions), { minLength: 10, maxLength: 150, size: 'large' }),
});

