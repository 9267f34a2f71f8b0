// The harness's static configuration: the KWOK stage set and the fake node pool.
import test from 'ava';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { fakeNode, nodePool, gpuTaint } from '../cluster/nodes.js';

interface Stage {
  kind: string;
  metadata?: { name: string };
  spec?: { weight?: number; selector?: { matchLabels?: Record<string, string>; matchAnnotations?: Record<string, string> } };
}

const docs = yaml.loadAll(readFileSync(new URL('../cluster/kwok-stages.yaml', import.meta.url), 'utf8')) as Stage[];
const stages = docs.filter((d) => d.kind === 'Stage');

test('the KWOK config carries the standard fast stage set', (t) => {
  t.is(docs[0]?.kind, 'KwokConfiguration');
  const names = stages.map((s) => s.metadata?.name);
  for (const name of ['node-initialize', 'node-heartbeat-with-lease', 'pod-ready', 'pod-complete', 'pod-delete']) {
    t.true(names.includes(name), `missing ${name}`);
  }
});

test('every fault stage is selected by a label or annotation and outweighs the standard stages', (t) => {
  const faults = stages.filter((s) => s.metadata?.name.startsWith('modelship-'));
  t.deepEqual(faults.map((s) => s.metadata?.name).sort(), [
    'modelship-pod-crash-loop', 'modelship-pod-crash-loop-by-env', 'modelship-pod-never-ready', 'modelship-pod-never-ready-by-env',
    'modelship-pod-readiness-lost', 'modelship-pod-readiness-regained',
  ]);
  for (const s of faults) {
    t.true((s.spec?.weight ?? 0) > 0, `${s.metadata?.name} has no weight`);
    const selector = { ...s.spec?.selector?.matchLabels, ...s.spec?.selector?.matchAnnotations };
    const byEnv = (s.spec?.selector as { matchExpressions?: { key: string }[] } | undefined)?.matchExpressions?.some((e) => e.key.includes('"KWOK_FAULT"'));
    t.true(byEnv || Object.keys(selector).some((k) => k.startsWith('kwok.modelship.io/')), `${s.metadata?.name} is not opt-in`);
  }
  for (const s of stages.filter((x) => !x.metadata?.name.startsWith('modelship-'))) {
    t.falsy(s.spec?.weight, `${s.metadata?.name} must keep weight 0 so faults win`);
  }
});

test('GPU nodes advertise nvidia.com/gpu and carry the GPU taint; CPU nodes neither', (t) => {
  const gpu = fakeNode('g', { gpus: 4, maxPods: 110 });
  t.is(gpu.status?.allocatable?.['nvidia.com/gpu'], '4');
  t.deepEqual(gpu.spec?.taints, [{ ...gpuTaint }]);
  const cpu = fakeNode('c', { maxPods: 110 });
  t.is(cpu.status?.allocatable?.['nvidia.com/gpu'], undefined);
  t.falsy(cpu.spec?.taints);
  const pool = nodePool({ cpuNodes: 2, gpuNodes: 1, gpusPerNode: 8, maxPods: 50 });
  t.deepEqual(pool.map((n) => n.metadata?.name), ['kwok-cpu-0', 'kwok-cpu-1', 'kwok-gpu-0']);
  t.is(pool[2]?.status?.capacity?.pods, '50');
});
