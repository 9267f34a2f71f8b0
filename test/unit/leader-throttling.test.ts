// Throttling is not a crash: the API client honours Retry-After and backs off as a whole on 429, so a
// throttled apiserver sees one request per Retry-After however many callers wait, and callers get
// their answer once it serves again. Against a local HTTP server that throttles on demand.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, FlowControl, isThrottled, retryAfterMs } from '../../operator/runtime/kube.js';
import { localApiserver } from '../support/local-apiserver.js';

async function server(t: { teardown(fn: () => void): void }, throttle: { on: boolean; retryAfter?: string }) {
  const arrivals: number[] = [];
  const client = await localApiserver(t, (req, res) => {
    arrivals.push(performance.now());
    req.resume();
    if (throttle.on) {
      res.writeHead(429, { 'content-type': 'application/json', ...(throttle.retryAfter ? { 'retry-after': throttle.retryAfter } : {}) })
        .end('{"kind":"Status","reason":"TooManyRequests","message":"too many requests, please try again later","code":429}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"metadata":{"name":"x"}}');
  });
  return { arrivals, client };
}

test('Retry-After: delta-seconds and HTTP dates', (t) => {
  t.is(retryAfterMs('3'), 3_000);
  t.is(retryAfterMs(' 0 '), 0);
  t.is(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6_000);
  t.is(retryAfterMs(undefined), undefined);
  t.is(retryAfterMs('soon'), undefined);
});

test('under sustained 429s with Retry-After, the client sends one request per Retry-After, and every caller succeeds once it serves again', async (t) => {
  const throttle = { on: true, retryAfter: '1' };
  const { arrivals, client } = await server(t, throttle);
  const start = performance.now();
  const callers = Array.from({ length: 8 }, () => client.request('GET', '/api/v1/namespaces/ns/services/x', { timeoutMs: 20_000 }));
  await sleep(4_200);
  throttle.on = false;
  const results = await Promise.allSettled(callers);
  t.true(results.every((r) => r.status === 'fulfilled'), 'no caller saw the throttling as an error');
  // The first wave, one request per caller, goes out before the first 429 arrives; after it, one probe per second.
  const afterFirstWave = arrivals.slice(callers.length).filter((at) => at - start < 4_200);
  t.true(afterFirstWave.length <= 5, `${afterFirstWave.length} requests in 4 s of throttling`);
  for (let i = 1; i < afterFirstWave.length; i++) {
    t.true(afterFirstWave[i]! - afterFirstWave[i - 1]! >= 950, `requests ${Math.round(afterFirstWave[i]! - afterFirstWave[i - 1]!)} ms apart`);
  }
  t.true(performance.now() - start < 6_000, 'served soon after the throttling ended');
});

test('without Retry-After the whole client backs off exponentially', async (t) => {
  const throttle = { on: true };
  const { arrivals, client } = await server(t, throttle);
  const call = client.request('GET', '/api', { timeoutMs: 5_000 }).catch((e: unknown) => e);
  await sleep(4_000);
  throttle.on = false;
  await call;
  const gaps = arrivals.slice(1).map((at, i) => at - arrivals[i]!);
  t.true(gaps.length >= 2 && gaps.length <= 4, `${arrivals.length} requests: ${gaps.map(Math.round).join(', ')} ms apart`);
  // 0.5 s, 1 s, 2 s: lower bounds, since a loaded machine only adds to them.
  gaps.forEach((gap, i) => t.true(gap >= 500 * 2 ** i - 50, `each wait doubles: ${gaps.map(Math.round).join(', ')}`));
});

test('a request whose budget ends before the apiserver\'s Retry-After fails at once as throttled, without being sent', async (t) => {
  const throttle = { on: true, retryAfter: '5' };
  const { arrivals, client } = await server(t, throttle);
  const first = await client.request('GET', '/api', { timeoutMs: 1_000 }).catch((e: unknown) => e);
  t.true(isThrottled(first), String(first));
  const sent = arrivals.length;
  const started = performance.now();
  const second = await client.request('PUT', '/api/v1/namespaces/ns/services/x', { timeoutMs: 2_000, body: {} }).catch((e: unknown) => e);
  t.true(second instanceof ApiError && second.code === 429, String(second));
  t.true(performance.now() - started < 100, 'at once: the caller may do better with its time');
  t.is(arrivals.length, sent, 'nothing more was sent');
});

test('flow control: one probe at a time while throttled; the first answer that is not a 429 releases everyone', async (t) => {
  const flow = new FlowControl({ baseBackoffMs: 100, maxBackoffMs: 1_000 }, () => 0);
  const never = new AbortController().signal;
  const first = await flow.admit(never, Infinity);
  first(429, '0');
  t.true(flow.throttled);
  const probe = await flow.admit(never, Infinity);
  let waiterAdmitted = false;
  const waiter = flow.admit(never, Infinity).then((a) => { waiterAdmitted = true; return a; });
  await sleep(20);
  t.false(waiterAdmitted, 'a second request waits for the probe');
  probe(200);
  (await waiter)(200);
  t.true(waiterAdmitted);
  t.false(flow.throttled);
});
