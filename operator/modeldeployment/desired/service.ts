// The Service `<md>` in front of every serving revision (ReplicaRatio routing: the canary's share of
// traffic follows its share of ready pods).
import type { Check, ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { instanceLabel, managedBy, managedByLabel, ownedMetadata, revisionLabel, roleLabel, type Role } from '../labels.js';

export function servicePort(md: ModelDeployment): number {
  return md.spec.traffic?.port ?? 80;
}

/**
 * The Service clients use. While a canary takes traffic it selects every pod of the model, so traffic
 * follows the ready-pod ratio; otherwise it selects only `onlyRevision`, which takes traffic off a
 * rolled-back canary at once and keeps a retiring revision warm but idle.
 */
export function desiredService(md: ModelDeployment, onlyRevision?: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMetadata(md),
    spec: {
      type: 'ClusterIP',
      selector: { [instanceLabel]: md.metadata!.name!, [managedByLabel]: managedBy, ...(onlyRevision ? { [revisionLabel]: onlyRevision } : {}) },
      ports: [{ name: 'http', port: servicePort(md), targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

/**
 * Whether `<md>-stable` and `<md>-canary` exist. A gateway's route has them as its backends; otherwise
 * (ReplicaRatio) only checks that call one revision reach them (http, and webhooks, which are told
 * their URLs), unless the spec asks for them always. Each is a ClusterIP and an EndpointSlice that
 * every pod change of its revision rewrites, and its selector is patched at every promotion: kept
 * only where something uses it.
 */
export function revisionServicesWanted(md: ModelDeployment, gateway: boolean): boolean {
  if (gateway || md.spec.traffic?.revisionServices === 'Always') return true;
  const callsRevision = (checks: Check[] | undefined) => !!checks?.some((c) => c.http || c.webhook);
  return callsRevision(md.spec.rollout?.analysis?.checks) || callsRevision(md.spec.monitoring?.checks);
}

/** `<md>-stable` and `<md>-canary`: one revision each, for analysis requests and Gateway API routes. */
export function desiredRevisionService(md: ModelDeployment, role: Role, hash: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: ownedMetadata(md, `${md.metadata!.name!}-${role}`, { [roleLabel]: role }),
    spec: {
      type: 'ClusterIP',
      selector: { [instanceLabel]: md.metadata!.name!, [managedByLabel]: managedBy, [revisionLabel]: hash },
      ports: [{ name: 'http', port: servicePort(md), targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

export function serviceUrl(md: ModelDeployment): string {
  return `http://${md.metadata!.name!}.${md.metadata!.namespace!}.svc:${servicePort(md)}`;
}
