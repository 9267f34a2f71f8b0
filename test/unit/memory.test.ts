import test from 'ava';
import fc from 'fast-check';
import { StringPool } from '../../operator/runtime/string-pool.js';

test('pooling leaves every object equal to what was parsed', (t) => {
  fc.assert(fc.property(fc.array(fc.jsonValue(), { maxLength: 5 }), (values) => {
    const pool = new StringPool(50, 8);
    const copies = values.map((v) => JSON.parse(JSON.stringify(v)) as unknown);
    const pooled = copies.map((c) => pool.internAll(c));
    t.deepEqual(pooled, values.map((v) => JSON.parse(JSON.stringify(v)) as unknown));
    return pool.size <= 50;
  }));
});

test('equal strings are pooled once; per-object values and long strings are not pooled', (t) => {
  const pool = new StringPool(100, 40);
  const deployment = (uid: string) => ({
    metadata: { name: 'm-1-abc', namespace: 'team-a', uid, resourceVersion: uid, labels: { 'app.kubernetes.io/instance': 'm-1' } },
    spec: { template: { spec: { containers: [{ name: 'server', image: 'docker.io/seldonio/mlserver:1.7.1', args: ['a'.repeat(41)] }] } } },
    status: { conditions: [{ type: 'Available', lastTransitionTime: uid }] },
  });
  pool.internAll(deployment('u-1'));
  const afterOne = pool.size;
  t.is(afterOne, 6, 'name, namespace, instance, container name, image and condition type; not the long arg');
  pool.internAll(deployment('u-2'));
  t.is(pool.size, afterOne, 'a second object with the same strings adds nothing; its uid, resourceVersion and timestamps are not pooled');
  t.is(pool.intern('x'.repeat(41)), 'x'.repeat(41));
  t.is(pool.size, afterOne, 'a string longer than the limit is returned as it is');
});

test('a full pool starts again empty rather than growing', (t) => {
  const pool = new StringPool(3);
  for (const s of ['a', 'b', 'c']) pool.intern(s);
  t.is(pool.size, 3);
  t.is(pool.intern('d'), 'd');
  t.is(pool.size, 1);
  t.is(pool.intern('a'), 'a');
  t.is(pool.size, 2);
});

test('the operator\'s process does not load undici: node:http is required, not imported as ESM', async (t) => {
  const { execFileSync } = await import('node:child_process');
  // A fresh process: ava's own may have loaded anything. Each module that talks HTTP is imported.
  const script = `
    for (const m of ['kube', 'kubeconfig', 'outbound', 'health']) await import('./operator/runtime/' + m + '.ts');
    process.stdout.write(String(process.moduleLoadList.filter((m) => /undici/.test(m)).length));`;
  const loaded = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.is(loaded, '0', 'an ESM import of node:http reads its WebSocket getter, which loads undici (about 5 MB of RSS)');
  // And no other module imports it as ESM (type-only imports are erased).
  const { readdirSync, readFileSync } = await import('node:fs');
  const offenders = readdirSync('operator', { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('node-http.ts'))
    .filter((f) => /^import (?!type )[^;]*from 'node:https?';/m.test(readFileSync(`operator/${f}`, 'utf8')));
  t.deepEqual(offenders, [], 'node:http and node:https come from operator/runtime/node-http.ts');
});
