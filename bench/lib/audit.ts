// Writes counted in the apiserver's audit log (Metadata level, writes only: test/cluster/control-plane.ts),
// by the user agent of the client that made them. The same count for any controller, whatever its
// own metrics call things, so the operator and a peer controller are held to one measure.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

const writeVerbs = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

export interface AuditWrites {
  writes: number;
  byVerb: Record<string, number>;
  /** `verb resource[/subresource]` → count, e.g. `patch services`, `update rollouts/status`. */
  byResource: Record<string, number>;
  /** Request time of the newest write counted (ms since the epoch), if any. */
  lastAt?: number;
}

/** Reads the audit log from byte `offset`; undefined if it is missing or was rotated since. */
function readFrom(path: string, offset: number): string | undefined {
  if (!existsSync(path)) return undefined;
  const size = statSync(path).size;
  if (size < offset) return undefined;
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

interface AuditEvent {
  stage?: string;
  verb?: string;
  userAgent?: string;
  requestReceivedTimestamp?: string;
  objectRef?: { resource?: string; subresource?: string };
}

/** Writes by clients whose user agent starts with `agent`, after byte `offset` and inside [from, to]. */
export function auditWrites(path: string, offset: number, from: number, to: number, agent = 'modelship-operator'): AuditWrites | undefined {
  const text = readFrom(path, offset);
  if (text === undefined) return undefined;
  const out: AuditWrites = { writes: 0, byVerb: {}, byResource: {} };
  for (const line of text.split('\n')) {
    if (!line.includes(agent)) continue;
    let e: AuditEvent;
    try {
      e = JSON.parse(line) as AuditEvent;
    } catch {
      continue;
    }
    if (e.stage !== 'ResponseComplete' || !e.userAgent?.startsWith(agent) || !writeVerbs.has(e.verb ?? '')) continue;
    const t = Date.parse(e.requestReceivedTimestamp ?? '');
    if (t < from || t > to) continue;
    out.writes++;
    out.byVerb[e.verb!] = (out.byVerb[e.verb!] ?? 0) + 1;
    const resource = `${e.verb} ${e.objectRef?.resource ?? '?'}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''}`;
    out.byResource[resource] = (out.byResource[resource] ?? 0) + 1;
    if (out.lastAt === undefined || t > out.lastAt) out.lastAt = t;
  }
  return out;
}

/** Waits until `agent` has written nothing for `quietMs` (the audit backend flushes every second), or `maxMs`. */
export async function auditQuiet(path: string, offset: number, agent: string, quietMs = 5_000, maxMs = 120_000): Promise<boolean> {
  const began = Date.now();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(1_500);
  while (Date.now() - began < maxMs) {
    const w = auditWrites(path, offset, 0, Number.MAX_SAFE_INTEGER, agent);
    const last = w?.lastAt ?? began;
    if (Date.now() - last >= quietMs + 1_500) return true;
    await sleep(1_000);
  }
  return false;
}
