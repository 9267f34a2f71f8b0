// The model cache keyed by digest: `modelship fetch` against a local S3 stand-in that counts the GETs of
// each object. A second fetch of a digest downloads nothing; a corrupt entry is found, removed and
// fetched again; eviction keeps the cache under its bound, least recently used first; a fetcher killed
// mid-write leaves no entry; two fetchers of one digest leave one good entry. Plus the pure parts the
// operator uses: the flag, the Deployment's cache mount, the report read back from pod status.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDigest, runFetch } from '../../operator/cli/fetch.js';
import { fetchReportLine, parseFetchReport, type FetchReport } from '../../operator/cli/fetch-report.js';
import { entryName, ModelCache, planEviction } from '../../operator/cli/model-cache.js';
import type { ModelDeployment } from '../../operator/api/generated.js';
import { desiredDeployment } from '../../operator/modeldeployment/desired/deployment.js';
import {
  fetchReportOf, modelCacheConfig, modelCacheFor, modelCacheOf, newFetchReport, parseModelCacheVolume, withFetchReport, type ModelCache as CacheConfig,
} from '../../operator/modeldeployment/model-cache.js';
import { resolveRuntime } from '../../operator/modeldeployment/resolve.js';
import { podSummary } from '../../operator/modeldeployment/status.js';
import { modelDeployment, withSpec } from '../support/builders.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const treeDigest = (files: Record<string, string>) => `sha256:${sha(Object.keys(files).sort().map((p) => `${sha(files[p]!)}  ${p}\n`).join(''))}`;

// ---- the S3 stand-in: objects by key, and how many times each was downloaded ----

const objects = new Map<string, string | Buffer>();
const gets = new Map<string, number>();
/** Keys whose GET sends half the object and then never finishes. */
const stalled = new Set<string>();
const stalledResponses: ServerResponse[] = [];
let server: Server;
let endpoint = '';

test.before(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url!, endpoint);
    const [, , bucket, ...rest] = url.pathname.split('/');
    if (bucket !== 'bucket') { res.writeHead(404).end(); return; }
    if (rest.length === 0) {
      const prefix = url.searchParams.get('prefix') ?? '';
      const keys = [...objects.keys()].filter((k) => k.startsWith(prefix));
      res.writeHead(200, { 'content-type': 'application/xml' }).end(`<?xml version="1.0"?><ListBucketResult>${keys.map((k) => `<Contents><Key>${k}</Key></Contents>`).join('')}<IsTruncated>false</IsTruncated></ListBucketResult>`);
      return;
    }
    const key = rest.map(decodeURIComponent).join('/');
    const body = objects.get(key);
    if (body === undefined) { res.writeHead(404).end(); return; }
    gets.set(key, (gets.get(key) ?? 0) + 1);
    if (stalled.has(key)) {
      res.writeHead(200, { 'content-length': Buffer.byteLength(body) });
      res.write(Buffer.from(body).subarray(0, Math.floor(Buffer.byteLength(body) / 2)));
      stalledResponses.push(res);
      return;
    }
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}/s3`;
  // Anonymous S3 over plain HTTP: the fetcher reads these for every s3:// URI in this file.
  process.env.AWS_ENDPOINT_URL = endpoint;
  delete process.env.AWS_ACCESS_KEY_ID;
  delete process.env.AWS_SECRET_ACCESS_KEY;
});

test.after.always(() => {
  for (const res of stalledResponses) res.destroy();
  server.closeAllConnections();
  server.close();
});

const tmp = (prefix: string) => mkdtemp(join(tmpdir(), prefix));
/** GETs of every object under a prefix (listings are not downloads). */
const downloads = (prefix: string) => [...gets].filter(([k]) => k.startsWith(prefix)).reduce((n, [, c]) => n + c, 0);

/** A one-file model at s3://bucket/<key>. */
function putFile(key: string, body: string | Buffer): { uri: string; digest: string } {
  objects.set(key, body);
  return { uri: `s3://bucket/${key}`, digest: `sha256:${sha(body)}` };
}

/** A model tree under s3://bucket/<prefix>/. */
function putTree(prefix: string, files: Record<string, string>): { uri: string; digest: string } {
  for (const [p, body] of Object.entries(files)) objects.set(`${prefix}/${p}`, body);
  return { uri: `s3://bucket/${prefix}/`, digest: treeDigest(files) };
}

interface Fetched { code: number; report: FetchReport | undefined; log: string; dest: string }

/** One `modelship fetch` in this process, with its log and the termination message it left. */
async function fetchWith(model: { uri: string; digest?: string }, cacheDir: string | undefined, extra: string[] = [], hooks: Parameters<typeof runFetch>[1] = {}): Promise<Fetched> {
  const dest = await tmp('dest-');
  const terminationLog = join(await tmp('term-'), 'termination-log');
  await writeFile(terminationLog, '');
  const args = ['--uri', model.uri, '--dest', dest, '--termination-log', terminationLog,
    ...(model.digest ? ['--digest', model.digest] : []), ...(cacheDir ? ['--cache-dir', cacheDir] : []), ...extra];
  const { result, text } = await captureStderr(() => runFetch(args, hooks));
  return { code: result, report: parseFetchReport(await readFile(terminationLog, 'utf8')), log: text, dest };
}

// runFetch logs to stderr; tests run concurrently, so the capture is shared and each one picks its lines by its dest.
let capturing = 0;
let captured = '';
const realWrite = process.stderr.write.bind(process.stderr);
async function captureStderr<T>(fn: () => Promise<T>): Promise<{ result: T; text: string }> {
  if (capturing++ === 0) process.stderr.write = (chunk: string | Uint8Array) => { captured += String(chunk); return true; };
  const start = captured.length;
  try {
    const result = await fn();
    return { result, text: captured.slice(start) };
  } finally {
    if (--capturing === 0) { process.stderr.write = realWrite; captured = ''; }
  }
}

const entriesIn = async (cacheDir: string) => (await readdir(cacheDir)).filter((n) => n.startsWith('sha256-')).sort();

// ---- the fetcher with a cache ----

test('a second fetch of the same digest downloads nothing: the model comes from the cache and is verified in place', async (t) => {
  const cache = await tmp('cache-');
  const model = putFile('hit/model.joblib', 'joblib-bytes-for-the-hit-test');
  const first = await fetchWith(model, cache);
  t.is(first.code, 0, first.log);
  t.deepEqual(first.report, { cache: 'miss', bytes: 29, digest: model.digest });
  t.is(downloads('hit/'), 1);
  t.deepEqual(await entriesIn(cache), [entryName(model.digest)!]);

  const second = await fetchWith(model, cache);
  t.is(second.code, 0, second.log);
  t.deepEqual(second.report, { cache: 'hit', bytes: 29, digest: model.digest });
  t.is(downloads('hit/'), 1, 'no second download');
  t.is(await readFile(join(second.dest, 'model.joblib'), 'utf8'), 'joblib-bytes-for-the-hit-test', 'at the path a download puts it');
  t.regex(second.log, /digest verified: sha256:[a-f0-9]{64} \(from the model cache/);
});

test('a model tree is cached as a tree, links included, and restored exactly', async (t) => {
  const cache = await tmp('cache-');
  const files = { 'config.json': '{"a":1}', 'weights/part-1.bin': 'one', 'weights/part-2.bin': 'two' };
  const model = putTree('tree/m', files);
  const first = await fetchWith(model, cache);
  t.is(first.code, 0, first.log);
  t.is(first.report?.cache, 'miss');
  const second = await fetchWith(model, cache);
  t.is(second.report?.cache, 'hit', second.log);
  t.is(downloads('tree/'), 3, 'three files, downloaded once');
  t.is(await modelDigest(second.dest), model.digest);
  t.is(await readFile(join(second.dest, 'weights/part-2.bin'), 'utf8'), 'two');

  // A cached tree with an in-tree link (made as a fetch from a PVC would see one) is copied with the link as a link.
  const withLink = await tmp('cache-');
  const src = await tmp('src-');
  await mkdir(join(src, 'sub'));
  await writeFile(join(src, 'sub/a.bin'), 'A');
  await symlink('sub/a.bin', join(src, 'link.bin'));
  const digest = await modelDigest(src);
  const store = new ModelCache({ dir: withLink, maxBytes: 1 << 20 });
  t.is(await store.insert(digest, src, null), 'inserted');
  const dest = await tmp('dest-');
  t.like(await store.restore(digest, dest, modelDigest), { kind: 'hit', bytes: 1 });
  t.is(await modelDigest(dest), digest);
});

test('a corrupt entry is detected, removed and fetched again; never served', async (t) => {
  const cache = await tmp('cache-');
  const model = putFile('corrupt/model.onnx', 'the-real-onnx-bytes');
  t.is((await fetchWith(model, cache)).report?.cache, 'miss');
  const entry = join(cache, entryName(model.digest)!);
  // Same length, other bytes: only the digest can tell.
  await writeFile(join(entry, 'data/model.onnx'), 'the-fake-onnx-bytes');

  const again = await fetchWith(model, cache);
  t.is(again.code, 0, again.log);
  t.deepEqual(again.report, { cache: 'corrupt', bytes: 19, digest: model.digest });
  t.regex(again.log, /model cache entry for sha256:[a-f0-9]{64} is corrupt: its copy digests to sha256:[a-f0-9]{64}; removed it, fetching from s3:\/\/bucket\/corrupt\/model\.onnx/);
  t.is(await readFile(join(again.dest, 'model.onnx'), 'utf8'), 'the-real-onnx-bytes', 'the pod gets the real model');
  t.is(downloads('corrupt/'), 2, 'fetched again from the source');
  t.is(await readFile(join(entry, 'data/model.onnx'), 'utf8'), 'the-real-onnx-bytes', 'the entry was replaced by a good one');
  t.is((await fetchWith(model, cache)).report?.cache, 'hit');
  t.is(downloads('corrupt/'), 2);
});

test('other corruptions: a missing record, a file swapped for a link out of the tree, an extra file in a tree', async (t) => {
  const files = { 'a.bin': 'A', 'b.bin': 'B' };
  const model = putTree('corrupt-kinds/m', files);
  const cases: [string, (entry: string) => Promise<void>, RegExp][] = [
    ['no entry.json', (e) => rm(join(e, 'entry.json')), /entry\.json cannot be read/],
    ['a link to a file outside', async (e) => { await rm(join(e, 'data/a.bin')); await symlink('/etc/hostname', join(e, 'data/a.bin')); }, /refusing the model|absolute target/],
    ['an extra file', (e) => writeFile(join(e, 'data/extra.bin'), 'X'), /its copy digests to/],
  ];
  for (const [what, corrupt, why] of cases) {
    const cache = await tmp('cache-');
    t.is((await fetchWith(model, cache)).report?.cache, 'miss', what);
    await corrupt(join(cache, entryName(model.digest)!));
    const again = await fetchWith(model, cache);
    t.is(again.code, 0, `${what}: ${again.log}`);
    t.is(again.report?.cache, 'corrupt', what);
    t.regex(again.log, why, what);
    t.is(await modelDigest(again.dest), model.digest, `${what}: the pod's copy is the real model`);
    t.deepEqual((await readdir(again.dest)).sort(), ['a.bin', 'b.bin'], `${what}: nothing of the corrupt entry is left in the model directory`);
    t.is((await fetchWith(model, cache)).report?.cache, 'hit', `${what}: a good entry took its place`);
  }
});

test('eviction keeps the cache under its bound, least recently used first, never the entry just written', async (t) => {
  const cache = await tmp('cache-');
  const bound = ['--cache-max-bytes', '250'];
  const a = putFile('lru/a.bin', 'a'.repeat(100));
  const b = putFile('lru/b.bin', 'b'.repeat(100));
  const c = putFile('lru/c.bin', 'c'.repeat(100));
  const pause = () => new Promise((r) => setTimeout(r, 30)); // file times are only as fine as the kernel's clock tick
  t.is((await fetchWith(a, cache, bound)).report?.cache, 'miss');
  await pause();
  t.is((await fetchWith(b, cache, bound)).report?.cache, 'miss');
  await pause();
  t.is((await fetchWith(a, cache, bound)).report?.cache, 'hit', 'a is used again: b is now the least recently used');
  await pause();
  const third = await fetchWith(c, cache, bound);
  t.is(third.report?.cache, 'miss');
  t.regex(third.log, new RegExp(`evicted ${entryName(b.digest)} \\(least recently used\\)`));
  t.deepEqual(await entriesIn(cache), [entryName(a.digest)!, entryName(c.digest)!].sort());

  // A bound that only the new entry fits: everything else goes, the new one stays.
  await pause();
  const d = putFile('lru/d.bin', 'd'.repeat(250));
  t.is((await fetchWith(d, cache, bound)).report?.cache, 'miss');
  t.deepEqual(await entriesIn(cache), [entryName(d.digest)!]);
  // A model larger than the whole cache is served but not stored, and evicts nothing.
  const e = putFile('lru/e.bin', 'e'.repeat(251));
  const large = await fetchWith(e, cache, bound);
  t.is(large.code, 0);
  t.is(large.report?.cache, 'miss');
  t.regex(large.log, /larger than the whole cache/);
  t.deepEqual(await entriesIn(cache), [entryName(d.digest)!]);
});

test('planEviction: oldest first until under the bound, never the kept entry', (t) => {
  const entries = [
    { name: 'new', bytes: 50, lastUsed: 300 },
    { name: 'old', bytes: 50, lastUsed: 100 },
    { name: 'mid', bytes: 50, lastUsed: 200 },
  ];
  t.deepEqual(planEviction(entries, 150), []);
  t.deepEqual(planEviction(entries, 100), ['old']);
  t.deepEqual(planEviction(entries, 60), ['old', 'mid']);
  t.deepEqual(planEviction(entries, 0, 'old'), ['mid', 'new'], 'the kept entry stays even over the bound');
  t.deepEqual(planEviction([], 0), []);
});

/** `modelship fetch` as its own process, as the init container runs it. */
function fetchProcess(args: string[], env: Record<string, string> = {}): { done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>; kill: () => void } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'operator/main.ts'), 'fetch', ...args], {
    cwd: repoRoot, env: { ...process.env, AWS_ENDPOINT_URL: endpoint, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((r) => child.on('exit', (code, signal) => r({ code, signal, stderr })));
  return { done, kill: () => child.kill('SIGKILL') };
}

test('a fetcher killed with its entry written but not yet in place leaves no entry; the next fetch downloads and stores it', async (t) => {
  const cache = await tmp('cache-');
  const model = putTree('killed-commit/m', { 'a.bin': 'A'.repeat(1000), 'b.bin': 'B'.repeat(1000) });
  const dest = await tmp('dest-');
  const killed = await fetchProcess(['--uri', model.uri, '--dest', dest, '--digest', model.digest, '--cache-dir', cache],
    { MODELSHIP_FAULT_KILL_BEFORE_CACHE_COMMIT: '1' }).done;
  t.is(killed.signal, 'SIGKILL', killed.stderr);
  t.deepEqual(await entriesIn(cache), [], 'no entry');
  const leftovers = (await readdir(cache)).filter((n) => n.startsWith('.incoming-'));
  t.is(leftovers.length, 1, 'only its incoming directory, complete but never renamed');
  t.deepEqual((await readdir(join(cache, leftovers[0]!))).sort(), ['data', 'entry.json', 'last-used']);

  const next = await fetchWith(model, cache);
  t.is(next.report?.cache, 'miss', 'an incoming directory is never read as an entry');
  t.is(downloads('killed-commit/'), 4);
  t.deepEqual(await entriesIn(cache), [entryName(model.digest)!]);
  t.true((await readdir(cache)).includes(leftovers[0]!), 'a recent incoming directory may still be written: it stays');
  // One abandoned for longer than any copy takes is removed by the next eviction pass.
  const old = new Date(Date.now() - 7 * 3600_000);
  await utimes(join(cache, leftovers[0]!), old, old);
  await new ModelCache({ dir: cache, maxBytes: 1 << 20 }).evict();
  t.false((await readdir(cache)).includes(leftovers[0]!));
});

test('a fetcher killed mid-download leaves nothing in the cache', async (t) => {
  const cache = await tmp('cache-');
  const model = putFile('killed-download/model.bin', Buffer.alloc(4 << 20, 7));
  stalled.add('killed-download/model.bin');
  const dest = await tmp('dest-');
  const run = fetchProcess(['--uri', model.uri, '--dest', dest, '--digest', model.digest, '--cache-dir', cache]);
  // Killed once half of the model has arrived.
  for (let i = 0; i < 400 && !(await readdir(dest)).some((n) => n.endsWith('.partial')); i++) await new Promise((r) => setTimeout(r, 25));
  run.kill();
  const killed = await run.done;
  t.is(killed.signal, 'SIGKILL');
  t.is(downloads('killed-download/'), 1, 'it was mid-download');
  t.deepEqual(await readdir(cache), [], 'no entry and no incoming directory: the cache is written only after a verified download');
  stalled.delete('killed-download/model.bin');
  const next = await fetchWith(model, cache);
  t.is(next.report?.cache, 'miss');
  t.deepEqual(await entriesIn(cache), [entryName(model.digest)!]);
});

test('two fetchers of one digest at once: both serve the model, one entry stands, the other copy is dropped', async (t) => {
  const cache = await tmp('cache-');
  const model = putTree('race/m', { 'x.bin': 'X'.repeat(5000), 'y.bin': 'Y'.repeat(5000) });
  // Both have their entry complete before either renames it into place: the race the rename settles.
  let arrived = 0;
  let release!: () => void;
  const bothReady = new Promise<void>((r) => { release = r; });
  const barrier = async () => { if (++arrived === 2) release(); await bothReady; };
  const [one, two] = await Promise.all([fetchWith(model, cache, [], { beforeCacheCommit: barrier }), fetchWith(model, cache, [], { beforeCacheCommit: barrier })]);
  t.is(one.code, 0, one.log);
  t.is(two.code, 0, two.log);
  t.is(one.report?.cache, 'miss');
  t.is(two.report?.cache, 'miss');
  t.is(await modelDigest(one.dest), model.digest);
  t.is(await modelDigest(two.dest), model.digest);
  t.regex(one.log + two.log, /another fetcher stored sha256:[a-f0-9]{64} first/);
  t.deepEqual(await readdir(cache), [entryName(model.digest)!], 'one entry, no incoming or trash directories left');
  const third = await fetchWith(model, cache);
  t.is(third.report?.cache, 'hit');
  t.is(downloads('race/'), 4, 'two downloads each of two files, none for the third');

  // And as separate processes, as two pods on one node: whatever the interleaving, one good entry.
  const cache2 = await tmp('cache-');
  const runs = await Promise.all([0, 1, 2].map(async () => {
    const dest = await tmp('dest-');
    const r = await fetchProcess(['--uri', model.uri, '--dest', dest, '--digest', model.digest, '--cache-dir', cache2]).done;
    return { ...r, dest };
  }));
  for (const r of runs) {
    t.is(r.code, 0, r.stderr);
    t.is(await modelDigest(r.dest), model.digest);
  }
  t.deepEqual(await readdir(cache2), [entryName(model.digest)!]);
  t.is((await fetchWith(model, cache2)).report?.cache, 'hit');
});

test('no digest, no cache: the model is fetched and nothing is stored', async (t) => {
  const cache = await tmp('cache-');
  const model = putFile('nodigest/model.bin', 'bytes');
  const first = await fetchWith({ uri: model.uri }, cache);
  t.is(first.code, 0);
  t.regex(first.log, /no sha256 digest: the model cache is not used/);
  t.is(first.report, undefined, 'no report: nothing to count');
  t.deepEqual(await readdir(cache), []);
  await fetchWith({ uri: model.uri }, cache);
  t.is(downloads('nodigest/'), 2);
});

test('a cache that cannot be used is reported unavailable and never fails the fetch', async (t) => {
  const parent = await tmp('cache-');
  const notADir = join(parent, 'file');
  await writeFile(notADir, 'x');
  const model = putFile('unavailable/model.bin', 'bytes!');
  const fetched = await fetchWith(model, notADir);
  t.is(fetched.code, 0, fetched.log);
  t.deepEqual(fetched.report, { cache: 'unavailable', bytes: 6, digest: model.digest });
  t.regex(fetched.log, /cannot be used .*fetching without it/);
  t.is(await readFile(join(fetched.dest, 'model.bin'), 'utf8'), 'bytes!');
  // A cache that takes no entry (a read-only directory for a non-root fetcher; here: a path that cannot
  // be written under) still serves the model.
  if (process.getuid?.() !== 0) {
    const ro = await tmp('cache-');
    await chmod(ro, 0o555);
    t.is((await fetchWith(model, ro)).report?.cache, 'unavailable');
  }
});

test('a failed fetch leaves no report, so the reason stays the log\'s last line; a bad bound is refused', async (t) => {
  const cache = await tmp('cache-');
  const model = putFile('mismatch/model.bin', 'bytes');
  const wrong = await fetchWith({ uri: model.uri, digest: `sha256:${'0'.repeat(64)}` }, cache);
  t.is(wrong.code, 1);
  t.is(wrong.report, undefined);
  t.deepEqual(await readdir(cache), [], 'a model that fails its digest is never stored');
  const bad = await fetchWith(model, cache, ['--cache-max-bytes', '10Gi']);
  t.is(bad.code, 1);
  t.regex(bad.log, /--cache-max-bytes/);
});

test('reports: written and read back; anything else is no report', (t) => {
  const report: FetchReport = { cache: 'hit', bytes: 123, digest: `sha256:${'a'.repeat(64)}` };
  t.deepEqual(parseFetchReport(fetchReportLine(report)), report);
  for (const bad of ['', 'digest verified', '{"cache":"maybe","bytes":1,"digest":"sha256:' + 'a'.repeat(64) + '"}',
    '{"cache":"hit","bytes":-1,"digest":"sha256:' + 'a'.repeat(64) + '"}', '{"cache":"hit","bytes":1.5,"digest":"sha256:' + 'a'.repeat(64) + '"}',
    '{"cache":"hit","bytes":1,"digest":"md5:x"}', 'x'.repeat(600)]) {
    t.is(parseFetchReport(bad), undefined, bad.slice(0, 40));
  }
  t.is(entryName('sha256:' + 'A'.repeat(64)), undefined, 'digests are lowercase hex');
});

// ---- the operator's side ----

const cacheConfig: CacheConfig = { volume: { hostPath: '/var/lib/modelship/model-cache' }, maxBytes: 100 * 1024 ** 3 };
const digest = `sha256:${'c'.repeat(64)}`;
function built(spec: Partial<ModelDeployment['spec']>, modelCache?: CacheConfig): any {
  const md = modelDeployment('fraud', 'risk', withSpec(spec));
  md.metadata!.uid = 'uid-1';
  const r = resolveRuntime(md.spec, 'fraud');
  if (!r.ok) throw new Error(r.problems.join());
  return desiredDeployment({ md, hash: 'abc123', runtime: r.runtime, replicas: 1, fetcherImage: 'op:1', ...(modelCache ? { modelCache } : {}) });
}
const model = (extra: Record<string, unknown>) => ({ model: { uri: 'https://models.example.com/iris/v1/model.joblib', version: '1', format: 'sklearn' as const, ...extra } });

test('--model-cache: hostPath:/dir, /dir or pvc:<claim>; anything else is refused with the reason', (t) => {
  t.deepEqual(parseModelCacheVolume('hostPath:/var/lib/modelship/cache/'), { hostPath: '/var/lib/modelship/cache' });
  t.deepEqual(parseModelCacheVolume('/mnt/cache'), { hostPath: '/mnt/cache' });
  t.deepEqual(parseModelCacheVolume('pvc:model-cache'), { claim: 'model-cache' });
  t.is(parseModelCacheVolume(''), undefined);
  for (const bad of ['hostPath:relative', 'hostPath:/', '/var/../etc', 'pvc:', 'pvc:Not_A_Name', 'nfs://x']) t.throws(() => parseModelCacheVolume(bad), undefined, bad);
  t.deepEqual(modelCacheConfig('pvc:c', '2Gi'), { volume: { claim: 'c' }, maxBytes: 2 * 1024 ** 3 });
  t.is(modelCacheConfig('', '2Gi'), undefined);
  t.throws(() => modelCacheConfig('pvc:c', '2GB'));
});

test('the Deployment mounts the cache into the fetcher only, for a fetched model with a digest', (t) => {
  const d = built(model({ digest }), cacheConfig);
  const pod = d.spec.template.spec;
  const fetcher = pod.initContainers[0];
  t.deepEqual(fetcher.args.slice(-4), ['--cache-dir', '/var/cache/modelship/models', '--cache-max-bytes', String(100 * 1024 ** 3)]);
  t.true(fetcher.volumeMounts.some((m: any) => m.name === 'model-cache' && m.mountPath === '/var/cache/modelship/models'));
  t.false(pod.containers[0].volumeMounts.some((m: any) => m.name === 'model-cache'), 'the server never sees the shared cache');
  t.deepEqual(pod.volumes.find((v: any) => v.name === 'model-cache'), { name: 'model-cache', hostPath: { path: '/var/lib/modelship/model-cache', type: 'DirectoryOrCreate' } });
  t.like(fetcher.securityContext, { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
  const pvc = built(model({ digest }), { volume: { claim: 'models' }, maxBytes: 1024 }).spec.template.spec;
  t.deepEqual(pvc.volumes.find((v: any) => v.name === 'model-cache'), { name: 'model-cache', persistentVolumeClaim: { claimName: 'models' } });

  // No digest, no cache: nothing to key it by. A PVC model or an image volume is not fetched at all.
  const undigested = built(model({}), cacheConfig).spec.template.spec;
  t.false(undigested.volumes.some((v: any) => v.name === 'model-cache'));
  t.false(undigested.initContainers[0].args.includes('--cache-dir'));
  for (const uri of ['pvc://models/iris', 'oci://registry.example/iris:1']) {
    const spec = built(model({ uri, digest }), cacheConfig).spec.template.spec;
    t.false(spec.volumes.some((v: any) => v.name === 'model-cache'), uri);
  }
  // Without the flag, the Deployment is exactly what it was before the cache existed.
  t.deepEqual(built(model({ digest })), built(model({ digest }), undefined));
});

test('a serving revision keeps the cache it was built with; a new one takes the configured cache', (t) => {
  const withCache = built(model({ digest }), cacheConfig);
  const without = built(model({ digest }));
  t.deepEqual(modelCacheOf(withCache), cacheConfig);
  t.is(modelCacheOf(without), undefined);
  t.is(modelCacheFor(without, cacheConfig), undefined, 'enabling the cache does not restart a serving revision');
  t.deepEqual(modelCacheFor(withCache, undefined), cacheConfig, 'nor does disabling it');
  t.deepEqual(modelCacheFor(withCache, { ...cacheConfig, maxBytes: 1 }), cacheConfig, 'nor resizing it');
  t.deepEqual(modelCacheFor(undefined, cacheConfig), cacheConfig, 'a new revision is built with it');
  const pvcBuilt = built(model({ digest }), { volume: { claim: 'models' }, maxBytes: 1024 });
  t.deepEqual(modelCacheOf(pvcBuilt), { volume: { claim: 'models' }, maxBytes: 1024 });
});

function pod(uid: string, fetcher?: { exitCode: number; message?: string }): any {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: uid, namespace: 'risk', uid, resourceVersion: '1' },
    status: {
      phase: 'Running',
      initContainerStatuses: [{ name: 'fetch-model', restartCount: 0, state: fetcher ? { terminated: { reason: fetcher.exitCode ? 'Error' : 'Completed', ...fetcher } } : { running: {} } }],
      containerStatuses: [{ name: 'server', restartCount: 0, state: { running: {} } }],
    },
  };
}

test('the operator reads the fetcher\'s report from pod status and counts each one once', (t) => {
  const report: FetchReport = { cache: 'hit', bytes: 4096, digest };
  const done = pod('p1', { exitCode: 0, message: fetchReportLine(report) });
  t.deepEqual(fetchReportOf(done), report);
  t.is(fetchReportOf(pod('p1', { exitCode: 1, message: fetchReportLine(report) })), undefined, 'only from a fetcher that succeeded');
  t.is(fetchReportOf(pod('p1', { exitCode: 0, message: 'digest verified' })), undefined);
  t.is(fetchReportOf(pod('p1')), undefined);

  // The cached summary drops finished containers' messages; the report is put back.
  const summary = withFetchReport(podSummary(done), done);
  t.deepEqual(fetchReportOf(summary), report);
  t.is(fetchReportOf(podSummary(done)), undefined, 'podSummary alone would lose it');
  const running = withFetchReport(podSummary(pod('p1')), pod('p1'));
  t.deepEqual(running, podSummary(pod('p1')), 'no report, no change');

  t.deepEqual(newFetchReport(summary, running), report, 'counted when it appears');
  t.is(newFetchReport(summary, summary), undefined, 'not again on a later update');
  t.is(newFetchReport(summary, undefined), undefined, 'not for a pod first seen finished (a restart, a relist)');
});
