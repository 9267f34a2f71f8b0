// What a test sees of the control plane: a kubeconfig, API clients, a namespace of its own, and the
// supervisor's control API for stopping and starting components under a running client.
//
// The cluster comes from MODELSHIP_CLUSTER_STATE (set by `supervisor run`, which `make test` uses) or,
// when a person runs one test file by hand, from the `make cluster` in the repository's .cluster/.
import { existsSync, readFileSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { ClusterState } from './supervisor.js';
import type { ComponentName } from './control-plane.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');

export interface TestCluster {
  state: ClusterState;
  kc: KubeConfig;
  core: CoreV1Api;
  /** Stops, starts, kills or restarts one component; resolves once the action is done (start waits for ready). */
  component(name: ComponentName, action: 'start' | 'stop' | 'kill' | 'restart'): Promise<void>;
}

let cached: TestCluster | undefined;

export function testCluster(): TestCluster {
  if (cached) return cached;
  const path = process.env.MODELSHIP_CLUSTER_STATE ?? join(repoRoot, '.cluster', 'state.json');
  if (!existsSync(path)) {
    throw new Error(`no test cluster: run the tests with \`make test\`, or start one with \`make cluster\` (looked for ${path})`);
  }
  const state = JSON.parse(readFileSync(path, 'utf8')) as ClusterState;
  const kc = new KubeConfig();
  kc.loadFromFile(state.kubeconfig);
  cached = {
    state,
    kc,
    core: kc.makeApiClient(CoreV1Api),
    async component(name, action) {
      const res = await fetch(`${state.controlUrl}/components/${name}/${action}`, { method: 'POST' });
      if (!res.ok) throw new Error(`${action} ${name}: ${res.status} ${await res.text()}`);
    },
  };
  return cached;
}

/** Creates a namespace with a unique name; the caller deletes it (see `namespaceFor`). */
export async function createNamespace(prefix: string): Promise<string> {
  const { core } = testCluster();
  const name = `${prefix}-${randomBytes(3).toString('hex')}`.toLowerCase().slice(0, 63);
  await core.createNamespace({ body: { metadata: { name, labels: { 'modelship.io/test': 'true' } } } });
  // Pods need the namespace's default ServiceAccount, which kube-controller-manager creates.
  await waitFor(`ServiceAccount ${name}/default`, async () => {
    try {
      await core.readNamespacedServiceAccount({ name: 'default', namespace: name });
      return true;
    } catch {
      return false;
    }
  });
  return name;
}

export async function deleteNamespace(name: string): Promise<void> {
  await testCluster().core.deleteNamespace({ name }).catch(() => undefined);
}

/** The namespaces one test file creates, deleted together when it ends. */
export class TestNamespaces {
  private readonly names: string[] = [];

  async create(prefix: string): Promise<string> {
    const ns = await createNamespace(prefix);
    this.names.push(ns);
    return ns;
  }

  async deleteAll(): Promise<void> {
    await Promise.all(this.names.splice(0).map(deleteNamespace));
  }
}

/** Polls `check` until it returns a truthy value, which is returned; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message.slice(0, 300)})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(everyMs);
  }
}
