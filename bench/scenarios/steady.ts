// 4. Steady state: N Ready objects and nothing changing. An idle minute (CPU, RSS, heap, writes), then
// a restart of the operator with a short --resync-seconds: the initial list (duration, event-loop lag),
// the startup pass over every object, and one periodic resync pass. Both passes change nothing, so
// both must write nothing; writes are counted by the operator's own metric and, independently, in the
// apiserver's audit log.
import { existsSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { auditWrites } from '../lib/audit.js';
import type { BenchContext } from '../lib/context.js';
import { round } from '../lib/stats.js';
import { createAndWait } from './create.js';

/**
 * Waits until the fresh operator process has finished `total` reconciles in all and its queue is
 * empty. Returns when the pass began (the last scrape before its first reconcile) and ended.
 */
async function waitPass(ctx: BenchContext, before: number, total: number, timeoutMs: number): Promise<{ began: number; ended: number } | undefined> {
  const deadline = Date.now() + timeoutMs;
  let began = Date.now();
  while (Date.now() < deadline) {
    const t = Date.now();
    await ctx.sampler.sampleNow();
    const done = ctx.sampler.latest('modelship_reconcile_total') ?? 0;
    if (done <= before) began = t;
    if (done >= total && (ctx.sampler.latest('modelship_workqueue_depth') ?? 1) === 0) return { began, ended: Date.now() };
    await sleep(250);
  }
  return undefined;
}

export async function steady(ctx: BenchContext): Promise<boolean> {
  await ctx.setUp(ctx.n);
  await ctx.startOperator('operator');
  await ctx.operator!.waitReady();
  const created = await createAndWait(ctx, 'setup-create');
  await ctx.settle(10_000);

  // An idle minute.
  const idleSeconds = Number(process.env.IDLE_SECONDS ?? 60);
  ctx.log(`idle for ${idleSeconds} s`);
  const idleFrom = await ctx.sampler.mark();
  await sleep(idleSeconds * 1000);
  const idleTo = await ctx.sampler.mark();
  const idle = ctx.sampler.summarize('idle', idleFrom, idleTo);
  if (ctx.params.profile) ctx.details.heapSnapshot = await ctx.operator!.heapSnapshot();
  await ctx.stopOperator();

  // A restart with a short resync: initial list, startup pass, one periodic resync pass.
  const resync = ctx.params.resyncSeconds;
  const audit = ctx.state.auditLog;
  const auditOffset = existsSync(audit) ? statSync(audit).size : 0;
  ctx.log(`restarting the operator with --resync-seconds=${resync}`);
  const spawnAt = await ctx.sampler.mark();
  const op = await ctx.startOperator('operator-resync', { resyncSeconds: resync });
  await op.waitReady();
  // The first scrape's event-loop window runs from the process start: the initial list.
  const readyAt = await ctx.sampler.mark();
  const initial = ctx.sampler.summarize('initial-list', spawnAt, readyAt);
  // A fresh process counts reconciles from 0: the startup pass is the first N, the resync the next N.
  const timeout = ctx.params.timeoutS * 1000;
  const startupDone = await waitPass(ctx, 0, ctx.n, timeout);
  const startupTo = await ctx.sampler.mark();
  const startup = ctx.sampler.summarize('startup-pass', readyAt, startupTo);
  const restart = ctx.sampler.summarize('restart', spawnAt, startupTo);
  if (startupTo - readyAt > resync * 1000) ctx.notes.push(`the startup pass took longer than the resync period (${resync} s): the two overlap`);
  ctx.log(`startup pass done; waiting for the periodic resync (${resync} s after ready)`);
  const resyncDone = await waitPass(ctx, ctx.n, 2 * ctx.n, resync * 1000 + timeout);
  await sleep(2_000);
  const resyncTo = await ctx.sampler.mark();
  const passOnly = resyncDone ? ctx.sampler.summarize('resync-pass', resyncDone.began, resyncDone.ended) : undefined;
  const pass = ctx.sampler.summarize('resync-window', startupTo, resyncTo);
  // The audit backend flushes at most every second.
  await sleep(3_000);
  const auditStartup = auditWrites(audit, auditOffset, spawnAt, startupTo);
  const auditResync = auditWrites(audit, auditOffset, startupTo, resyncTo);

  const rssLimit = ctx.n <= 1000 ? 150 : ctx.n <= 10_000 ? 500 : undefined;
  const cpuPerMinute = idle.operator.cpuSeconds !== undefined ? round((idle.operator.cpuSeconds * 60) / idle.seconds, 2) : undefined;
  ctx.row({
    key: 'writesNoopResync', label: 'writes during a no-op resync pass (operator metric)', value: pass.operator.writes, unit: '',
    target: '0', met: pass.operator.writes === 0 && !!resyncDone,
  });
  ctx.row({
    key: 'auditWritesNoopResync', label: 'writes during a no-op resync pass (apiserver audit log)', value: auditResync?.writes, unit: '',
    target: '0', met: auditResync ? auditResync.writes === 0 : undefined,
  });
  ctx.row({ key: 'writesRestart', label: 'writes after a restart (initial list and startup pass)', value: restart.operator.writes, unit: '', target: '0', met: restart.operator.writes === 0 && !!startupDone });
  ctx.row({ key: 'writesIdle', label: 'writes during the idle minute', value: idle.operator.writes, unit: '' });
  ctx.row({ key: 'cpuPerIdleMinute', label: 'operator CPU per idle minute', value: cpuPerMinute, unit: 's' });
  ctx.row({ key: 'cpuPerResyncPass', label: 'operator CPU per resync pass', value: passOnly?.operator.cpuSeconds, unit: 's' });
  ctx.row({ key: 'resyncPassS', label: 'resync pass duration', value: passOnly?.seconds, unit: 's' });
  ctx.row({
    key: 'rssIdleMB', label: 'operator RSS, idle', value: idle.operator.rssEndMB, unit: 'MB',
    ...(rssLimit ? { target: `≤ ${rssLimit} MB`, met: (idle.operator.rssEndMB ?? Infinity) <= rssLimit } : {}),
  });
  ctx.row({ key: 'heapIdleMB', label: 'operator heap used, idle', value: idle.operator.heapUsedEndMB, unit: 'MB' });
  ctx.row({ key: 'initialListS', label: 'initial list (start → caches synced)', value: initial.seconds, unit: 's' });
  ctx.row({
    key: 'lagInitialP99', label: 'event-loop lag p99 during the initial list', value: initial.operator.eventLoopLagP99Ms, unit: 'ms',
    target: '≤ 100 ms', met: initial.operator.eventLoopLagP99Ms !== undefined && initial.operator.eventLoopLagP99Ms <= 100,
  });
  ctx.row({
    key: 'lagStartupP99', label: 'event-loop lag p99 during the startup pass', value: startup.operator.eventLoopLagP99Ms, unit: 'ms',
    target: '≤ 100 ms', met: startup.operator.eventLoopLagP99Ms !== undefined && startup.operator.eventLoopLagP99Ms <= 100,
  });
  ctx.row({ key: 'lagResyncP99', label: 'event-loop lag p99 during the resync pass', value: passOnly?.operator.eventLoopLagP99Ms, unit: 'ms' });
  ctx.row({ key: 'rssAfterRestartMB', label: 'operator RSS after the restart and two passes', value: pass.operator.rssEndMB, unit: 'MB' });
  ctx.details.setup = created;
  ctx.details.audit = { startup: auditStartup, resync: auditResync };
  ctx.details.resyncSeconds = resync;
  if (!startupDone) ctx.notes.push('the startup pass did not finish in time');
  if (!resyncDone) ctx.notes.push('no complete resync pass was seen in time');
  return created.complete && !!startupDone && !!resyncDone;
}
