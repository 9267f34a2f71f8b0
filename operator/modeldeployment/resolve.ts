// Turns a spec into the fully resolved runtime the builders use, or into the reasons it cannot be
// served. Pure: the CRD already rejected what it can check statically; this catches what only the
// operator knows (which presets exist, what they can load, what a URI really means).
import type { ModelDeploymentSpec } from '../api/generated.js';
import { defaultPresetForFormat, downloadBudgetSeconds, presets, startupBudgetSeconds, type PresetName, type Protocol } from './presets.js';

export interface ResolvedRuntime {
  preset: PresetName;
  image: string;
  args: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
  port: number;
  protocol: Protocol;
  readinessPath: string;
  metricsPath: string;
  metricsPort: number;
  startupTimeoutSeconds: number;
  /** Seconds the download may take, by model size when known (presets.ts); 0 when unknown. */
  downloadBudgetSeconds: number;
  readOnlyRootFilesystem: boolean;
  sharedMemory: boolean;
  gpus: number;
  /**
   * The digest the model is held to: spec.model.digest, or else the one an oci:// URI is pinned to
   * (…@sha256:<hex>), which is what the kubelet pulls. The one to record in status and history.
   */
  modelDigest?: string;
}

export type Resolution = { ok: true; runtime: ResolvedRuntime } | { ok: false; problems: string[] };

export function modelUriProblem(uri: string): string | undefined {
  const scheme = uri.slice(0, uri.indexOf('://'));
  const rest = uri.slice(scheme.length + 3);
  const [authority = '', ...pathParts] = rest.split('/');
  const path = pathParts.join('/');
  switch (scheme) {
    case 's3':
    case 'gs':
      if (!/^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/.test(authority)) return `model.uri ${uri}: "${authority}" is not a valid bucket name`;
      return undefined;
    case 'https': {
      try {
        const u = new URL(uri);
        if (!u.hostname) return `model.uri ${uri}: no host`;
      } catch {
        return `model.uri ${uri}: not a valid URL`;
      }
      return undefined;
    }
    case 'hf': {
      const [repo = '', revision] = rest.split('@');
      if (!/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo)) return `model.uri ${uri}: expected hf://organisation/repository[@revision]`;
      if (revision !== undefined && !/^[\w.\-/]{1,128}$/.test(revision)) return `model.uri ${uri}: "${revision}" is not a valid revision`;
      return undefined;
    }
    case 'pvc':
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(authority) || authority.length > 253) return `model.uri ${uri}: "${authority}" is not a valid PersistentVolumeClaim name`;
      if (path.split('/').includes('..')) return `model.uri ${uri}: the path must not contain ".."`;
      return undefined;
    case 'oci':
      if (!/^[a-z0-9.-]+(:[0-9]+)?(\/[a-z0-9._-]+)+(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$/.test(rest)) {
        return `model.uri ${uri}: not a valid OCI image reference`;
      }
      return undefined;
    default:
      return `model.uri ${uri}: unsupported scheme ${scheme}`;
  }
}

/** The digest a model URI is pinned to (oci://registry/repo[:tag]@sha256:<hex>), if any. */
export function modelUriDigest(uri: string): string | undefined {
  return uri.startsWith('oci://') ? /@(sha256:[a-f0-9]{64})$/.exec(uri)?.[1] : undefined;
}

/**
 * The model's digest once URI and spec agree: spec.model.digest, or the URI's own. A URI pinned to one
 * digest and a model.digest naming another is a problem, since the kubelet would pull the URI's while
 * status and history record the spec's.
 */
export function resolveModelDigest(model: Pick<ModelDeploymentSpec['model'], 'uri' | 'digest'>): { digest?: string; problem?: string } {
  const pinned = modelUriDigest(model.uri);
  if (pinned && model.digest && pinned !== model.digest) {
    return { problem: `model.digest ${model.digest} does not match the digest model.uri is pinned to, ${pinned}: set them equal or leave model.digest unset` };
  }
  const digest = model.digest ?? pinned;
  return digest ? { digest } : {};
}

function quantityToNumber(q: string | number | undefined): number {
  if (q === undefined) return 0;
  return typeof q === 'number' ? q : Number.parseFloat(q);
}

export function resolveRuntime(spec: ModelDeploymentSpec, modelName: string): Resolution {
  const problems: string[] = [];
  const format = spec.model.format;
  const runtime = spec.runtime ?? {};
  const uriProblem = modelUriProblem(spec.model.uri);
  if (uriProblem) problems.push(uriProblem);
  const modelDigest = resolveModelDigest(spec.model);
  if (modelDigest.problem) problems.push(modelDigest.problem);

  const presetName: PresetName | undefined = runtime.preset ?? (format ? defaultPresetForFormat[format] : undefined);
  if (!presetName) {
    problems.push('set model.format or runtime.preset: the operator cannot tell which server loads this model');
    return { ok: false, problems };
  }
  const preset = presets[presetName];
  if (format && !preset.formats.includes(format)) {
    const fits = (Object.keys(presets) as PresetName[]).filter((p) => p !== 'custom' && presets[p].formats.includes(format));
    problems.push(`runtime preset ${presetName} cannot serve ${format} models${fits.length ? `; use ${fits.join(' or ')}` : ''}, or custom with your own image`);
  }
  const image = runtime.image ?? preset.image;
  if (!image) problems.push(`the ${presetName} preset has no default image: set runtime.image`);

  const requests = spec.resources?.requests ?? {};
  const limits = spec.resources?.limits ?? {};
  const gpuRequest = requests['nvidia.com/gpu'];
  const gpuLimit = limits['nvidia.com/gpu'];
  if (gpuRequest !== undefined && gpuLimit !== undefined && String(gpuRequest) !== String(gpuLimit)) {
    problems.push('resources: nvidia.com/gpu requests and limits must be equal (GPUs cannot be overcommitted)');
  }
  const gpus = quantityToNumber(gpuLimit ?? gpuRequest);
  if (!Number.isInteger(gpus) || gpus < 0) problems.push('resources: nvidia.com/gpu must be a whole number of GPUs');
  for (const [name, value] of Object.entries(limits)) {
    const request = requests[name];
    if (request !== undefined && name !== 'nvidia.com/gpu' && compareQuantities(String(request), String(value)) > 0) {
      problems.push(`resources: the ${name} request ${request} exceeds its limit ${value}`);
    }
  }
  const port = runtime.port ?? preset.port;
  const metricsPort = preset.metricsPort ?? port;
  if (runtime.port !== undefined && preset.metricsPort === runtime.port) {
    problems.push(`runtime.port ${runtime.port} clashes with the ${presetName} metrics port`);
  }
  if (problems.length) return { ok: false, problems };

  const ctx = { modelName, modelVersion: spec.model.version, port, format };
  const presetEnv = preset.env(ctx).filter((e) => !(runtime.env ?? []).some((u) => u.name === e.name));
  return {
    ok: true,
    runtime: {
      preset: presetName,
      image,
      args: runtime.args ?? preset.args(ctx),
      env: [...presetEnv, ...(runtime.env ?? [])],
      port,
      protocol: runtime.protocol ?? preset.protocol,
      readinessPath: runtime.readinessPath ?? preset.readinessPath,
      metricsPath: runtime.metricsPath ?? preset.metricsPath,
      metricsPort,
      startupTimeoutSeconds: runtime.startupTimeoutSeconds ?? startupBudgetSeconds(preset, spec.model.sizeLimit),
      // A model mounted from a claim is not downloaded.
      downloadBudgetSeconds: spec.model.uri.startsWith('pvc://') ? 0 : downloadBudgetSeconds(spec.model.sizeLimit),
      readOnlyRootFilesystem: preset.readOnlyRootFilesystem,
      sharedMemory: preset.sharedMemory,
      gpus,
      ...(modelDigest.digest ? { modelDigest: modelDigest.digest } : {}),
    },
  };
}

const suffixes: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** Parses a Kubernetes quantity ("500m", "2Gi", "1e3") to a number; NaN when malformed. */
export function parseQuantity(q: string): number {
  const m = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:([eE][+-]?\d+)|([KMGTPE]i|[numkMGTPE])?)$/.exec(q.trim());
  if (!m) return Number.NaN;
  const base = Number.parseFloat(m[1]! + (m[2] ?? ''));
  return base * (suffixes[m[3] ?? ''] ?? 1);
}

export function compareQuantities(a: string, b: string): number {
  return parseQuantity(a) - parseQuantity(b);
}
