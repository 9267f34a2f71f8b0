// 3. Rollout storm: a new model version on all N at once, through the benchmark's two short steps
// (setWeight 50, pause 1 s); the time until all are promoted, until every old revision is removed
// (scaleDownDelaySeconds 5), and the operator's API requests per rollout.
import { revisionHash } from '../../operator/api/revision.js';
import { Resources } from '../../operator/runtime/resources.js';
import { pool, withRetry } from '../lib/client.js';
import { benchModel, mdName, v2Spec, type BenchContext } from '../lib/context.js';
import type { Md } from '../lib/observer.js';
import { round } from '../lib/stats.js';
import { floorRows } from './churn.js';
import { createAndWait } from './create.js';

export async function rollout(ctx: BenchContext): Promise<boolean> {
  // Surge: each object runs two pods while its canary is up.
  await ctx.setUp(2 * ctx.n);
  await ctx.startOperator('operator');
  await ctx.operator!.waitReady();
  const created = await createAndWait(ctx, 'setup-create');
  await ctx.settle();

  const sample = benchModel(0, ctx.namespace);
  const v1 = revisionHash(sample.spec);
  const v2 = revisionHash(v2Spec(sample));
  const from = await ctx.sampler.mark();
  ctx.log(`rolling out model version 2 (${v1} → ${v2}) on ${ctx.n} ModelDeployments`);
  const began = Date.now();
  const errors = await pool(Array.from({ length: ctx.n }, (_, i) => i), ctx.params.applyConcurrency, async (i) => {
    const name = mdName(i);
    const live = ctx.observer.mds.get(ctx.namespace, name);
    const generation = (live?.metadata?.generation ?? 1) + 1;
    ctx.observer.track(name, { sentAt: Date.now(), generation, revision: v2, oldRevision: v1 });
    await withRetry(() => ctx.client.mergePatch<Md>(Resources.ModelDeployment, ctx.namespace, name, { spec: { model: v2Spec(sample).model } }));
  });
  const patchedS = (Date.now() - began) / 1000;
  for (const e of errors.slice(0, 5)) ctx.notes.push(`patch failed: ${e.message}`);
  const timeout = ctx.params.timeoutS * 1000;
  const promoted = await ctx.observer.waitAll(ctx.names(), (t) => t.promotedAt !== undefined, timeout, (k) => ctx.log(`${k}/${ctx.n} promoted`));
  const promotedMark = await ctx.sampler.mark();
  const tracks = [...ctx.observer.tracks.values()];
  const lastPromoted = Math.max(...tracks.map((t) => t.promotedAt ?? 0));
  ctx.log(`${promoted}/${ctx.n} promoted in ${((lastPromoted - began) / 1000).toFixed(1)} s; waiting for the old revisions to go`);
  const cleaned = await ctx.observer.waitAll(ctx.names(), (t) => t.cleanedAt !== undefined, timeout, (k) => ctx.log(`${k}/${ctx.n} old revisions removed`));
  await ctx.settle();
  const to = await ctx.sampler.mark();
  const untilPromoted = ctx.sampler.summarize('rollout-until-promoted', from, promotedMark);
  const whole = ctx.sampler.summarize('rollout-storm', from, to);
  const lastCleaned = Math.max(...tracks.map((t) => t.cleanedAt ?? 0));
  const allPromotedS = round((lastPromoted - began) / 1000, 2)!;
  const floor = floorRows(ctx);
  const f = floor('allReadyS', allPromotedS);
  ctx.row({ key: 'allPromotedS', label: 'all promoted (× floor: of the floor\'s create time for N)', value: allPromotedS, unit: 's', ...f });
  ctx.row({ key: 'allCleanedS', label: 'all old revisions removed (includes scaleDownDelaySeconds 5)', value: round((lastCleaned - began) / 1000, 2), unit: 's' });
  ctx.row({ key: 'patchS', label: 'patching N (the load generator alone)', value: round(patchedS, 2), unit: 's' });
  for (const [key, label, field] of [
    ['canary', 'patch → canary started', 'canaryAt'],
    ['promoted', 'patch → promoted', 'promotedAt'],
  ] as const) {
    const s = ctx.latencies('sentAt', field);
    ctx.row({ key: `${key}P50`, label: `${label}, p50`, value: s.p50, unit: 'ms' });
    ctx.row({ key: `${key}P99`, label: `${label}, p99`, value: s.p99, unit: 'ms' });
  }
  // Watches are per connection, not per rollout.
  const requests = Object.entries(whole.operator.requests).filter(([m]) => m !== 'WATCH');
  const perRollout = Object.fromEntries(requests.map(([m, v]) => [m, round(v / ctx.n, 2)!]));
  ctx.row({ key: 'requestsPerRollout', label: 'operator API requests per rollout', value: round(requests.reduce((a, [, v]) => a + v, 0) / ctx.n, 2), unit: '' });
  for (const [m, v] of Object.entries(perRollout)) ctx.row({ key: `requestsPerRollout${m}`, label: `… of which ${m}`, value: v, unit: '' });
  ctx.row({ key: 'writesPerSecond', label: 'operator writes per second until promoted', value: round(untilPromoted.operator.writes / Math.max(0.001, untilPromoted.seconds), 1), unit: '/s', ...floor('writesPerSecond', untilPromoted.operator.writes / Math.max(0.001, untilPromoted.seconds)) });
  ctx.row({
    key: 'lagP99', label: 'event-loop lag p99 during the storm', value: whole.operator.eventLoopLagP99Ms, unit: 'ms',
    target: '≤ 100 ms', met: whole.operator.eventLoopLagP99Ms !== undefined && whole.operator.eventLoopLagP99Ms <= 100,
  });
  ctx.row({ key: 'rssPeakMB', label: 'operator RSS, peak', value: whole.operator.rssPeakMB, unit: 'MB' });
  ctx.row({ key: 'cpuSeconds', label: 'operator CPU during the storm', value: whole.operator.cpuSeconds, unit: 's' });
  ctx.details.setup = created;
  ctx.details.rollout = { v1, v2, promoted, cleaned, perRollout, patchErrors: errors.length };
  if (promoted < ctx.n) ctx.notes.push(`only ${promoted}/${ctx.n} promoted within ${ctx.params.timeoutS} s`);
  if (cleaned < ctx.n) ctx.notes.push(`only ${cleaned}/${ctx.n} old revisions removed within ${ctx.params.timeoutS} s`);
  return created.complete && promoted === ctx.n && cleaned === ctx.n && errors.length === 0;
}
