// What `kubectl modelship` prints: pure functions from ModelDeployments to text, so the views are
// tested without a cluster and the command file only does I/O.
import type { CheckResult, HistoryEntry, ModelDeployment } from '../api/generated.js';

export function age(from: string | undefined, now: Date): string {
  if (!from) return '-';
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(from)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd()).join('\n');
}

const cond = (md: ModelDeployment, type: string) => md.status?.conditions?.find((c) => c.type === type);

export function listView(items: ModelDeployment[], now: Date, allNamespaces: boolean): string {
  if (items.length === 0) return 'No ModelDeployments found.';
  const header = [...(allNamespaces ? ['NAMESPACE'] : []), 'NAME', 'READY', 'PHASE', 'VERSION', 'CANARY', 'WEIGHT', 'STEP', 'AGE'];
  return table([header, ...items.map((md) => [
    ...(allNamespaces ? [md.metadata?.namespace ?? ''] : []),
    md.metadata?.name ?? '',
    cond(md, 'Ready')?.status ?? 'Unknown',
    md.status?.phase ?? '-',
    md.status?.stableRevision?.modelVersion ?? '-',
    md.status?.canaryRevision?.modelVersion ?? '-',
    md.status?.canaryRevision ? `${md.status.canaryWeight ?? 0}%` : '-',
    md.status?.rollout?.position ?? '-',
    age(md.metadata?.creationTimestamp, now),
  ])]);
}

export function progressBar(step: number, steps: number, width = 24): string {
  if (steps <= 0) return '';
  const filled = Math.round((Math.min(step, steps) / steps) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

function resultLine(r: CheckResult): string {
  const mark = r.phase === 'Passed' ? '✔' : r.phase === 'Failed' ? '✘' : '…';
  const value = r.value !== undefined ? `${r.value}${r.stableValue !== undefined ? ` (stable ${r.stableValue})` : ''}` : '';
  return `  ${mark} ${r.check.padEnd(16)} ${(r.phase ?? '').padEnd(12)} ${value.padEnd(22)} ${r.failures ? `failures ${r.failures}  ` : ''}${r.message ?? ''}`.trimEnd();
}

export function statusView(md: ModelDeployment, now: Date): string {
  const s = md.status ?? {};
  const ready = cond(md, 'Ready');
  const lines = [
    `Name:          ${md.metadata?.name}`,
    `Namespace:     ${md.metadata?.namespace}`,
    `Phase:         ${s.phase ?? 'Unknown'}${s.observedGeneration !== md.metadata?.generation ? '  (the operator has not seen the latest spec yet)' : ''}`,
    `Ready:         ${ready?.status ?? 'Unknown'}${ready ? ` (${ready.reason}): ${ready.message}` : ''}`,
    `URL:           ${s.url ?? '-'}`,
    ...(ready?.reason === 'ScaledToZero' ? [`Replicas:      scaled to zero${md.spec.autoscaling ? ` (autoscaled ${md.spec.autoscaling.minReplicas ?? 1}..${md.spec.autoscaling.maxReplicas}; a request wakes it through its activation metric)` : ''}`] : []),
    `Stable:        ${s.stableRevision ? `${s.stableRevision.hash}  model ${s.stableRevision.modelVersion}  ${s.stableRevision.image ?? ''}` : '-'}`,
  ];
  if (s.canaryRevision) {
    const r = s.rollout ?? {};
    lines.push(`Canary:        ${s.canaryRevision.hash}  model ${s.canaryRevision.modelVersion}  ${s.canaryRevision.image ?? ''}`);
    const steps = r.steps ?? 0;
    lines.push(`Step:          ${r.position ?? '-'}  ${progressBar((r.step ?? 0) + (steps ? 0 : 1), steps || 1)}${r.pauseReason ? `  paused: ${r.pauseReason}` : ''}`);
    lines.push(`Weight:        ${s.canaryWeight ?? 0}% to canary${s.mirrorWeight ? `, ${s.mirrorWeight}% mirrored` : ''}`);
    lines.push(`Rolling out:   since ${age(r.startedAt, now)} ago, this step ${age(r.stepStartedAt, now)}`);
    if (r.pauseReason === 'ManualGate') lines.push(`               waiting for: kubectl modelship promote ${md.metadata?.name}`);
    if (r.pauseReason === 'ScaledToZero') lines.push('               waiting for the model to be woken: at zero replicas no traffic reaches a canary to judge it by');
    if (r.loadingDeadline && r.stepStartedAt) {
      lines.push(`Loading:       ${age(r.stepStartedAt, now)} of at most ${age(r.stepStartedAt, new Date(r.loadingDeadline))}; rolled back if not ready by then, not judged until it is`);
    } else if (r.canaryReadyAt) {
      lines.push(`Canary ready:  since ${age(r.canaryReadyAt, now)} ago; analysis counts from then`);
    }
  }
  const progressing = cond(md, 'Progressing');
  if (progressing) lines.push(`Progress:      ${progressing.reason}: ${progressing.message}`);
  const degraded = cond(md, 'Degraded');
  if (degraded?.status === 'True') lines.push(`Degraded:      ${degraded.reason}: ${degraded.message}`);
  if (s.rejectedRevision) lines.push(`Rejected:      ${s.rejectedRevision.hash} (model ${s.rejectedRevision.modelVersion}): ${s.rejectedRevision.reason}  — retry with: kubectl modelship retry ${md.metadata?.name}`);
  const results = s.analysis?.results ?? [];
  if (results.length) lines.push('Analysis:', ...results.map(resultLine));
  const monitoring = s.monitoring;
  if (md.spec.monitoring?.checks?.length && monitoring) {
    const baseline = monitoring.baselineCapturedAt ? `, baseline from ${age(monitoring.baselineCapturedAt, now)} ago` : '';
    lines.push(`Monitoring:    revision ${monitoring.revision ?? '-'}, every ${md.spec.monitoring.interval ?? '1m'}, on failure ${md.spec.monitoring.onFailure ?? 'Alert'}${baseline}`);
    lines.push(...(monitoring.results ?? []).map(resultLine));
    const n = monitoring.notification;
    if (n) lines.push(`Webhook:       telling Drifting=${n.drifting}, attempt ${(n.attempts ?? 0) + 1}${n.lastError ? ` (last: ${n.lastError})` : ''}`);
  }
  for (const c of s.conditions ?? []) {
    if (['CapacityBlocked', 'AnalysisInconclusive', 'AutoscalingReady', 'Drifting'].includes(c.type) && c.status !== (c.type === 'AutoscalingReady' ? 'True' : 'False')) {
      lines.push(`${`${c.type}:`.padEnd(15)}${c.reason}: ${c.message}`);
    }
  }
  const op = s.rollout?.lastOperation;
  if (op) lines.push(`Last request:  ${op.kind} ${op.revision} ${age(op.at, now)} ago: ${op.result}`);
  return lines.join('\n');
}

/** History numbered like `kubectl rollout history`: 1 is the oldest entry kept. */
export function numberedHistory(md: ModelDeployment): { revision: number; entry: HistoryEntry }[] {
  const entries = [...(md.status?.history ?? [])].reverse();
  return entries.map((entry, i) => ({ revision: i + 1, entry }));
}

export function historyView(md: ModelDeployment, now: Date): string {
  const rows = numberedHistory(md);
  if (rows.length === 0) return 'No history yet.';
  const stable = md.status?.stableRevision?.hash;
  return table([['REVISION', 'HASH', 'VERSION', 'OUTCOME', 'STARTED', 'FINISHED', 'REASON'], ...rows.map(({ revision, entry }) => [
    `${revision}${entry.revision === stable && entry.outcome === 'Promoted' ? '*' : ''}`,
    entry.revision,
    entry.modelVersion ?? '-',
    entry.outcome ?? '-',
    age(entry.startedAt, now),
    entry.finishedAt ? age(entry.finishedAt, now) : '-',
    (entry.reason ?? '').slice(0, 80),
  ])]);
}
