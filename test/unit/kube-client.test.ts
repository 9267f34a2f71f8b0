// The API client's own transport and credentials, against local HTTPS servers: kubeconfig loading as
// kubectl does it, connection reuse, credential renewal after a 401, and watch streaming.
import test from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { ApiError, KubeClient, type WatchEvent } from '../../operator/runtime/kube.js';
import { accessFromDocument, InClusterAccess, loadClusterAccess } from '../../operator/runtime/kubeconfig.js';
import { Resources } from '../../operator/runtime/resources.js';
import { ensurePki, type Pki } from '../cluster/pki.js';

// Made before any test runs: openssl blocks the event loop, which would trip the watch tests' stall timers.
const pki = ensurePki(mkdtempSync(join(tmpdir(), 'pki-')));
const otherPki = ensurePki(mkdtempSync(join(tmpdir(), 'pki-other-')));

async function serve(t: { teardown(fn: () => void): void }, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer({ cert: readFileSync(pki.servingCert), key: readFileSync(pki.servingKey) }, handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  return { server, url: `https://127.0.0.1:${(server.address() as { port: number }).port}` };
}

function tokenConfig(url: string, user: Record<string, unknown>, p: Pki = pki) {
  return {
    'current-context': 'ctx',
    clusters: [{ name: 'c', cluster: { server: url, 'certificate-authority': p.caCert } }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u', namespace: 'models' } }],
  };
}

test('the API client reuses its TLS connections instead of a new pool and handshake per request', async (t) => {
  let connections = 0;
  const { server, url } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"Namespace","metadata":{"name":"x"}}');
  });
  server.on('secureConnection', () => { connections++; });
  const client = new KubeClient(accessFromDocument(tokenConfig(url, { token: 'secret' })));
  for (let i = 0; i < 20; i++) await client.get(Resources.Service, 'default', 'x');
  await Promise.all(Array.from({ length: 10 }, () => client.get(Resources.Service, 'default', 'x')));
  // One connection for the sequential requests, at most one more per concurrent one: not one per request.
  t.true(connections <= 11, `${connections} TLS connections for 30 requests`);
  t.true(connections >= 1);
});

test('credentials: bearer token, basic auth, impersonation and the context namespace reach the server', async (t) => {
  const seen: Record<string, string | undefined>[] = [];
  const { url } = await serve(t, (req, res) => {
    seen.push({ authorization: req.headers.authorization, impersonate: req.headers['impersonate-user'] as string | undefined, ua: req.headers['user-agent'] });
    res.writeHead(200).end('{}');
  });
  const token = accessFromDocument(tokenConfig(url, { token: 'abc', as: 'jane' }));
  t.is(token.namespace, 'models');
  await new KubeClient(token, 'me', 'modelship-tests').request('GET', '/api');
  await new KubeClient(accessFromDocument(tokenConfig(url, { username: 'u', password: 'p' }))).request('GET', '/api');
  t.deepEqual(seen[0], { authorization: 'Bearer abc', impersonate: 'jane', ua: 'modelship-tests (me)' });
  t.is(seen[1]?.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
});

test('a client certificate from the kubeconfig is presented to a server that requires one', async (t) => {
  const server = createServer({ cert: readFileSync(pki.servingCert), key: readFileSync(pki.servingKey), ca: readFileSync(pki.caCert), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const cert = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
    res.writeHead(200).end(JSON.stringify({ cn: cert.subject?.CN }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  const url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  const withCert = accessFromDocument(tokenConfig(url, {
    'client-certificate-data': readFileSync(pki.adminCert).toString('base64'),
    'client-key-data': readFileSync(pki.adminKey).toString('base64'),
  }));
  const answer = await new KubeClient(withCert).request<{ cn: string }>('GET', '/api');
  t.truthy(answer.cn);
  const without = accessFromDocument(tokenConfig(url, { token: 'x' }));
  const err = await t.throwsAsync(new KubeClient(without).request('GET', '/api'));
  t.true(err instanceof ApiError && err.code === 0, String(err));
});

test('after a 401 the token file is read again, so a rotated token is picked up without a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'token-'));
  writeFileSync(join(dir, 'token'), 'old\n');
  const { url } = await serve(t, (req, res) => {
    if (req.headers.authorization === 'Bearer new') res.writeHead(200).end('{"ok":true}');
    else res.writeHead(401).end('{"kind":"Status","reason":"Unauthorized","message":"Unauthorized","code":401}');
  });
  const client = new KubeClient(accessFromDocument(tokenConfig(url, { tokenFile: 'token' }), undefined, dir));
  const err = await t.throwsAsync(client.request('GET', '/api'));
  t.true(err instanceof ApiError && err.code === 401 && err.reason === 'Unauthorized');
  writeFileSync(join(dir, 'token'), 'new\n');
  t.deepEqual(await client.request('GET', '/api'), { ok: true });
});

test('KUBECONFIG lists merge as kubectl merges them: the first file defining a name wins; paths are relative to their file', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  mkdirSync(join(root, 'a'));
  mkdirSync(join(root, 'b'));
  writeFileSync(join(root, 'b', 'ca.crt'), readFileSync(pki.caCert));
  writeFileSync(join(root, 'a', 'config'), yaml.dump({ 'current-context': 'dev', contexts: [{ name: 'dev', context: { cluster: 'dev', user: 'dev' } }], users: [{ name: 'dev', user: { token: 't' } }] }));
  writeFileSync(join(root, 'b', 'config'), yaml.dump({
    'current-context': 'prod',
    clusters: [{ name: 'dev', cluster: { server: 'https://dev.example:6443/', 'certificate-authority': 'ca.crt' } }, { name: 'prod', cluster: { server: 'https://prod.example:6443' } }],
    contexts: [{ name: 'dev', context: { cluster: 'prod', user: 'dev' } }, { name: 'prod', context: { cluster: 'prod', user: 'dev', namespace: 'ml' } }],
  }));
  const env = { KUBECONFIG: [join(root, 'a', 'config'), join(root, 'missing'), join(root, 'b', 'config')].join(':'), HOME: root };
  const access = loadClusterAccess({ env });
  t.is(access.server, 'https://dev.example:6443', 'current-context and context "dev" come from the first file');
  t.is(access.namespace, 'default');
  // Both files' contexts are there.
  t.is(loadClusterAccess({ env, context: 'dev' }).server, 'https://dev.example:6443');
  t.is(loadClusterAccess({ env, context: 'prod' }).server, 'https://prod.example:6443');
  t.is(loadClusterAccess({ env, context: 'prod' }).namespace, 'ml');
  t.throws(() => loadClusterAccess({ env, context: 'staging' }), { message: 'no context "staging" in the kubeconfig' });
  // The CA path is relative to b/config, where the cluster is defined: connect() can read it.
  return t.notThrowsAsync(access.connect());
});

test('bad kubeconfigs and no kubeconfig at all fail with a message that says what to do', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  t.throws(() => loadClusterAccess({ env: { HOME: root } }), { message: /no kubeconfig: pass --kubeconfig, set KUBECONFIG, or run in a cluster/ });
  t.throws(() => loadClusterAccess({ kubeconfig: join(root, 'nope'), env: {} }), { message: /cannot read kubeconfig/ });
  writeFileSync(join(root, 'list'), '- a\n- b\n');
  t.throws(() => loadClusterAccess({ kubeconfig: join(root, 'list'), env: {} }), { message: /is not a mapping/ });
  writeFileSync(join(root, 'dangling'), yaml.dump({ 'current-context': 'x', contexts: [{ name: 'x', context: { cluster: 'gone' } }] }));
  t.throws(() => loadClusterAccess({ kubeconfig: join(root, 'dangling'), env: {} }), { message: 'context "x" names cluster "gone", which the kubeconfig does not define with a server' });
});

test('in cluster: the service account token is read on every connect, so the kubelet can rotate it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sa-'));
  writeFileSync(join(dir, 'token'), 'one');
  writeFileSync(join(dir, 'ca.crt'), readFileSync(pki.caCert));
  writeFileSync(join(dir, 'namespace'), 'modelship-system');
  const access = new InClusterAccess({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, dir);
  t.is(access.server, 'https://[fd00::1]:443');
  t.is(access.namespace, 'modelship-system');
  const first = await access.connect();
  writeFileSync(join(dir, 'token'), 'two');
  const second = await access.connect();
  t.is(first.headers.Authorization, 'Bearer one');
  t.is(second.headers.Authorization, 'Bearer two');
  t.is(first.agent, second.agent, 'same CA: the connection pool is kept');
  t.throws(() => new InClusterAccess({}, dir), { message: /KUBERNETES_SERVICE_HOST is not set/ });
});

test('a watch streams events split anywhere across chunks, and resolves when the server ends it', async (t) => {
  let query = '';
  const events = [
    { type: 'ADDED', object: { metadata: { name: 'a', resourceVersion: '1' } } },
    { type: 'BOOKMARK', object: { metadata: { resourceVersion: '2' } } },
    { type: 'DELETED', object: { metadata: { name: 'a', resourceVersion: '3' } } },
  ];
  const { url } = await serve(t, (req, res) => {
    query = req.url ?? '';
    res.writeHead(200, { 'content-type': 'application/json' });
    const text = events.map((e) => JSON.stringify(e)).join('\n') + '\n';
    // Cut mid-object and mid-line, then end: the client must reassemble lines.
    res.write(text.slice(0, 7));
    setTimeout(() => { res.write(text.slice(7, 60)); setTimeout(() => res.end(text.slice(60)), 20); }, 20);
  });
  const got: WatchEvent<{ metadata: { name?: string } }>[] = [];
  await new KubeClient(accessFromDocument(tokenConfig(url, { token: 'x' }))).watch<{ metadata: { name?: string } }>('/api/v1/pods', { resourceVersion: '0', allowWatchBookmarks: true }, (e) => got.push(e), { signal: new AbortController().signal, stallMs: 5_000 });
  t.deepEqual(got, events);
  t.regex(query, /watch=true/);
  t.regex(query, /resourceVersion=0/);
});

test('a watch that goes quiet is reported as stalled; a refused one carries its status code; an aborted one just ends', async (t) => {
  const { url } = await serve(t, (req, res) => {
    if (req.url?.includes('/gone')) {
      res.writeHead(410).end('{"kind":"Status","reason":"Expired","message":"too old resource version","code":410}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n');
    // …and then nothing, with the connection held open.
  });
  const client = new KubeClient(accessFromDocument(tokenConfig(url, { token: 'x' })));
  const seen: string[] = [];
  const stalled = await t.throwsAsync(client.watch<{ metadata: { name: string } }>('/quiet', {}, (e) => seen.push(e.object.metadata.name), { signal: new AbortController().signal, stallMs: 2_000 }));
  t.true(stalled instanceof ApiError && stalled.reason === 'WatchStalled', String(stalled));
  t.deepEqual(seen, ['a']);
  const gone = await t.throwsAsync(client.watch('/gone', {}, () => undefined, { signal: new AbortController().signal, stallMs: 5_000 }));
  t.true(gone instanceof ApiError && gone.code === 410 && gone.reason === 'Expired', String(gone));
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 100);
  await t.notThrowsAsync(client.watch('/quiet', {}, () => undefined, { signal: abort.signal, stallMs: 5_000 }));
});

// Serial: client-node runs exec plugins with spawnSync and its import is synchronous work too, which
// would stall the event loop under the other tests' stall timers.
test.serial('an exec plugin (a relative command, as kubectl resolves it) supplies the token, through client-node loaded on demand', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'exec-'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'cred'), '#!/bin/sh\necho \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-plugin"}}\'\n', { mode: 0o755 });
  let authorization: string | undefined;
  const { url } = await serve(t, (req, res) => {
    authorization = req.headers.authorization;
    res.writeHead(200).end('{}');
  });
  const config = tokenConfig(url, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: './bin/cred', interactiveMode: 'Never' } });
  writeFileSync(join(dir, 'config'), yaml.dump(config));
  await new KubeClient(loadClusterAccess({ kubeconfig: join(dir, 'config'), env: {} })).request('GET', '/api');
  t.is(authorization, 'Bearer from-plugin');
});

test('a token file wins over a token, as in client-go; KUBECONFIG naming no usable file falls back to the service account', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  writeFileSync(join(dir, 'token'), 'rotated');
  return accessFromDocument(tokenConfig('https://x.example', { token: 'static', tokenFile: 'token' }), undefined, dir).connect().then((c) => {
    t.is(c.headers.Authorization, 'Bearer rotated');
    const access = loadClusterAccess({ env: { KUBECONFIG: join(dir, 'missing'), KUBERNETES_SERVICE_HOST: '10.0.0.1', HOME: dir } });
    t.true(access instanceof InClusterAccess);
    t.is(access.server, 'https://10.0.0.1:443');
  });
});

test('malformed kubeconfig entries are named, not a TypeError', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
  const write = (doc: unknown) => {
    writeFileSync(join(dir, 'config'), yaml.dump(doc));
    return () => loadClusterAccess({ kubeconfig: join(dir, 'config'), env: {} });
  };
  t.throws(write({ clusters: { a: 1 } }), { message: /clusters must be a list/ });
  t.throws(write({ clusters: [null] }), { message: /every entry of clusters needs a name/ });
  t.throws(write({ contexts: [{ name: 'x' }] }), { message: /contexts entry "x" has no context/ });
});

test('HTTP errors say what failed whatever the body: a Status, nothing, HTML from a proxy, or null; a 2xx that is not JSON is an error too', async (t) => {
  const bodies: Record<string, [number, string]> = {
    '/status': [409, '{"kind":"Status","reason":"AlreadyExists","message":"deployments \\"x\\" already exists","code":409}'],
    '/empty': [503, ''],
    '/html': [502, '<html><body>Bad Gateway</body></html>'],
    '/null': [500, 'null'],
    '/not-json': [200, '<html>login</html>'],
  };
  const { url } = await serve(t, (req, res) => {
    const [code, body] = bodies[req.url ?? ''] ?? [404, ''];
    res.writeHead(code).end(body);
  });
  const client = new KubeClient(accessFromDocument(tokenConfig(url, { token: 'x' })));
  const fail = async (path: string) => {
    const err = await t.throwsAsync(client.request('GET', path));
    t.true(err instanceof ApiError, `${path}: ${String(err)}`);
    return err as ApiError;
  };
  t.like(await fail('/status'), { code: 409, reason: 'AlreadyExists', message: 'deployments "x" already exists' });
  t.like(await fail('/empty'), { code: 503, reason: '503', message: 'GET /empty: HTTP 503' });
  t.like(await fail('/html'), { code: 502, message: 'GET /html: HTTP 502: <html><body>Bad Gateway</body></html>' });
  t.like(await fail('/null'), { code: 500, reason: '500', message: 'GET /null: HTTP 500: null' });
  t.like(await fail('/not-json'), { code: 200, reason: 'InvalidResponse' });
});

test('a request that outlives its deadline, headers or body, fails as a Timeout', async (t) => {
  const { url } = await serve(t, (req, res) => {
    if (req.url === '/slow-body') {
      res.writeHead(200);
      res.write('{"a":');
      return;
    }
    // /slow-headers: no answer at all.
  });
  const client = new KubeClient(accessFromDocument(tokenConfig(url, { token: 'x' })));
  for (const path of ['/slow-headers', '/slow-body']) {
    const err = await t.throwsAsync(client.request('GET', path, { timeoutMs: 300 }));
    t.like(err, { code: 0, reason: 'Timeout' }, path);
  }
});

test('a certificate change retires the old connection pool without cutting the watch that is still on it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rotate-'));
  const other = otherPki;
  const doc = tokenConfig('', { token: 'x' });
  let release: (() => void) | undefined;
  const { url } = await serve(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url?.includes('watch=true')) {
      res.write('{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n');
      release = () => res.end('{"type":"ADDED","object":{"metadata":{"name":"b"}}}\n');
    } else {
      res.end('{}');
    }
  });
  doc.clusters[0]!.cluster.server = url;
  writeFileSync(join(dir, 'config'), yaml.dump(doc));
  const access = loadClusterAccess({ kubeconfig: join(dir, 'config'), env: {} });
  const first = await access.connect();
  const names: string[] = [];
  const watching = new KubeClient(access).watch<{ metadata: { name: string } }>('/w', {}, (e) => names.push(e.object.metadata.name), { signal: new AbortController().signal, stallMs: 5_000 });
  while (!release) await new Promise((r) => setTimeout(r, 10));
  // A new CA bundle (the old CA and another): a new pool; the old one is retired.
  writeFileSync(join(dir, 'config'), yaml.dump({ ...doc, clusters: [{ name: 'c', cluster: { server: url, 'certificate-authority-data': Buffer.concat([readFileSync(pki.caCert), readFileSync(other.caCert)]).toString('base64') } }] }));
  const second = await loadClusterAccess({ kubeconfig: join(dir, 'config'), env: {} }).connect();
  t.not(first.agent, second.agent);
  // Same access object, changed material: the access retires its own old agent.
  writeFileSync(join(dir, 'ca-copy.crt'), Buffer.concat([readFileSync(pki.caCert), readFileSync(other.caCert)]));
  const accessDoc = access as unknown as { cluster: { value: { 'certificate-authority'?: string } } };
  accessDoc.cluster.value['certificate-authority'] = join(dir, 'ca-copy.crt');
  const renewed = await access.connect();
  t.not(renewed.agent, first.agent);
  release();
  await watching;
  t.deepEqual(names, ['a', 'b'], 'the watch on the retired pool ran to its end');
  const open = () => Object.keys(first.agent.sockets).length + Object.keys(first.agent.freeSockets).length;
  for (let i = 0; i < 100 && open() > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(open(), 0, 'and its connection closed afterwards');
});
