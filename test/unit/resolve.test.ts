import test from 'ava';
import { modelUriDigest, modelUriProblem, parseQuantity, resolveRuntime } from '../../operator/modeldeployment/resolve.js';
import { presets } from '../../operator/modeldeployment/presets.js';
import type { ModelDeploymentSpec } from '../../operator/api/generated.js';
import { progressDeadlineSeconds } from '../../operator/modeldeployment/desired/deployment.js';
import { modelDeployment, withSpec } from '../support/builders.js';

const spec = (patch: Partial<ModelDeploymentSpec> = {}, model: Partial<ModelDeploymentSpec['model']> = {}): ModelDeploymentSpec => ({
  model: { uri: 'https://models.example.com/m.joblib', version: '1', format: 'sklearn', ...model },
  ...patch,
});

test('the format picks the preset: sklearn → MLServer with the sklearn implementation', (t) => {
  const r = resolveRuntime(spec(), 'iris');
  if (!r.ok) return t.fail(r.problems.join());
  t.is(r.runtime.preset, 'mlserver');
  t.is(r.runtime.image, presets.mlserver.image);
  t.is(r.runtime.protocol, 'v2');
  t.is(r.runtime.readinessPath, '/v2/health/ready');
  t.deepEqual(r.runtime.env.find((e) => e.name === 'MLSERVER_MODEL_IMPLEMENTATION'), { name: 'MLSERVER_MODEL_IMPLEMENTATION', value: 'mlserver_sklearn.SKLearnModel' });
  t.deepEqual(r.runtime.env.find((e) => e.name === 'MLSERVER_MODEL_NAME'), { name: 'MLSERVER_MODEL_NAME', value: 'iris' });
});

test('every format has a default preset that can load it', (t) => {
  for (const format of ['sklearn', 'xgboost', 'lightgbm', 'onnx', 'pytorch', 'huggingface'] as const) {
    const r = resolveRuntime(spec({}, { format }), 'm');
    t.true(r.ok, `${format}: ${r.ok ? '' : r.problems.join()}`);
  }
  // Triton dropped TensorFlow in 25.03: a tensorflow model names its server, and is invalid until it does.
  const tf = resolveRuntime(spec({}, { format: 'tensorflow' }), 'm');
  t.false(tf.ok);
  t.true(!tf.ok && tf.problems.some((p) => p.includes('set runtime.image')));
  const tfServing = resolveRuntime(spec({ runtime: { image: 'docker.io/tensorflow/serving:2.19.0', port: 8501 } }, { format: 'tensorflow' }), 'm');
  t.true(tfServing.ok && tfServing.runtime.preset === 'custom');
  const xgb = resolveRuntime(spec({}, { format: 'xgboost' }), 'm');
  t.true(xgb.ok && xgb.runtime.env.some((e) => e.value === 'mlserver_xgboost.XGBoostModel'));
  const llm = resolveRuntime(spec({}, { format: 'huggingface', uri: 'hf://org/model' }), 'chat');
  t.true(llm.ok && llm.runtime.preset === 'vllm' && llm.runtime.protocol === 'openai' && llm.runtime.args.includes('chat'));
});

test('runtime fields override the preset; user env wins over preset env of the same name', (t) => {
  const r = resolveRuntime(spec({ runtime: { image: 'registry.example/mlserver:custom', port: 9090, startupTimeoutSeconds: 60, env: [{ name: 'MLSERVER_MODEL_NAME', value: 'override' }] } }), 'iris');
  if (!r.ok) return t.fail();
  t.is(r.runtime.image, 'registry.example/mlserver:custom');
  t.is(r.runtime.port, 9090);
  t.is(r.runtime.startupTimeoutSeconds, 60);
  t.deepEqual(r.runtime.env.filter((e) => e.name === 'MLSERVER_MODEL_NAME'), [{ name: 'MLSERVER_MODEL_NAME', value: 'override' }]);
});

test('a preset that cannot load the format is an invalid spec that names the presets that can', (t) => {
  const r = resolveRuntime(spec({ runtime: { preset: 'vllm' } }, { format: 'onnx' }), 'm');
  t.false(r.ok);
  t.regex(r.ok ? '' : r.problems.join(), /vllm cannot serve onnx models; use triton/);
});

test('custom needs an image unless the spec names one; no format and no preset is invalid', (t) => {
  t.false(resolveRuntime(spec({}, { format: 'custom' }), 'm').ok);
  t.true(resolveRuntime(spec({ runtime: { preset: 'custom', image: 'me/server:1' } }, { format: 'custom' }), 'm').ok);
  const none = resolveRuntime(spec({}, { format: undefined }), 'm');
  t.regex(none.ok ? '' : none.problems.join(), /set model\.format or runtime\.preset/);
});

test('GPUs: counted from limits, requests must equal limits, whole numbers only', (t) => {
  const ok = resolveRuntime(spec({ resources: { limits: { 'nvidia.com/gpu': '2' } } }), 'm');
  t.true(ok.ok && ok.runtime.gpus === 2);
  t.false(resolveRuntime(spec({ resources: { requests: { 'nvidia.com/gpu': 1 }, limits: { 'nvidia.com/gpu': 2 } } }), 'm').ok);
  t.false(resolveRuntime(spec({ resources: { limits: { 'nvidia.com/gpu': '0.5' } } }), 'm').ok);
});

test('model URIs that pass the CRD pattern but mean nothing are caught', (t) => {
  t.is(modelUriProblem('s3://my-bucket/models/v1/'), undefined);
  t.is(modelUriProblem('gs://bucket.example/m'), undefined);
  t.is(modelUriProblem('hf://meta-llama/Llama-3.2-1B@main'), undefined);
  t.is(modelUriProblem('pvc://models/iris/v1'), undefined);
  t.is(modelUriProblem('oci://registry.example:5000/models/iris:1'), undefined);
  t.is(modelUriProblem('https://models.example.com/m.bin'), undefined);
  t.regex(modelUriProblem('s3://UPPER/m') ?? '', /bucket name/);
  t.regex(modelUriProblem('hf://org-only') ?? '', /organisation\/repository/);
  t.regex(modelUriProblem('pvc://claim/../../etc') ?? '', /\.\./);
  t.regex(modelUriProblem('oci://Not A Ref') ?? '', /OCI image reference/);
});

test('an oci:// URI pinned to one digest and a model.digest naming another is an invalid spec that names both', (t) => {
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;
  const oci = (d: string) => `oci://registry.example/models/iris:1@${d}`;
  const mismatch = resolveRuntime(spec({}, { uri: oci(a), digest: b }), 'm');
  t.false(mismatch.ok);
  const text = mismatch.ok ? '' : mismatch.problems.join('; ');
  t.true(text.includes(a) && text.includes(b), text);
  t.regex(text, /model\.digest .* does not match the digest model\.uri is pinned to/);
  const agree = resolveRuntime(spec({}, { uri: oci(a), digest: a }), 'm');
  t.true(agree.ok && agree.runtime.modelDigest === a);
});

test('the digest to record is model.digest, or else the one the URI is pinned to', (t) => {
  const a = `sha256:${'a'.repeat(64)}`;
  const onlyUri = resolveRuntime(spec({}, { uri: `oci://registry.example/models/iris@${a}` }), 'm');
  if (!onlyUri.ok) return t.fail(onlyUri.problems.join());
  t.is(onlyUri.runtime.modelDigest, a);
  const onlySpec = resolveRuntime(spec({}, { uri: 'oci://registry.example/models/iris:1', digest: a }), 'm');
  t.true(onlySpec.ok && onlySpec.runtime.modelDigest === a);
  const fetched = resolveRuntime(spec({}, { digest: a }), 'm');
  t.true(fetched.ok && fetched.runtime.modelDigest === a);
  const none = resolveRuntime(spec(), 'm');
  t.true(none.ok && none.runtime.modelDigest === undefined);
  t.is(modelUriDigest('hf://org/repo@main'), undefined, 'only an OCI reference is pinned by @sha256');
});

test('quantities parse like Kubernetes', (t) => {
  t.is(parseQuantity('500m'), 0.5);
  t.is(parseQuantity('2Gi'), 2 * 2 ** 30);
  t.is(parseQuantity('1e3'), 1000);
  t.is(parseQuantity('1.5'), 1.5);
  t.true(Number.isNaN(parseQuantity('lots')));
});

test('presets follow their images\' entrypoints: TorchServe runs one command that execs the server; vLLM and TGI get a USER', (t) => {
  const ts = resolveRuntime(spec({ runtime: { preset: 'torchserve' } }, { format: 'pytorch' }), 'm');
  if (!ts.ok) return t.fail(ts.problems.join());
  // dockerd-entrypoint.sh evals "$@" and then tails /dev/null: one string, ending in exec torchserve.
  t.is(ts.runtime.args.length, 1);
  t.regex(ts.runtime.args[0]!, /inference_address=http:\/\/0\.0\.0\.0:8080 .*metrics_mode=prometheus .*trap 'torchserve --stop; exit 143' TERM; torchserve --foreground --ts-config \/tmp\/config.properties .*& wait \$!; exit \$\?$/);
  t.true(ts.runtime.readOnlyRootFilesystem, 'TorchServe writes only under TEMP and LOG_LOCATION in /tmp');
  t.false(ts.runtime.env.some((e) => e.name.startsWith('TS_')), 'TS_* variables are ignored without enable_envvars_config');
  for (const preset of ['vllm', 'tgi'] as const) {
    const r = resolveRuntime(spec({ runtime: { preset } }, { format: 'huggingface', uri: 'hf://org/model' }), 'chat');
    t.true(r.ok && r.runtime.env.some((e) => e.name === 'USER'), preset);
  }
  const tgi = resolveRuntime(spec({ runtime: { preset: 'tgi' } }, { format: 'huggingface', uri: 'hf://org/model' }), 'chat');
  t.true(tgi.ok && tgi.runtime.args.join(' ').includes('--hostname 0.0.0.0'));
});

test('loading budgets grow with the model size when the spec gives one; the preset\'s timeout is the floor', (t) => {
  const llmSpec = (sizeLimit?: string, uri = 'https://models.example.com/llama/') => ({
    model: { uri, version: '1', format: 'huggingface' as const, ...(sizeLimit ? { sizeLimit } : {}) },
    runtime: { preset: 'vllm' as const },
  });
  const resolved = (spec: ReturnType<typeof llmSpec>) => { const r = resolveRuntime(spec, 'chat'); if (!r.ok) throw new Error(r.problems.join()); return r.runtime; };
  t.like(resolved(llmSpec()), { startupTimeoutSeconds: 1800, downloadBudgetSeconds: 0 });
  // 140 GiB of weights (a 70B model in 16 bits): 120 s + 10 s/GiB to load, 20 s/GiB to download.
  t.like(resolved(llmSpec('140Gi')), { startupTimeoutSeconds: 1800, downloadBudgetSeconds: 2800 });
  t.like(resolved(llmSpec('1Ti')), { startupTimeoutSeconds: 120 + 10 * 1024, downloadBudgetSeconds: 20 * 1024 });
  t.like(resolved(llmSpec('1500Mi')), { downloadBudgetSeconds: 40 });
  t.is(resolved(llmSpec('200Gi', 'pvc://weights/llama')).downloadBudgetSeconds, 0, 'a model on a claim is not downloaded');
  const md = modelDeployment('chat', 'llm', withSpec(llmSpec('140Gi')));
  t.is(progressDeadlineSeconds(md, resolved(llmSpec('140Gi'))), 1800 + 2800 + 120, 'the canary may load for 79 minutes before it is rolled back');
});
