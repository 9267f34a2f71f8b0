// What a spec asks of the cluster that the admin's tenancy policy does not give its namespace: URLs
// outside the outbound allow list, providers it may not use, Gateways and hostnames it may not claim,
// response schemas that are unsafe to run. Each is an InvalidSpec, found before anything is called or
// applied; the call-time checks in runtime/outbound.ts still stand behind these. Pure.
import type { Check, ModelDeploymentSpec } from '../api/generated.js';
import { defaultTenancyPolicy, gatewayProblems, providerFor, tenantUrlProblem, type TenancyPolicy } from '../tenancy/policy.js';
import { jsonPathProblem, schemaProblem } from './analysis/response.js';

function endpointProblem(policy: TenancyPolicy, namespace: string, at: string, type: 'prometheus' | 'webhook', ref: { address?: string; url?: string; provider?: string }): string | undefined {
  if (ref.provider) {
    const found = providerFor(policy, ref.provider, type, namespace);
    return 'problem' in found ? `${at}.provider: ${found.problem}` : undefined;
  }
  const url = ref.address ?? ref.url;
  const field = ref.address !== undefined ? 'address' : 'url';
  const problem = url === undefined ? undefined : tenantUrlProblem(policy, url);
  // The URL is the tenant's own text; only its origin is repeated, so a token in a path stays out of status.
  return problem ? `${at}.${field} (${URL.canParse(url!) ? new URL(url!).origin : 'not a URL'}): ${problem}` : undefined;
}

function checkProblems(policy: TenancyPolicy, namespace: string, at: string, check: Check): string[] {
  const c = `${at}[${check.name}]`;
  const problems = [
    check.prometheus && endpointProblem(policy, namespace, `${c}.prometheus`, 'prometheus', check.prometheus),
    check.webhook && endpointProblem(policy, namespace, `${c}.webhook`, 'webhook', check.webhook),
    check.drift && endpointProblem(policy, namespace, `${c}.drift.prometheus`, 'prometheus', check.drift.prometheus),
  ];
  if (check.http?.responseSchema !== undefined) {
    const p = schemaProblem(check.http.responseSchema);
    if (p) problems.push(`${c}.http.responseSchema: ${p}`);
  }
  if (check.http?.compareToStable) {
    const p = jsonPathProblem(check.http.compareToStable.jsonPath);
    if (p) problems.push(`${c}.http.compareToStable.jsonPath: ${p}`);
  }
  return problems.filter((p): p is string => !!p);
}

export function tenancyProblems(spec: ModelDeploymentSpec, namespace: string, policy: TenancyPolicy = defaultTenancyPolicy): string[] {
  const problems = [
    ...(spec.rollout?.analysis?.checks ?? []).flatMap((c) => checkProblems(policy, namespace, 'rollout.analysis.checks', c)),
    ...(spec.monitoring?.checks ?? []).flatMap((c) => checkProblems(policy, namespace, 'monitoring.checks', c)),
  ];
  const hook = spec.monitoring?.webhook;
  const hookProblem = hook && endpointProblem(policy, namespace, 'monitoring.webhook', 'webhook', hook);
  if (hookProblem) problems.push(hookProblem);
  // KEDA, not the operator, calls this Prometheus; the same policy keeps a tenant from aiming it anywhere.
  const scalingProm = spec.autoscaling?.prometheus;
  const scalingProblem = scalingProm && endpointProblem(policy, namespace, 'autoscaling.prometheus', 'prometheus', scalingProm);
  if (scalingProblem) problems.push(scalingProblem);
  const gw = spec.traffic?.gatewayAPI;
  if ((spec.traffic?.router === 'GatewayAPI' || spec.traffic?.router === 'InferencePool') && gw) problems.push(...gatewayProblems(policy, namespace, gw.parentRefs ?? [], gw.hostnames ?? []));
  return problems;
}
