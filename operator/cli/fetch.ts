// `modelship fetch`: the init container that puts the model in place and verifies its digest.
// The digest of a file is the sha256 of its bytes; of a directory, the sha256 of its canonical listing
// ("<sha256>  <relative path>\n" for every file, sorted by path), so both are reproducible with
// coreutils: `find . -type f | sort | xargs sha256sum`.
// A symbolic link in the tree is listed as a link, "symlink:<sha256 of its target text>  <relative path>\n"
// (`readlink -n <path> | sha256sum`), sorted with the files; a tree without links digests as before.
// With --cache-dir (and a digest), the model cache (model-cache.ts) is looked in first: a hit is copied
// into --dest and verified there; a miss is downloaded, verified, then stored. The cache's report
// ({"cache","bytes","digest"}) becomes the container's termination message, which the operator counts.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readlink, realpath, stat, rename } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { fetchReportLine, type CacheResult, type FetchReport } from './fetch-report.js';
import { emptyDirectory, entryName, ModelCache, treeBytes } from './model-cache.js';
import { listSource, type SourceFile } from './sources.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

interface TreeEntry { path: string; link: boolean }

/** Files and symbolic links under dir; directories are walked, links are never followed. */
async function listEntries(dir: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...await listEntries(full));
    else if (entry.isFile()) out.push({ path: full, link: false });
    else if (entry.isSymbolicLink()) out.push({ path: full, link: true });
  }
  return out;
}

const within = (root: string, p: string) => p === root || p.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);

/**
 * Refuses a link unless resolving it never leaves the model tree. Why: a model served from a PVC is
 * verified here but read by the server, so a link to /etc/passwd, to a sibling model on the claim, or
 * to anything else outside the tree would be served without its bytes in the digest. A link that stays
 * inside is safe to cover by its target text alone, since whatever it reaches is a file of the tree and
 * has its own entry in the listing. Absolute targets are refused even when they land inside: they mean
 * whatever that path is in the container that opens them (the fetcher's and the server's images differ,
 * and the tree's mount point differs from wherever the digest was computed). The target is walked one
 * component at a time, so "a/.." through a link to the root, or "../<tree name>/x", counts as leaving;
 * a link that points at nothing (or loops) is refused too, as where it leads cannot be checked.
 */
async function checkLink(root: string, link: string, target: string): Promise<void> {
  const shown = relative(root, link);
  if (isAbsolute(target)) throw new Error(`refusing the model: symbolic link ${shown} -> ${target} has an absolute target (only relative links inside the model directory are allowed)`);
  const realRoot = await realpath(root);
  let at = await realpath(dirname(link));
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (at === realRoot) throw new Error(`refusing the model: symbolic link ${shown} -> ${target} points outside the model directory`);
      at = dirname(at);
      continue;
    }
    try {
      at = await realpath(join(at, part));
    } catch (err) {
      throw new Error(`refusing the model: symbolic link ${shown} -> ${target} cannot be resolved`, { cause: err });
    }
    if (!within(realRoot, at)) throw new Error(`refusing the model: symbolic link ${shown} -> ${target} points outside the model directory`);
  }
}

/** sha256:<hex> of a file, or of a directory's canonical listing. */
export async function modelDigest(path: string): Promise<string> {
  const info = await stat(path);
  if (info.isFile()) return `sha256:${await sha256File(path)}`;
  const entries = (await listEntries(path)).map((e) => ({ ...e, rel: relative(path, e.path) })).sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  const listing = createHash('sha256');
  for (const e of entries) {
    if (e.link) {
      // Its target's raw bytes, so a retargeted link changes the digest; "symlink:" never begins a file's line.
      const target = await readlink(e.path, { encoding: 'buffer' });
      await checkLink(path, e.path, target.toString());
      listing.update(`symlink:${createHash('sha256').update(target).digest('hex')}  ${e.rel}\n`);
    } else {
      listing.update(`${await sha256File(e.path)}  ${e.rel}\n`);
    }
  }
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
      // Headers are made now, right before the GET: a signature made at listing time may have expired.
      const res = await fetch(f.url, { headers: f.headers(), redirect: 'follow' });
      if (!res.ok || !res.body) throw new Error(`GET ${f.url}: HTTP ${res.status}`);
      await pipeline(Readable.fromWeb(res.body), createWriteStream(`${target}.partial`));
      await rename(`${target}.partial`, target);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
}

/** The digest an oci:// URI is pinned to (…@sha256:<hex>), if any; resolve.ts's modelUriDigest says the same. */
export function uriDigest(uri: string): string | undefined {
  return uri.startsWith('oci://') ? /@(sha256:[a-f0-9]{64})$/.exec(uri)?.[1] : undefined;
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

/**
 * Leaves the cache's report where the operator reads it: the container's termination message (written
 * only on success, so a failure's message stays the log's last line, FallbackToLogsOnError). The file is
 * never created: outside a container there is none, and the log line is the record.
 */
async function leaveReport(report: FetchReport, terminationLog: string): Promise<void> {
  process.stderr.write(`${JSON.stringify({ level: 'info', message: `model cache ${report.cache}: ${report.bytes} bytes ${report.cache === 'hit' ? 'from the cache' : 'downloaded'}`, ...report })}\n`);
  try {
    const handle = await open(terminationLog, 'r+');
    try {
      await handle.truncate(0);
      await handle.write(fetchReportLine(report), 0);
    } finally {
      await handle.close();
    }
  } catch { /* no termination log here */ }
}

export interface FetchHooks {
  /** Test hook: runs when a cache entry is complete, right before it is renamed into place. */
  beforeCacheCommit?: (incoming: string) => void | Promise<void>;
}

export async function runFetch(argv: string[], hooks: FetchHooks = {}): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      uri: { type: 'string' }, dest: { type: 'string' }, digest: { type: 'string' }, 'verify-only': { type: 'boolean', default: false },
      'cache-dir': { type: 'string' }, 'cache-max-bytes': { type: 'string' }, 'termination-log': { type: 'string', default: '/dev/termination-log' },
    },
  });
  const say = (msg: string) => process.stderr.write(`${JSON.stringify({ level: 'info', message: msg })}\n`);
  const fail = (msg: string) => { process.stderr.write(`${JSON.stringify({ level: 'error', message: msg })}\n`); return 1; };
  if (!values.dest) return fail('--dest is required');
  const maxBytesText = values['cache-max-bytes'];
  if (maxBytesText !== undefined && !/^[1-9][0-9]{0,17}$/.test(maxBytesText)) return fail(`--cache-max-bytes: "${maxBytesText}" is not a positive whole number of bytes`);
  // The crash-consistency test of the cache: die as SIGKILL would with an entry complete but not yet in place.
  const beforeCommit = hooks.beforeCacheCommit
    ?? (process.env.MODELSHIP_FAULT_KILL_BEFORE_CACHE_COMMIT ? () => { process.kill(process.pid, 'SIGKILL'); } : undefined);
  // A URI pinned to a digest (oci://registry/repo@sha256:…) and a --digest must agree: otherwise one
  // would be pulled while the other is recorded.
  const pinned = values.uri ? uriDigest(values.uri) : undefined;
  if (pinned && values.digest && pinned !== values.digest) {
    return fail(`digest conflict for ${values.uri}: the URI is pinned to ${pinned} but --digest is ${values.digest}`);
  }
  try {
    let fetched = values.dest;
    let oneFile: string | null = null;
    // With a cache, what this fetch did with it (reported at the end); undefined: no cache in play.
    let result: CacheResult | undefined;
    let cache: ModelCache | undefined;
    if (!values['verify-only']) {
      if (!values.uri) return fail('--uri is required');
      const cacheDir = values['cache-dir'];
      // The digest is the key and the proof: a model without one is never cached nor served from the cache.
      if (cacheDir && !(values.digest && entryName(values.digest))) say('the model has no sha256 digest: the model cache is not used');
      if (cacheDir && values.digest && entryName(values.digest)) {
        const candidate = new ModelCache({ dir: cacheDir, maxBytes: maxBytesText ? Number(maxBytesText) : Number.MAX_SAFE_INTEGER, log: say, ...(beforeCommit ? { beforeCommit } : {}) });
        const unusable = await candidate.usable();
        if (unusable) {
          say(unusable);
          result = 'unavailable';
        } else {
          cache = candidate;
          const restored = await cache.restore(values.digest, values.dest, modelDigest);
          if (restored.kind === 'hit') {
            say(`digest verified: ${values.digest} (from the model cache ${cacheDir})`);
            await leaveReport({ cache: 'hit', bytes: restored.bytes, digest: values.digest }, values['termination-log']);
            return 0;
          }
          if (restored.kind === 'corrupt') {
            say(`model cache entry for ${values.digest} is corrupt: ${restored.reason}; removed it, fetching from ${values.uri}`);
            await cache.remove(values.digest, restored.ino).catch((err: unknown) => say(`model cache: could not remove the corrupt entry: ${describeError(err)}`));
            await emptyDirectory(values.dest);
            result = 'corrupt';
          } else if (restored.kind === 'failed') {
            say(`model cache: ${restored.reason}; fetching from ${values.uri}`);
            await emptyDirectory(values.dest);
            result = 'miss';
          } else {
            result = 'miss';
          }
        }
      }
      const files = await listSource(values.uri, process.env);
      await downloadAll(files, values.dest);
      // One file is verified as a file; several as the directory they make up.
      oneFile = files.length === 1 ? files[0]!.path : null;
      fetched = oneFile ? join(values.dest, oneFile) : values.dest;
      say(`fetched ${files.length} file(s) from ${values.uri} to ${values.dest}`);
    }
    if (values.digest) {
      const actual = await modelDigest(values['verify-only'] ? values.dest : fetched);
      if (actual !== values.digest) return fail(`digest mismatch for ${values.uri ?? values.dest}: expected ${values.digest}, got ${actual}`);
      say(`digest verified: ${actual}`);
    }
    if (result && values.digest) {
      // Only a verified model enters the cache; a cache that fails to take it never fails the fetch.
      if (cache) {
        try {
          const inserted = await cache.insert(values.digest, fetched, oneFile);
          say(inserted === 'inserted' ? `model cache: stored ${values.digest}`
            : inserted === 'present' ? `model cache: another fetcher stored ${values.digest} first`
              : `model cache: ${values.digest} is larger than the whole cache (--cache-max-bytes), not stored`);
        } catch (err) {
          say(`model cache: could not store ${values.digest}: ${describeError(err)}`);
        }
      }
      await leaveReport({ cache: result, bytes: await treeBytes(fetched), digest: values.digest }, values['termination-log']);
    }
    return 0;
  } catch (err) {
    return fail(describeError(err));
  }
}
