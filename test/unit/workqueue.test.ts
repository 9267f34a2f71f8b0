import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkQueue, backoffDelay } from '../../operator/runtime/workqueue.js';

test('a key waits in the queue at most once', async (t) => {
  const q = new WorkQueue();
  q.add('a'); q.add('a'); q.add('b'); q.add('a');
  t.is(q.depth, 2);
  t.is(await q.get(), 'a');
  t.is(await q.get(), 'b');
  t.is(q.depth, 0);
});

test('a key added while it is processed is handed out again only after done', async (t) => {
  const q = new WorkQueue();
  q.add('a');
  t.is(await q.get(), 'a');
  q.add('a');
  t.is(q.depth, 0, 'not queued while a worker holds it: no two workers on one key');
  q.done('a');
  t.is(q.depth, 1);
  t.is(await q.get(), 'a');
  q.done('a');
  t.is(q.depth, 0);
});

test('a waiting worker gets a key as soon as it is added', async (t) => {
  const q = new WorkQueue();
  const next = q.get();
  q.add('x');
  t.is(await next, 'x');
});

test('backoff doubles from 5 ms and caps at 1000 s', (t) => {
  t.is(backoffDelay(0), 0);
  t.is(backoffDelay(1), 5);
  t.is(backoffDelay(2), 10);
  t.is(backoffDelay(5), 80);
  t.is(backoffDelay(30), 1_000_000);
  t.is(backoffDelay(1000), 1_000_000);
});

test('addRateLimited backs off per key and forget resets it', async (t) => {
  const q = new WorkQueue({ baseMs: 10, maxMs: 1000 });
  t.is(q.addRateLimited('a'), 10);
  t.is(q.addRateLimited('a'), 20);
  t.is(q.addRateLimited('b'), 10);
  t.is(q.failureCount('a'), 2);
  q.forget('a');
  t.is(q.failureCount('a'), 0);
  t.is(q.addRateLimited('a'), 10);
  q.shutDown();
});

test('addAfter keeps the earliest timer and delivers the key once', async (t) => {
  const q = new WorkQueue();
  q.addAfter('a', 200);
  q.addAfter('a', 20);
  q.addAfter('a', 500);
  const started = Date.now();
  t.is(await q.get(), 'a');
  t.true(Date.now() - started < 150, 'the 20 ms timer won');
  q.done('a');
  await sleep(250);
  t.is(q.depth, 0, 'the later timers were replaced, not kept');
});

test('shutDown releases waiting workers', async (t) => {
  const q = new WorkQueue();
  const next = q.get();
  q.shutDown();
  t.is(await next, undefined);
  q.add('a');
  t.is(q.depth, 0);
});

test('latency and depth are reported', async (t) => {
  let now = 1000;
  const latencies: number[] = [];
  const depths: number[] = [];
  const q = new WorkQueue(undefined, { onLatency: (ms) => latencies.push(ms), onDepth: (d) => depths.push(d) }, () => now);
  q.add('a');
  now = 1250;
  await q.get();
  t.deepEqual(latencies, [250]);
  t.deepEqual(depths, [1, 0]);
});
