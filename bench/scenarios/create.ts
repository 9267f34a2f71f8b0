// 2. Create storm: N ModelDeployments applied at once with the operator running; the time until all
// are Ready, and per object apply → children exist → observedGeneration current → Ready.
import type { BenchContext } from '../lib/context.js';
import { round, type Summary } from '../lib/stats.js';
import { floorRows } from './churn.js';

export interface CreateOutcome {
  complete: boolean;
  ready: number;
  allReadyS: number;
  applyS: number;
  children: Summary;
  observed: Summary;
  readyLatency: Summary;
  phase: string;
}

/** Creates N objects with the operator running and waits for all to be Ready; one sampler phase. */
export async function createAndWait(ctx: BenchContext, phase: string): Promise<CreateOutcome> {
  const from = await ctx.sampler.mark();
  ctx.log(`applying ${ctx.n} ModelDeployments`);
  const applied = await ctx.createAll();
  const ready = await ctx.observer.waitAll(ctx.names(), (t) => t.readyAt !== undefined, ctx.params.timeoutS * 1000,
    (k) => ctx.log(`${k}/${ctx.n} Ready`));
  const to = await ctx.sampler.mark();
  ctx.sampler.summarize(phase, from, to);
  const lastReady = Math.max(...[...ctx.observer.tracks.values()].map((t) => t.readyAt ?? 0));
  const complete = ready === ctx.n;
  if (!complete) ctx.notes.push(`${phase}: only ${ready}/${ctx.n} Ready within ${ctx.params.timeoutS} s`);
  ctx.log(`${ready}/${ctx.n} Ready in ${((lastReady - applied.began) / 1000).toFixed(1)} s`);
  return {
    complete,
    ready,
    allReadyS: round((lastReady - applied.began) / 1000, 2)!,
    applyS: round((applied.ended - applied.began) / 1000, 2)!,
    children: ctx.latencies('sentAt', 'childrenAt'),
    observed: ctx.latencies('sentAt', 'observedAt'),
    readyLatency: ctx.latencies('sentAt', 'readyAt'),
    phase,
  };
}

export async function create(ctx: BenchContext): Promise<boolean> {
  await ctx.setUp(ctx.n);
  await ctx.startOperator('operator');
  await ctx.operator!.waitReady();
  await ctx.sampler.sampleNow();
  const empty = ctx.sampler.memory();
  const out = await createAndWait(ctx, 'create-storm');
  const storm = ctx.sampler.phases.at(-1)!;
  const floor = floorRows(ctx);
  const ratio = floor('allReadyS', out.allReadyS).ratio;
  ctx.row({
    key: 'allReadyS', label: 'all Ready', value: out.allReadyS, unit: 's', ...floor('allReadyS', out.allReadyS),
    target: '≤ 1.5× floor', met: ratio === undefined ? undefined : ratio <= 1.5 && out.complete,
  });
  ctx.row({ key: 'applyS', label: 'applying N (the load generator alone)', value: out.applyS, unit: 's', ...floor('applyS', out.applyS) });
  for (const [key, label, s] of [
    ['children', 'apply → children exist', out.children],
    ['observed', 'apply → observedGeneration current', out.observed],
    ['ready', 'apply → Ready', out.readyLatency],
  ] as const) {
    ctx.row({ key: `${key}P50`, label: `${label}, p50`, value: s.p50, unit: 'ms', ...floor(`${key}P50`, s.p50) });
    ctx.row({ key: `${key}P99`, label: `${label}, p99`, value: s.p99, unit: 'ms', ...floor(`${key}P99`, s.p99) });
  }
  ctx.row({ key: 'writesPerObject', label: 'operator writes per ModelDeployment', value: round(storm.operator.writes / ctx.n, 2), unit: '', ...floor('writesPerObject', storm.operator.writes / ctx.n) });
  ctx.row({ key: 'cpuSeconds', label: 'operator CPU during the storm', value: storm.operator.cpuSeconds, unit: 's' });
  ctx.row({
    key: 'lagP99', label: 'event-loop lag p99 during the storm', value: storm.operator.eventLoopLagP99Ms, unit: 'ms',
    target: '≤ 100 ms', met: storm.operator.eventLoopLagP99Ms !== undefined && storm.operator.eventLoopLagP99Ms <= 100,
  });
  await ctx.settle();
  await ctx.sampler.sampleNow();
  const settled = ctx.sampler.memory();
  const rssLimit = ctx.n <= 1000 ? 150 : ctx.n <= 10_000 ? 500 : undefined;
  ctx.row({
    key: 'rssPeakMB', label: 'operator RSS, peak during the storm', value: storm.operator.rssPeakMB, unit: 'MB',
    ...(rssLimit ? { target: `≤ ${rssLimit} MB`, met: (storm.operator.rssPeakMB ?? Infinity) <= rssLimit } : {}),
  });
  ctx.row({ key: 'rssEmptyMB', label: 'operator RSS before the storm (no objects)', value: empty.rssMB, unit: 'MB' });
  ctx.row({ key: 'rssSettledMB', label: 'operator RSS, settled after the storm', value: settled.rssMB, unit: 'MB' });
  ctx.row({ key: 'heapPeakMB', label: 'operator heap used, peak during the storm', value: storm.operator.heapUsedPeakMB, unit: 'MB' });
  ctx.row({ key: 'heapSettledMB', label: 'operator heap used, settled', value: settled.heapUsedMB, unit: 'MB' });
  ctx.row({ key: 'fdsSettled', label: 'operator open file descriptors, settled (sockets)', value: settled.fds, unit: '' });
  if (ctx.params.profile) ctx.details.heapSnapshot = await ctx.operator?.heapSnapshot();
  ctx.details.create = out;
  return out.complete;
}
