// What an end-to-end test on the real node needs: the node, trained models in an HTTPS model store the
// pods trust through a CA ConfigMap, the operator running where ClusterIPs answer, and ModelDeployments
// that land on the real node.
import { join } from 'node:path';
import type { ModelDeployment, ModelDeploymentSpec, ModelSource, ResourceRequirements, SchedulingSpec } from '../../operator/api/generated.js';
import { Resources } from '../../operator/runtime/resources.js';
import { testCluster, waitFor } from '../cluster/cluster.js';
import { inNodeNetwork, realNodeLabel, realNodeTaint, type NodeLink } from '../cluster/real-node.js';
import { modelDeployment, withSpec } from './builders.js';
import { adminClient, installCrd } from './crd.js';
import { OperatorProcess } from './operator-process.js';
import { ModelStore, trainModels, type TrainedModels } from './real-models.js';

/** The operator image as hack/images/build.sh names it; its `modelship fetch` runs in every model pod. */
export const operatorImage = 'ghcr.io/modelship/modelship:0.1.0';
export const customServerImage = 'modelship.io/custom-server:0.1.0';

export function realNode(): NodeLink {
  const { state } = testCluster();
  if (!state.realNode) {
    throw new Error(`this test needs the cluster's real node (supervisor --real-node on): ${state.realNodeUnavailable ?? 'not requested'}`);
  }
  return state.realNode.link;
}

export interface Serving {
  link: NodeLink;
  models: TrainedModels;
  store: ModelStore;
  operator: OperatorProcess;
  stop(): Promise<void>;
}

/** Trains the models and serves them over HTTPS on the host end of the node's link. */
export async function startModelStore(): Promise<{ link: NodeLink; models: TrainedModels; store: ModelStore }> {
  const link = realNode();
  await installCrd();
  const dir = join(testCluster().state.dir, 'real-models');
  const models = trainModels(dir);
  const store = new ModelStore(dir, link.hostIp, join(testCluster().state.dir, 'model-store-pki'));
  await store.start();
  return { link, models, store };
}

/** The model store, and the operator running as a process where ClusterIPs answer. */
export async function startServing(name: string, env: Record<string, string> = {}): Promise<Serving> {
  const { link, models, store } = await startModelStore();
  const operator = new OperatorProcess({
    name, nodeNetwork: { netns: link.netns, nodeIp: link.nodeIp },
    env: { MODELSHIP_FETCHER_IMAGE: operatorImage, MODELSHIP_SERVICE_ADDRESS: 'cluster-ip', ...env },
  });
  await operator.start();
  return { link, models, store, operator, async stop() { await operator.stop(); await store.stop(); } };
}

/** The ConfigMap that makes the fetcher trust the model store's CA. */
export async function trustModelStore(namespace: string, store: ModelStore): Promise<void> {
  await testCluster().core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'model-store-ca' }, data: { 'ca.crt': store.caCert } } });
}

/** Scheduling that puts a model on the real node (tainted so that KWOK-only tests never land there). */
export const onRealNode: SchedulingSpec = {
  nodeSelector: { [realNodeLabel.key]: realNodeLabel.value },
  tolerations: [{ key: realNodeTaint.key, operator: 'Exists', effect: realNodeTaint.effect }],
};

/** Small requests: two cores serve every model pod of a test at once. */
export const smallResources: ResourceRequirements = { requests: { cpu: '50m', memory: '200Mi' }, limits: { memory: '1Gi' } };

/** A trained model as the store serves it, with its digest and the CA ConfigMap `trustModelStore` made. */
export function storedModel(store: ModelStore, models: TrainedModels, path: string, version: string, format: ModelSource['format'] = 'sklearn', digest = models.digests[path]): ModelSource {
  return { uri: store.url(path), ...(digest ? { digest } : {}), caConfigMap: 'model-store-ca', version, format };
}

export function v2Request(rows: number[][]): unknown {
  return { inputs: [{ name: 'input-0', shape: [rows.length, rows[0]!.length], datatype: 'FP64', data: rows }] };
}

const client = adminClient();

export type Md = ModelDeployment & { status?: Record<string, any> };

/** A ModelDeployment from the test builders: a name, a namespace and the spec a test gives. */
export async function createMd(namespace: string, name: string, spec: Partial<ModelDeploymentSpec>): Promise<void> {
  await client.create(Resources.ModelDeployment, modelDeployment(name, namespace, withSpec(spec)));
}

export const getMd = (namespace: string, name: string) => client.get<Md>(Resources.ModelDeployment, namespace, name);

/** Changes spec fields as `kubectl patch --type merge` does. */
export async function patchMdSpec(namespace: string, name: string, spec: Partial<ModelDeploymentSpec>): Promise<void> {
  await client.mergePatch(Resources.ModelDeployment, namespace, name, { spec });
}

export const condition = (md: Md, type: string) => (md.status?.conditions as { type: string; status: string; reason?: string; message?: string }[] | undefined)?.find((c) => c.type === type);

export async function waitReady(namespace: string, name: string, timeoutMs = 180_000): Promise<Md> {
  return waitFor(`${namespace}/${name} Ready`, async () => {
    const md = await getMd(namespace, name);
    return condition(md, 'Ready')?.status === 'True' && md.status?.observedGeneration === md.metadata?.generation ? md : undefined;
  }, timeoutMs, 250);
}

/** The ClusterIP of a Service the operator made, once it has one. */
export async function clusterIp(namespace: string, service: string): Promise<string> {
  return waitFor(`Service ${namespace}/${service}`, async () => (await testCluster().core.readNamespacedService({ namespace, name: service })).spec?.clusterIP);
}

/** A POST to a URL from inside the node's network namespace, answered as JSON. */
export async function postInNode(link: NodeLink, url: string, body: unknown): Promise<{ status: number; json: any }> {
  const out = inNodeNetwork(link, 'curl', ['-sS', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}',
    '-H', 'content-type: application/json', '--data-binary', JSON.stringify(body), url]);
  const lines = out.trimEnd().split('\n');
  const status = Number(lines.pop());
  const text = lines.join('\n');
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status, json };
}

/** GET from inside the node's network namespace; resolves with the status code. */
export async function getInNode(link: NodeLink, url: string): Promise<number> {
  return Number(inNodeNetwork(link, 'curl', ['-s', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', url]));
}
