// The event recorder: one Event per distinct event, repeats as a series on it (client-go's events
// recorder), written at once for the first repeat and then at most every 30 s.
import test from 'ava';
import { EventRecorder, seriesFlushMs, seriesWindowMs } from '../../operator/runtime/events.js';
import type { KubeClient, KubeObject } from '../../operator/runtime/kube.js';
import { createLogger } from '../../operator/runtime/logger.js';

interface Call { verb: 'create' | 'patch'; name: string; body: any }

function recorder(start = Date.parse('2026-11-30T10:00:00Z')) {
  const calls: Call[] = [];
  let now = start;
  const client = {
    create: async (_type: unknown, obj: any) => { calls.push({ verb: 'create', name: obj.metadata.name, body: obj }); return obj; },
    mergePatch: async (_type: unknown, _ns: string, name: string, patch: unknown) => { calls.push({ verb: 'patch', name, body: patch }); return {}; },
  } as unknown as KubeClient;
  const events = new EventRecorder(client, 'modelship.io/operator', 'test', createLogger('error'), () => now);
  return { events, calls, advance: (ms: number) => { now += ms; } };
}

const md = (name: string): KubeObject => ({ apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', metadata: { name, namespace: 'ml', uid: `uid-${name}` } });

test('distinct events are each one Event', async (t) => {
  const { events, calls } = recorder();
  await events.emit(md('a'), 'Normal', 'RolloutStarted', 'Reconcile', 'rolling out abc');
  await events.emit(md('a'), 'Normal', 'Promoted', 'Reconcile', 'revision abc is serving');
  await events.emit(md('b'), 'Normal', 'Promoted', 'Reconcile', 'revision abc is serving');
  t.deepEqual(calls.map((c) => c.verb), ['create', 'create', 'create']);
  t.is(calls[0]!.body.regarding.uid, 'uid-a');
  t.is(calls[0]!.body.series, undefined);
});

test('a repeat within 6 minutes is a series on the first Event: the first repeat at once, the rest counted and flushed together', async (t) => {
  const { events, calls, advance } = recorder();
  const ignored = () => events.emit(md('a'), 'Warning', 'OperationIgnored', 'Reconcile', 'promote deadbeef: ignored: the canary is abc');
  await ignored();
  advance(1_000);
  await ignored();
  t.deepEqual(calls.map((c) => c.verb), ['create', 'patch']);
  t.is(calls[1]!.name, calls[0]!.name, 'the series is written on the first Event');
  t.is(calls[1]!.body.series.count, 2);
  t.regex(calls[1]!.body.series.lastObservedTime, /^2026-11-30T10:00:01\.000000Z$/);
  for (let i = 0; i < 8; i++) { advance(1_000); await ignored(); }
  t.is(calls.length, 2, 'later repeats wait for the flush');
  await events.flush();
  t.is(calls.length, 3);
  t.is(calls[2]!.body.series.count, 10);
  await events.flush();
  t.is(calls.length, 3, 'nothing new, nothing written');
  t.true(seriesFlushMs <= 30_000);
});

test('after 6 quiet minutes the same event is a new Event; the map of series stays bounded', async (t) => {
  const { events, calls, advance } = recorder();
  await events.emit(md('a'), 'Warning', 'CrashLoopBackOff', 'Reconcile', 'canary crash-looping');
  advance(seriesWindowMs + 1);
  await events.emit(md('a'), 'Warning', 'CrashLoopBackOff', 'Reconcile', 'canary crash-looping');
  t.deepEqual(calls.map((c) => c.verb), ['create', 'create']);
  // 5,000 distinct objects: still one Event each, and the recorder forgets the oldest series.
  for (let i = 0; i < 5_000; i++) await events.emit(md(`m${i}`), 'Normal', 'Promoted', 'Reconcile', 'serving');
  t.is(calls.filter((c) => c.verb === 'create').length, 5_002);
  await events.emit(md('m0'), 'Normal', 'Promoted', 'Reconcile', 'serving');
  t.is(calls.at(-1)!.verb, 'create', 'the oldest series was forgotten, so its repeat is a new Event');
  await events.emit(md('m4999'), 'Normal', 'Promoted', 'Reconcile', 'serving');
  t.is(calls.at(-1)!.verb, 'patch', 'a recent one is still a series');
});

test('a series whose Event is gone starts again with a new Event', async (t) => {
  const calls: string[] = [];
  const client = {
    create: async () => { calls.push('create'); return {}; },
    mergePatch: async () => { calls.push('patch'); throw new Error('404 NotFound'); },
  } as unknown as KubeClient;
  const events = new EventRecorder(client, 'c', 'i', createLogger('error'));
  for (let i = 0; i < 3; i++) await events.emit(md('a'), 'Normal', 'X', 'Reconcile', 'same');
  t.deepEqual(calls, ['create', 'patch', 'create']);
});
