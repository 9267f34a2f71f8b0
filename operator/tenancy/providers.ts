// Providers the cluster admin registers: a Prometheus or a webhook endpoint with the admin's
// credentials, which tenants name instead of giving a URL. The list is a file the chart mounts from a
// ConfigMap (--providers-file); credentials are files mounted from Secrets, read at call time so a
// rotated token is used without a restart, and never shown to tenants or written to status.
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import type { Provider } from './policy.js';

const namePattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The providers in `path`; throws with every problem named when the file does not describe them. */
export function loadProvidersFile(path: string): Provider[] {
  const doc = yaml.load(readFileSync(path, 'utf8')) as { providers?: unknown } | null;
  const list = doc?.providers ?? [];
  if (!Array.isArray(list)) throw new Error(`${path}: providers must be a list`);
  const problems: string[] = [];
  const out: Provider[] = [];
  list.forEach((raw: Partial<Provider>, i) => {
    const at = `${path}: providers[${i}]`;
    if (typeof raw?.name !== 'string' || !namePattern.test(raw.name) || raw.name.length > 63) problems.push(`${at}.name must be a DNS label`);
    if (raw?.type !== 'prometheus' && raw?.type !== 'webhook') problems.push(`${at}.type must be prometheus or webhook`);
    try {
      const u = new URL(String(raw?.url));
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push(`${at}.url must be http or https`);
    } catch {
      problems.push(`${at}.url is not a URL`);
    }
    if (raw?.namespaces !== undefined && (!Array.isArray(raw.namespaces) || raw.namespaces.some((n) => typeof n !== 'string'))) problems.push(`${at}.namespaces must be a list of names`);
    if (raw?.basicAuth && (typeof raw.basicAuth.usernameFile !== 'string' || typeof raw.basicAuth.passwordFile !== 'string')) problems.push(`${at}.basicAuth needs usernameFile and passwordFile`);
    if (out.some((p) => p.name === raw?.name && p.type === raw?.type)) problems.push(`${at}: a ${raw?.type} provider named ${raw?.name} is already registered`);
    out.push(raw as Provider);
  });
  if (problems.length) throw new Error(problems.join('; '));
  return out;
}

/** The Authorization header the provider's credentials make, if any. */
export async function providerHeaders(p: Provider): Promise<Record<string, string>> {
  if (p.bearerTokenFile) return { authorization: `Bearer ${(await readFile(p.bearerTokenFile, 'utf8')).trim()}` };
  if (p.basicAuth) {
    const [user, password] = await Promise.all([readFile(p.basicAuth.usernameFile, 'utf8'), readFile(p.basicAuth.passwordFile, 'utf8')]);
    return { authorization: `Basic ${Buffer.from(`${user.trim()}:${password.trim()}`).toString('base64')}` };
  }
  return {};
}
