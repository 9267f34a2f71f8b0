// The cluster admin's tenancy policy: where calls that a tenant's spec directs (Prometheus addresses,
// webhook URLs) may go, which admin-registered providers a namespace may name, and which Gateways and
// hostnames its HTTPRoutes may claim. The admin owns it (operator flags, Helm values); a tenant can only
// choose within it. Pure: the decisions here run at reconcile time (InvalidSpec) and again at call
// time, after DNS resolution, in runtime/outbound.ts.
import { BlockList, isIP } from 'node:net';

export interface Provider {
  name: string;
  type: 'prometheus' | 'webhook';
  url: string;
  /** The namespaces whose ModelDeployments may name it; empty or absent: every namespace. */
  namespaces?: string[];
  /** Files mounted into the operator; read at call time so a rotated credential is picked up. */
  bearerTokenFile?: string;
  basicAuth?: { usernameFile: string; passwordFile: string };
}

export interface TenancyPolicy {
  /** Host patterns a tenant-given URL may name: exact names, or "*.suffix". */
  allowHosts: string[];
  /** CIDRs a tenant-given URL may name or resolve to; an allowed CIDR also lifts the built-in denials inside it. */
  allowCidrs: string[];
  /** CIDRs refused after resolution besides the built-in ones (node addresses, for example). */
  denyCidrs: string[];
  /** false: tenants may only name registered providers. */
  rawUrls: boolean;
  providers: Provider[];
  /** "namespace/name" of Gateways in other namespaces that HTTPRoutes may attach to. */
  gatewayParents: string[];
  /** Hostname patterns HTTPRoutes may claim; empty: any. */
  gatewayHostnames: string[];
}

/**
 * Never reachable through a tenant's URL unless the admin allows a CIDR covering them: the operator
 * itself and its node (loopback), cloud metadata and other node-local services (link-local), and
 * addresses that mean "this host" or no host at all.
 */
export const builtInDeny = ['127.0.0.0/8', '0.0.0.0/8', '169.254.0.0/16', '224.0.0.0/4', '255.255.255.255/32', '::1/128', '::/128', 'fe80::/10', 'ff00::/8'];

export const defaultTenancyPolicy: TenancyPolicy = {
  allowHosts: ['*.svc', '*.svc.cluster.local'],
  allowCidrs: [],
  denyCidrs: [],
  rawUrls: true,
  providers: [],
  gatewayParents: [],
  gatewayHostnames: [],
};

/** A CIDR as written ("10.0.0.0/8", "fd00::/8", or a bare address), or undefined when it is not one. */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', prefixText, ...rest] = text.trim().split('/');
  const version = isIP(address);
  if (!version || rest.length) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d+$/.test(prefixText ?? String(max)) || prefix > max) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

const hostPattern = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Splits an allow list ("*.svc,10.0.0.0/8") into host patterns and CIDRs; the problems name each bad entry. */
export function parseAllowList(text: string): { hosts: string[]; cidrs: string[]; problems: string[] } {
  const hosts: string[] = [];
  const cidrs: string[] = [];
  const problems: string[] = [];
  for (const raw of text.split(',').map((e) => e.trim().toLowerCase()).filter(Boolean)) {
    if (parseCidr(raw)) cidrs.push(raw);
    else if (hostPattern.test(raw)) hosts.push(raw);
    else problems.push(`"${raw}" is neither a host pattern (name or *.suffix) nor a CIDR`);
  }
  return { hosts, cidrs, problems };
}

function blockList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const p = parseCidr(c);
    if (p) list.addSubnet(p.address, p.prefix, p.family);
  }
  return list;
}

// BlockLists are built once per distinct list: the policy is fixed for the life of the process, but
// tests build several.
const lists = new Map<string, BlockList>();
function cachedList(cidrs: string[]): BlockList {
  const key = cidrs.join(',');
  let list = lists.get(key);
  if (!list) lists.set(key, (list = blockList(cidrs)));
  return list;
}

function contains(cidrs: string[], address: string): boolean {
  const version = isIP(address);
  if (!version) return false;
  const list = cachedList(cidrs);
  if (list.check(address, version === 4 ? 'ipv4' : 'ipv6')) return true;
  // An IPv4-mapped IPv6 address (::ffff:127.0.0.1) reaches the IPv4 host it maps.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  return mapped !== undefined && list.check(mapped, 'ipv4');
}

/** An address as the node list spells it: IPv4-mapped IPv6 reduced to its IPv4 address, IPv6 lowercased. */
export function canonicalAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  return mapped ?? address.toLowerCase();
}

/**
 * Whether a resolved address may be connected to on a tenant's behalf. The nodes' own addresses (the
 * kubelet's API, node-local services) are refused even inside an allowed CIDR: an admin who opens
 * 10.0.0.0/8 for cluster services does not mean the nodes in it.
 */
export function addressAllowed(policy: TenancyPolicy, address: string, nodeAddresses?: ReadonlySet<string>): boolean {
  if (nodeAddresses?.has(canonicalAddress(address))) return false;
  if (contains(policy.allowCidrs, address)) return !contains(policy.denyCidrs, address);
  return !contains(builtInDeny, address) && !contains(policy.denyCidrs, address);
}

function hostMatches(patterns: string[], host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((p) => (p.startsWith('*.') ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p));
}

/** The host of a URL without IPv6 brackets. */
export function urlHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Why a tenant-given URL may not be called, before any DNS lookup (undefined: it may, subject to the
 * addresses it resolves to). An IP literal must lie in an allowed CIDR; a name must match a host pattern.
 */
export function tenantUrlProblem(policy: TenancyPolicy, text: string): string | undefined {
  if (!policy.rawUrls) return 'this cluster allows only providers its admin registered; name one with provider instead of a URL';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `scheme ${url.protocol} is not http or https`;
  if (url.username || url.password) return 'carries credentials in the URL; the admin registers credentials with a provider';
  const host = urlHost(url);
  if (isIP(host)) {
    if (!contains(policy.allowCidrs, host)) return `address ${host} is not in the operator's outbound allow list`;
    return addressAllowed(policy, host) ? undefined : `address ${host} is denied by the operator's outbound policy`;
  }
  return hostMatches(policy.allowHosts, host) ? undefined : `host ${host} is not in the operator's outbound allow list (${policy.allowHosts.join(', ') || 'empty'})`;
}

/** The provider a namespace names, or why it cannot use it. */
export function providerFor(policy: TenancyPolicy, name: string, type: Provider['type'], namespace: string): { provider: Provider } | { problem: string } {
  const provider = policy.providers.find((p) => p.name === name && p.type === type);
  if (!provider) return { problem: `no ${type} provider named ${name} is registered` };
  if (provider.namespaces?.length && !provider.namespaces.includes(namespace)) return { problem: `the ${type} provider ${name} is not open to namespace ${namespace}` };
  return { provider };
}

interface ParentRef { name: string; namespace?: string }

/** What an HTTPRoute in `namespace` may not claim: parents in other namespaces not listed, hostnames not allowed. */
export function gatewayProblems(policy: TenancyPolicy, namespace: string, parentRefs: ParentRef[], hostnames: string[]): string[] {
  const problems: string[] = [];
  for (const p of parentRefs) {
    const ns = p.namespace ?? namespace;
    if (ns !== namespace && !policy.gatewayParents.includes(`${ns}/${p.name}`)) {
      problems.push(`traffic.gatewayAPI.parentRefs: Gateway ${ns}/${p.name} is in another namespace and not among the Gateways the admin opened to tenants`);
    }
  }
  if (policy.gatewayHostnames.length) {
    for (const h of hostnames) {
      // A wildcard hostname claims every name under it: it fits only under an allowed wildcard.
      const fits = h.startsWith('*.') ? policy.gatewayHostnames.some((p) => p.startsWith('*.') && (h === p || h.endsWith(p.slice(1)))) : hostMatches(policy.gatewayHostnames, h);
      if (!fits) problems.push(`traffic.gatewayAPI.hostnames: ${h} is not among the hostnames the admin allows (${policy.gatewayHostnames.join(', ')})`);
    }
  }
  return problems;
}
