// Results: one JSON and one Markdown file per run (bench/results/<date>-<scenario>-N<n>.*), a
// combined bench/results/latest.md of the newest run of each scenario and N, and the same table in
// docs/performance.md between its markers.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine, Versions } from './machine.js';
import type { PhaseSummary } from './sampler.js';
import { repoRoot } from './operator.js';

export const resultsDir = join(repoRoot, 'bench', 'results');
/** `peer` runs only with PEER= (bench/lib/peer-report.ts), never as part of `all`. */
export type Scenario = 'floor' | 'create' | 'rollout' | 'steady' | 'churn' | 'peer';
export const scenarios: readonly Scenario[] = ['floor', 'create', 'rollout', 'steady', 'churn'];

/** One line of the results table. */
export interface Row {
  key: string;
  label: string;
  value: number | undefined;
  unit: string;
  /** The floor's value of the same quantity, when there is one. */
  floor?: number;
  /** value / floor. */
  ratio?: number;
  target?: string;
  met?: boolean;
}

export interface Result {
  scenario: Scenario;
  n: number;
  /** A side experiment (LABEL=...): kept out of latest.md and of floor lookups. */
  label?: string;
  date: string;
  startedAt: string;
  finishedAt: string;
  complete: boolean;
  machine: Machine;
  machineAtEnd: Pick<Machine, 'loadAverage'>;
  versions: Versions;
  parameters: Record<string, unknown>;
  /** The floor result the ratios refer to. */
  floorRef?: { file: string; startedAt: string };
  rows: Row[];
  phases: PhaseSummary[];
  details: Record<string, unknown>;
  notes: string[];
}

export const resultBase = (r: Pick<Result, 'date' | 'scenario' | 'n' | 'label'>) => `${r.date}-${r.scenario}-N${r.n}${r.label ? `-${r.label}` : ''}`;

const fmt = (v: number | undefined, unit = '') => {
  if (v === undefined || Number.isNaN(v)) return '–';
  const s = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? `${s} ${unit}` : s;
};

export function machineLine(r: Pick<Result, 'machine' | 'versions' | 'machineAtEnd'>, withLoad = true): string {
  const m = r.machine;
  const v = r.versions;
  const load = withLoad ? `; load average ${m.loadAverage.join(' / ')} at start, ${r.machineAtEnd.loadAverage.join(' / ')} at end` : '';
  return `${m.cpuModel}, ${m.cores} cores, ${m.memoryGB} GB${load}; `
    + `Node ${v.node}, Kubernetes ${v.kubernetes ?? '?'}, etcd ${v.etcd ?? '?'}, ${v.kwok?.replace(/^kwok version /, 'kwok ') ?? 'kwok ?'}`;
}

const revision = (r: Pick<Result, 'versions'>) => `modelship ${r.versions.modelship} @ ${r.versions.commit ?? '?'}${r.versions.operatorTreeDirty ? ' (operator/ modified)' : ''}`;

export function markdown(r: Result): string {
  const lines = [
    `# ${title(r.scenario)}, N = ${r.n}${r.label ? ` (${r.label})` : ''}`,
    '',
    `${r.date} (${r.startedAt} – ${r.finishedAt})${r.complete ? '' : ' — **incomplete: see notes**'}`,
    '',
    `Machine: ${machineLine(r)}`,
    '',
    `Operator: ${revision(r)}`,
    '',
    `Parameters: ${Object.entries(r.parameters).map(([k, v]) => `${k}=${String(v)}`).join(', ')}`,
    ...(r.floorRef ? ['', `Floor: ${r.floorRef.file} (${r.floorRef.startedAt})`] : []),
    '',
    '| metric | value | floor | × floor | target | met |',
    '|---|---:|---:|---:|---|:---:|',
    ...r.rows.map((row) => `| ${row.label} | ${fmt(row.value, row.unit)} | ${fmt(row.floor, row.unit)} | ${row.ratio === undefined ? '–' : `${fmt(row.ratio)}×`} | ${row.target ?? ''} | ${row.met === undefined ? '' : row.met ? 'yes' : '**no**'} |`),
    '',
    '## Phases (operator measured from outside)',
    '',
    '| phase | s | CPU s | cores | RSS peak MB | heap peak MB | fds peak | lag p99 ms (worst / median window) | lag max ms | writes | requests | queue p99 ms (bucket ≤) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
    ...r.phases.map((p) => `| ${p.name} | ${fmt(p.seconds)} | ${fmt(p.operator.cpuSeconds)} | ${fmt(p.operator.cpuCores)} | ${fmt(p.operator.rssPeakMB)} | ${fmt(p.operator.heapUsedPeakMB)} | ${p.operator.fdsPeak ?? '–'} | ${fmt(p.operator.eventLoopLagP99Ms)} / ${fmt(p.operator.eventLoopLagP99MedianWindowMs)} | ${fmt(p.operator.eventLoopLagMaxMs)} | ${p.operator.writes} | ${Object.entries(p.operator.requests).map(([k, v]) => `${k} ${v}`).join(', ')} | ${fmt(p.operator.queueLatencyP99Ms)}${p.operator.queueLatencyP99UpperMs === undefined ? '' : ` (≤ ${fmt(p.operator.queueLatencyP99UpperMs)})`} |`),
    '',
    'CPU seconds by process in each phase:',
    '',
    ...r.phases.map((p) => `- ${p.name}: ${Object.entries(p.cpuSeconds).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')}`),
    '',
    'The apiserver\'s own view (apiserver_request_duration_seconds; watches left out): requests and mean latency by verb and resource.',
    '',
    ...r.phases.filter((p) => p.apiserver?.requests.length).map((p) => `- ${p.name}: ${p.apiserver!.requests.slice(0, 8).map((q) => `${q.verb} ${q.resource} ${q.count} × ${fmt(q.meanMs)} ms`).join(', ')}`),
    ...(r.notes.length ? ['', '## Notes', '', ...r.notes.map((n) => `- ${n}`)] : []),
    '',
  ];
  return lines.join('\n');
}

export function title(s: Scenario): string {
  return { floor: 'Floor', create: 'Create storm', rollout: 'Rollout storm', steady: 'Steady state', churn: 'Churn', peer: 'Side by side' }[s];
}

export function writeResult(r: Result): { json: string; md: string } {
  mkdirSync(resultsDir, { recursive: true });
  const base = join(resultsDir, resultBase(r));
  writeFileSync(`${base}.json`, JSON.stringify(r, null, 2) + '\n');
  writeFileSync(`${base}.md`, markdown(r));
  return { json: `${base}.json`, md: `${base}.md` };
}

/** Every result in bench/results/, oldest first. */
export function allResults(): { file: string; result: Result }[] {
  if (!existsSync(resultsDir)) return [];
  return readdirSync(resultsDir)
    // The side-by-side summaries (<date>-peer-N<n>.json, bench/lib/peer-report.ts) are not runs.
    .filter((f) => /^\d{4}-\d{2}-\d{2}-[a-z]+-N\d+\.json$/.test(f) && !f.includes('-peer-'))
    .map((f) => ({ file: `bench/results/${f}`, result: JSON.parse(readFileSync(join(resultsDir, f), 'utf8')) as Result }))
    .sort((a, b) => a.result.startedAt.localeCompare(b.result.startedAt));
}

/** The newest complete floor result for N. */
export function latestFloor(n: number): { file: string; result: Result } | undefined {
  return allResults().filter((x) => x.result.scenario === 'floor' && x.result.n === n && x.result.complete).at(-1);
}

/** The newest result of each scenario and N, in scenario order, then N. */
export function latestResults(): { file: string; result: Result }[] {
  const newest = new Map<string, { file: string; result: Result }>();
  for (const x of allResults()) newest.set(`${x.result.scenario}/${x.result.n}`, x);
  return [...newest.values()].sort((a, b) =>
    scenarios.indexOf(a.result.scenario) - scenarios.indexOf(b.result.scenario) || a.result.n - b.result.n);
}

/** The combined table: every row of the newest result of each scenario and N. */
export function combinedTable(list = latestResults()): string {
  const lines = [
    '| scenario | N | metric | value | × floor | target | met | date | load |',
    '|---|---:|---|---:|---:|---|:---:|---|---:|',
  ];
  for (const { result: r } of list) {
    for (const row of r.rows) {
      lines.push(`| ${title(r.scenario)} | ${r.n} | ${row.label} | ${fmt(row.value, row.unit)} | ${row.ratio === undefined ? '–' : `${fmt(row.ratio)}×`} | ${row.target ?? ''} | ${row.met === undefined ? '' : row.met ? 'yes' : '**no**'} | ${r.date}${r.complete ? '' : ' (incomplete)'} | ${r.machine.loadAverage[0] ?? ''} |`);
    }
  }
  const machines = [...new Set(list.map(({ result }) => machineLine(result, false)))];
  return [
    ...lines,
    '',
    '"load" is the machine\'s 1-minute load average when the run started: on 2 cores, anything far above 2 means other work shared the machine and the run is slower than it would be alone.',
    '',
    ...machines.map((m) => `Measured on: ${m}.`),
  ].join('\n');
}

/**
 * Cost per object at each N, from the newest create (and rollout) result of each N: the rows that show a
 * regression in scale, whatever the machine's speed. Derived from stored rows, so older results have them.
 */
export function scaleTable(list = latestResults()): string {
  const create = list.filter((x) => x.result.scenario === 'create' && x.result.complete).map((x) => x.result);
  const rollout = list.filter((x) => x.result.scenario === 'rollout' && x.result.complete).map((x) => x.result);
  const ns = [...new Set([...create, ...rollout].map((r) => r.n))].sort((a, b) => a - b);
  const at = (rs: Result[], n: number) => rs.find((r) => r.n === n);
  const v = (r: Result | undefined, key: string) => r?.rows.find((row) => row.key === key)?.value;
  const per = (a: number | undefined, n: number, scale: number) => (a === undefined ? undefined : (a / n) * scale);
  const rows: [string, (n: number) => number | undefined][] = [
    ['operator CPU per object created (ms)', (n) => per(v(at(create, n), 'cpuSeconds'), n, 1000)],
    ['operator writes per object created', (n) => v(at(create, n), 'writesPerObject')],
    ['operator RSS per object, settled − empty (KB)', (n) => { const r = at(create, n); const a = v(r, 'rssSettledMB'); const b = v(r, 'rssEmptyMB'); return a === undefined || b === undefined ? undefined : per(a - b, n, 1024); }],
    ['operator heap used, settled (MB)', (n) => v(at(create, n), 'heapSettledMB')],
    ['operator CPU per rollout (ms)', (n) => per(v(at(rollout, n), 'cpuSeconds'), n, 1000)],
    ['operator API requests per rollout', (n) => v(at(rollout, n), 'requestsPerRollout')],
  ];
  const dates = (n: number) => [at(create, n), at(rollout, n)].filter((r): r is Result => !!r).map((r) => `${r.scenario} ${r.date}`).join(', ');
  return [
    `| per object | ${ns.map((n) => `N = ${n.toLocaleString('en-US')}`).join(' | ')} |`,
    `|---|${ns.map(() => '---:').join('|')}|`,
    ...rows.map(([label, f]) => `| ${label} | ${ns.map((n) => fmt(f(n))).join(' | ')} |`),
    '',
    `From: ${ns.map((n) => `N = ${n}: ${dates(n)}`).join('; ')}.`,
  ].join('\n');
}

export function writeLatest(): string {
  const list = latestResults();
  const text = [
    '# Benchmark results (newest run of each scenario and N)',
    '',
    'Generated by `make bench` from the JSON files in this directory; see bench/README.md for the method.',
    '',
    combinedTable(list),
    '',
    '## Per object',
    '',
    scaleTable(list),
    '',
    'Files:',
    '',
    ...list.map(({ file, result }) => `- ${file} (${revision(result)}; load ${result.machine.loadAverage.join(' / ')} at start, ${result.machineAtEnd.loadAverage.join(' / ')} at end)`),
    '',
  ].join('\n');
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, 'latest.md');
  writeFileSync(path, text);
  return path;
}

export const publishStart = '<!-- bench:results:start -->';
export const publishEnd = '<!-- bench:results:end -->';
export const scaleStart = '<!-- bench:scale:start -->';
export const scaleEnd = '<!-- bench:scale:end -->';

/** Replaces the table between the markers in docs/performance.md with the combined table. */
export function publish(): string {
  const path = join(repoRoot, 'docs', 'performance.md');
  const doc = readFileSync(path, 'utf8');
  const a = doc.indexOf(publishStart);
  const b = doc.indexOf(publishEnd);
  if (a < 0 || b < a) throw new Error(`${path} has no ${publishStart} … ${publishEnd} markers`);
  const body = `${publishStart}\n${combinedTable()}\n${publishEnd}`;
  let out = doc.slice(0, a) + body + doc.slice(b + publishEnd.length);
  const c = out.indexOf(scaleStart);
  const d = out.indexOf(scaleEnd);
  if (c >= 0 && d > c) out = `${out.slice(0, c)}${scaleStart}\n${scaleTable()}\n${scaleEnd}${out.slice(d + scaleEnd.length)}`;
  writeFileSync(path, out);
  return path;
}
