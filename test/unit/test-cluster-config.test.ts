// The harness's static configuration: the KWOK stage set, the fake node pool, and the PKI it keeps.
import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { fakeNode, nodePool, gpuTaint } from '../cluster/nodes.js';
import { certificateServes, ensureServingIdentity } from '../cluster/pki.js';

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

test('the model store\'s certificate is issued again when the host\'s address changed or it is about to expire', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'store-pki-'));
  const first = ensureServingIdentity(dir, ['10.213.36.1', '127.0.0.1']);
  const pem = readFileSync(first.cert, 'utf8');
  t.true(certificateServes(pem, ['10.213.36.1', '127.0.0.1']));
  ensureServingIdentity(dir, ['10.213.36.1', '127.0.0.1']);
  t.is(readFileSync(first.cert, 'utf8'), pem, 'the same addresses keep the certificate');
  const again = ensureServingIdentity(dir, ['10.213.138.1', '127.0.0.1']);
  t.not(readFileSync(again.cert, 'utf8'), pem);
  t.true(certificateServes(readFileSync(again.cert), ['10.213.138.1', '127.0.0.1']), 'the new address is in the new certificate');
  t.false(certificateServes(readFileSync(again.cert), ['10.213.36.1']), 'the old one is not');
  t.false(certificateServes(readFileSync(again.cert), ['10.213.138.1'], new Date(Date.now() + 30 * 86_400_000)), 'nor is a certificate past its last day');
});
