// Counts writes from the apiserver's audit log: the apiserver's own record of who changed what.
import { readFileSync, existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { testCluster } from '../cluster/cluster.js';

export interface AuditEvent {
  verb: string;
  userAgent?: string;
  stage: string;
  requestReceivedTimestamp: string;
  objectRef?: { resource?: string; namespace?: string; name?: string; subresource?: string };
  responseStatus?: { code?: number };
}

/** Audit events at ResponseComplete since `since` by clients whose user agent starts with `agent`. */
export async function writesSince(since: Date, agent: string, namespace?: string): Promise<AuditEvent[]> {
  // The audit backend flushes in batches of at most 1 s.
  await sleep(2_500);
  const path = testCluster().state.auditLog;
  if (!existsSync(path)) return [];
  const out: AuditEvent[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as AuditEvent;
    if (e.stage !== 'ResponseComplete' || !e.userAgent?.startsWith(agent)) continue;
    if (new Date(e.requestReceivedTimestamp) < since) continue;
    if (namespace && e.objectRef?.namespace !== namespace) continue;
    out.push(e);
  }
  return out;
}
