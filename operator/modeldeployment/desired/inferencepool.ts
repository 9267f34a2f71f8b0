// The InferencePools `<md>-stable` and `<md>-canary` of the InferencePool router
// (inference.networking.k8s.io/v1, the Gateway API Inference Extension). Each selects one revision's
// pods, as the Services of the same names do, and names an endpoint picker (EPP): the gateway asks
// the picker which pod of the pool takes a request, by queue depth and KV-cache use. The HTTPRoute
// splits weight between the two pools (httproute.ts), so a canary inside one model is the route's
// weight, exact and under the traffic guard, and the picker only chooses pods within a revision.
// Pools are named by role, like the Services: a promotion changes the stable pool's selector, so
// the pool (and the picker configured for it) keeps its name. Pure.
import type { EndpointPickerRef, ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { instanceLabel, managedBy, managedByLabel, ownedMetadata, revisionLabel, roleLabel, type Role } from '../labels.js';

export const inferencePoolApiVersion = 'inference.networking.k8s.io/v1';
export const inferencePoolGroup = 'inference.networking.k8s.io';

/** `{pool}` in a picker's name stands for the pool's name: one endpoint picker serves one pool. */
export const poolPlaceholder = '{pool}';

/**
 * Parses --inference-pool-endpoint-picker: `<name>:<port>` or `<name>:<port>:<FailOpen|FailClose>`;
 * empty: no default (a pool then names no picker, unless its spec does).
 */
export function parseEndpointPicker(value: string): EndpointPickerRef | undefined {
  if (!value.trim()) return undefined;
  const m = /^(?<name>(?:[a-z0-9-]|\{pool\})+):(?<port>\d{1,5})(?::(?<mode>FailOpen|FailClose))?$/.exec(value.trim());
  const port = Number(m?.groups?.port);
  if (!m || port < 1 || port > 65535) throw new Error(`--inference-pool-endpoint-picker ${JSON.stringify(value)}: expected <service name>:<port>[:FailOpen|FailClose], the name may hold {pool}`);
  return { name: m.groups!.name!, port, ...(m.groups!.mode ? { failureMode: m.groups!.mode as 'FailOpen' | 'FailClose' } : {}) };
}

export const poolName = (md: ModelDeployment, role: Role) => `${md.metadata!.name!}-${role}`;

/** The picker's Service name for a pool: the spec's or the operator's default, `{pool}` filled in. */
export function pickerServiceName(picker: EndpointPickerRef, pool: string): string {
  return picker.name.split(poolPlaceholder).join(pool);
}

/** Why the spec's (or the default) picker cannot name a Service for these pools; undefined when it can. */
export function endpointPickerProblem(md: ModelDeployment, fallback: EndpointPickerRef | undefined): string | undefined {
  const picker = md.spec.traffic?.inferencePool?.endpointPicker ?? fallback;
  if (!picker) return undefined;
  for (const role of ['stable', 'canary'] as const) {
    const name = pickerServiceName(picker, poolName(md, role));
    if (name.length > 63 || !/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(name)) {
      return `traffic.inferencePool.endpointPicker.name ${JSON.stringify(picker.name)} gives ${JSON.stringify(name)} for the ${role} pool, which is not a Service name (a DNS-1035 label of at most 63 characters)`;
    }
  }
  return undefined;
}

export function desiredInferencePool(md: ModelDeployment, role: Role, hash: string, targetPort: number, fallback: EndpointPickerRef | undefined): KubeObject {
  const name = poolName(md, role);
  const picker = md.spec.traffic?.inferencePool?.endpointPicker ?? fallback;
  return {
    apiVersion: inferencePoolApiVersion,
    kind: 'InferencePool',
    metadata: ownedMetadata(md, name, { [roleLabel]: role }),
    spec: {
      selector: { matchLabels: { [instanceLabel]: md.metadata!.name!, [managedByLabel]: managedBy, [revisionLabel]: hash } },
      targetPorts: [{ number: targetPort }],
      ...(picker ? {
        endpointPickerRef: {
          kind: 'Service',
          name: pickerServiceName(picker, name),
          port: { number: picker.port },
          failureMode: picker.failureMode ?? 'FailClose',
        },
      } : {}),
    },
  };
}
