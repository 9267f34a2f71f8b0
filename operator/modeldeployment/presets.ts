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
  env: (ctx: { modelName: string; format: ModelFormat | undefined }) => { name: string; value: string }[];
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
  mlserver: {
    image: 'docker.io/seldonio/mlserver:1.7.1',
    formats: ['sklearn', 'xgboost', 'lightgbm'],
    args: () => [],
    env: ({ modelName, format }) => [
      { name: 'MLSERVER_MODEL_NAME', value: modelName },
      { name: 'MLSERVER_MODEL_URI', value: modelMountPath },
      { name: 'MLSERVER_MODEL_IMPLEMENTATION', value: (format && mlserverImplementations[format]) ?? 'mlserver_sklearn.SKLearnModel' },
      { name: 'MLSERVER_HTTP_PORT', value: '8080' },
      { name: 'MLSERVER_GRPC_PORT', value: '9000' },
      { name: 'MLSERVER_METRICS_PORT', value: '8082' },
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
  triton: {
    image: 'nvcr.io/nvidia/tritonserver:25.10-py3',
    formats: ['onnx', 'tensorflow', 'pytorch'],
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
  vllm: {
    image: 'docker.io/vllm/vllm-openai:v0.11.0',
    formats: ['huggingface'],
    args: ({ modelName, port }) => ['--model', modelMountPath, '--served-model-name', modelName, '--port', String(port)],
    env: () => [{ name: 'HF_HUB_OFFLINE', value: '1' }],
    port: 8080,
    protocol: 'openai',
    readinessPath: '/health',
    metricsPath: '/metrics',
    startupTimeoutSeconds: 1800,
    readOnlyRootFilesystem: false,
    sharedMemory: true,
  },
  torchserve: {
    image: 'docker.io/pytorch/torchserve:0.12.0-cpu',
    formats: ['pytorch'],
    args: () => ['torchserve', '--foreground', '--model-store', modelMountPath, '--models', 'all', '--disable-token-auth'],
    env: () => [{ name: 'TS_INFERENCE_ADDRESS', value: 'http://0.0.0.0:8080' }, { name: 'TS_METRICS_ADDRESS', value: 'http://0.0.0.0:8082' }],
    port: 8080,
    protocol: 'custom',
    readinessPath: '/ping',
    metricsPath: '/metrics',
    metricsPort: 8082,
    startupTimeoutSeconds: 600,
    readOnlyRootFilesystem: false,
    sharedMemory: false,
  },
  tgi: {
    image: 'ghcr.io/huggingface/text-generation-inference:3.3.6',
    formats: ['huggingface'],
    args: ({ port }) => ['--model-id', modelMountPath, '--port', String(port)],
    env: () => [{ name: 'HF_HUB_OFFLINE', value: '1' }],
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

export const defaultPresetForFormat: Record<ModelFormat, PresetName> = {
  sklearn: 'mlserver',
  xgboost: 'mlserver',
  lightgbm: 'mlserver',
  onnx: 'triton',
  tensorflow: 'triton',
  pytorch: 'torchserve',
  huggingface: 'vllm',
  custom: 'custom',
};
