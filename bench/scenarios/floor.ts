// 1. Floor: N ModelDeployments applied at once, and their children and status written directly
// (FloorController) with the operator's concurrency and no operator. Then the churn load with each
// change's status written directly: the floor for "spec change → observedGeneration current".
import { FloorController } from '../lib/floor.js';
import type { BenchContext } from '../lib/context.js';
import { churnLoad } from './churn.js';
import { round } from '../lib/stats.js';

export async function floor(ctx: BenchContext): Promise<boolean> {
  await ctx.setUp(ctx.n);
  const floorController = new FloorController(ctx.client, ctx.observer, ctx.params.concurrency);
  floorController.start();
  const from = await ctx.sampler.mark();
  ctx.log(`applying ${ctx.n} ModelDeployments, writing their children with ${ctx.params.concurrency} writers`);
  const applied = await ctx.createAll((md) => floorController.created(md));
  const ready = await ctx.observer.waitAll(ctx.names(), (t) => t.readyAt !== undefined, ctx.params.timeoutS * 1000,
    (k) => ctx.log(`${k}/${ctx.n} Ready`));
  const to = await ctx.sampler.mark();
  const lastReady = Math.max(...[...ctx.observer.tracks.values()].map((t) => t.readyAt ?? 0));
  const allReadyS = (lastReady - applied.began) / 1000;
  ctx.sampler.summarize('floor-create', from, to);
  const complete = ready === ctx.n;
  if (!complete) ctx.notes.push(`only ${ready}/${ctx.n} Ready within ${ctx.params.timeoutS} s`);
  const children = ctx.latencies('sentAt', 'childrenAt');
  const observed = ctx.latencies('sentAt', 'observedAt');
  const readyLat = ctx.latencies('sentAt', 'readyAt');
  ctx.row({ key: 'allReadyS', label: 'all Ready', value: round(allReadyS, 2), unit: 's' });
  ctx.row({ key: 'applyS', label: 'applying N (the load generator alone)', value: round((applied.ended - applied.began) / 1000, 2), unit: 's' });
  ctx.row({ key: 'childrenP50', label: 'apply → children exist, p50', value: children.p50, unit: 'ms' });
  ctx.row({ key: 'childrenP99', label: 'apply → children exist, p99', value: children.p99, unit: 'ms' });
  ctx.row({ key: 'observedP50', label: 'apply → observedGeneration current, p50', value: observed.p50, unit: 'ms' });
  ctx.row({ key: 'observedP99', label: 'apply → observedGeneration current, p99', value: observed.p99, unit: 'ms' });
  ctx.row({ key: 'readyP50', label: 'apply → Ready, p50', value: readyLat.p50, unit: 'ms' });
  ctx.row({ key: 'readyP99', label: 'apply → Ready, p99', value: readyLat.p99, unit: 'ms' });
  ctx.row({ key: 'writesPerObject', label: 'writes per ModelDeployment', value: round(floorController.writes / ctx.n, 2), unit: '' });
  ctx.row({ key: 'writesPerSecond', label: 'writes per second (children and status)', value: round(floorController.writes / allReadyS, 1), unit: '/s' });
  ctx.details.create = { applied, ready, children, observed, ready_: readyLat, writes: floorController.writes, errors: floorController.errors };

  // The churn floor: the same change rate, each change's status written at once.
  ctx.log(`churn floor: ${ctx.params.churnRate} changes/s for ${ctx.params.churnSeconds} s, status written directly`);
  const churn = await churnLoad(ctx, (md) => floorController.changed(md));
  ctx.row({ key: 'changeObservedP50', label: 'churn: spec change → observedGeneration current, p50', value: churn.latency.p50, unit: 'ms' });
  ctx.row({ key: 'changeObservedP99', label: 'churn: spec change → observedGeneration current, p99', value: churn.latency.p99, unit: 'ms' });
  ctx.row({ key: 'churnRate', label: 'churn: changes per second achieved', value: churn.rate, unit: '/s' });
  ctx.details.churn = churn;
  await floorController.stop();
  if (floorController.errors.length) ctx.notes.push(`floor write errors: ${floorController.errors.slice(0, 3).join('; ')}`);
  return complete && churn.complete;
}
