// The operator's flags and their MODELSHIP_* variables, parsed the way Go's flag package (and so every
// other Kubernetes component) parses them: `--name=value` or `--name value`, and booleans as `--name`,
// `--name=true` or `--name=false`. A flag wins over its variable, which wins over the default.
// docs/operations.md lists the same flags; a unit test keeps the two in step.
import { parseArgs } from 'node:util';
import { parseEndpointPicker } from './modeldeployment/desired/inferencepool.js';
import { parseModelCacheVolume, quantityBytes } from './modeldeployment/model-cache.js';
import type { OutboundLimits } from './runtime/outbound.js';
import { parseAllowList, parseCidr, type Provider, type TenancyPolicy } from './tenancy/policy.js';

export interface FlagDefinition {
  name: string;
  /** The variable that sets it when the flag is absent (the chart sets these). */
  env: string;
  type: 'string' | 'boolean' | 'port' | 'count';
  default: string;
}

export const flagDefinitions: readonly FlagDefinition[] = [
  { name: 'kubeconfig', env: 'KUBECONFIG', type: 'string', default: '' },
  { name: 'metrics-port', env: 'MODELSHIP_METRICS_PORT', type: 'port', default: '8080' },
  { name: 'metrics-host', env: 'MODELSHIP_METRICS_HOST', type: 'string', default: '0.0.0.0' },
  { name: 'concurrency', env: 'MODELSHIP_CONCURRENCY', type: 'count', default: '4' },
  { name: 'leader-elect', env: 'MODELSHIP_LEADER_ELECT', type: 'boolean', default: 'true' },
  { name: 'leader-election-namespace', env: 'MODELSHIP_LEADER_ELECTION_NAMESPACE', type: 'string', default: '' },
  { name: 'fetcher-image', env: 'MODELSHIP_FETCHER_IMAGE', type: 'string', default: 'ghcr.io/modelship/modelship:0.1.0' },
  { name: 'resync-seconds', env: 'MODELSHIP_RESYNC_SECONDS', type: 'count', default: '600' },
  // dns: http://<service>.<namespace>.svc; cluster-ip: the Service's ClusterIP from the cache, for
  // clusters without cluster DNS or an operator outside the cluster that routes to the service network.
  { name: 'service-address', env: 'MODELSHIP_SERVICE_ADDRESS', type: 'string', default: 'dns' },
  { name: 'service-url-template', env: 'MODELSHIP_SERVICE_URL_TEMPLATE', type: 'string', default: '' },
  { name: 'watch-namespaces', env: 'MODELSHIP_WATCH_NAMESPACES', type: 'string', default: '' },
  { name: 'max-concurrent-rollouts', env: 'MODELSHIP_MAX_CONCURRENT_ROLLOUTS', type: 'count', default: '20' },
  // The tenancy policy (tenancy/policy.ts): where tenant-given URLs may point, which providers exist,
  // which Gateways and hostnames HTTPRoutes may claim, and how much work one check may cost.
  { name: 'outbound-allow', env: 'MODELSHIP_OUTBOUND_ALLOW', type: 'string', default: '*.svc,*.svc.cluster.local' },
  { name: 'outbound-deny', env: 'MODELSHIP_OUTBOUND_DENY', type: 'string', default: '' },
  { name: 'outbound-deny-node-addresses', env: 'MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES', type: 'boolean', default: 'true' },
  { name: 'outbound-raw-urls', env: 'MODELSHIP_OUTBOUND_RAW_URLS', type: 'boolean', default: 'true' },
  { name: 'providers-file', env: 'MODELSHIP_PROVIDERS_FILE', type: 'string', default: '' },
  { name: 'max-response-bytes', env: 'MODELSHIP_MAX_RESPONSE_BYTES', type: 'count', default: '1048576' },
  { name: 'max-concurrent-checks', env: 'MODELSHIP_MAX_CONCURRENT_CHECKS', type: 'count', default: '32' },
  { name: 'max-concurrent-checks-per-namespace', env: 'MODELSHIP_MAX_CONCURRENT_CHECKS_PER_NAMESPACE', type: 'count', default: '4' },
  { name: 'gateway-parents', env: 'MODELSHIP_GATEWAY_PARENTS', type: 'string', default: '' },
  { name: 'gateway-hostnames', env: 'MODELSHIP_GATEWAY_HOSTNAMES', type: 'string', default: '' },
  // The endpoint picker an InferencePool names when its spec names none: `{pool}-epp` is the Service
  // the Inference Extension's chart gives a picker released under the pool's name.
  { name: 'inference-pool-endpoint-picker', env: 'MODELSHIP_INFERENCE_POOL_ENDPOINT_PICKER', type: 'string', default: '{pool}-epp:9002' },
  { name: 'model-size-limit', env: 'MODELSHIP_MODEL_SIZE_LIMIT', type: 'string', default: '100Gi' },
  // The model cache keyed by digest (modeldeployment/model-cache.ts): hostPath:/dir or pvc:<claim>.
  { name: 'model-cache', env: 'MODELSHIP_MODEL_CACHE', type: 'string', default: '' },
  { name: 'model-cache-max-size', env: 'MODELSHIP_MODEL_CACHE_MAX_SIZE', type: 'string', default: '100Gi' },
];

export interface OperatorFlags {
  /** Unset: KUBECONFIG, ~/.kube/config or the in-cluster service account (kubeconfig.ts decides). */
  kubeconfig: string | undefined;
  metricsPort: number;
  metricsHost: string;
  concurrency: number;
  leaderElect: boolean;
  leaderElectionNamespace: string;
  fetcherImage: string;
  resyncSeconds: number;
  serviceAddress: 'dns' | 'cluster-ip';
  serviceUrlTemplate: string;
  watchNamespaces: string[];
  /** Rollouts in progress at once, cluster-wide; 0: no limit. */
  maxConcurrentRollouts: number;
  /** The tenancy policy's flags, as given (validated); tenancyPolicy() reads them. */
  outboundAllow: string;
  outboundDeny: string;
  outboundRawUrls: boolean;
  /** Watch the Nodes and refuse their addresses to tenant URLs. */
  outboundDenyNodeAddresses: boolean;
  providersFile: string;
  maxResponseBytes: number;
  maxConcurrentChecks: number;
  maxConcurrentChecksPerNamespace: number;
  gatewayParents: string;
  gatewayHostnames: string;
  /** The model emptyDir's sizeLimit when the spec sets none. */
  modelSizeLimit: string;
  /** --model-cache as given (validated; empty: none) and its bound; modelCacheConfig() reads them. */
  modelCache: string;
  modelCacheMaxSize: string;
  /** --inference-pool-endpoint-picker (validated; endpointPicker() parses it); empty: pools name no picker unless their spec does. */
  inferencePoolEndpointPicker: string;
}

const list = (text: string) => text.split(',').map((e) => e.trim()).filter(Boolean);

/** The admin's tenancy policy from the flags, with the providers main.ts read from --providers-file. */
export function tenancyPolicy(flags: OperatorFlags, providers: Provider[]): TenancyPolicy {
  const allow = parseAllowList(flags.outboundAllow);
  return {
    allowHosts: allow.hosts, allowCidrs: allow.cidrs, denyCidrs: list(flags.outboundDeny), rawUrls: flags.outboundRawUrls,
    providers, gatewayParents: list(flags.gatewayParents), gatewayHostnames: parseAllowList(flags.gatewayHostnames).hosts,
  };
}

export function outboundLimits(flags: OperatorFlags): OutboundLimits {
  return { maxResponseBytes: flags.maxResponseBytes, maxConcurrent: flags.maxConcurrentChecks, maxPerNamespace: flags.maxConcurrentChecksPerNamespace };
}

/** A command line or variable that does not parse: the operator says so and exits 2 (a usage error). */
export class FlagError extends Error {
  override name = 'FlagError';
}

const booleans: Record<string, boolean> = { true: true, t: true, 1: true, yes: true, false: false, f: false, 0: false, no: false };

function parseBoolean(value: string, source: string): boolean {
  const b = booleans[value.trim().toLowerCase()];
  if (b === undefined) throw new FlagError(`${source}: "${value}" is not a boolean (true or false)`);
  return b;
}

function parseInteger(value: string, source: string, min: number, max: number): number {
  const n = Number(value.trim());
  if (!/^\s*\d+\s*$/.test(value) || n < min || n > max) throw new FlagError(`${source}: "${value}" must be a whole number from ${min} to ${max}`);
  return n;
}

/**
 * A boolean flag given bare takes no value, so the argument after it is never swallowed; given with
 * `=`, it takes that value. parseArgs knows only value-less booleans, so booleans are read as strings
 * and a bare one is rewritten to `=true` first.
 */
function normalise(argv: string[]): string[] {
  const bools = new Set(flagDefinitions.filter((f) => f.type === 'boolean').map((f) => `--${f.name}`));
  return argv.map((arg) => (bools.has(arg) ? `${arg}=true` : arg));
}

export function parseOperatorFlags(argv: string[], env: NodeJS.ProcessEnv = process.env): OperatorFlags {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: normalise(argv),
      options: Object.fromEntries(flagDefinitions.map((f) => [f.name, { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    }) as { values: Record<string, string | undefined> });
  } catch (err) {
    throw new FlagError((err as Error).message);
  }
  const raw = (name: string): { value: string; source: string } => {
    const def = flagDefinitions.find((f) => f.name === name)!;
    const flag = values[name];
    if (flag !== undefined) return { value: flag, source: `--${name}` };
    // KUBECONFIG is a list that kubeconfig.ts reads itself; only the flag names one file.
    const fromEnv = def.env === 'KUBECONFIG' ? undefined : env[def.env];
    if (fromEnv !== undefined) return { value: fromEnv, source: def.env };
    if (name === 'leader-election-namespace') return { value: env.POD_NAMESPACE || 'default', source: 'POD_NAMESPACE' };
    return { value: def.default, source: `the default of --${name}` };
  };
  const str = (name: string) => raw(name).value;
  const int = (name: string, min: number, max: number) => {
    const { value, source } = raw(name);
    return parseInteger(value, source, min, max);
  };
  const leaderElect = raw('leader-elect');
  const serviceAddress = raw('service-address');
  if (serviceAddress.value !== 'dns' && serviceAddress.value !== 'cluster-ip') {
    throw new FlagError(`${serviceAddress.source}: must be dns or cluster-ip, not "${serviceAddress.value}"`);
  }
  const allow = parseAllowList(str('outbound-allow'));
  if (allow.problems.length) throw new FlagError(`${raw('outbound-allow').source}: ${allow.problems.join('; ')}`);
  const deny = list(str('outbound-deny'));
  const badDeny = deny.filter((c) => !parseCidr(c));
  if (badDeny.length) throw new FlagError(`${raw('outbound-deny').source}: ${badDeny.map((c) => `"${c}"`).join(', ')} is not a CIDR`);
  const parents = list(str('gateway-parents'));
  const badParent = parents.filter((p) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(p));
  if (badParent.length) throw new FlagError(`${raw('gateway-parents').source}: ${badParent.map((p) => `"${p}"`).join(', ')} is not namespace/name`);
  const hostnames = parseAllowList(str('gateway-hostnames'));
  if (hostnames.problems.length || hostnames.cidrs.length) throw new FlagError(`${raw('gateway-hostnames').source}: hostname patterns only (name or *.suffix)`);
  const rawUrls = raw('outbound-raw-urls');
  const denyNodes = raw('outbound-deny-node-addresses');
  const sizeLimit = raw('model-size-limit');
  try {
    parseEndpointPicker(str('inference-pool-endpoint-picker'));
  } catch (err) {
    throw new FlagError(`${raw('inference-pool-endpoint-picker').source}: ${(err as Error).message.replace(/^--inference-pool-endpoint-picker /, '')}`);
  }
  if (!/^[1-9][0-9]{0,6}(Mi|Gi|Ti)$/.test(sizeLimit.value)) throw new FlagError(`${sizeLimit.source}: "${sizeLimit.value}" is not a whole number of Mi, Gi or Ti, such as 100Gi`);
  const modelCache = raw('model-cache');
  const modelCacheMaxSize = raw('model-cache-max-size');
  try { parseModelCacheVolume(modelCache.value); } catch (err) { throw new FlagError(`${modelCache.source}: ${(err as Error).message}`); }
  if (quantityBytes(modelCacheMaxSize.value) === undefined) throw new FlagError(`${modelCacheMaxSize.source}: "${modelCacheMaxSize.value}" is not a whole number of Mi, Gi or Ti, such as 100Gi`);
  return {
    kubeconfig: values.kubeconfig || undefined,
    metricsPort: int('metrics-port', 0, 65_535),
    metricsHost: str('metrics-host'),
    concurrency: int('concurrency', 1, 1_000),
    leaderElect: parseBoolean(leaderElect.value, leaderElect.source),
    leaderElectionNamespace: str('leader-election-namespace'),
    fetcherImage: str('fetcher-image'),
    resyncSeconds: int('resync-seconds', 1, 7 * 24 * 3600),
    serviceAddress: serviceAddress.value,
    serviceUrlTemplate: str('service-url-template'),
    watchNamespaces: str('watch-namespaces').split(',').map((n) => n.trim()).filter(Boolean),
    maxConcurrentRollouts: int('max-concurrent-rollouts', 0, 1_000_000),
    outboundAllow: str('outbound-allow'),
    outboundDeny: str('outbound-deny'),
    outboundRawUrls: parseBoolean(rawUrls.value, rawUrls.source),
    outboundDenyNodeAddresses: parseBoolean(denyNodes.value, denyNodes.source),
    providersFile: str('providers-file'),
    maxResponseBytes: int('max-response-bytes', 1024, 64 << 20),
    maxConcurrentChecks: int('max-concurrent-checks', 1, 100_000),
    maxConcurrentChecksPerNamespace: int('max-concurrent-checks-per-namespace', 1, 100_000),
    gatewayParents: str('gateway-parents'),
    gatewayHostnames: str('gateway-hostnames'),
    inferencePoolEndpointPicker: str('inference-pool-endpoint-picker'),
    modelSizeLimit: sizeLimit.value,
    modelCache: modelCache.value,
    modelCacheMaxSize: modelCacheMaxSize.value,
  };
}
