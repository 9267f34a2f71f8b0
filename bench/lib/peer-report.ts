// The side-by-side table of `make bench PEER=argo-rollouts`: every run of one series (one invocation),
// grouped by contender; the median of each figure with its spread (lowest–highest), and Modelship's
// median ÷ the peer's median. Written to bench/results/<date>-peer-N<n>.md and .json, and, with
// PUBLISH=1, into docs/performance.md between the markers for that N.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './operator.js';
import { machineLine, resultsDir, type Result } from './report.js';
import { percentile, round } from './stats.js';

export const peerContenders = ['modelship', 'argo-rollouts', 'argo-rollouts-unthrottled'] as const;
type Contender = (typeof peerContenders)[number];

const contenderTitle: Record<Contender, string> = {
  modelship: 'Modelship',
  'argo-rollouts': 'Argo Rollouts (40 QPS)',
  'argo-rollouts-unthrottled': 'Argo Rollouts (unthrottled)',
};

/** Modelship's targets against Argo Rollouts unthrottled, as ratios of the medians. */
const targets: Record<string, { max: number; text: string }> = {
  allPromotedS: { max: 0.5, text: '≤ 0.5×' },
  allReadyS: { max: 1, text: '≤ 1×' },
  cpuTotalS: { max: 0.33, text: '≤ 0.33×' },
  writesPerRollout: { max: 0.5, text: '≤ 0.5×' },
  rssPeakMB: { max: 0.5, text: '≤ 0.5×' },
};

interface Figure { key: string; label: string; unit: string }

/** The rows of the table, in order; cpuTotalS is derived from the two CPU rows. */
const figures: Figure[] = [
  { key: 'allReadyS', label: 'create storm: all Ready', unit: 's' },
  { key: 'allPromotedS', label: 'rollout storm: all promoted', unit: 's' },
  { key: 'cpuTotalS', label: 'controller CPU, both storms', unit: 's' },
  { key: 'cpuCreateS', label: '… create storm', unit: 's' },
  { key: 'cpuRolloutS', label: '… rollout storm', unit: 's' },
  { key: 'rssPeakMB', label: 'controller RSS, peak', unit: 'MB' },
  { key: 'rssEmptyMB', label: 'controller RSS with no objects', unit: 'MB' },
  { key: 'writesPerCreate', label: 'API writes per object created', unit: '' },
  { key: 'writesPerRollout', label: 'API writes per rollout', unit: '' },
  { key: 'eventsPerRollout', label: '… Events', unit: '' },
  { key: 'serviceWritesPerRollout', label: '… Services', unit: '' },
  { key: 'statusWritesPerRollout', label: '… its own status', unit: '' },
  { key: 'kube-controller-managerCpuCreateS', label: 'kube-controller-manager CPU, create storm', unit: 's' },
  { key: 'kube-controller-managerCpuRolloutS', label: 'kube-controller-manager CPU, rollout storm', unit: 's' },
  { key: 'kube-apiserverCpuCreateS', label: 'kube-apiserver CPU, create storm', unit: 's' },
  { key: 'kube-apiserverCpuRolloutS', label: 'kube-apiserver CPU, rollout storm', unit: 's' },
  { key: 'etcdCpuCreateS', label: 'etcd CPU, create storm', unit: 's' },
  { key: 'etcdCpuRolloutS', label: 'etcd CPU, rollout storm', unit: 's' },
];

export interface PeerSummary {
  series: string;
  n: number;
  date: string;
  runs: Record<string, { file: string; complete: boolean; load: number | undefined }[]>;
  rows: { key: string; label: string; unit: string; values: Record<string, { median?: number; min?: number; max?: number; count: number }>; ratioUnthrottled?: number; ratioDefault?: number; target?: string; met?: boolean }[];
}

interface PeerDetails { contender: Contender; series?: string; run: number }

/** Every result of one series, by contender. */
export function seriesResults(series: string): { file: string; result: Result; peer: PeerDetails }[] {
  if (!existsSync(resultsDir)) return [];
  return readdirSync(resultsDir)
    .filter((f) => /-peer-N\d+-.+\.json$/.test(f))
    .map((f) => ({ file: `bench/results/${f}`, result: JSON.parse(readFileSync(join(resultsDir, f), 'utf8')) as Result }))
    .map((x) => ({ ...x, peer: x.result.details.peer as PeerDetails | undefined }))
    .filter((x): x is { file: string; result: Result; peer: PeerDetails } => x.peer?.series === series)
    .sort((a, b) => a.result.startedAt.localeCompare(b.result.startedAt));
}

function value(r: Result, key: string): number | undefined {
  if (key === 'cpuTotalS') {
    const a = value(r, 'cpuCreateS');
    const b = value(r, 'cpuRolloutS');
    return a === undefined || b === undefined ? undefined : a + b;
  }
  return r.rows.find((row) => row.key === key)?.value;
}

export function summarizeSeries(series: string): PeerSummary | undefined {
  const list = seriesResults(series);
  if (!list.length) return undefined;
  const n = list[0]!.result.n;
  const runs: PeerSummary['runs'] = {};
  for (const x of list) (runs[x.peer.contender] ??= []).push({ file: x.file, complete: x.result.complete, load: x.result.machine.loadAverage[0] });
  const rows = figures.map((f) => {
    const values: PeerSummary['rows'][number]['values'] = {};
    for (const c of peerContenders) {
      // Incomplete runs are listed, never averaged in.
      const vs = list.filter((x) => x.peer.contender === c && x.result.complete).map((x) => value(x.result, f.key)).filter((v): v is number => v !== undefined);
      values[c] = { median: round(percentile(vs, 50), 2), min: vs.length ? Math.min(...vs) : undefined, max: vs.length ? Math.max(...vs) : undefined, count: vs.length };
    }
    const exact = (peer: Contender) => {
      const a = values.modelship?.median;
      const b = values[peer]?.median;
      return a !== undefined && b ? a / b : undefined;
    };
    const unthrottled = exact('argo-rollouts-unthrottled');
    const t = targets[f.key];
    // Judged on the unrounded ratio: 1.003× is not "≤ 1×" because it prints as 1.00×.
    return {
      key: f.key, label: f.label, unit: f.unit, values, ratioUnthrottled: round(unthrottled, 3), ratioDefault: round(exact('argo-rollouts'), 3),
      ...(t ? { target: t.text, met: unthrottled === undefined ? undefined : unthrottled <= t.max } : {}),
    };
  });
  return { series, n, date: list[0]!.result.date, runs, rows };
}

const fmt = (v: number | undefined) => (v === undefined ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
/** Ratios with three decimals, so one at a target's edge reads as what it is. */
const fmtRatio = (v: number | undefined) => (v === undefined ? '–' : `${v.toFixed(3)}×`);

export function peerTable(s: PeerSummary): string {
  const cell = (v: PeerSummary['rows'][number]['values'][string] | undefined, unit: string) =>
    v?.median === undefined ? '–' : `${fmt(v.median)}${unit ? ` ${unit}` : ''} (${fmt(v.min)}–${fmt(v.max)})`;
  return [
    `| N = ${s.n} | ${peerContenders.map((c) => contenderTitle[c]).join(' | ')} | × Argo unthrottled | × Argo 40 QPS | target | met |`,
    '|---|---:|---:|---:|---:|---:|---|:---:|',
    ...s.rows.map((r) => `| ${r.label} | ${peerContenders.map((c) => cell(r.values[c], r.unit)).join(' | ')} | ${fmtRatio(r.ratioUnthrottled)} | ${fmtRatio(r.ratioDefault)} | ${r.target ?? ''} | ${r.met === undefined ? '' : r.met ? 'yes' : '**no**'} |`),
    '',
    `Median of ${peerContenders.map((c) => `${s.runs[c]?.filter((x) => x.complete).length ?? 0} ${contenderTitle[c]}`).join(', ')} runs (lowest–highest in brackets), interleaved, each on a fresh control plane; series ${s.series}.`,
  ].join('\n');
}

export function writePeerSummary(series: string): { md: string; summary: PeerSummary } | undefined {
  const s = summarizeSeries(series);
  if (!s) return undefined;
  const first = seriesResults(series)[0]!.result;
  const base = join(resultsDir, `${s.date}-peer-N${s.n}`);
  writeFileSync(`${base}.json`, JSON.stringify(s, null, 2) + '\n');
  const md = [
    `# Side by side with Argo Rollouts, N = ${s.n}`,
    '',
    `Machine: ${machineLine(first, false)}`,
    '',
    peerTable(s),
    '',
    'Runs:',
    '',
    ...Object.entries(s.runs).flatMap(([c, list]) => list.map((x) => `- ${c}: ${x.file}${x.complete ? '' : ' (incomplete)'}, load ${x.load ?? '?'} at start`)),
    '',
  ].join('\n');
  writeFileSync(`${base}.md`, md);
  return { md: `${base}.md`, summary: s };
}

/** Replaces the table between `<!-- bench:peer:N<n>:start -->` and its end marker in docs/performance.md. */
export function publishPeer(s: PeerSummary): string {
  const path = join(repoRoot, 'docs', 'performance.md');
  const doc = readFileSync(path, 'utf8');
  const start = `<!-- bench:peer:N${s.n}:start -->`;
  const end = `<!-- bench:peer:N${s.n}:end -->`;
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${path} has no ${start} … ${end} markers`);
  writeFileSync(path, `${doc.slice(0, a)}${start}\n${peerTable(s)}\n${end}${doc.slice(b + end.length)}`);
  return path;
}
