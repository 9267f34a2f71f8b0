// Small builders with functional options for ModelDeployments in tests (no YAML blobs).
import type { ModelDeployment, ModelDeploymentSpec } from '../../operator/api/generated.js';

export type Option = (md: ModelDeployment) => void;

export function modelDeployment(name: string, namespace: string, ...opts: Option[]): ModelDeployment {
  const md: ModelDeployment = {
    apiVersion: 'modelship.io/v1alpha1',
    kind: 'ModelDeployment',
    metadata: { name, namespace },
    spec: {
      model: { uri: 'https://models.example.com/iris/v1/model.joblib', version: '1', format: 'sklearn' },
      replicas: 1,
    },
  };
  for (const opt of opts) opt(md);
  return md;
}

export const withReplicas = (replicas: number): Option => (md) => { md.spec.replicas = replicas; };
export const withVersion = (version: string, uri?: string): Option => (md) => {
  md.spec.model.version = version;
  if (uri) md.spec.model.uri = uri;
};
export const withSpec = (patch: Partial<ModelDeploymentSpec>): Option => (md) => { Object.assign(md.spec, patch); };
export const withGpus = (gpus: number): Option => (md) => {
  md.spec.model = { ...md.spec.model, format: 'huggingface', uri: 'hf://example/tiny-llm' };
  md.spec.resources = { limits: { 'nvidia.com/gpu': gpus } };
};
/** Sets a container variable of the model server (a revision change: KWOK_FAULT rides on it). */
export const withEnv = (name: string, value: string): Option => (md) => {
  const env = (md.spec.runtime?.env ?? []).filter((e) => e.name !== name);
  md.spec.runtime = { ...md.spec.runtime, env: [...env, { name, value }] };
};
