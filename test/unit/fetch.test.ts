// `modelship fetch` against local stand-ins for an HTTPS host, an S3 bucket (which checks SigV4
// signatures) and the Hugging Face Hub: files land in place and digests are verified.
import test from 'ava';
import aws4 from 'aws4';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtemp, readFile, writeFile, mkdir, symlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadAll, modelDigest, runFetch, describeError } from '../../operator/cli/fetch.js';
import { listSource } from '../../operator/cli/sources.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const objects: Record<string, string> = {
  'models/fraud/v7/model.joblib': 'joblib-bytes',
  'models/fraud/v7/config/settings.json': '{"a":1}',
  'models/fraud/v8/model.joblib': 'other',
};
const credentials = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret-test' };
let server: Server;
let base = '';
const seen: string[] = [];
/** X-Amz-Date of every S3 request, by path. */
const amzDates: { path: string; date: string }[] = [];
/** When set, the S3 stand-in's clock: like S3, it refuses a request signed more than 15 minutes away from it. */
let s3Now: Date | undefined;
const amzDate = (d: Date) => d.toISOString().replace(/[:-]|\.\d{3}/g, '');
const fromAmzDate = (s: string) => new Date(s.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'));

function s3Authorized(req: IncomingMessage): boolean {
  const url = new URL(req.url!, base);
  // The region is part of the signature's credential scope: AWS regions, or "auto" for Cloud Storage.
  const region = /Credential=[^/]+\/\d{8}\/([^/]+)\/s3\//.exec(req.headers.authorization ?? '')?.[1] ?? 'none';
  const expected = aws4.sign({
    host: url.host, path: url.pathname + url.search, method: 'GET', service: 's3', region,
    headers: { 'X-Amz-Date': req.headers['x-amz-date'] as string },
  }, credentials);
  return req.headers.authorization === expected.headers?.Authorization;
}

test.before(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url!, base);
    seen.push(url.pathname);
    if (url.pathname.startsWith('/s3/')) {
      if (!s3Authorized(req)) { res.writeHead(403).end('<Error><Code>SignatureDoesNotMatch</Code></Error>'); return; }
      const signedAt = req.headers['x-amz-date'] as string;
      amzDates.push({ path: url.pathname, date: signedAt });
      if (s3Now && Math.abs(fromAmzDate(signedAt).getTime() - s3Now.getTime()) > 15 * 60_000) {
        res.writeHead(403).end('<Error><Code>RequestTimeTooSkewed</Code></Error>');
        return;
      }
      const [, , bucket, ...rest] = url.pathname.split('/');
      if (bucket !== 'bucket') { res.writeHead(404).end(); return; }
      if (rest.length === 0 && url.searchParams.get('list-type') === '2') {
        const prefix = url.searchParams.get('prefix') ?? '';
        const keys = Object.keys(objects).filter((k) => k.startsWith(prefix));
        // Two pages, to exercise continuation.
        const page = url.searchParams.get('continuation-token') ? keys.slice(1) : keys.slice(0, 1);
        const truncated = !url.searchParams.get('continuation-token') && keys.length > 1;
        res.writeHead(200, { 'content-type': 'application/xml' }).end(`<?xml version="1.0"?><ListBucketResult>${page.map((k) => `<Contents><Key>${k}</Key></Contents>`).join('')}<IsTruncated>${truncated}</IsTruncated>${truncated ? '<NextContinuationToken>t2</NextContinuationToken>' : ''}</ListBucketResult>`);
        return;
      }
      const key = rest.map(decodeURIComponent).join('/');
      if (objects[key] === undefined) { res.writeHead(404).end(); return; }
      res.writeHead(200).end(objects[key]);
      return;
    }
    if (url.pathname === '/hf/api/models/org/tiny/revision/main') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sha: 'abc123', siblings: [{ rfilename: 'config.json' }, { rfilename: 'weights/model.safetensors' }] }));
      return;
    }
    if (url.pathname.startsWith('/hf/org/tiny/resolve/abc123/')) {
      if (req.headers.authorization !== 'Bearer hf_test') { res.writeHead(401).end(); return; }
      res.writeHead(200).end(`hf:${url.pathname.split('/resolve/abc123/')[1]}`);
      return;
    }
    if (url.pathname === '/files/model.onnx') { res.writeHead(200).end('onnx-bytes'); return; }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});

test.after.always(() => { server.close(); });

async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try { return await fn(); } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

const dest = () => mkdtemp(join(tmpdir(), 'fetch-'));

test.serial('s3: a prefix is listed page by page, signed with SigV4, and fetched as a directory with its digest', async (t) => {
  const dir = await dest();
  const listing = `${sha('{"a":1}')}  config/settings.json\n${sha('joblib-bytes')}  model.joblib\n`;
  const digest = `sha256:${sha(listing)}`;
  const code = await withEnv({ AWS_ENDPOINT_URL: `${base}/s3`, AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey },
    () => runFetch(['--uri', 's3://bucket/models/fraud/v7/', '--dest', dir, '--digest', digest]));
  t.is(code, 0);
  t.is(await readFile(join(dir, 'model.joblib'), 'utf8'), 'joblib-bytes');
  t.is(await readFile(join(dir, 'config/settings.json'), 'utf8'), '{"a":1}');
  t.is(await modelDigest(dir), digest, 'the directory digest is the one docs/serving.md shows how to compute');
});

test.serial('s3: wrong credentials fail loudly; one object key fetches one file', async (t) => {
  const badDir = await dest();
  const bad = await withEnv({ AWS_ENDPOINT_URL: `${base}/s3`, AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'wrong' },
    () => runFetch(['--uri', 's3://bucket/models/fraud/v7/', '--dest', badDir]));
  t.is(bad, 1);
  const dir = await dest();
  const ok = await withEnv({ AWS_ENDPOINT_URL: `${base}/s3`, AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey },
    () => runFetch(['--uri', 's3://bucket/models/fraud/v8/model.joblib', '--dest', dir, '--digest', `sha256:${sha('other')}`]));
  t.is(ok, 0);
  t.is(await readFile(join(dir, 'model.joblib'), 'utf8'), 'other');
});

test.serial('gs: Cloud Storage through its S3-compatible XML API with HMAC keys', async (t) => {
  const dir = await dest();
  const code = await withEnv({ GCS_ENDPOINT_URL: `${base}/s3`, GCS_HMAC_ACCESS_ID: credentials.accessKeyId, GCS_HMAC_SECRET: credentials.secretAccessKey },
    () => runFetch(['--uri', 'gs://bucket/models/fraud/v8/model.joblib', '--dest', dir]));
  t.is(code, 0);
  t.is(await readFile(join(dir, 'model.joblib'), 'utf8'), 'other');
});

test.serial('https: one file, and a digest mismatch is refused', async (t) => {
  const dir = await dest();
  t.is(await runFetch(['--uri', `${base}/files/model.onnx`.replace('http://', 'https://'), '--dest', dir]), 1, 'our stand-in is plain HTTP, so https fails');
  await downloadAll([{ url: `${base}/files/model.onnx`, headers: () => ({}), path: 'model.onnx' }], dir);
  t.is(await modelDigest(join(dir, 'model.onnx')), `sha256:${sha('onnx-bytes')}`);
  const verify = await runFetch(['--verify-only', '--dest', join(dir, 'model.onnx'), '--digest', `sha256:${'0'.repeat(64)}`]);
  t.is(verify, 1);
});

test.serial('hf: the file list is resolved at one commit and fetched with the token', async (t) => {
  const dir = await dest();
  const code = await withEnv({ HF_ENDPOINT: `${base}/hf`, HF_TOKEN: 'hf_test' }, () => runFetch(['--uri', 'hf://org/tiny', '--dest', dir]));
  t.is(code, 0);
  t.is(await readFile(join(dir, 'weights/model.safetensors'), 'utf8'), 'hf:weights/model.safetensors');
  t.true(seen.includes('/hf/org/tiny/resolve/abc123/config.json'));
});

test.serial('verify-only checks a mounted model in place', async (t) => {
  const dir = await dest();
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub/a.bin'), 'A');
  const digest = `sha256:${sha(`${sha('A')}  sub/a.bin\n`)}`;
  t.is(await runFetch(['--verify-only', '--dest', dir, '--digest', digest]), 0);
  t.is(await runFetch(['--uri', 'ftp://x/y', '--dest', dir]), 1);
});

test('a failed download names its cause, not only "fetch failed"', async (t) => {
  // A port nothing listens on any more: undici's error is "fetch failed" with ECONNREFUSED as its cause.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const err = await fetch(`http://127.0.0.1:${port}/model.joblib`).catch((e: unknown) => e);
  const text = describeError(err);
  t.regex(text, /^fetch failed: /);
  t.regex(text, /ECONNREFUSED/);
  t.is(describeError(new Error('plain')), 'plain');
});

test.serial('s3: each GET is signed when it is sent, not when the file list was made', async (t) => {
  const dir = await dest();
  const listedAt = new Date('2030-01-01T00:00:00Z');
  let clock = listedAt;
  s3Now = listedAt;
  amzDates.length = 0;
  try {
    const env = { AWS_ENDPOINT_URL: `${base}/s3`, AWS_REGION: 'eu-west-1', AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey };
    const files = await listSource('s3://bucket/models/fraud/v7/', env, { now: () => clock });
    t.deepEqual(amzDates.map((d) => d.date), [amzDate(listedAt), amzDate(listedAt)], 'both listing pages are signed at the listing time');
    // The download starts 20 minutes later (a large model's first files took that long): S3 would refuse
    // anything signed at listing time.
    const sentAt = new Date(listedAt.getTime() + 20 * 60_000);
    clock = sentAt;
    s3Now = sentAt;
    await downloadAll(files, dir, 1);
    const gets = amzDates.filter((d) => !d.path.endsWith('/bucket'));
    t.deepEqual(gets.map((d) => d.path).sort(), ['/s3/bucket/models/fraud/v7/config/settings.json', '/s3/bucket/models/fraud/v7/model.joblib']);
    t.true(gets.every((d) => d.date === amzDate(sentAt)), JSON.stringify(gets));
    t.is(await readFile(join(dir, 'model.joblib'), 'utf8'), 'joblib-bytes');
  } finally {
    s3Now = undefined;
  }
});

async function captureStderr<T>(fn: () => Promise<T>): Promise<{ result: T; text: string }> {
  const write = process.stderr.write.bind(process.stderr);
  let text = '';
  process.stderr.write = (chunk: string | Uint8Array) => { text += String(chunk); return true; };
  try { return { result: await fn(), text }; } finally { process.stderr.write = write; }
}

test.serial('a URI pinned to one digest and a --digest naming another are refused, naming both', async (t) => {
  const dir = await dest();
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;
  const conflict = await captureStderr(() => runFetch(['--uri', `oci://registry.example/models/iris@${a}`, '--dest', dir, '--digest', b]));
  t.is(conflict.result, 1);
  t.regex(conflict.text, /digest conflict/);
  t.true(conflict.text.includes(a) && conflict.text.includes(b), conflict.text);
  // Agreeing digests get past that check (and then fail for what they are: the fetcher does not pull images).
  const agree = await captureStderr(() => runFetch(['--uri', `oci://registry.example/models/iris@${a}`, '--dest', dir, '--digest', a]));
  t.notRegex(agree.text, /digest conflict/);
  t.regex(agree.text, /does not handle oci/);
});

/** A model tree with two files, in a parent directory that also holds a file outside it. */
async function modelTree(): Promise<{ root: string; dir: string }> {
  const root = await mkdtemp(join(tmpdir(), 'tree-'));
  const dir = join(root, 'model');
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'sub/a.bin'), 'A');
  await writeFile(join(dir, 'b.bin'), 'B');
  await writeFile(join(root, 'secret'), 'outside');
  return { root, dir };
}

test.serial('symbolic links inside the tree are in the digest by their target; adding or retargeting one changes it', async (t) => {
  const { dir } = await modelTree();
  const plain = await modelDigest(dir);
  t.is(plain, `sha256:${sha(`${sha('B')}  b.bin\n${sha('A')}  sub/a.bin\n`)}`, 'a tree without links digests as it always did');
  await symlink('sub/a.bin', join(dir, 'link.bin'));
  const linked = await modelDigest(dir);
  t.not(linked, plain);
  t.is(linked, `sha256:${sha(`${sha('B')}  b.bin\nsymlink:${sha('sub/a.bin')}  link.bin\n${sha('A')}  sub/a.bin\n`)}`, 'the documented listing');
  await rm(join(dir, 'link.bin'));
  await symlink('b.bin', join(dir, 'link.bin'));
  const retargeted = await modelDigest(dir);
  t.not(retargeted, linked);
  t.not(retargeted, plain);
  // A link is never confused with a file whose bytes are its target text.
  await rm(join(dir, 'link.bin'));
  await writeFile(join(dir, 'link.bin'), 'b.bin');
  t.not(await modelDigest(dir), retargeted);
  // Links to directories and up-and-back-down links that stay inside are fine; verify-only accepts them.
  await rm(join(dir, 'link.bin'));
  await symlink('../b.bin', join(dir, 'sub/up.bin'));
  await symlink('sub', join(dir, 'subdir'));
  const digest = await modelDigest(dir);
  t.is(await runFetch(['--verify-only', '--dest', dir, '--digest', digest]), 0);
});

test.serial('a symbolic link that leaves the model tree (or leads nowhere) is refused, never followed', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['/etc/passwd', 'passwd', /absolute target/],
    ['../secret', 'secret', /points outside/],
    ['../model/b.bin', 'back-in.bin', /points outside/],
    ['sub/../../secret', 'deep', /points outside/],
    ['missing.bin', 'dangling', /cannot be resolved/],
  ];
  for (const [target, name, why] of cases) {
    const { dir } = await modelTree();
    await symlink(target, join(dir, name));
    const err = await modelDigest(dir).then(() => undefined, (e: unknown) => e as Error);
    t.regex(err?.message ?? '', why, target);
    t.true(err?.message.includes(name), target);
    const verify = await captureStderr(() => runFetch(['--verify-only', '--dest', dir, '--digest', `sha256:${'0'.repeat(64)}`]));
    t.is(verify.result, 1, target);
    t.regex(verify.text, /refusing the model/, target);
  }
  // Through an in-tree link to the root, ".." leaves the tree although the text "here/.." looks inside.
  const { dir } = await modelTree();
  await symlink('.', join(dir, 'here'));
  await symlink('here/../secret', join(dir, 'escape'));
  await t.throwsAsync(() => modelDigest(dir), { message: /escape -> here\/\.\.\/secret points outside/ });
});
