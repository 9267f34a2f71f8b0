// 5. Churn: spec changes at a fixed rate (default 50/s for 60 s) spread over the N objects; each one's
// time until status.observedGeneration reaches the generation the change made. The change is
// spec.rollout.scaleDownDelaySeconds: it bumps the generation and needs a status write, but starts no
// rollout and changes no child, so what is measured is the reconcile path itself.
import { setTimeout as sleep } from 'node:timers/promises';
import { Resources } from '../../operator/runtime/resources.js';
import { withRetry } from '../lib/client.js';
import { mdName, type BenchContext } from '../lib/context.js';
import type { Md } from '../lib/observer.js';
import { round, summarize, type Summary } from '../lib/stats.js';
import { createAndWait } from './create.js';

export interface ChurnOutcome {
  sent: number;
  observed: number;
  failed: number;
  rate: number;
  latency: Summary;
  complete: boolean;
}

export async function churnLoad(ctx: BenchContext, onChanged?: (md: Md) => void): Promise<ChurnOutcome> {
  const { churnRate, churnSeconds } = ctx.params;
  const total = Math.round(churnRate * churnSeconds);
  const interval = 1000 / churnRate;
  const latencies: number[] = [];
  // Bounded: patches in flight (a slow apiserver slows the sender, which the achieved rate shows).
  const patching = new Set<Promise<void>>();
  const observing: Promise<void>[] = [];
  let failed = 0;
  const from = await ctx.sampler.mark();
  const began = Date.now();
  for (let k = 0; k < total; k++) {
    const wait = began + k * interval - Date.now();
    if (wait > 0) await sleep(wait);
    while (patching.size >= 200) await Promise.race(patching);
    const name = mdName(k % ctx.n);
    // The base rollout has scaleDownDelaySeconds 5; each round sets a value its previous round did not.
    const value = 6 + (Math.floor(k / ctx.n) % 50);
    const sentAt = Date.now();
    const p = withRetry(() => ctx.client.mergePatch<Md>(Resources.ModelDeployment, ctx.namespace, name, { spec: { rollout: { scaleDownDelaySeconds: value } } })).then(
      (md) => {
        onChanged?.(md);
        observing.push(Promise.race([ctx.observer.change(name, md.metadata?.generation ?? 0, sentAt), sleep(120_000).then(() => undefined)]).then((at) => {
          if (at === undefined) failed++;
          else latencies.push(at - sentAt);
        }));
      },
      () => { failed++; },
    );
    patching.add(p);
    void p.finally(() => patching.delete(p));
  }
  const sendSeconds = (Date.now() - began) / 1000;
  await Promise.all(patching);
  await Promise.all(observing);
  const to = await ctx.sampler.mark();
  ctx.sampler.summarize('churn', from, to);
  const s = summarize(latencies);
  return {
    sent: total,
    observed: latencies.length,
    failed,
    rate: round(total / sendSeconds, 1)!,
    latency: { count: s.count, p50: round(s.p50, 0), p90: round(s.p90, 0), p99: round(s.p99, 0), max: round(s.max, 0) },
    complete: failed === 0,
  };
}

export async function churn(ctx: BenchContext): Promise<boolean> {
  await ctx.setUp(ctx.n);
  await ctx.startOperator('operator');
  await ctx.operator!.waitReady();
  const created = await createAndWait(ctx, 'setup-create');
  await ctx.settle();
  ctx.log(`churn: ${ctx.params.churnRate} changes/s for ${ctx.params.churnSeconds} s over ${ctx.n} objects`);
  const out = await churnLoad(ctx);
  const phase = ctx.sampler.phases.at(-1)!;
  const floor = floorRows(ctx);
  ctx.row({ key: 'changeObservedP50', label: 'spec change → observedGeneration current, p50', value: out.latency.p50, unit: 'ms', ...floor('changeObservedP50', out.latency.p50) });
  ctx.row({
    key: 'changeObservedP99', label: 'spec change → observedGeneration current, p99', value: out.latency.p99, unit: 'ms',
    ...floor('changeObservedP99', out.latency.p99), target: '≤ 2000 ms', met: out.latency.p99 !== undefined && out.latency.p99 <= 2000 && out.complete,
  });
  ctx.row({ key: 'queueLatencyP99', label: 'work queue latency p99 (histogram)', value: phase.operator.queueLatencyP99Ms, unit: 'ms' });
  ctx.row({ key: 'churnRate', label: 'changes per second achieved', value: out.rate, unit: '/s', ...floor('churnRate', out.rate) });
  ctx.row({ key: 'writesPerChange', label: 'operator writes per change', value: round(phase.operator.writes / Math.max(1, out.sent), 2), unit: '' });
  ctx.row({ key: 'cpuCores', label: 'operator CPU during churn', value: phase.operator.cpuCores, unit: 'cores' });
  ctx.row({
    key: 'lagP99', label: 'event-loop lag p99 during churn', value: phase.operator.eventLoopLagP99Ms, unit: 'ms',
    target: '≤ 100 ms', met: phase.operator.eventLoopLagP99Ms !== undefined && phase.operator.eventLoopLagP99Ms <= 100,
  });
  ctx.details.setup = created;
  ctx.details.churn = out;
  if (out.failed) ctx.notes.push(`${out.failed} changes were not observed within 120 s (or their patch failed)`);
  return created.complete && out.complete;
}

/** A row's floor value and ratio, from the floor result the context carries. */
export function floorRows(ctx: BenchContext) {
  const floorRowsByKey = new Map((ctx.floor?.rows ?? []).map((r) => [r.key, r.value]));
  return (key: string, value: number | undefined): { floor?: number; ratio?: number } => {
    const f = floorRowsByKey.get(key);
    if (f === undefined || value === undefined || f === 0) return {};
    return { floor: f, ratio: round(value / f, 2)! };
  };
}
