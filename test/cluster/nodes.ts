// Fake nodes that kwok manages: CPU nodes, and GPU nodes with allocatable nvidia.com/gpu and the
// taint GPU node pools carry in managed clusters, so only pods that tolerate it land there.
import type { CoreV1Api, V1Node } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';

export interface NodePoolOptions {
  cpuNodes: number;
  gpuNodes: number;
  gpusPerNode: number;
  /** Pods per node; a storm of thousands needs more than the kubelet default of 110. */
  maxPods: number;
}

export const defaultNodePool: NodePoolOptions = { cpuNodes: 3, gpuNodes: 2, gpusPerNode: 2, maxPods: 250 };

export const gpuTaint = { key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' } as const;

export function fakeNode(name: string, opts: { gpus?: number; maxPods: number }): V1Node {
  const capacity: Record<string, string> = { cpu: '64', memory: '512Gi', pods: String(opts.maxPods), 'ephemeral-storage': '1Ti' };
  const labels: Record<string, string> = {
    'kubernetes.io/hostname': name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    type: 'kwok',
  };
  if (opts.gpus) {
    capacity['nvidia.com/gpu'] = String(opts.gpus);
    labels['nvidia.com/gpu.present'] = 'true';
    labels['nvidia.com/gpu.product'] = 'NVIDIA-L4';
  }
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels, annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'kwok.x-k8s.io/node': 'fake' } },
    spec: opts.gpus ? { taints: [{ ...gpuTaint }] } : {},
    status: { capacity, allocatable: capacity },
  };
}

export function nodePool(opts: NodePoolOptions = defaultNodePool): V1Node[] {
  const nodes: V1Node[] = [];
  for (let i = 0; i < opts.cpuNodes; i++) nodes.push(fakeNode(`kwok-cpu-${i}`, { maxPods: opts.maxPods }));
  for (let i = 0; i < opts.gpuNodes; i++) nodes.push(fakeNode(`kwok-gpu-${i}`, { gpus: opts.gpusPerNode, maxPods: opts.maxPods }));
  return nodes;
}

function nodeSchedulable(node: V1Node): boolean {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
  const notReadyTaint = node.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/'));
  return ready && !notReadyTaint;
}

/** Creates the nodes (existing ones are kept) and waits until each is Ready without not-ready taints. */
export async function ensureNodes(core: CoreV1Api, nodes: V1Node[], timeoutMs = 60_000): Promise<void> {
  for (const node of nodes) {
    try {
      await core.createNode({ body: node });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw err;
    }
  }
  const names = new Set(nodes.map((n) => n.metadata!.name!));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = await core.listNode();
    const pending = list.items.filter((n) => names.has(n.metadata!.name!) && !nodeSchedulable(n));
    if (pending.length === 0 && list.items.filter((n) => names.has(n.metadata!.name!)).length === names.size) return;
    if (Date.now() > deadline) {
      throw new Error(`nodes not ready within ${timeoutMs} ms: ${pending.map((n) => n.metadata?.name).join(', ')}`);
    }
    await sleep(250);
  }
}
