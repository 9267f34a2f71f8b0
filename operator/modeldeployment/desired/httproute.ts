// The HTTPRoute `<md>` for the GatewayAPI and InferencePool routers: weighted backendRefs to
// `<md>-stable` and `<md>-canary` (Services, or InferencePools of those names), a rule sending tagged
// requests (the canary header) to the canary, and a RequestMirror filter for shadow steps. Weights are
// exact here, unlike ReplicaRatio's pod share. Mirrored copies go to the canary's Service under both
// routers: mirroring to an InferencePool is not part of the Gateway API, and a shadow copy needs no
// pod picked by load (its answer is discarded).
import type { ModelDeployment } from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { ownedMetadata } from '../labels.js';
import { inferencePoolGroup } from './inferencepool.js';
import { servicePort } from './service.js';

export interface RouteState {
  /** Percent of traffic to the canary; 0 while it has no ready pods. */
  canaryWeight: number;
  /** Percent of requests copied to the canary (responses discarded). */
  mirrorPercent: number;
  /** Whether a canary exists to receive tagged or mirrored requests. */
  canaryReady: boolean;
  /** The canary backend is a revision on its way out: it keeps its weight, but no tagged or mirrored requests. */
  leaving?: boolean;
}

/**
 * The canary weight a live route carries now (0 when it has no canary backend). The main rule is the
 * one with the stable backend: the apiserver defaults every match's path, so the header rule has one too.
 */
export function routeCanaryWeight(route: KubeObject | undefined, name: string): number {
  const rules = (route as { spec?: { rules?: { backendRefs?: { name?: string; weight?: number }[] }[] } } | undefined)?.spec?.rules ?? [];
  const main = rules.find((r) => r.backendRefs?.some((b) => b.name === `${name}-stable`));
  const weight = main?.backendRefs?.find((b) => b.name === `${name}-canary`)?.weight;
  return typeof weight === 'number' && weight > 0 ? Math.min(100, weight) : 0;
}

export function desiredHttpRoute(md: ModelDeployment, route: RouteState): KubeObject | undefined {
  const gw = md.spec.traffic?.gatewayAPI;
  const router = md.spec.traffic?.router;
  if ((router !== 'GatewayAPI' && router !== 'InferencePool') || !gw) return undefined;
  const name = md.metadata!.name!;
  const port = servicePort(md);
  // A pool's port is its targetPorts; a backendRef to one carries none.
  const backend = router === 'InferencePool'
    ? (role: 'stable' | 'canary', weight: number) => ({ group: inferencePoolGroup, kind: 'InferencePool', name: `${name}-${role}`, weight })
    : (role: 'stable' | 'canary', weight: number) => ({ group: '', kind: 'Service', name: `${name}-${role}`, port, weight });
  const rules: Record<string, unknown>[] = [];
  if (gw.canaryHeader && route.canaryReady && !route.leaving) {
    rules.push({
      matches: [{ headers: [{ type: 'Exact', name: gw.canaryHeader.name, value: gw.canaryHeader.value }] }],
      backendRefs: [backend('canary', 1)],
    });
  }
  const main: Record<string, unknown> = {
    matches: [{ path: { type: 'PathPrefix', value: '/' } }],
    backendRefs: route.canaryReady
      ? [backend('stable', 100 - route.canaryWeight), backend('canary', route.canaryWeight)]
      : [backend('stable', 100)],
  };
  if (route.mirrorPercent > 0 && route.canaryReady && !route.leaving) {
    main.filters = [{ type: 'RequestMirror', requestMirror: { backendRef: { group: '', kind: 'Service', name: `${name}-canary`, port }, percent: route.mirrorPercent } }];
  }
  rules.push(main);
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: ownedMetadata(md),
    spec: {
      parentRefs: gw.parentRefs,
      ...(gw.hostnames?.length ? { hostnames: gw.hostnames } : {}),
      rules,
    },
  };
}
