// Every manifest in examples/ is accepted by the apiserver (server-side dry run) and, applied for real,
// is served by the operator: what users copy works. The Argo CD Application is dry-run against Argo CD's
// own CRD, and deploys examples that exist.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { adminClient, installArgoCdCrds, installCrd, installGatewayApi, installInferencePoolCrd, installKedaCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
// As the gateway example says, the admin opens its shared Gateway to tenants.
const operator = new OperatorProcess({ name: 'examples', env: { MODELSHIP_GATEWAY_PARENTS: 'gateways/inference-gw' } });
const dir = new URL('../../examples/', import.meta.url);
const examples = readdirSync(dir).filter((f) => f.endsWith('.yaml') && !f.startsWith('argocd'));
const argoCdExamples = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f.startsWith('argocd'));

test.before(async () => {
  await installCrd();
  await installGatewayApi();
  await installArgoCdCrds();
  await installInferencePoolCrd();
  await installKedaCrd();
  await operator.start();
});

test.after.always(async () => {
  await operator.stop();
  await namespaces.deleteAll();
});

test('there are examples for the quickstart, an LLM on a GPU, an InferencePool canary, a vLLM scaled to zero, Triton, an analysed canary, Gateway API routing, drift monitoring, a cached model and Argo CD', (t) => {
  t.deepEqual(examples.sort(), ['cached-model.yaml', 'canary-analysis.yaml', 'drift-monitoring.yaml', 'gateway-canary.yaml', 'llm-inferencepool-canary.yaml', 'llm-vllm-gpu.yaml', 'llm-vllm-scale-to-zero.yaml', 'quickstart.yaml', 'triton-onnx.yaml']);
  t.deepEqual(argoCdExamples, ['argocd-application.yaml']);
});

for (const file of argoCdExamples) {
  test(`examples/${file}: Argo CD's Application CRD accepts every field, and it deploys examples that exist`, async (t) => {
    const ns = await namespaces.create(file.replace('.yaml', '').slice(0, 20));
    const docs = yaml.loadAll(readFileSync(new URL(file, dir), 'utf8')) as (KubeObject & { spec: any })[];
    t.is(docs.length, 1);
    const app = docs[0]!;
    t.like(app, { apiVersion: 'argoproj.io/v1alpha1', kind: 'Application' });
    app.metadata!.namespace = ns;
    // Strict field validation: a misspelt or misplaced field is an error, not silently pruned.
    const dry = await client.request<KubeObject & { spec: any }>('PATCH', `/apis/argoproj.io/v1alpha1/namespaces/${ns}/applications/${app.metadata!.name}`, {
      query: { fieldManager: 'modelship-tests', force: true, dryRun: 'All', fieldValidation: 'Strict' },
      body: app,
      contentType: 'application/apply-patch+yaml',
    });
    t.deepEqual(dry.spec, app.spec, 'every field kept as written');
    t.like(dry.spec.syncPolicy, { automated: { prune: true, selfHeal: true } });
    t.true(dry.spec.syncPolicy.syncOptions.includes('ServerSideApply=true'));
    t.is(dry.spec.ignoreDifferences, undefined, 'the operator leaves no drift to ignore');
    // The source is this folder; what it includes are ModelDeployment examples served in the tests above.
    t.is(dry.spec.source.path, 'examples');
    const included = /^\{(.*)\}$/.exec(dry.spec.source.directory.include)?.[1]?.split(',') ?? [dry.spec.source.directory.include];
    t.deepEqual(included.sort(), ['canary-analysis.yaml', 'quickstart.yaml']);
    for (const f of included) t.true(examples.includes(f), `${f} is an example`);
  });
}

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
