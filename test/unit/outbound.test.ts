// The outbound client and the admin's policy, against real sockets: destinations are checked before the
// call and after DNS, redirects are answers, bodies are capped while they stream, and one namespace's
// hung endpoints hold only its own slots.
import test from 'ava';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { FairLimiter, Outbound, OutboundError, defaultOutboundLimits } from '../../operator/runtime/outbound.js';
import { addressAllowed, defaultTenancyPolicy, gatewayProblems, parseAllowList, providerFor, tenantUrlProblem, type TenancyPolicy } from '../../operator/tenancy/policy.js';

async function listen(handler: (res: ServerResponse, path: string) => void, host = '127.0.0.1'): Promise<{ server: Server; url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(res, req.url ?? '');
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, url: `http://${host}:${(server.address() as { port: number }).port}`, hits };
}

function close(s: Server) {
  s.closeAllConnections();
  s.close();
}

const loopbackOne: TenancyPolicy = { ...defaultTenancyPolicy, allowCidrs: ['127.0.0.1/32'] };

test('the default policy allows cluster Services by name and nothing by address; built-in denials hold unless a CIDR is allowed', (t) => {
  const p = defaultTenancyPolicy;
  t.is(tenantUrlProblem(p, 'http://prometheus.monitoring.svc:9090'), undefined);
  t.is(tenantUrlProblem(p, 'https://evals.ml.svc.cluster.local/run'), undefined);
  t.regex(tenantUrlProblem(p, 'http://prometheus.monitoring:9090')!, /host prometheus\.monitoring is not in the operator's outbound allow list/);
  t.regex(tenantUrlProblem(p, 'http://169.254.169.254/latest/meta-data')!, /address 169\.254\.169\.254 is not in the operator's outbound allow list/);
  t.regex(tenantUrlProblem(p, 'http://[::ffff:169.254.169.254]/')!, /not in the operator's outbound allow list/);
  t.regex(tenantUrlProblem(p, 'http://user:pw@x.svc/')!, /credentials/);
  t.regex(tenantUrlProblem(p, 'ftp://x.svc/')!, /scheme/);
  t.regex(tenantUrlProblem({ ...p, rawUrls: false }, 'http://x.svc/')!, /only providers/);
  t.false(addressAllowed(p, '127.0.0.1'));
  t.false(addressAllowed(p, '::ffff:127.0.0.1'), 'an IPv4-mapped address is its IPv4 address');
  t.false(addressAllowed(p, '169.254.169.254'));
  t.false(addressAllowed(p, 'fe80::1'));
  t.true(addressAllowed(p, '10.96.0.10'));
  t.true(addressAllowed(loopbackOne, '127.0.0.1'), 'an allowed CIDR lifts the built-in denial inside it');
  t.false(addressAllowed(loopbackOne, '127.0.0.2'), 'and only inside it');
  t.false(addressAllowed({ ...p, denyCidrs: ['10.0.0.0/24'] }, '10.0.0.7'), 'node addresses the admin lists are denied');
  t.false(addressAllowed({ ...loopbackOne, denyCidrs: ['127.0.0.1/32'] }, '127.0.0.1'), 'an explicit deny wins over an allow');
  t.deepEqual(parseAllowList('*.svc, 10.0.0.0/8,bad host').problems, ['"bad host" is neither a host pattern (name or *.suffix) nor a CIDR']);
  t.deepEqual(parseAllowList('*.svc,10.0.0.0/8,fd00::/8'), { hosts: ['*.svc'], cidrs: ['10.0.0.0/8', 'fd00::/8'], problems: [] });
  t.regex(tenantUrlProblem(p, 'http://evil.com/.svc')!, /host evil\.com/, 'the path is not the host');
  t.regex(tenantUrlProblem(p, 'http://svc/')!, /host svc/, '*.svc needs a name before .svc');
});

test('providers are per type and may be closed to namespaces; HTTPRoute parents and hostnames follow the policy', (t) => {
  const p: TenancyPolicy = {
    ...defaultTenancyPolicy,
    providers: [{ name: 'prom', type: 'prometheus', url: 'http://p.monitoring.svc', namespaces: ['team-a'] }],
    gatewayParents: ['infra/shared'], gatewayHostnames: ['*.models.example.com'],
  };
  t.true('provider' in providerFor(p, 'prom', 'prometheus', 'team-a'));
  t.deepEqual(providerFor(p, 'prom', 'prometheus', 'team-b'), { problem: 'the prometheus provider prom is not open to namespace team-b' });
  t.deepEqual(providerFor(p, 'prom', 'webhook', 'team-a'), { problem: 'no webhook provider named prom is registered' });
  t.deepEqual(gatewayProblems(p, 'team-a', [{ name: 'own' }, { name: 'shared', namespace: 'infra' }, { name: 'own', namespace: 'team-a' }], ['a.models.example.com']), []);
  t.deepEqual(gatewayProblems(p, 'team-a', [{ name: 'public', namespace: 'infra' }], ['shop.example.com', '*.example.com', '*.x.models.example.com']), [
    'traffic.gatewayAPI.parentRefs: Gateway infra/public is in another namespace and not among the Gateways the admin opened to tenants',
    'traffic.gatewayAPI.hostnames: shop.example.com is not among the hostnames the admin allows (*.models.example.com)',
    'traffic.gatewayAPI.hostnames: *.example.com is not among the hostnames the admin allows (*.models.example.com)',
  ]);
});

test('a redirect is the answer: the target is never called, whatever the hop', async (t) => {
  const metadata = await listen((res) => res.end('secret'), '127.0.0.2');
  const canary = await listen((res) => res.writeHead(307, { location: `${metadata.url}/latest/meta-data` }).end());
  t.teardown(() => { close(metadata.server); close(canary.server); });
  const client = new Outbound(loopbackOne);
  for (const trust of ['service', 'tenant', 'provider'] as const) {
    const res = await client.request({ url: `${canary.url}/predict`, trust, namespace: 'a', method: 'POST', body: '{}', timeoutMs: 2000 });
    t.is(res.status, 307);
  }
  t.deepEqual(metadata.hits, []);
  t.is(canary.hits.length, 3);
});

test('a tenant URL is checked before the call and after DNS; a denied destination is never connected to', async (t) => {
  const metadata = await listen((res) => res.end('secret'), '127.0.0.2');
  t.teardown(() => close(metadata.server));
  const port = new URL(metadata.url).port;
  const client = new Outbound({ ...loopbackOne, allowHosts: [...loopbackOne.allowHosts, 'localhost', 'metadata.test'] });
  const denied = async (url: string) => {
    const err = await t.throwsAsync(client.request({ url, trust: 'tenant', namespace: 'a', timeoutMs: 2000 }), { instanceOf: OutboundError });
    t.is((err).reason, 'Denied', url);
    return err.message;
  };
  t.regex(await denied(metadata.url), /address 127\.0\.0\.2 is not in the operator's outbound allow list/);
  t.regex(await denied(`http://[::ffff:127.0.0.2]:${port}/`), /not in the operator's outbound allow list/);
  // localhost passes the host list, but what it resolves to is loopback outside 127.0.0.1/32... or ::1.
  const resolvedDenial = await client.request({ url: `http://localhost:${port}/`, trust: 'tenant', namespace: 'a', timeoutMs: 2000 }).then(() => 'called', (e: OutboundError) => e.reason);
  t.true(resolvedDenial === 'Denied' || resolvedDenial === 'Network', `localhost is never served from 127.0.0.2 (${resolvedDenial})`);
  t.deepEqual(metadata.hits, [], 'the metadata stand-in was never called');
  // The same address through the operator's own Service URL is not subject to the tenant policy.
  const own = await new Outbound(loopbackOne).request({ url: metadata.url, trust: 'service', namespace: 'a', timeoutMs: 2000 });
  t.is(own.status, 200);
});

test('a name that resolves to a denied address is refused after the lookup', async (t) => {
  const server = await listen((res) => res.end('ok'));
  t.teardown(() => close(server.server));
  const port = new URL(server.url).port;
  const client = new Outbound({ ...defaultTenancyPolicy, allowHosts: ['localhost'] });
  const err = await t.throwsAsync(client.request({ url: `http://localhost:${port}/`, trust: 'tenant', namespace: 'a', timeoutMs: 2000 }), { instanceOf: OutboundError });
  t.is((err).reason, 'Denied');
  t.regex(err.message, /localhost resolves to (127\.0\.0\.1|::1), which the operator's outbound policy denies/);
  t.deepEqual(server.hits, []);
});

test("the nodes' addresses are refused even inside an allowed CIDR, however they are spelt or reached", async (t) => {
  const node = new Set(['10.0.0.7', 'fd00::7']);
  const wide: TenancyPolicy = { ...defaultTenancyPolicy, allowCidrs: ['10.0.0.0/8', 'fd00::/8', '127.0.0.0/8'] };
  t.true(addressAllowed(wide, '10.0.0.8', node));
  t.false(addressAllowed(wide, '10.0.0.7', node));
  t.false(addressAllowed(wide, '::ffff:10.0.0.7', node));
  t.false(addressAllowed(wide, 'FD00::7', new Set(['fd00::7'])));
  const kubelet = await listen((res) => res.end('pods'), '127.0.0.3');
  t.teardown(() => close(kubelet.server));
  const client = new Outbound({ ...wide, allowHosts: ['localhost'] });
  client.setNodeAddresses(['127.0.0.3', '127.0.0.1', '::1']);
  const err = await t.throwsAsync(client.request({ url: `${kubelet.url}/pods`, trust: 'tenant', namespace: 'a', timeoutMs: 2000 }), { instanceOf: OutboundError });
  t.is((err).reason, 'Denied');
  const byName = await t.throwsAsync(client.request({ url: `http://localhost:${new URL(kubelet.url).port}/pods`, trust: 'tenant', namespace: 'a', timeoutMs: 2000 }), { instanceOf: OutboundError });
  t.regex(byName.message, /resolves to .*which the operator's outbound policy denies/);
  t.deepEqual(kubelet.hits, []);
  client.setNodeAddresses([]);
  t.is((await client.request({ url: `${kubelet.url}/pods`, trust: 'tenant', namespace: 'a', timeoutMs: 2000 })).status, 200, 'a node that leaves takes its denial with it');
});

test('a body larger than the cap fails while it streams, and costs no more than the cap', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 'a');
  let sent = 0;
  const big = await listen((res) => {
    res.writeHead(200);
    const write = () => {
      while (sent < 200 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', write);
      }
      res.end();
    };
    write();
  });
  const declared = await listen((res) => res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) }).end());
  t.teardown(() => { close(big.server); close(declared.server); });
  const client = new Outbound(loopbackOne, { ...defaultOutboundLimits, maxResponseBytes: 1 << 20 });
  const before = process.memoryUsage().rss;
  const err = await t.throwsAsync(client.request({ url: big.url, trust: 'tenant', namespace: 'a', timeoutMs: 10_000 }), { instanceOf: OutboundError });
  t.is((err).reason, 'TooLarge');
  t.is(err.message, `${big.url}: the answer is larger than the 1 MiB limit`);
  t.true(sent < 50 * 1024 * 1024, `the server stopped early (${sent} bytes sent)`);
  t.true(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'memory grew by far less than the body');
  const err2 = await t.throwsAsync(client.request({ url: declared.url, trust: 'tenant', namespace: 'a', timeoutMs: 2000 }), { instanceOf: OutboundError });
  t.is(err2.message, `${declared.url}: the answer declares 10485760 bytes, more than the 1 MiB limit`);
});

test('a hung endpoint times out, and an abort ends the call at once', async (t) => {
  const hung = await listen(() => undefined);
  t.teardown(() => close(hung.server));
  const client = new Outbound(loopbackOne);
  const started = Date.now();
  const err = await t.throwsAsync(client.request({ url: hung.url, trust: 'tenant', namespace: 'a', timeoutMs: 300 }), { instanceOf: OutboundError });
  t.is((err).reason, 'Timeout');
  t.true(Date.now() - started < 2000);
  const ctl = new AbortController();
  const call = client.request({ url: hung.url, trust: 'tenant', namespace: 'a', timeoutMs: 60_000, signal: ctl.signal });
  setTimeout(() => ctl.abort(), 50);
  const aborted = await t.throwsAsync(call, { instanceOf: OutboundError });
  t.is((aborted).reason, 'Aborted');
  t.is(client.active, 0, 'every slot was given back');
});

test("one namespace's hung endpoints hold only its own slots: another namespace's call goes at once", async (t) => {
  const hung = await listen(() => undefined);
  const fast = await listen((res) => res.end('{}'));
  t.teardown(() => { close(hung.server); close(fast.server); });
  const client = new Outbound(loopbackOne, { ...defaultOutboundLimits, maxConcurrent: 6, maxPerNamespace: 2 });
  const ctl = new AbortController();
  const hostile = Array.from({ length: 10 }, () => client.request({ url: hung.url, trust: 'tenant', namespace: 'hostile', timeoutMs: 60_000, signal: ctl.signal }).catch(() => undefined));
  await new Promise((r) => setTimeout(r, 100));
  t.is(client.active, 2, 'the hostile namespace holds its 2 slots; its other 8 calls wait');
  const started = Date.now();
  const res = await client.request({ url: fast.url, trust: 'tenant', namespace: 'benign', timeoutMs: 2000 });
  t.is(res.status, 200);
  t.true(Date.now() - started < 500, `the benign call did not wait (${Date.now() - started} ms)`);
  ctl.abort();
  await Promise.all(hostile);
  t.is(client.active, 0);
});

test('a namespace may always start its first call, however many others have filled the global cap', async (t) => {
  const limiter = new FairLimiter(2, 2);
  const held = [await limiter.acquire('hostile-1'), await limiter.acquire('hostile-1'), await limiter.acquire('hostile-2')];
  t.is(limiter.active, 3, "hostile-2's first call starts beyond the global cap");
  let second = false;
  const waiting = limiter.acquire('hostile-2').then((r) => { second = true; return r; });
  const benign = await limiter.acquire('benign');
  t.is(limiter.active, 4, "benign's first call starts at once");
  await new Promise((r) => setImmediate(r));
  t.false(second, "but a namespace's second call waits for the global cap");
  held[0]!();
  await new Promise((r) => setImmediate(r));
  t.false(second, 'still over the cap (3 in flight, max 2)');
  held[1]!();
  benign();
  (await waiting)();
  t.true(second);
  held[2]!();
  t.is(limiter.active, 0);
});

test('the limiter serves waiting namespaces round-robin, within both caps', async (t) => {
  const limiter = new FairLimiter(2, 10);
  const order: string[] = [];
  const take = (key: string) => limiter.acquire(key).then((release) => { order.push(key); return release; });
  const [a1, a2, b1] = [await take('a'), await take('a'), await take('b')];
  t.is(limiter.active, 3, "b's first call starts beyond the global cap of 2");
  const a3 = take('a');
  const a4 = take('a');
  const b2 = take('b');
  const tick = () => new Promise((r) => setImmediate(r));
  a1();
  await tick();
  t.deepEqual(order, ['a', 'a', 'b'], 'at the cap, no second call starts');
  a2();
  await tick();
  t.deepEqual(order.slice(3), ['a'], "a's next call");
  b1();
  await tick();
  t.deepEqual(order.slice(3), ['a', 'b'], "then b's, before a's fourth: a went to the back of the line");
  (await a3)();
  await tick();
  t.deepEqual(order.slice(3), ['a', 'b', 'a']);
  (await b2)();
  (await a4)();
  t.is(limiter.active, 0);
});
