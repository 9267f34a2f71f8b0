// Every manifest in examples/ is accepted by the apiserver (server-side dry run) and, applied for real,
// is served by the operator: what users copy works.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { adminClient, installCrd, installGatewayApi } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const operator = new OperatorProcess({ name: 'examples' });
const dir = new URL('../../examples/', import.meta.url);
const examples = readdirSync(dir).filter((f) => f.endsWith('.yaml') && !f.startsWith('argocd'));

test.before(async () => {
  await installCrd();
  await installGatewayApi();
  await operator.start();
});

test.after.always(async () => {
  await operator.stop();
  await namespaces.deleteAll();
});

test('there are examples for the quickstart, an LLM on a GPU, Triton, an analysed canary and Gateway API routing', (t) => {
  t.deepEqual(examples.sort(), ['canary-analysis.yaml', 'gateway-canary.yaml', 'llm-vllm-gpu.yaml', 'quickstart.yaml', 'triton-onnx.yaml']);
});

for (const file of examples) {
  test(`examples/${file}: accepted by a server-side dry run, then served`, async (t) => {
    const ns = await namespaces.create(file.replace('.yaml', '').slice(0, 20));
    const docs = yaml.loadAll(readFileSync(new URL(file, dir), 'utf8')) as (ModelDeployment & KubeObject)[];
    for (const md of docs) {
      md.metadata!.namespace = ns;
      const dry = await client.apply<ModelDeployment & KubeObject>(Resources.ModelDeployment, md, 'modelship-tests', { dryRun: true });
      t.is(dry.metadata?.name, md.metadata!.name);
      await client.apply(Resources.ModelDeployment, md, 'modelship-tests');
      const served = await waitFor(`${file} Ready`, async () => {
        const live = await client.get<ModelDeployment & KubeObject>(Resources.ModelDeployment, ns, md.metadata!.name!);
        const ready = live.status?.conditions?.find((c) => c.type === 'Ready');
        if (ready?.reason === 'InvalidSpec') throw new Error(`InvalidSpec: ${ready.message}`);
        return ready?.status === 'True' ? live : undefined;
      }, 60_000, 250);
      t.is(served.status?.stableRevision?.modelVersion, md.spec.model.version);
    }
  });
}
