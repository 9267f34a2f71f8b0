// Reads a V8 .cpuprofile (node --cpu-prof) into the functions and files that took the most CPU:
// self time (the function itself) and total time (with everything it called).
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { repoRoot } from './operator.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotSpot { name: string; selfMs: number; selfPct: number; totalMs?: number; totalPct?: number }

/** A stretch of samples with no idle sample in it: the event loop did not turn meanwhile. */
export interface LongTask { atS: number; ms: number; top: { name: string; ms: number }[]; self: { name: string; ms: number }[] }

export interface ProfileSummary {
  file: string;
  durationS: number;
  sampledMs: number;
  topSelf: HotSpot[];
  topTotal: HotSpot[];
  byFile: HotSpot[];
  longTasks: LongTask[];
}

const where = (url: string) => {
  if (!url) return '(native)';
  const path = url.replace(/^file:\/\//, '');
  const rel = relative(repoRoot, path);
  return rel.startsWith('..') ? path : rel;
};

const label = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Time per sample: the deltas attribute wall time between samples to the sampled node.
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const dt = deltas[i + 1] ?? deltas[i] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + dt);
  }
  const idle = new Set(profile.nodes.filter((n) => ['(idle)', '(program)', '(garbage collector)'].includes(n.callFrame.functionName)).map((n) => n.id));
  const gc = profile.nodes.find((n) => n.callFrame.functionName === '(garbage collector)');
  let busyUs = 0;
  for (const [id, us] of selfUs) if (!idle.has(id) || id === gc?.id) busyUs += us;
  const pct = (us: number) => Math.round((us / Math.max(1, busyUs)) * 1000) / 10;

  const selfByName = new Map<string, number>();
  const selfByFile = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    if (idle.has(id) && id !== gc?.id) continue;
    selfByName.set(label(n), (selfByName.get(label(n)) ?? 0) + us);
    const f = where(n.callFrame.url);
    selfByFile.set(f, (selfByFile.get(f) ?? 0) + us);
  }
  // Total time: a node's self time plus its subtree's, counted once per function on a stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const totalByName = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (idle.has(id) && id !== gc?.id) continue;
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const name = label(byId.get(cur)!);
      if (seen.has(name)) continue;
      seen.add(name);
      totalByName.set(name, (totalByName.get(name) ?? 0) + us);
    }
  }
  const list = (m: Map<string, number>, total?: Map<string, number>) => [...m.entries()]
    .sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, us]) => ({
      name, selfMs: Math.round(us / 1000), selfPct: pct(us),
      ...(total ? { totalMs: Math.round((total.get(name) ?? 0) / 1000), totalPct: pct(total.get(name) ?? 0) } : {}),
    }));
  const topTotal = [...totalByName.entries()].filter(([name]) => !name.startsWith('(root)'))
    .sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, us]) => ({ name, selfMs: Math.round((selfByName.get(name) ?? 0) / 1000), selfPct: pct(selfByName.get(name) ?? 0), totalMs: Math.round(us / 1000), totalPct: pct(us) }));
  // Long tasks: consecutive non-idle samples. The frames most often on their stacks say what ran.
  const idleId = profile.nodes.find((n) => n.callFrame.functionName === '(idle)')?.id;
  const tasks: { start: number; us: number; samples: number[] }[] = [];
  let current: { start: number; us: number; samples: number[] } | undefined;
  let clock = 0;
  for (let i = 0; i < samples.length; i++) {
    clock += deltas[i] ?? 0;
    const dt = deltas[i + 1] ?? 0;
    if (samples[i] === idleId) {
      if (current) tasks.push(current);
      current = undefined;
      continue;
    }
    current ??= { start: clock, us: 0, samples: [] };
    current.us += dt;
    current.samples.push(samples[i]!);
  }
  if (current) tasks.push(current);
  const longTasks = tasks.sort((a, b) => b.us - a.us).slice(0, 8).map((t) => {
    const onStack = new Map<string, number>();
    for (const id of t.samples) {
      const seen = new Set<string>();
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const n = byId.get(cur)!;
        if (!n.callFrame.url.includes('/operator/') && !n.callFrame.url.includes('node_modules') && !['(garbage collector)', '(program)'].includes(n.callFrame.functionName)) continue;
        const name = label(n);
        if (seen.has(name)) continue;
        seen.add(name);
        onStack.set(name, (onStack.get(name) ?? 0) + 1);
      }
    }
    const perSample = t.us / Math.max(1, t.samples.length) / 1000;
    const self = new Map<string, number>();
    for (const id of t.samples) self.set(label(byId.get(id)!), (self.get(label(byId.get(id)!)) ?? 0) + 1);
    const rank = (m: Map<string, number>, k: number) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, c]) => ({ name, ms: Math.round(c * perSample) }));
    return { atS: Math.round(t.start / 1e4) / 100, ms: Math.round(t.us / 1000), top: rank(onStack, 6), self: rank(self, 3) };
  });
  return {
    file,
    durationS: Math.round((profile.endTime - profile.startTime) / 1e4) / 100,
    sampledMs: Math.round(busyUs / 1000),
    topSelf: list(selfByName, totalByName),
    topTotal,
    byFile: list(selfByFile),
    longTasks,
  };
}

export function profileMarkdown(p: ProfileSummary): string {
  return [
    `### ${p.file.startsWith('/') ? relative(repoRoot, p.file) : p.file}`,
    '',
    `${p.durationS} s profiled, ${(p.sampledMs / 1000).toFixed(1)} s on CPU (JavaScript, native and GC; idle excluded)`,
    '',
    '| self % | self ms | total % | function |',
    '|---:|---:|---:|---|',
    ...p.topSelf.map((h) => `| ${h.selfPct} | ${h.selfMs} | ${h.totalPct ?? ''} | \`${h.name}\` |`),
    '',
    '| total % | total ms | function (inclusive) |',
    '|---:|---:|---|',
    ...p.topTotal.map((h) => `| ${h.totalPct ?? ''} | ${h.totalMs ?? ''} | \`${h.name}\` |`),
    '',
    'Longest stretches without an idle sample (event-loop blocks), with the operator and library frames most on their stacks:',
    '',
    ...p.longTasks.map((t) => `- at ${t.atS} s: ${t.ms} ms — on the stack: ${t.top.map((f) => `\`${f.name}\` ${f.ms} ms`).join(', ')}; self: ${t.self.map((f) => `\`${f.name}\` ${f.ms} ms`).join(', ')}`),
    '',
    '| self % | file |',
    '|---:|---|',
    ...p.byFile.map((h) => `| ${h.selfPct} | ${h.name} |`),
    '',
  ].join('\n');
}
