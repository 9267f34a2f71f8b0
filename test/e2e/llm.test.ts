// An LLM on the real node through the vLLM preset, unchanged: the preset's own image name, args, env and
// probes, under the operator's security context. The image is vLLM 0.11.0 built for CPU by hack/images
// (docs/images.md says how it differs from the CUDA image of that name); the model is a tiny Llama
// made there with random weights, mounted as an oci:// image volume. It proves that the pod starts and
// becomes Ready, answers an OpenAI completion through its Service's ClusterIP and exports vLLM's
// Prometheus series; the words it generates mean nothing.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { presets } from '../../operator/modeldeployment/presets.js';
import { testCluster, TestNamespaces, waitFor } from '../cluster/cluster.js';
import { inNodeNetwork, realNodeName } from '../cluster/real-node.js';
import { clusterIp, createMd, getInNode, onRealNode, postInNode, startServing, waitReady, type Serving } from '../support/real-node-serving.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
/** hack/images/build.sh links the LLM images here, apart from .bin/images, which every real node imports. */
const llmImages = join(repoRoot, '.bin/images-llm');
const modelReference = 'modelship.io/models/tiny-llama:1';
const namespaces = new TestNamespaces();
let serving: Serving;

test.before(async () => { serving = await startServing('e2e-llm'); });
test.after.always(async () => {
  await namespaces.deleteAll();
  // vLLM's image takes about 17 GB in the node's containerd: it goes once its pod has, so that the
  // e2e tests after this one do not meet a node under disk pressure.
  const { state } = testCluster();
  if (state.realNode) {
    await waitFor('the LLM pod gone', async () => (await testCluster().core.listPodForAllNamespaces({ labelSelector: 'app.kubernetes.io/instance=tiny-llama' })).items.length === 0, 120_000, 1_000).catch(() => undefined);
    for (const image of ['docker.io/vllm/vllm-openai:v0.11.0', modelReference]) {
      try {
        execFileSync(join(repoRoot, '.bin/ctr'), ['--address', state.realNode.containerdSocket, '-n', 'k8s.io', 'images', 'rm', '--sync', image], { stdio: 'ignore' });
      } catch { /* not imported: nothing to free */ }
    }
  }
  await serving?.stop();
});

/** Imports an archive into the node's containerd; returns its manifest digest. */
function importImage(archive: string): string {
  const { state } = testCluster();
  if (!existsSync(archive)) throw new Error(`${archive} is missing: hack/images/build.sh vllm tiny-llm builds it`);
  execFileSync(join(repoRoot, '.bin/ctr'), ['--address', state.realNode!.containerdSocket, '-n', 'k8s.io', 'images', 'import', archive], { stdio: 'ignore' });
  const index = JSON.parse(execFileSync('tar', ['-xOf', archive, './index.json'], { encoding: 'utf8' })) as { manifests: { digest: string }[] };
  return index.manifests[0]!.digest;
}

test('the vLLM preset serves a Llama on CPU: Ready, an OpenAI completion through its ClusterIP, vllm:* metrics', async (t) => {
  t.timeout(600_000);
  const { state } = testCluster();
  const importing = Date.now();
  importImage(join(llmImages, 'vllm.tar'));
  const modelDigest = importImage(join(llmImages, 'tiny-llm.tar'));
  // A pull records the image under its digest too; an import records only the tag, so do what a pull does.
  execFileSync(join(repoRoot, '.bin/ctr'), ['--address', state.realNode!.containerdSocket, '-n', 'k8s.io', 'images', 'tag', '--force', modelReference, `modelship.io/models/tiny-llama@${modelDigest}`], { stdio: 'ignore' });
  const importMs = Date.now() - importing;

  const ns = await namespaces.create('e2e-llm');
  const applied = Date.now();
  await createMd(ns, 'tiny-llama', {
    model: { uri: `oci://${modelReference}`, digest: modelDigest, version: '1', format: 'huggingface' },
    replicas: 1,
    // vLLM on CPU reserves its KV cache up front (4 GiB unless told): 1 GiB is plenty for this model.
    runtime: { env: [{ name: 'VLLM_CPU_KVCACHE_SPACE', value: '1' }] },
    resources: { requests: { cpu: '500m', memory: '2Gi' }, limits: { memory: '6Gi' } },
    scheduling: onRealNode,
  });
  await waitReady(ns, 'tiny-llama', 420_000);
  const readyMs = Date.now() - applied;

  const [pod] = (await testCluster().core.listNamespacedPod({ namespace: ns, labelSelector: 'app.kubernetes.io/instance=tiny-llama' })).items;
  const server = pod!.spec!.containers[0]!;
  t.is(pod!.spec!.nodeName, realNodeName);
  t.is(server.image, presets.vllm.image, 'the preset\'s image, as a user gets it');
  t.deepEqual(server.args, presets.vllm.args({ modelName: 'tiny-llama', port: 8080 }));
  t.is(pod!.spec!.securityContext?.runAsNonRoot, true);
  t.deepEqual(server.securityContext?.capabilities?.drop, ['ALL']);
  t.is(pod!.status?.containerStatuses?.[0]?.restartCount, 0, 'never restarted');
  const podUrl = `http://${pod!.status!.podIP}:8080`;
  t.is(await getInNode(serving.link, `${podUrl}${presets.vllm.readinessPath}`), 200);

  const ip = await clusterIp(ns, 'tiny-llama');
  const request = { model: 'tiny-llama', prompt: 'the quick brown fox', max_tokens: 8, temperature: 0 };
  // The endpoints reach kube-proxy's rules a moment after the pod is ready: the first answer is polled.
  const answer = await waitFor('a completion through the ClusterIP', async () => {
    const a = await postInNode(serving.link, `http://${ip}/v1/completions`, request).catch(() => undefined);
    return a?.status === 200 ? a : undefined;
  }, 60_000, 500);
  const firstCompletionMs = Date.now() - applied;
  t.is(answer.json.object, 'text_completion', JSON.stringify(answer.json));
  t.is(answer.json.model, 'tiny-llama');
  t.is(answer.json.usage.completion_tokens, 8);
  t.is(answer.json.choices[0].finish_reason, 'length');
  t.is(typeof answer.json.choices[0].text, 'string');
  // Greedy decoding of the same prompt by the same weights gives the same text.
  const again = await postInNode(serving.link, `http://${ip}/v1/completions`, request);
  t.is(again.json.choices[0].text, answer.json.choices[0].text);

  const metrics = inNodeNetwork(serving.link, 'curl', ['-sS', '--max-time', '10', `${podUrl}${presets.vllm.metricsPath}`]);
  const sample = (name: string, labels: string) => {
    const line = metrics.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  // The three series the LLM autoscaling signals query (desired/autoscaling-signals.ts), by these names.
  t.is(sample('vllm:num_requests_waiting', 'model_name="tiny-llama"'), 0, 'RequestsWaiting');
  t.is(typeof sample('vllm:kv_cache_usage_perc', 'model_name="tiny-llama"'), 'number', 'KVCacheUsage');
  t.is(sample('vllm:time_to_first_token_seconds_bucket', 'model_name="tiny-llama",le="+Inf"'), 2, 'TimeToFirstToken');
  t.is(sample('vllm:request_success_total', 'model_name="tiny-llama",finished_reason="length"'), 2);
  t.is(sample('vllm:generation_tokens_total', 'model_name="tiny-llama"'), 16);
  t.log(`vLLM: images imported in ${(importMs / 1000).toFixed(1)} s; apply → Ready ${(readyMs / 1000).toFixed(1)} s, apply → first completion ${(firstCompletionMs / 1000).toFixed(1)} s`);
});
