// `modelship fetch`: the init container that puts the model in place and verifies its digest.
// The digest of a file is the sha256 of its bytes; of a directory, the sha256 of its canonical listing
// ("<sha256>  <relative path>\n" for every file, sorted by path), so both are reproducible with
// coreutils: `find . -type f | sort | xargs sha256sum`.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, stat, rename } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { listSource, type SourceFile } from './sources.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...await listFiles(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** sha256:<hex> of a file, or of a directory's canonical listing. */
export async function modelDigest(path: string): Promise<string> {
  const info = await stat(path);
  if (info.isFile()) return `sha256:${await sha256File(path)}`;
  const files = (await listFiles(path)).map((f) => relative(path, f)).sort();
  const listing = createHash('sha256');
  for (const f of files) listing.update(`${await sha256File(join(path, f))}  ${f}\n`);
  return `sha256:${listing.digest('hex')}`;
}

/** Downloads every file to dest/<path>, through a .partial file so a crash never leaves half a model. */
export async function downloadAll(files: SourceFile[], dest: string, concurrency = 4): Promise<void> {
  const queue = [...files];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const target = resolve(dest, f.path);
      if (!target.startsWith(`${resolve(dest)}/`)) throw new Error(`refusing to write ${f.path} outside ${dest}`);
      await mkdir(dirname(target), { recursive: true });
      const res = await fetch(f.url, { headers: f.headers, redirect: 'follow' });
      if (!res.ok || !res.body) throw new Error(`GET ${f.url}: HTTP ${res.status}`);
      await pipeline(Readable.fromWeb(res.body), createWriteStream(`${target}.partial`));
      await rename(`${target}.partial`, target);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
}

/** fetch() says only "fetch failed"; the reason (refused, a certificate, a name) is in its cause. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as { message?: string; code?: string; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    const text = [e.code, e.message].filter(Boolean).join(' ');
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
  }
  return parts.join(': ') || String(err);
}

export async function runFetch(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { uri: { type: 'string' }, dest: { type: 'string' }, digest: { type: 'string' }, 'verify-only': { type: 'boolean', default: false } },
  });
  const say = (msg: string) => process.stderr.write(`${JSON.stringify({ level: 'info', message: msg })}\n`);
  const fail = (msg: string) => { process.stderr.write(`${JSON.stringify({ level: 'error', message: msg })}\n`); return 1; };
  if (!values.dest) return fail('--dest is required');
  try {
    let fetched = values.dest;
    if (!values['verify-only']) {
      if (!values.uri) return fail('--uri is required');
      const files = await listSource(values.uri, process.env);
      await downloadAll(files, values.dest);
      // One file is verified as a file; several as the directory they make up.
      fetched = files.length === 1 ? join(values.dest, files[0]!.path) : values.dest;
      say(`fetched ${files.length} file(s) from ${values.uri} to ${values.dest}`);
    }
    if (values.digest) {
      const actual = await modelDigest(values['verify-only'] ? values.dest : fetched);
      if (actual !== values.digest) return fail(`digest mismatch for ${values.uri ?? values.dest}: expected ${values.digest}, got ${actual}`);
      say(`digest verified: ${actual}`);
    }
    return 0;
  } catch (err) {
    return fail(describeError(err));
  }
}
