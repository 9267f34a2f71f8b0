// Providers the admin registers: the file is checked when the operator starts, a tenant names a
// provider instead of a URL, and the call carries the admin's credentials, read at call time.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measurePrometheus } from '../../operator/modeldeployment/analysis/prometheus.js';
import { measureWebhook } from '../../operator/modeldeployment/analysis/webhook.js';
import { configureOutbound, defaultOutboundLimits } from '../../operator/runtime/outbound.js';
import { defaultTenancyPolicy } from '../../operator/tenancy/policy.js';
import { loadProvidersFile } from '../../operator/tenancy/providers.js';

const dir = mkdtempSync(join(tmpdir(), 'providers-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('the providers file is checked whole, and every problem is named', (t) => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'providers:\n  - {name: Prom, type: graphite, url: "ftp://x"}\n  - {name: a, type: webhook, url: "http://a.svc", basicAuth: {usernameFile: /u}}\n');
  const err = t.throws(() => loadProvidersFile(bad));
  t.regex(err.message, /providers\[0\]\.name must be a DNS label/);
  t.regex(err.message, /providers\[0\]\.type must be prometheus or webhook/);
  t.regex(err.message, /providers\[0\]\.url must be http or https/);
  t.regex(err.message, /providers\[1\]\.basicAuth needs usernameFile and passwordFile/);
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'providers:\n  - {name: prom, type: prometheus, url: "https://prom.monitoring.svc:9090", namespaces: [team-a], bearerTokenFile: /t}\n');
  t.deepEqual(loadProvidersFile(good), [{ name: 'prom', type: 'prometheus', url: 'https://prom.monitoring.svc:9090', namespaces: ['team-a'], bearerTokenFile: '/t' }]);
});

test.serial("a named provider is called with the admin's credentials, read at each call; the tenant sees neither", async (t) => {
  const seen: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    if (req.url?.startsWith('/api/v1/query')) {
      if (req.headers.authorization !== 'Bearer rotated-2') return void res.writeHead(401).end('{"status":"error","errorType":"unauthorized","error":"bad token"}');
      return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.004"]}]}}');
    }
    res.writeHead(req.headers.authorization?.startsWith('Basic ') ? 204 : 401).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const token = join(dir, 'token');
  writeFileSync(token, 'rotated-1\n');
  writeFileSync(join(dir, 'user'), 'evals');
  writeFileSync(join(dir, 'password'), 's3cret');
  // The provider's address is loopback, which no tenant URL may name: registered endpoints are the admin's.
  configureOutbound({
    ...defaultTenancyPolicy,
    providers: [
      { name: 'prom', type: 'prometheus', url, namespaces: ['team-a'], bearerTokenFile: token },
      { name: 'evals', type: 'webhook', url: `${url}/judge`, basicAuth: { usernameFile: join(dir, 'user'), passwordFile: join(dir, 'password') } },
    ],
  }, defaultOutboundLimits);
  t.teardown(() => configureOutbound(defaultTenancyPolicy, defaultOutboundLimits));
  const check = { name: 'errors', prometheus: { provider: 'prom', query: 'q' }, pass: { max: 0.01 } };
  const vars = { namespace: 'team-a', name: 'm', revision: 'r', role: 'canary' as const };

  const refused = await measurePrometheus(check, vars, undefined);
  t.like(refused, { phase: 'Error', message: 'provider prom: query failed: HTTP 401 (unauthorized: bad token)' }, "a registered Prometheus's own error text is shown");
  writeFileSync(token, 'rotated-2\n');
  t.like(await measurePrometheus(check, vars, undefined), { phase: 'Passed', value: 0.004 }, 'a rotated token is used without a restart');
  t.deepEqual(seen.slice(0, 2), ['Bearer rotated-1', 'Bearer rotated-2']);

  t.like(await measurePrometheus(check, { ...vars, namespace: 'team-b' }, undefined), { phase: 'Error', message: 'Prometheus not queried: the prometheus provider prom is not open to namespace team-b' });
  t.is(seen.length, 2, 'a namespace the provider is closed to never reaches it');

  t.like(await measureWebhook({ name: 'judge', webhook: { provider: 'evals' } }, 'team-b', {}), { phase: 'Passed', value: 204 });
  t.is(seen.at(-1), `Basic ${Buffer.from('evals:s3cret').toString('base64')}`);

  rmSync(token);
  const unreadable = await measurePrometheus(check, vars, undefined);
  t.like(unreadable, { phase: 'Error', message: 'Prometheus not queried: provider prom: its credentials cannot be read (ENOENT); tell the cluster admin' });
  t.false(JSON.stringify([refused, unreadable]).includes(url), "the provider's address is not shown to tenants");
});

test.serial("a tenant's Prometheus address gets only Prometheus' own error types back, never its text", async (t) => {
  const server = createServer((req, res) => {
    const secret = req.url?.includes('known') ? '{"status":"error","errorType":"bad_data","error":"SECRET-42 parse error"}' : '{"status":"error","errorType":"SECRET-42","error":"SECRET-42"}';
    res.writeHead(400, { 'content-type': 'application/json' }).end(secret);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  configureOutbound({ ...defaultTenancyPolicy, allowCidrs: ['127.0.0.1/32'] }, defaultOutboundLimits);
  t.teardown(() => configureOutbound(defaultTenancyPolicy, defaultOutboundLimits));
  const vars = { namespace: 'team-a', name: 'm', revision: 'r', role: 'canary' as const };
  const known = await measurePrometheus({ name: 'q', prometheus: { address: url, query: 'known' }, pass: { max: 1 } }, vars, undefined);
  t.is(known.message, `${url}: query failed: HTTP 400 (bad_data)`);
  const odd = await measurePrometheus({ name: 'q', prometheus: { address: url, query: 'odd' }, pass: { max: 1 } }, vars, undefined);
  t.is(odd.message, `${url}: query failed: HTTP 400 (unknown error type)`);
});
