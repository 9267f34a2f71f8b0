// Reads a V8 .heapsnapshot into what holds the memory: self size and count by constructor (or, for
// strings, code and arrays, by node type).
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: (string | string[])[] }; node_count: number };
  nodes: number[];
  strings: string[];
}

export interface HeapEntry { name: string; count: number; selfMB: number }
export interface HeapSummary { file: string; totalMB: number; nodes: number; top: HeapEntry[] }

export function summarizeHeap(file: string, top = 25): HeapSummary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const by = new Map<string, { count: number; size: number }>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!] ?? '?';
    const size = snap.nodes[i + sizeAt]!;
    total += size;
    const name = type === 'object' || type === 'closure' || type === 'native'
      ? `${type === 'object' ? '' : `(${type}) `}${snap.strings[snap.nodes[i + nameAt]!] ?? '?'}`
      : `(${type})`;
    const e = by.get(name) ?? { count: 0, size: 0 };
    e.count++;
    e.size += size;
    by.set(name, e);
  }
  const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
  return {
    file,
    totalMB: mb(total),
    nodes: snap.nodes.length / width,
    top: [...by.entries()].sort((a, b) => b[1].size - a[1].size).slice(0, top).map(([name, e]) => ({ name, count: e.count, selfMB: mb(e.size) })),
  };
}

export function heapMarkdown(h: HeapSummary): string {
  return [
    `### ${h.file}`,
    '',
    `${h.totalMB} MB in ${h.nodes} heap objects (the snapshot is taken after a full GC: live objects only)`,
    '',
    '| self MB | count | constructor / type |',
    '|---:|---:|---|',
    ...h.top.map((e) => `| ${e.selfMB} | ${e.count} | \`${e.name}\` |`),
    '',
  ].join('\n');
}
