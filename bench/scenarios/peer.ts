// Side by side with a peer controller (make bench PEER=argo-rollouts): one contender per fresh control
// plane, the same workload for each, and the same measures taken from outside.
//
// A contender (PEER_CONTROLLER) is `modelship` (the operator from dist/ with the chart's heap settings),
// `argo-rollouts` (Argo's default client limits, 40 QPS, burst 80) or `argo-rollouts-unthrottled`.
// Each run: N objects created at once, until all are Ready (the create storm); then a new model version
// on all at once, through the steps [setWeight 50, pause 1 s], until all are promoted (the rollout
// storm). Writes are counted in the apiserver's audit log by the controller's user agent, CPU and RSS
// from /proc, for the controller and for every control-plane component.
import { existsSync, statSync } from 'node:fs';
import { revisionHash } from '../../operator/api/revision.js';
import { Informer } from '../../operator/runtime/informer.js';
import { KubeClient } from '../../operator/runtime/kube.js';
import { loadClusterAccess } from '../../operator/runtime/kubeconfig.js';
import { Resources } from '../../operator/runtime/resources.js';
import {
  ArgoRolloutsController, RolloutResource, argoRolloutFor, argoRolloutsUserAgent, installArgoRolloutsCrds,
  operatorPodTemplate, rolloutHealthy, rolloutPromoted, userService, type ArgoRollout,
} from '../lib/argo-rollouts.js';
import { auditQuiet, auditWrites, type AuditWrites } from '../lib/audit.js';
import { pool, withRetry } from '../lib/client.js';
import { peerContenders } from '../lib/peer-report.js';
import { benchModel, v2Spec, type BenchContext } from '../lib/context.js';
import { waitAllTracks, type Track } from '../lib/observer.js';
import type { PhaseSummary } from '../lib/sampler.js';
import { round } from '../lib/stats.js';

type Contender = (typeof peerContenders)[number];

/** Each benchmark object's replicas in a side-by-side run (PEER_REPLICAS). */
export const peerReplicas = () => Number(process.env.PEER_REPLICAS ?? 2);

/** Tracks each Rollout's journey from its watch, as the Observer tracks ModelDeployments. */
class RolloutWatch {
  readonly tracks = new Map<string, Track & { oldHash?: string }>();
  readonly informer: Informer<ArgoRollout>;

  constructor(kubeconfig: string, readonly namespace: string) {
    const client = new KubeClient(loadClusterAccess({ kubeconfig }), undefined, 'modelship-bench-observer/0.1.0');
    this.informer = new Informer<ArgoRollout>(client, RolloutResource, { onUpsert: (r) => this.seen(r) }, { namespace, stallMs: 600_000 });
  }

  track(name: string, t: Track & { oldHash?: string }): void {
    this.tracks.set(name, t);
    const live = this.informer.get(this.namespace, name);
    if (live) this.seen(live);
  }

  private seen(r: ArgoRollout): void {
    const t = this.tracks.get(r.metadata?.name ?? '');
    if (!t) return;
    const now = Date.now();
    if (t.observedAt === undefined && Number(r.status?.observedGeneration ?? 0) >= t.generation) t.observedAt = now;
    if (t.readyAt === undefined && rolloutHealthy(r, t.generation)) t.readyAt = now;
    if (t.oldHash !== undefined && t.canaryAt === undefined && r.status?.currentPodHash && r.status.currentPodHash !== t.oldHash) t.canaryAt = now;
    if (t.oldHash !== undefined && t.promotedAt === undefined && rolloutPromoted(r, t.oldHash)) t.promotedAt = now;
  }
}

interface PhaseFigures {
  seconds: number;
  controllerCpuSeconds?: number;
  rssPeakMB?: number;
  writes?: AuditWrites;
  /** CPU seconds of each control-plane component in the phase. */
  components: Record<string, number>;
}

export async function peer(ctx: BenchContext): Promise<boolean> {
  const contender = (process.env.PEER_CONTROLLER ?? 'modelship') as Contender;
  if (!peerContenders.includes(contender)) throw new Error(`PEER_CONTROLLER must be one of ${peerContenders.join(', ')}`);
  const argo = contender !== 'modelship';
  const replicas = peerReplicas();
  const n = ctx.n;
  // Up to replicas + 1 pods per object while a canary runs.
  await ctx.setUp((replicas + 1) * n);
  const audit = ctx.state.auditLog;
  const offset = existsSync(audit) ? statSync(audit).size : 0;
  const agent = argo ? argoRolloutsUserAgent : 'modelship-operator';
  const models = Array.from({ length: n }, (_, i) => {
    const md = benchModel(i, ctx.namespace);
    md.spec.replicas = replicas;
    return md;
  });
  const watch = argo ? new RolloutWatch(ctx.state.kubeconfig, ctx.namespace) : undefined;
  let controller: ArgoRolloutsController | undefined;
  if (argo) {
    await installArgoRolloutsCrds(ctx.client);
    await watch!.informer.start();
    const unthrottled = contender === 'argo-rollouts-unthrottled';
    controller = new ArgoRolloutsController({
      kubeconfig: ctx.state.kubeconfig, logDir: ctx.logDir, qps: unthrottled ? 100_000 : 40, burst: unthrottled ? 100_000 : 80,
    });
    await controller.start();
    await controller.waitReady();
    ctx.sampler.setOperator(controller);
  } else {
    await ctx.startOperator('operator');
    await ctx.operator!.waitReady();
  }
  const tracks = watch ? watch.tracks : ctx.observer.tracks;
  const track = (name: string, t: Track & { oldHash?: string }) => (watch ? watch.track(name, t) : ctx.observer.track(name, t));
  await ctx.sampler.sampleNow();
  const rssEmpty = ctx.sampler.memory().rssMB;
  const timeout = ctx.params.timeoutS * 1000;
  const names = ctx.names();
  const figures = (p: PhaseSummary, from: number, to: number): PhaseFigures => ({
    seconds: p.seconds,
    controllerCpuSeconds: p.operator.cpuSeconds,
    rssPeakMB: p.operator.rssPeakMB,
    writes: auditWrites(audit, offset, from, to, agent),
    components: p.cpuSeconds,
  });

  // The create storm.
  const createFrom = await ctx.sampler.mark();
  ctx.log(`${contender}: creating ${n} objects (${replicas} replicas each)`);
  const createErrors = await pool(models, ctx.params.applyConcurrency, async (md) => {
    const name = md.metadata!.name!;
    track(name, { sentAt: Date.now(), generation: 1, revision: revisionHash(md.spec) });
    if (argo) {
      // A user of Argo Rollouts applies a Service beside each Rollout (as a GitOps sync does, Service
      // first); the operator writes its own Service for each ModelDeployment in the same storm.
      await withRetry(() => ctx.client.create(Resources.Service, userService(md) as Record<string, unknown> & { metadata: object }));
      await withRetry(() => ctx.client.create(RolloutResource, argoRolloutFor(md) as Record<string, unknown> & { metadata: object }));
    } else await withRetry(() => ctx.client.create(Resources.ModelDeployment, md as unknown as Record<string, unknown> & { metadata: object }));
  });
  for (const e of createErrors.slice(0, 5)) ctx.notes.push(`create failed: ${e.message}`);
  const ready = await waitAllTracks(tracks, names, (t) => t.readyAt !== undefined, timeout, (k) => ctx.log(`${k}/${n} Ready`));
  const createTo = await ctx.sampler.mark();
  const lastReady = Math.max(...[...tracks.values()].map((t) => t.readyAt ?? 0));
  const allReadyS = round((lastReady - createFrom) / 1000, 2)!;
  ctx.log(`${ready}/${n} Ready in ${allReadyS} s`);
  // The audit log is flushed every second: wait for the controller's last create-storm write to show.
  await auditQuiet(audit, offset, agent);
  const createStorm = figures(ctx.sampler.summarize('create-storm', createFrom, createTo), createFrom, createTo);
  const settledMark = await ctx.sampler.mark();
  const createWhole = figures(ctx.sampler.summarize('create-until-quiet', createFrom, settledMark), createFrom, settledMark);

  // The rollout storm.
  const v1 = revisionHash(models[0]!.spec);
  const v2 = revisionHash(v2Spec(models[0]!));
  const oldHashes = new Map<string, string | undefined>();
  if (watch) for (const name of names) oldHashes.set(name, watch.informer.get(ctx.namespace, name)?.status?.stableRS);
  const rolloutFrom = await ctx.sampler.mark();
  ctx.log(`${contender}: a new model version on all ${n}`);
  const patchErrors = await pool(models, ctx.params.applyConcurrency, async (md) => {
    const name = md.metadata!.name!;
    track(name, { sentAt: Date.now(), generation: 2, revision: v2, oldRevision: v1, oldHash: argo ? oldHashes.get(name) : undefined });
    if (argo) {
      // The template is the same for every object but its instance label (and the Service name in env).
      const template = operatorPodTemplate({ ...md, spec: v2Spec(md) });
      await withRetry(() => ctx.client.mergePatch(RolloutResource, ctx.namespace, name, { spec: { template } }));
    } else {
      await withRetry(() => ctx.client.mergePatch(Resources.ModelDeployment, ctx.namespace, name, { spec: { model: v2Spec(md).model } }));
    }
  });
  for (const e of patchErrors.slice(0, 5)) ctx.notes.push(`patch failed: ${e.message}`);
  const promoted = await waitAllTracks(tracks, names, (t) => t.promotedAt !== undefined, timeout, (k) => ctx.log(`${k}/${n} promoted`));
  const promotedMark = await ctx.sampler.mark();
  const lastPromoted = Math.max(...[...tracks.values()].map((t) => t.promotedAt ?? 0));
  const allPromotedS = round((lastPromoted - rolloutFrom) / 1000, 2)!;
  ctx.log(`${promoted}/${n} promoted in ${allPromotedS} s; waiting until the controller writes nothing more`);
  await auditQuiet(audit, offset, agent, 5_000, 180_000);
  const rolloutTo = await ctx.sampler.mark();
  const untilPromoted = figures(ctx.sampler.summarize('rollout-until-promoted', rolloutFrom, promotedMark), rolloutFrom, promotedMark);
  // The whole rollout: until the controller is quiet, so old revisions scaled down or deleted count too.
  const rolloutWhole = figures(ctx.sampler.summarize('rollout-until-quiet', rolloutFrom, rolloutTo), rolloutFrom, rolloutTo);
  await ctx.sampler.sampleNow();
  const rssSettled = ctx.sampler.memory().rssMB;
  await controller?.stop();
  if (controller) ctx.sampler.setOperator(undefined);

  const perObject = (w: AuditWrites | undefined, key: (r: string) => boolean = () => true) =>
    w ? round(Object.entries(w.byResource).filter(([r]) => key(r)).reduce((a, [, v]) => a + v, 0) / n, 2) : undefined;
  const rssPeak = Math.max(createWhole.rssPeakMB ?? 0, rolloutWhole.rssPeakMB ?? 0);
  ctx.row({ key: 'allReadyS', label: 'create storm: all Ready', value: allReadyS, unit: 's' });
  ctx.row({ key: 'allPromotedS', label: 'rollout storm: all promoted', value: allPromotedS, unit: 's' });
  ctx.row({ key: 'cpuCreateS', label: 'controller CPU, create storm until quiet', value: createWhole.controllerCpuSeconds, unit: 's' });
  ctx.row({ key: 'cpuRolloutS', label: 'controller CPU, rollout storm until quiet', value: rolloutWhole.controllerCpuSeconds, unit: 's' });
  ctx.row({ key: 'rssPeakMB', label: 'controller RSS, peak', value: round(rssPeak, 1), unit: 'MB' });
  ctx.row({ key: 'rssEmptyMB', label: 'controller RSS before the storms (no objects)', value: rssEmpty, unit: 'MB' });
  ctx.row({ key: 'rssSettledMB', label: 'controller RSS after the storms', value: rssSettled, unit: 'MB' });
  ctx.row({ key: 'writesPerCreate', label: 'API writes per object created', value: perObject(createWhole.writes), unit: '' });
  ctx.row({ key: 'writesPerRollout', label: 'API writes per rollout', value: perObject(rolloutWhole.writes), unit: '' });
  ctx.row({ key: 'eventsPerRollout', label: '… of which Events', value: perObject(rolloutWhole.writes, (r) => r.endsWith(' events')), unit: '' });
  ctx.row({ key: 'serviceWritesPerRollout', label: '… of which Services', value: perObject(rolloutWhole.writes, (r) => r.endsWith(' services')), unit: '' });
  ctx.row({ key: 'statusWritesPerRollout', label: '… of which its own object\'s status', value: perObject(rolloutWhole.writes, (r) => r.endsWith('/status')), unit: '' });
  for (const [phase, f] of [['create', createWhole], ['rollout', rolloutWhole]] as const) {
    for (const c of ['kube-controller-manager', 'kube-apiserver', 'etcd']) {
      ctx.row({ key: `${c}Cpu${phase === 'create' ? 'Create' : 'Rollout'}S`, label: `${c} CPU, ${phase} storm until quiet`, value: f.components[c], unit: 's' });
    }
  }
  ctx.details.peer = {
    contender, replicas, run: Number(process.env.PEER_RUN ?? 1), series: process.env.BENCH_SERIES,
    create: { ready, createStorm, createWhole }, rollout: { promoted, untilPromoted, rolloutWhole },
  };
  if (ready < n) ctx.notes.push(`only ${ready}/${n} Ready within ${ctx.params.timeoutS} s`);
  if (promoted < n) ctx.notes.push(`only ${promoted}/${n} promoted within ${ctx.params.timeoutS} s`);
  return ready === n && promoted === n && createErrors.length === 0 && patchErrors.length === 0;
}
