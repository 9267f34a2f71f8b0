// Serving runtime presets: everything the operator needs to know to run a model server well.
// A preset is chosen by runtime.preset, or from model.format; runtime fields override it.
import type { ModelDeploymentSpec } from '../api/generated.js';

export type PresetName = 'mlserver' | 'triton' | 'vllm' | 'torchserve' | 'tgi' | 'custom';
export type ModelFormat = NonNullable<ModelDeploymentSpec['model']['format']>;
export type Protocol = 'v2' | 'openai' | 'custom';

/** Where the model is mounted in the serving container. */
export const modelMountPath = '/mnt/models';

export interface Preset {
  image: string;
  /** Formats this server can load; a preset chosen for another format is an invalid spec. */
  formats: ModelFormat[];
  args: (ctx: { modelName: string; port: number }) => string[];
  env: (ctx: { modelName: string; modelVersion: string; format: ModelFormat | undefined }) => { name: string; value: string }[];
  port: number;
  protocol: Protocol;
  readinessPath: string;
  metricsPath: string;
  /** Metrics port when the server exposes metrics apart from inference traffic. */
  metricsPort?: number;
  startupTimeoutSeconds: number;
  /** Servers that write caches under their home or site-packages cannot run read-only. */
  readOnlyRootFilesystem: boolean;
  /** LLM servers want shared memory for their tensor-parallel workers. */
  sharedMemory: boolean;
}

const mlserverImplementations: Partial<Record<ModelFormat, string>> = {
  sklearn: 'mlserver_sklearn.SKLearnModel',
  xgboost: 'mlserver_xgboost.XGBoostModel',
  lightgbm: 'mlserver_lightgbm.LightGBMModel',
};

export const presets: Record<PresetName, Preset> = {
  // MLServer 1.7.1 (SeldonIO/MLServer Dockerfile at 1.7.1): WORKDIR /opt/mlserver, USER 1000, CMD
  // `mlserver start $MLSERVER_MODELS_DIR`; settings come from MLSERVER_* variables (mlserver/settings.py).
  // At start it creates .metrics (the Prometheus multiprocess directory) and .envs in its working
  // directory, and its image points HF_HOME and NUMBA_CACHE_DIR into it: all of them move to /tmp so
  // the root filesystem can stay read-only. Proven on a real node (test/e2e/serving.test.ts).
  mlserver: {
    image: 'docker.io/seldonio/mlserver:1.7.1',
    formats: ['sklearn', 'xgboost', 'lightgbm'],
    args: () => [],
    env: ({ modelName, modelVersion, format }) => [
      { name: 'MLSERVER_MODEL_NAME', value: modelName },
      // Answers then carry model_version, so a client can tell which revision served it.
      { name: 'MLSERVER_MODEL_VERSION', value: modelVersion },
      { name: 'MLSERVER_MODEL_URI', value: modelMountPath },
      { name: 'MLSERVER_MODEL_IMPLEMENTATION', value: (format && mlserverImplementations[format]) ?? 'mlserver_sklearn.SKLearnModel' },
      { name: 'MLSERVER_HTTP_PORT', value: '8080' },
      { name: 'MLSERVER_GRPC_PORT', value: '9000' },
      { name: 'MLSERVER_METRICS_PORT', value: '8082' },
      { name: 'MLSERVER_METRICS_DIR', value: '/tmp/mlserver/metrics' },
      { name: 'MLSERVER_ENVIRONMENTS_DIR', value: '/tmp/mlserver/envs' },
      { name: 'HF_HOME', value: '/tmp/mlserver/cache' },
      { name: 'NUMBA_CACHE_DIR', value: '/tmp/mlserver/cache' },
    ],
    port: 8080,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    metricsPath: '/metrics',
    metricsPort: 8082,
    startupTimeoutSeconds: 300,
    readOnlyRootFilesystem: true,
    sharedMemory: false,
  },
  // Triton 25.10 (server v2.62.0): ENTRYPOINT nvidia_entrypoint.sh runs `exec "$@"`, so tritonserver is
  // the first argument; its user triton-server is uid 1000 (build.py). The TensorFlow backend was removed
  // in 25.03 (triton-inference-server/server#8113), so Triton no longer serves tensorflow models.
  // Not built here (NGC base image, GPU): checked against its build files, not run.
  triton: {
    image: 'nvcr.io/nvidia/tritonserver:25.10-py3',
    formats: ['onnx', 'pytorch'],
    args: ({ port }) => ['tritonserver', `--model-repository=${modelMountPath}`, `--http-port=${port}`, '--grpc-port=9000', '--metrics-port=8002', '--strict-readiness=true'],
    env: () => [],
    port: 8080,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    metricsPath: '/metrics',
    metricsPort: 8002,
    startupTimeoutSeconds: 600,
    readOnlyRootFilesystem: true,
    sharedMemory: true,
  },
  // vLLM v0.11.0 (docker/Dockerfile): ENTRYPOINT python3 -m vllm.entrypoints.openai.api_server, so the
  // args are its flags. The image has no passwd entry for uid 1000 and torch's cache directory calls
  // getpass.getuser(), which fails without USER (vllm-project/vllm#44548). Proven on a real node
  // (test/e2e/llm.test.ts) with vLLM 0.11.0 built for CPU under this image name (docs/images.md): Ready,
  // an OpenAI completion, and the vllm:* series the autoscaling signals query.
  vllm: {
    image: 'docker.io/vllm/vllm-openai:v0.11.0',
    formats: ['huggingface'],
    args: ({ modelName, port }) => ['--model', modelMountPath, '--served-model-name', modelName, '--port', String(port)],
    env: () => [{ name: 'HF_HUB_OFFLINE', value: '1' }, { name: 'USER', value: 'modelship' }, { name: 'VLLM_NO_USAGE_STATS', value: '1' }, { name: 'DO_NOT_TRACK', value: '1' }],
    port: 8080,
    protocol: 'openai',
    readinessPath: '/health',
    metricsPath: '/metrics',
    startupTimeoutSeconds: 1800,
    readOnlyRootFilesystem: false,
    sharedMemory: true,
  },
  // TorchServe 0.12.0-cpu (docker/Dockerfile, dockerd-entrypoint.sh): for any first argument but `serve`
  // the entrypoint runs `eval "$@"` and then `tail -f /dev/null`, so the command is one string that runs
  // torchserve and ends with it (a server that exits then ends the container). TS_* variables are
  // ignored unless enable_envvars_config=true, and /metrics is empty unless metrics_mode=prometheus, so
  // the config is written to /tmp at start; the management API stays on loopback. The torchserve
  // wrapper ignores SIGTERM, so the shell traps it and stops the server with `torchserve --stop`. Every
  // write goes to TEMP and LOG_LOCATION under /tmp, so the root stays read-only. User model-server is
  // uid 1000. /ping answers Healthy before the first model has loaded, so a pod can be ready while its
  // model is still loading. Proven on a real node (test/e2e/serving.test.ts) with an image built from
  // Debian's CPU torch (docs/images.md).
  torchserve: {
    image: 'docker.io/pytorch/torchserve:0.12.0-cpu',
    formats: ['pytorch'],
    args: ({ port }) => [[
      `printf '%s\\n' inference_address=http://0.0.0.0:${port} management_address=http://127.0.0.1:8081`,
      'metrics_address=http://0.0.0.0:8082 metrics_mode=prometheus default_workers_per_model=1 > /tmp/config.properties;',
      "trap 'torchserve --stop; exit 143' TERM;",
      `torchserve --foreground --ts-config /tmp/config.properties --model-store ${modelMountPath} --models all --ncs --disable-token-auth & wait $!; exit $?`,
    ].join(' ')],
    env: () => [{ name: 'TEMP', value: '/tmp' }, { name: 'LOG_LOCATION', value: '/tmp/logs' }, { name: 'METRICS_LOCATION', value: '/tmp/logs' }],
    port: 8080,
    protocol: 'custom',
    readinessPath: '/ping',
    metricsPath: '/metrics',
    metricsPort: 8082,
    startupTimeoutSeconds: 600,
    readOnlyRootFilesystem: true,
    sharedMemory: false,
  },
  // TGI 3.3.6 (Dockerfile, tgi-entrypoint.sh): ENTRYPOINT execs text-generation-launcher with the args;
  // the image sets HF_HOME=/data and PORT=80, and the launcher binds HOSTNAME (the pod name) unless told.
  // Its Python lives under /root (mode 0700), so the image as published cannot start as a non-root user
  // (huggingface/text-generation-inference#3082); use an image that makes /root traversable. Only
  // safetensors weights load from a read-only model directory. Not built here (CUDA): not run.
  tgi: {
    image: 'ghcr.io/huggingface/text-generation-inference:3.3.6',
    formats: ['huggingface'],
    args: ({ port }) => ['--model-id', modelMountPath, '--hostname', '0.0.0.0', '--port', String(port), '--usage-stats', 'off'],
    env: () => [{ name: 'HF_HUB_OFFLINE', value: '1' }, { name: 'HF_HOME', value: '/tmp/hf' }, { name: 'USER', value: 'modelship' }],
    port: 8080,
    protocol: 'openai',
    readinessPath: '/health',
    metricsPath: '/metrics',
    startupTimeoutSeconds: 1800,
    readOnlyRootFilesystem: false,
    sharedMemory: true,
  },
  custom: {
    image: '',
    formats: ['sklearn', 'xgboost', 'lightgbm', 'onnx', 'pytorch', 'tensorflow', 'huggingface', 'custom'],
    args: () => [],
    env: () => [],
    port: 8080,
    protocol: 'custom',
    readinessPath: '/',
    metricsPath: '/metrics',
    startupTimeoutSeconds: 600,
    readOnlyRootFilesystem: false,
    sharedMemory: false,
  },
};

/**
 * Loading budgets by model size, when the spec gives one (model.sizeLimit bounds what is downloaded,
 * so it is the size to plan for). A server reads weights from local disk into memory or GPUs at
 * 100 MiB/s or better, and the fetcher downloads at 50 MiB/s or better from a store in the same
 * region: 10 and 20 seconds per GiB. A preset's own startup timeout is the floor, as servers spend
 * fixed time too (CUDA graphs, compilation). The startup probe counts load time only (it starts
 * after the fetcher has finished); the progress deadline covers the download as well.
 */
export const loadSecondsPerGiB = 10;
export const downloadSecondsPerGiB = 20;

/** GiB of a size in whole Mi, Gi or Ti (model.sizeLimit's form), rounded up. */
export function sizeInGiB(size: string | undefined): number | undefined {
  const m = size ? /^([1-9][0-9]*)(Mi|Gi|Ti)$/.exec(size) : null;
  if (!m) return undefined;
  const n = Number(m[1]);
  return m[2] === 'Mi' ? Math.ceil(n / 1024) : m[2] === 'Gi' ? n : n * 1024;
}

export function startupBudgetSeconds(preset: Preset, size: string | undefined): number {
  const gib = sizeInGiB(size);
  return gib === undefined ? preset.startupTimeoutSeconds : Math.max(preset.startupTimeoutSeconds, 120 + loadSecondsPerGiB * gib);
}

export function downloadBudgetSeconds(size: string | undefined): number {
  return downloadSecondsPerGiB * (sizeInGiB(size) ?? 0);
}

export const defaultPresetForFormat: Record<ModelFormat, PresetName> = {
  sklearn: 'mlserver',
  xgboost: 'mlserver',
  lightgbm: 'mlserver',
  onnx: 'triton',
  // No preset serves TensorFlow since Triton dropped it: runtime.image names the server (e.g. TF Serving).
  tensorflow: 'custom',
  pytorch: 'torchserve',
  huggingface: 'vllm',
  custom: 'custom',
};
