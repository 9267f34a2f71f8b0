// The API client's write fence, against a local HTTP server: outside a leadership term no write leaves
// the process, a write in flight is cut off the moment the term ends, and a reconcile that outlives its
// term is refused even after a new term has begun.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, isFenced, notLeaderError, withRequestSignal, type WriteFence } from '../../operator/runtime/kube.js';
import { localApiserver } from '../support/local-apiserver.js';
import { Resources } from '../../operator/runtime/resources.js';

interface Seen { method: string; closedEarly: boolean }

/** A server that answers at once, or holds requests whose path contains "slow" until they are cut off. */
async function server(t: { teardown(fn: () => void): void }) {
  const seen: Seen[] = [];
  const client = await localApiserver(t, (req, res) => {
    const entry: Seen = { method: req.method ?? '', closedEarly: false };
    seen.push(entry);
    res.on('close', () => { if (!res.writableFinished) entry.closedEarly = true; });
    req.resume();
    if (req.url?.includes('slow')) return;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"metadata":{"name":"x"}}');
  });
  return { seen, client };
}

class Terms implements WriteFence {
  private current: AbortController | undefined;
  get term() {
    return this.current?.signal.aborted ? undefined : this.current?.signal;
  }
  begin(): AbortSignal {
    this.current = new AbortController();
    return this.current.signal;
  }
  end(): void {
    this.current?.abort(notLeaderError('the lease was not renewed within the renew deadline'));
  }
}

const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x', namespace: 'ns' } };

test('outside a term, writes are refused before they are sent; reads go on', async (t) => {
  const { seen, client } = await server(t);
  const terms = new Terms();
  client.fenceWrites(terms);
  for (const write of [
    () => client.apply(Resources.Service, svc, 'modelship'),
    () => client.create(Resources.Service, svc),
    () => client.replace(Resources.Service, svc),
    () => client.mergePatch(Resources.Service, 'ns', 'x', {}),
    () => client.delete(Resources.Service, 'ns', 'x'),
  ]) {
    const err = await t.throwsAsync(write(), { instanceOf: ApiError });
    t.true(isFenced(err), err?.message);
  }
  t.is(seen.length, 0, 'nothing reached the server');
  await client.get(Resources.Service, 'ns', 'x');
  t.deepEqual(seen.map((s) => s.method), ['GET']);
  terms.begin();
  await client.apply(Resources.Service, svc, 'modelship');
  t.is(seen.at(-1)?.method, 'PATCH', 'a term lets writes through');
});

test('a write in flight when the term ends is cut off at once', async (t) => {
  const { seen, client } = await server(t);
  const terms = new Terms();
  client.fenceWrites(terms);
  terms.begin();
  const slow = client.request('PATCH', '/api/v1/namespaces/ns/services/slow', { body: {}, contentType: 'application/merge-patch+json' });
  await sleep(100);
  const endedAt = performance.now();
  terms.end();
  const err = await t.throwsAsync(slow, { instanceOf: ApiError });
  t.true(performance.now() - endedAt < 100, 'at once, not at the request timeout');
  t.true(isFenced(err), `reported as fenced: ${err?.message}`);
  await sleep(50);
  t.true(seen[0]?.closedEarly, 'the connection under the write was closed, so the server never answers it');
});

test('a reconcile scoped to an ended term can neither read nor write, even once a new term has begun', async (t) => {
  const { seen, client } = await server(t);
  const terms = new Terms();
  client.fenceWrites(terms);
  const first = terms.begin();
  let resume: () => void = () => undefined;
  const gate = new Promise<void>((r) => { resume = r; });
  const stale = withRequestSignal(first, async () => {
    await gate;
    const read = await client.get(Resources.Service, 'ns', 'x').then(() => 'sent', (e: unknown) => e);
    const write = await client.apply(Resources.Service, svc, 'modelship').then(() => 'sent', (e: unknown) => e);
    return { read, write };
  });
  terms.end();
  terms.begin();
  resume();
  const { read, write } = await stale;
  t.true(isFenced(read), 'the read was refused');
  t.true(isFenced(write), 'the write was refused although a term is open');
  t.is(seen.length, 0);
  // In-flight reads of the scope are cut off too.
  const second = terms.term!;
  const slowRead = withRequestSignal(second, () => client.request('GET', '/api/v1/namespaces/ns/services/slow'));
  await sleep(50);
  terms.end();
  t.true(isFenced(await slowRead.catch((e: unknown) => e)));
});
