// Installs the ModelDeployment CRD from crds/ (server-side apply) and waits until it is served; also the
// third-party CRDs that hack/build-bins.sh takes from Go modules (Gateway API, Argo CD's Application).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { KubeClient, type KubeObject } from '../../operator/runtime/kube.js';
import { loadClusterAccess } from '../../operator/runtime/kubeconfig.js';
import { loadCrd } from '../../operator/api/schema.js';
import { testCluster, waitFor } from '../cluster/cluster.js';

const crdType = { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', kind: 'CustomResourceDefinition', namespaced: false };

export function adminClient(): KubeClient {
  return new KubeClient(loadClusterAccess({ kubeconfig: testCluster().state.kubeconfig }), undefined, 'modelship-tests');
}

export async function installCrd(): Promise<void> {
  const client = adminClient();
  const crd = loadCrd() as unknown as KubeObject;
  await client.apply(crdType, { apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', ...crd }, 'modelship-tests');
  await waitFor('CRD established', async () => {
    const live = await client.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(crdType, undefined, crd.metadata!.name!);
    return live.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  });
  // Discovery in the apiserver lags establishment a little; a list proves the resource is served.
  await waitFor('ModelDeployments served', async () => {
    await client.request('GET', '/apis/modelship.io/v1alpha1/modeldeployments?limit=1');
    return true;
  });
}

/** Applies every CRD in a folder that hack/build-bins.sh took from a Go module, and waits until `servedPath` lists. */
async function installCrdFolder(folder: string, servedPath: string, what: string): Promise<void> {
  const client = adminClient();
  const dir = fileURLToPath(new URL(`../../.bin/${folder}/`, import.meta.url));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    const crd = yaml.load(readFileSync(join(dir, file), 'utf8')) as KubeObject;
    await client.apply(crdType, crd, 'modelship-tests');
  }
  await waitFor(`${what} served`, async () => {
    await client.request('GET', `${servedPath}?limit=1`);
    return true;
  });
}

/** The Gateway API CRDs, from the sigs.k8s.io/gateway-api module. */
export const installGatewayApi = () => installCrdFolder('gateway-api-crds', '/apis/gateway.networking.k8s.io/v1/httproutes', 'HTTPRoutes');

/** The Gateway API Inference Extension's InferencePool CRD, from its Go module (v1.6.0). */
export const installInferencePoolCrd = () => installCrdFolder('inference-extension-crds', '/apis/inference.networking.k8s.io/v1/inferencepools', 'InferencePools');

/** KEDA's ScaledObject CRD, from the github.com/kedacore/keda/v2 module (v2.21.0); the controller does not run. */
export const installKedaCrd = () => installCrdFolder('keda-crds', '/apis/keda.sh/v1alpha1/scaledobjects', 'KEDA ScaledObjects');

/** Argo CD's Application CRD, from the github.com/argoproj/argo-cd module. */
export const installArgoCdCrds = () => installCrdFolder('argocd-crds', '/apis/argoproj.io/v1alpha1/applications', 'Argo CD Applications');
