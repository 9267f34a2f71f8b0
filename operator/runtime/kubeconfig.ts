// Where the Kubernetes API is and how to authenticate to it: a kubeconfig (one file or a KUBECONFIG
// list), or the in-cluster service account.
//
// Why not client-node's KubeConfig: importing it loads client-node's whole generated API, about 80 MB
// of RSS before the operator has read a single object, which is more than half of the operator's memory
// budget at 1,000 ModelDeployments. The common cases (client certificates, bearer tokens, token files,
// basic auth, the service account) are read here; `exec` and `auth-provider` users, which need
// client-node's plugins, load it on demand, so only those installs pay for it.
import { existsSync, readFileSync } from 'node:fs';
import type { Agent as HttpAgent } from 'node:http';
import { http, https } from './node-http.js';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import yaml from 'js-yaml';

/** One way to reach the API server, with credentials read at the time it was made. */
export interface Connection {
  agent: HttpAgent;
  headers: Record<string, string>;
}

/** A cluster to talk to. `connect()` reads credentials afresh, so rotated tokens and certificates are picked up. */
export interface ClusterAccess {
  readonly server: string;
  /** The context's namespace (or the service account's): where commands without -n act. */
  readonly namespace: string;
  connect(): Promise<Connection>;
}

interface NamedCluster {
  server: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
}

interface NamedUser {
  token?: string;
  tokenFile?: string;
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  username?: string;
  password?: string;
  as?: string;
  exec?: unknown;
  'auth-provider'?: unknown;
}

interface NamedContext {
  cluster: string;
  user?: string;
  namespace?: string;
}

/** The kubeconfig file format, as far as it is read here. */
export interface KubeconfigDocument {
  'current-context'?: string;
  clusters?: { name: string; cluster: NamedCluster }[];
  users?: { name: string; user?: NamedUser }[];
  contexts?: { name: string; context: NamedContext }[];
}

/** An entry and the directory of the file it came from: relative paths in a kubeconfig are relative to it. */
interface Sourced<T> {
  value: T;
  dir: string;
}

// Idle keep-alive connections are closed before the apiserver's own idle timeout (90 s) would close
// them under a request about to be sent.
const idleSocketMs = 60_000;

function agentFor(server: string, tls: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; insecure?: boolean; servername?: string }): HttpAgent {
  if (server.startsWith('http://')) return new http.Agent({ keepAlive: true, timeout: idleSocketMs });
  return new https.Agent({
    keepAlive: true,
    timeout: idleSocketMs,
    ...(tls.ca ? { ca: tls.ca } : {}),
    ...(tls.cert ? { cert: tls.cert } : {}),
    ...(tls.key ? { key: tls.key } : {}),
    ...(tls.servername ? { servername: tls.servername } : {}),
    rejectUnauthorized: !tls.insecure,
  });
}

/**
 * An agent no longer handed out: its idle connections close now, and those in use (watches, lists)
 * close when their request ends, instead of being cut off.
 */
function retire(agent: HttpAgent): void {
  agent.keepSocketAlive = () => false;
  for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
}

/**
 * Keeps one agent (one pool of keep-alive connections) while the TLS material stays the same, and
 * makes a new one when a certificate changes, retiring the old one.
 */
class AgentCache {
  private current: { key: string; agent: HttpAgent } | undefined;

  get(server: string, tls: Parameters<typeof agentFor>[1]): HttpAgent {
    const key = JSON.stringify([server, String(tls.ca ?? ''), String(tls.cert ?? ''), String(tls.key ?? ''), !!tls.insecure, tls.servername ?? '']);
    if (this.current?.key !== key) {
      if (this.current) retire(this.current.agent);
      this.current = { key, agent: agentFor(server, tls) };
    }
    return this.current.agent;
  }
}

export class KubeconfigAccess implements ClusterAccess {
  readonly server: string;
  readonly namespace: string;
  private readonly cluster: Sourced<NamedCluster>;
  private readonly user: Sourced<NamedUser>;
  private readonly agents = new AgentCache();
  // One client-node KubeConfig for the life of the access, so its plugin's token cache (which honours
  // the credential's expiry) is kept instead of running the plugin at every renewal.
  private plugin: Promise<PluginConfig> | undefined;

  constructor(doc: MergedKubeconfig, contextName?: string) {
    const name = contextName ?? doc.currentContext;
    if (!name) throw new Error('the kubeconfig has no current-context');
    const context = doc.contexts.get(name)?.value;
    if (!context) throw new Error(`no context "${name}" in the kubeconfig`);
    const cluster = doc.clusters.get(context.cluster);
    if (!cluster?.value.server) throw new Error(`context "${name}" names cluster "${context.cluster}", which the kubeconfig does not define with a server`);
    const user = context.user ? doc.users.get(context.user) : undefined;
    if (context.user && !user) throw new Error(`context "${name}" names user "${context.user}", which the kubeconfig does not define`);
    this.cluster = cluster;
    this.user = user ?? { value: {}, dir: cluster.dir };
    this.server = cluster.value.server.replace(/\/$/, '');
    this.namespace = context.namespace || 'default';
  }

  async connect(): Promise<Connection> {
    const c = this.cluster.value;
    const u = this.user.value;
    const file = (dir: string, path: string) => readFileSync(isAbsolute(path) ? path : join(dir, path));
    const data = (b64: string) => Buffer.from(b64, 'base64');
    const ca = c['certificate-authority-data'] ? data(c['certificate-authority-data']) : c['certificate-authority'] ? file(this.cluster.dir, c['certificate-authority']) : undefined;
    let cert: Buffer | string | undefined = u['client-certificate-data'] ? data(u['client-certificate-data']) : u['client-certificate'] ? file(this.user.dir, u['client-certificate']) : undefined;
    let key: Buffer | string | undefined = u['client-key-data'] ? data(u['client-key-data']) : u['client-key'] ? file(this.user.dir, u['client-key']) : undefined;
    const headers: Record<string, string> = {};
    // As in client-go, a token file wins over a token: it is the one that gets rotated.
    if (u.tokenFile) headers.Authorization = `Bearer ${file(this.user.dir, u.tokenFile).toString('utf8').trim()}`;
    else if (u.token) headers.Authorization = `Bearer ${u.token}`;
    else if (u.username !== undefined && u.password !== undefined) headers.Authorization = `Basic ${Buffer.from(`${u.username}:${u.password}`).toString('base64')}`;
    else if (u.exec || u['auth-provider']) {
      this.plugin ??= pluginConfig(this.cluster, this.user);
      const plugin = await pluginCredentials(await this.plugin);
      Object.assign(headers, plugin.headers);
      cert = plugin.cert ?? cert;
      key = plugin.key ?? key;
    }
    if (u.as) headers['Impersonate-User'] = u.as;
    const agent = this.agents.get(this.server, { ca, cert, key, insecure: c['insecure-skip-tls-verify'], servername: c['tls-server-name'] });
    return { agent, headers };
  }
}

type PluginConfig = import('@kubernetes/client-node').KubeConfig;

/**
 * exec and auth-provider users run client-node's plugins, loaded only here so nobody else pays its
 * memory. client-node sees only what the plugin needs: the server, and the user's exec (its command
 * resolved against the kubeconfig's directory, as kubectl does) or auth-provider. TLS stays ours.
 */
async function pluginConfig(cluster: Sourced<NamedCluster>, user: Sourced<NamedUser>): Promise<PluginConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const exec = user.value.exec as { command?: string } | undefined;
  const command = exec?.command && exec.command.includes('/') && !isAbsolute(exec.command) ? join(user.dir, exec.command) : exec?.command;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'cluster', server: cluster.value.server, skipTLSVerify: false }],
    users: [{ name: 'user', ...(exec ? { exec: { ...exec, command } } : {}), ...(user.value['auth-provider'] ? { authProvider: user.value['auth-provider'] } : {}) }],
    contexts: [{ name: 'context', cluster: 'cluster', user: 'user' }],
    currentContext: 'context',
  });
  return kc;
}

/** A plugin returns a token, or a client certificate and key. */
async function pluginCredentials(kc: PluginConfig): Promise<{ headers: Record<string, string>; cert?: Buffer | string; key?: Buffer | string }> {
  const options: { headers?: Record<string, string>; cert?: Buffer | string; key?: Buffer | string } = { headers: {} };
  await kc.applyToHTTPSOptions(options);
  return { headers: options.headers ?? {}, ...(options.cert ? { cert: options.cert } : {}), ...(options.key ? { key: options.key } : {}) };
}

const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The pod's service account: the token is projected and rotated by the kubelet, so it is read on every connect(). */
export class InClusterAccess implements ClusterAccess {
  readonly server: string;
  readonly namespace: string;
  private readonly agents = new AgentCache();

  constructor(env: NodeJS.ProcessEnv = process.env, private readonly dir = serviceAccountDir) {
    const host = env.KUBERNETES_SERVICE_HOST;
    if (!host) throw new Error('not running in a cluster: KUBERNETES_SERVICE_HOST is not set');
    this.server = `https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`;
    this.namespace = existsSync(join(dir, 'namespace')) ? readFileSync(join(dir, 'namespace'), 'utf8').trim() : 'default';
  }

  async connect(): Promise<Connection> {
    const token = readFileSync(join(this.dir, 'token'), 'utf8').trim();
    const agent = this.agents.get(this.server, { ca: readFileSync(join(this.dir, 'ca.crt')) });
    return { agent, headers: { Authorization: `Bearer ${token}` } };
  }
}

/** Several kubeconfig files merged as kubectl merges them: for each name, the first file that defines it wins. */
export class MergedKubeconfig {
  readonly clusters = new Map<string, Sourced<NamedCluster>>();
  readonly users = new Map<string, Sourced<NamedUser>>();
  readonly contexts = new Map<string, Sourced<NamedContext>>();
  currentContext: string | undefined;

  /** `source` names the file in errors. */
  add(doc: KubeconfigDocument, dir: string, source = 'the kubeconfig'): this {
    const merge = <T>(into: Map<string, Sourced<T>>, field: 'clusters' | 'users' | 'contexts', inner: 'cluster' | 'user' | 'context') => {
      const list: unknown = doc[field];
      if (list === undefined || list === null) return;
      if (!Array.isArray(list)) throw new Error(`${source}: ${field} must be a list`);
      for (const entry of list as unknown[]) {
        const e = entry as Record<string, unknown> | null;
        if (!e || typeof e !== 'object' || typeof e.name !== 'string') throw new Error(`${source}: every entry of ${field} needs a name`);
        const value = e[inner] ?? (inner === 'user' ? {} : undefined);
        if (!value || typeof value !== 'object') throw new Error(`${source}: ${field} entry "${e.name}" has no ${inner}`);
        if (!into.has(e.name)) into.set(e.name, { value: value as T, dir });
      }
    };
    merge(this.clusters, 'clusters', 'cluster');
    merge(this.users, 'users', 'user');
    merge(this.contexts, 'contexts', 'context');
    this.currentContext ||= doc['current-context'] || undefined;
    return this;
  }
}

function readKubeconfig(path: string): KubeconfigDocument {
  let doc: unknown;
  try {
    doc = yaml.load(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read kubeconfig ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`kubeconfig ${path} is not a mapping`);
  return doc;
}

/** A kubeconfig held in memory (tests, tools): relative paths resolve against `dir`. */
export function accessFromDocument(doc: KubeconfigDocument, context?: string, dir = process.cwd()): ClusterAccess {
  return new KubeconfigAccess(new MergedKubeconfig().add(doc, resolve(dir)), context);
}

/**
 * kubectl's order: an explicit file, else $KUBECONFIG (a list), else ~/.kube/config, else the
 * in-cluster service account.
 */
export function loadClusterAccess(opts: { kubeconfig?: string; context?: string; env?: NodeJS.ProcessEnv } = {}): ClusterAccess {
  const env = opts.env ?? process.env;
  const home = join(env.HOME ?? homedir(), '.kube', 'config');
  const paths = opts.kubeconfig ? [opts.kubeconfig]
    : env.KUBECONFIG ? env.KUBECONFIG.split(delimiter).filter(Boolean)
      : existsSync(home) ? [home] : [];
  if (paths.length === 0) {
    if (env.KUBERNETES_SERVICE_HOST) return new InClusterAccess(env);
    throw new Error('no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster');
  }
  const merged = new MergedKubeconfig();
  for (const path of paths) {
    // kubectl skips files of a KUBECONFIG list that do not exist; an explicit file must exist.
    if (!opts.kubeconfig && !existsSync(path)) continue;
    merged.add(readKubeconfig(path), resolve(dirname(path)), `kubeconfig ${path}`);
  }
  // Like client-go: a KUBECONFIG that names nothing usable falls back to the pod's service account.
  if (!opts.kubeconfig && merged.contexts.size === 0 && env.KUBERNETES_SERVICE_HOST) return new InClusterAccess(env);
  return new KubeconfigAccess(merged, opts.context);
}
