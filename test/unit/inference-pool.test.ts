// The InferencePool router: the pools, the route's pool backends, the picker reference, and the specs
// it cannot serve.
import test from 'ava';
import type { ModelDeployment } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { desiredHttpRoute, routeCanaryWeight } from '../../operator/modeldeployment/desired/httproute.js';
import { desiredInferencePool, endpointPickerProblem, parseEndpointPicker } from '../../operator/modeldeployment/desired/inferencepool.js';
import { plan, type Observations } from '../../operator/modeldeployment/plan.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';

const now = new Date('2026-11-30T10:00:00Z');
const picker = parseEndpointPicker('{pool}-epp:9002');

function md(...opts: ReturnType<typeof withSpec>[]): ModelDeployment {
  const m = modelDeployment('chat', 'llm', withSpec({ traffic: { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }], canaryHeader: { name: 'x-canary', value: 'on' } } } }), ...opts);
  m.metadata = { ...m.metadata, uid: 'u1', generation: 1 };
  return m;
}

test('each pool selects one revision on its server port and names its own picker', (t) => {
  const pool = desiredInferencePool(md(), 'canary', 'h2', 8000, picker) as any;
  t.like(pool, { apiVersion: 'inference.networking.k8s.io/v1', kind: 'InferencePool', metadata: { name: 'chat-canary', namespace: 'llm', labels: { 'modelship.io/role': 'canary' } } });
  t.deepEqual(pool.spec.selector, { matchLabels: { 'app.kubernetes.io/instance': 'chat', 'app.kubernetes.io/managed-by': 'modelship', 'modelship.io/revision': 'h2' } });
  t.deepEqual(pool.spec.targetPorts, [{ number: 8000 }]);
  t.deepEqual(pool.spec.endpointPickerRef, { kind: 'Service', name: 'chat-canary-epp', port: { number: 9002 }, failureMode: 'FailClose' });
  t.is(pool.metadata.ownerReferences[0].uid, 'u1');
});

test('the spec\'s picker wins over the default, a fixed name is kept, and no picker at all is allowed', (t) => {
  const own = md(withSpec({ traffic: { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }] }, inferencePool: { endpointPicker: { name: 'shared-epp', port: 9100, failureMode: 'FailOpen' } } } }));
  t.deepEqual((desiredInferencePool(own, 'stable', 'h1', 8080, picker) as any).spec.endpointPickerRef, { kind: 'Service', name: 'shared-epp', port: { number: 9100 }, failureMode: 'FailOpen' });
  t.is((desiredInferencePool(md(), 'stable', 'h1', 8080, undefined) as any).spec.endpointPickerRef, undefined);
});

test('the route splits weight between the pools; mirrors and tagged requests go to the canary', (t) => {
  const route = desiredHttpRoute(md(), { canaryWeight: 30, mirrorPercent: 0, canaryReady: true }) as any;
  t.deepEqual(route.spec.rules.at(-1).backendRefs, [
    { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'chat-stable', weight: 70 },
    { group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'chat-canary', weight: 30 },
  ]);
  t.deepEqual(route.spec.rules[0].backendRefs, [{ group: 'inference.networking.k8s.io', kind: 'InferencePool', name: 'chat-canary', weight: 1 }]);
  t.is(routeCanaryWeight(route, 'chat'), 30);
  const shadow = desiredHttpRoute(md(), { canaryWeight: 0, mirrorPercent: 40, canaryReady: true }) as any;
  // Mirroring to a pool is not part of the Gateway API: the copy goes to the canary's Service.
  t.like(shadow.spec.rules.at(-1).filters[0], { type: 'RequestMirror', requestMirror: { backendRef: { kind: 'Service', name: 'chat-canary' }, percent: 40 } });
});

test('--inference-pool-endpoint-picker: name:port[:mode], {pool} allowed, anything else refused', (t) => {
  t.deepEqual(parseEndpointPicker('epp:9002:FailOpen'), { name: 'epp', port: 9002, failureMode: 'FailOpen' });
  t.is(parseEndpointPicker(''), undefined);
  for (const bad of ['epp', 'epp:0', 'epp:70000', 'EPP:9002', 'epp:9002:Maybe', '{other}-epp:9002']) t.throws(() => parseEndpointPicker(bad), undefined, bad);
});

test('a picker name that gives no Service name for a pool is a spec problem', (t) => {
  const long = md(withSpec({ traffic: { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }] }, inferencePool: { endpointPicker: { name: `{pool}-${'x'.repeat(55)}`, port: 9002 } } } }));
  t.regex(endpointPickerProblem(long, picker) ?? '', /for the stable pool, which is not a Service name/);
  t.is(endpointPickerProblem(md(), picker), undefined);
});

const obs = (): Observations => ({ deployments: new Map(), pods: [] });

test('plan: pools and the route for a serving revision; InvalidSpec without the CRDs, nothing applied', (t) => {
  const m = md(withReplicas(2));
  const hash = revisionHash(m.spec);
  m.status = { stableRevision: { hash, modelVersion: '1' }, observedGeneration: 1 };
  const dep: KubeObject = {
    metadata: { name: `chat-${hash}`, namespace: 'llm', generation: 1, labels: { 'modelship.io/revision': hash } },
    spec: { replicas: 2 }, status: { readyReplicas: 2, updatedReplicas: 2, observedGeneration: 1, conditions: [] },
  };
  const served = plan(m, { deployments: new Map([[hash, dep]]), pods: [] }, { fetcherImage: 'op:1', now, gatewayApiAvailable: true, inferencePoolAvailable: true, ...(picker ? { endpointPicker: picker } : {}) });
  const pool = served.apply.find((o) => o.kind === 'InferencePool') as any;
  t.is(pool?.metadata.name, 'chat-stable');
  t.is(pool?.spec.selector.matchLabels['modelship.io/revision'], hash);
  t.truthy(served.apply.find((o) => o.kind === 'HTTPRoute'));
  t.true(served.remove.some((r) => r.kind === 'InferencePool' && r.name === 'chat-canary'), 'no canary: no canary pool');

  const noPools = plan(md(), obs(), { fetcherImage: 'op:1', now, gatewayApiAvailable: true, inferencePoolAvailable: false });
  t.deepEqual(noPools.apply, []);
  t.like(noPools.status.conditions?.find((c) => c.type === 'Ready'), { status: 'False', reason: 'InvalidSpec' });
  t.regex(noPools.events[0]?.message ?? '', /Inference Extension CRDs \(InferencePool/);
  const noGateway = plan(md(), obs(), { fetcherImage: 'op:1', now, gatewayApiAvailable: false, inferencePoolAvailable: true });
  t.regex(noGateway.events[0]?.message ?? '', /traffic.router InferencePool needs the Gateway API CRDs/);
});

test('leaving the InferencePool router removes both pools', (t) => {
  const m = modelDeployment('chat', 'llm', withSpec({ traffic: { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'gw' }] } } }));
  m.metadata = { ...m.metadata, uid: 'u1', generation: 1 };
  const p = plan(m, obs(), { fetcherImage: 'op:1', now, gatewayApiAvailable: true, inferencePoolAvailable: true });
  t.deepEqual(p.remove.filter((r) => r.kind === 'InferencePool').map((r) => r.name).sort(), ['chat-canary', 'chat-stable']);
  t.false(p.apply.some((o) => o.kind === 'InferencePool'));
});
