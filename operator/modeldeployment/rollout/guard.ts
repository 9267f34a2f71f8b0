// The traffic guard: the one place that decides what the router and the two Deployments may be told,
// from the ready pods actually observed. Every path (a step, a promotion, an abort, a rollback, a
// supersede, a monitoring restore) asks it, under both routers and both capacity policies. Pure.
//
// Capacity is counted in pods of the spec's size: `replicas` pods carry 100 % of the traffic, so one
// ready pod carries 100 / replicas percent. The rules:
//  - the canary never gets more weight than its ready pods carry;
//  - weight moves towards the canary only once the canary's ready pods carry the whole new share, so
//    on a step advance the previous weight holds until the new share is ready;
//  - weight moves back to stable only as far as stable's ready pods carry it; the rest stays on the
//    canary (while it has ready pods) until stable has scaled back up;
//  - stable (under Shift) never has fewer replicas than the share the router still sends it;
//  - the canary keeps its replicas while it carries weight, so traffic leaves it before it scales down.
//
// Under ReplicaRatio the Service spreads requests over ready pods, so "weight" is whether the canary's
// pods are in the Service at all; what must hold is that the Service's ready pods never drop below
// the spec's replicas because of the operator.
import type { CapacityPolicy } from './capacity.js';

export interface GuardInput {
  /** GatewayAPI: the route sets an exact weight. ReplicaRatio: the Service follows ready pods. */
  exactWeights: boolean;
  policy: CapacityPolicy;
  /** The spec's replicas: the capacity that carries 100 % of the traffic. */
  total: number;
  /** What the rollout wants now (its step, a promotion, or 0 when the canary is leaving). */
  target: { weight: number; stableReplicas: number; canaryReplicas: number };
  /** The canary weight the router carries now (GatewayAPI), as observed. */
  priorWeight: number;
  stableReady: number;
  canaryReady: number;
}

export interface GuardDecision {
  /** GatewayAPI: the route's canary weight. ReplicaRatio: 0 or the canary's share of ready pods. */
  weight: number;
  /** ReplicaRatio: whether the Service selects the canary's pods beside stable's. */
  canaryInService: boolean;
  stableReplicas: number;
  canaryReplicas: number;
  /** The router carries the target weight and stable has no more replicas than the target asks. */
  reached: boolean;
}

/** Pods of the spec's size needed to carry `percent` of the traffic. */
export const podsFor = (total: number, percent: number): number => (percent <= 0 ? 0 : Math.ceil((total * Math.min(percent, 100)) / 100));

/** The percent of traffic `ready` pods carry, rounded down so that it is never overstated. */
export const shareOf = (total: number, ready: number): number => (total <= 0 ? 0 : Math.min(100, Math.floor((100 * ready) / total)));

export function guardTraffic(g: GuardInput): GuardDecision {
  const { total, target, policy } = g;
  if (total <= 0) {
    return { weight: 0, canaryInService: false, stableReplicas: 0, canaryReplicas: 0, reached: true };
  }
  if (g.exactWeights) {
    const canaryCarries = shareOf(total, g.canaryReady);
    let weight: number;
    if (target.weight >= g.priorWeight) {
      weight = g.canaryReady >= podsFor(total, target.weight) ? target.weight : Math.min(g.priorWeight, canaryCarries);
    } else {
      // The least weight stable's ready pods leave to the canary.
      const stableCannotCarry = Math.max(0, 100 - Math.floor((100 * g.stableReady) / total));
      weight = Math.min(g.priorWeight, canaryCarries, Math.max(target.weight, stableCannotCarry));
    }
    const stableReplicas = policy === 'Surge' ? Math.max(target.stableReplicas, total) : Math.max(target.stableReplicas, podsFor(total, 100 - weight));
    const canaryReplicas = weight > 0 ? Math.max(target.canaryReplicas, podsFor(total, weight)) : target.canaryReplicas;
    return {
      weight, canaryInService: false, stableReplicas, canaryReplicas,
      reached: weight === target.weight && stableReplicas === target.stableReplicas,
    };
  }
  // ReplicaRatio: the canary's pods join the Service when the rollout gives it traffic, and stay in it
  // while stable cannot carry everything alone.
  const wantsTraffic = target.weight > 0;
  const canaryInService = g.canaryReady > 0 && (wantsTraffic || g.stableReady < total);
  const servingCanary = canaryInService ? g.canaryReady : 0;
  const stableReplicas = policy === 'Surge' ? Math.max(target.stableReplicas, total) : Math.max(target.stableReplicas, total - servingCanary);
  const weight = canaryInService ? Math.round((100 * g.canaryReady) / (g.canaryReady + g.stableReady)) : 0;
  const canaryReplicas = !wantsTraffic && canaryInService ? Math.max(target.canaryReplicas, g.canaryReady) : target.canaryReplicas;
  return {
    weight, canaryInService, stableReplicas, canaryReplicas,
    reached: canaryInService === wantsTraffic && stableReplicas === target.stableReplicas,
  };
}
