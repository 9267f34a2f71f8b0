// Where a Prometheus or webhook call goes: a URL from the spec, checked against the admin's outbound
// policy, or an admin-registered provider with its credentials.
import { outbound, type Trust } from '../../runtime/outbound.js';
import { providerFor, tenantUrlProblem, type Provider } from '../../tenancy/policy.js';
import { providerHeaders } from '../../tenancy/providers.js';

export interface EndpointRef {
  address?: string;
  url?: string;
  provider?: string;
}

export interface Endpoint {
  url: string;
  trust: Trust;
  /** The provider's credentials; empty for a URL from the spec. */
  headers: Record<string, string>;
  /** How the endpoint is named in messages: the origin, or the provider's name (its address is the admin's). */
  label: string;
}

/** The endpoint a spec names, or why it may not be called. */
export async function resolveEndpoint(ref: EndpointRef, type: Provider['type'], namespace: string): Promise<Endpoint | { problem: string }> {
  if (ref.provider) {
    const found = providerFor(outbound.policy, ref.provider, type, namespace);
    if ('problem' in found) return found;
    try {
      return { url: found.provider.url, trust: 'provider', headers: await providerHeaders(found.provider), label: `provider ${ref.provider}` };
    } catch (err) {
      return { problem: `provider ${ref.provider}: its credentials cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); tell the cluster admin` };
    }
  }
  const url = ref.address ?? ref.url;
  if (!url) return { problem: `no address and no provider` };
  const problem = tenantUrlProblem(outbound.policy, url);
  const origin = URL.canParse(url) ? new URL(url).origin : 'the URL';
  if (problem) return { problem: `${origin}: ${problem}` };
  return { url, trust: 'tenant', headers: {}, label: origin };
}
