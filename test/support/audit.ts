// Reads the apiserver's audit log: the apiserver's own record of who asked for what. Every write is
// logged, and every request of the ServiceAccounts in modelship-rbac (test/cluster/control-plane.ts).
import { readFileSync, existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { testCluster } from '../cluster/cluster.js';

export interface AuditEvent {
  auditID: string;
  verb: string;
  userAgent?: string;
  user?: { username?: string; groups?: string[] };
  stage: string;
  requestURI?: string;
  requestReceivedTimestamp: string;
  objectRef?: { apiGroup?: string; resource?: string; namespace?: string; name?: string; subresource?: string };
  responseStatus?: { code?: number; message?: string };
  /** authorization.k8s.io/decision is "forbid" when the authorizer refused the request. */
  annotations?: Record<string, string>;
}

function readAuditLog(): AuditEvent[] {
  const path = testCluster().state.auditLog;
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as AuditEvent);
}

/** Audit events at ResponseComplete since `since` by clients whose user agent starts with `agent`. */
export async function writesSince(since: Date, agent: string, namespace?: string): Promise<AuditEvent[]> {
  // The audit backend flushes in batches of at most 1 s.
  await sleep(2_500);
  return readAuditLog().filter((e) => e.stage === 'ResponseComplete' && e.userAgent?.startsWith(agent)
    && new Date(e.requestReceivedTimestamp) >= since && (!namespace || e.objectRef?.namespace === namespace));
}

/**
 * One event per request made by `username` since `since`, read as the log stands now (wait a couple of
 * seconds after the last request: the backend flushes in batches). A watch is logged when its response
 * starts and again when it ends; the latest stage of each is kept, so a watch still open counts too.
 */
export function requestsBy(username: string, since: Date): AuditEvent[] {
  const byId = new Map<string, AuditEvent>();
  for (const e of readAuditLog()) {
    if (e.user?.username !== username || new Date(e.requestReceivedTimestamp) < since) continue;
    if (e.stage !== 'ResponseStarted' && e.stage !== 'ResponseComplete') continue;
    if (byId.get(e.auditID)?.stage !== 'ResponseComplete') byId.set(e.auditID, e);
  }
  return [...byId.values()];
}
