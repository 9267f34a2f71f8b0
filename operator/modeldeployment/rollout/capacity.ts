// How many replicas each revision runs at a given canary weight. Pure.
//  Surge: stable keeps every replica; the canary is added beside it, sized so that its share of all
//         pods (which is its share of traffic under ReplicaRatio routing) is about the weight.
//  Shift: the canary takes replicas from stable (for scarce GPUs), but stable never drops below what
//         its own share of the traffic needs.
export type CapacityPolicy = 'Surge' | 'Shift';

export interface ReplicaSplit {
  stable: number;
  canary: number;
}

/**
 * `exactWeights`: a router (Gateway API) sets the traffic split itself, so a Surge canary needs only
 * its share of the total, not enough pods to make up that share of all pods.
 */
export function splitReplicas(total: number, weight: number, policy: CapacityPolicy, exactWeights = false): ReplicaSplit {
  if (total <= 0) return { stable: 0, canary: 0 };
  if (weight <= 0) return { stable: total, canary: 0 };
  if (weight >= 100) return { stable: policy === 'Surge' ? total : 0, canary: total };
  if (policy === 'Surge') {
    const canary = exactWeights ? Math.ceil((total * weight) / 100) : Math.ceil((total * weight) / (100 - weight));
    return { stable: total, canary: Math.min(total, Math.max(1, canary)) };
  }
  const stable = Math.max(1, Math.ceil((total * (100 - weight)) / 100));
  return { stable, canary: Math.max(1, total - stable) };
}

/** The share of traffic the canary gets when the Service spreads requests over ready pods. */
export function replicaRatioWeight(canaryReady: number, stableReady: number): number {
  const all = canaryReady + stableReady;
  return all === 0 ? 0 : Math.round((100 * canaryReady) / all);
}
