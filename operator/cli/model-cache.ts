// The model cache `modelship fetch` looks in before it downloads: a directory (a node's hostPath or a
// ReadWriteMany PVC) shared by every fetcher that mounts it, keyed by the model's digest. Only a model
// with a digest is cached, because the digest is both the key and the proof: without one, what is on
// disk could be anything, and two revisions of "the same" URI could hold different bytes.
//
//   <cache>/sha256-<hex>/entry.json   {"digest", "file" (a one-file model's path) or null, "bytes"}
//   <cache>/sha256-<hex>/data/        the model exactly as it lies in /mnt/models
//   <cache>/sha256-<hex>/last-used    rewritten on every use; its mtime orders least-recently-used eviction
//   <cache>/.incoming-<random>/       an entry being written, renamed to sha256-<hex> only when complete
//   <cache>/.trash-<random>/          an entry being deleted (renamed away first, so it vanishes at once)
//
// Why it is safe to share:
// - Nothing is served unverified: a hit is copied into the pod's own model directory and the *copy* is
//   verified against the digest, so a cache entry changed before or during the copy is caught (verifying
//   the entry and then copying it would leave a window). A mismatch removes the entry and the model is
//   fetched from its source as if there were no cache.
// - An entry appears by one rename of a complete directory, so a fetcher killed mid-write leaves only an
//   .incoming- directory, which no lookup reads (eviction removes old ones). Two fetchers that miss the
//   same digest both download; the second rename fails because the entry exists, and the loser drops its
//   copy. No lock file: a lock held by a fetcher that was killed, on another node of a shared volume, is a
//   failure mode this design does not have.
// - Copies are made from the pod's model directory (an emptyDir) rather than linked: the cache and the
//   emptyDir are different filesystems, and a hardlink would let the server's view change with the entry.
//
// The pure decision (eviction) is exported for tests; the class does the I/O. The report a fetch leaves
// is fetch-report.ts.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, copyFile, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';

/** The entry directory's name for a digest; undefined for anything but sha256:<64 hex>. */
export function entryName(digest: string): string | undefined {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  return m ? `sha256-${m[1]}` : undefined;
}

export interface CachedEntry {
  name: string;
  bytes: number;
  /** When it was last used (ms since the epoch). */
  lastUsed: number;
}

/**
 * The entries to evict so that what stays fits in maxBytes: least recently used first, never `keep` (the
 * entry just written or used). Pure.
 */
export function planEviction(entries: CachedEntry[], maxBytes: number, keep?: string): string[] {
  let total = entries.reduce((sum, e) => sum + e.bytes, 0);
  const evict: string[] = [];
  const oldestFirst = entries.filter((e) => e.name !== keep).sort((a, b) => a.lastUsed - b.lastUsed || (a.name < b.name ? -1 : 1));
  for (const e of oldestFirst) {
    if (total <= maxBytes) break;
    evict.push(e.name);
    total -= e.bytes;
  }
  return evict;
}

/** An .incoming- directory older than this belongs to a fetcher that died; younger ones may still be written. */
export const abandonedAfterMs = 6 * 3600_000;

interface EntryRecord {
  digest: string;
  /** The model's one file, relative to the model directory; null for a tree. */
  file: string | null;
  bytes: number;
}

/** A cache entry that failed its check: removed, and the model fetched from its source. */
export class CorruptEntry extends Error {
  override name = 'CorruptEntry';
}

export type Restored = { kind: 'hit'; bytes: number } | { kind: 'absent' } | { kind: 'corrupt'; reason: string; ino?: number } | { kind: 'failed'; reason: string };

const safeRelative = (p: string) => !isAbsolute(p) && p !== '' && !normalize(p).split(sep).includes('..');

/**
 * Copies a tree: directories, regular files and symbolic links (as links, never followed). Anything else
 * (a device, a FIFO, a socket) is no part of a model and makes the source corrupt. Returns the bytes of
 * the files copied.
 */
async function copyTree(from: string, to: string): Promise<number> {
  await mkdir(to, { recursive: true });
  let bytes = 0;
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isDirectory()) bytes += await copyTree(src, dst);
    else if (entry.isSymbolicLink()) await symlink(await readlink(src), dst);
    else if (entry.isFile()) {
      // Not COPYFILE_FICLONE: a reflink would share blocks with an entry another fetcher may be deleting.
      await copyFile(src, dst);
      bytes += (await stat(dst)).size;
    } else throw new CorruptEntry(`${src} is neither a file, a directory nor a link`);
  }
  return bytes;
}

/** The bytes of the regular files under a path (a file: its size). Links count nothing. */
export async function treeBytes(path: string): Promise<number> {
  const info = await lstat(path);
  if (info.isFile()) return info.size;
  if (!info.isDirectory()) return 0;
  let bytes = 0;
  for (const entry of await readdir(path)) bytes += await treeBytes(join(path, entry));
  return bytes;
}

/** Removes everything inside a directory but the directory itself (a mount point cannot be removed). */
export async function emptyDirectory(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const entry of await readdir(dir)) await rm(join(dir, entry), { recursive: true, force: true });
}

const errno = (err: unknown) => (err as NodeJS.ErrnoException | undefined)?.code;

export interface ModelCacheOptions {
  dir: string;
  maxBytes: number;
  /** Where the cache says what it did (the fetcher's JSON log). */
  log?: (message: string) => void;
  /** Test hook: called after an entry is complete in its .incoming- directory, right before the rename. */
  beforeCommit?: (incoming: string) => void | Promise<void>;
}

export class ModelCache {
  private readonly log: (message: string) => void;

  constructor(private readonly options: ModelCacheOptions) {
    this.log = options.log ?? (() => undefined);
  }

  get dir(): string { return this.options.dir; }

  /** Whether this fetcher may read and write the cache (a hostPath created by the kubelet belongs to root). */
  async usable(): Promise<string | undefined> {
    try {
      await mkdir(this.dir, { recursive: true });
      await access(this.dir, constants.R_OK | constants.W_OK | constants.X_OK);
      return undefined;
    } catch (err) {
      return `the model cache ${this.dir} cannot be used (${errno(err) ?? (err as Error).message}); fetching without it`;
    }
  }

  /**
   * Puts the cached model for `digest` into `dest` (emptied first) when the cache holds it, and verifies
   * what landed there with `verify`. Never throws: a failure is a result.
   */
  async restore(digest: string, dest: string, verify: (path: string) => Promise<string>): Promise<Restored> {
    const name = entryName(digest);
    if (!name) return { kind: 'absent' };
    const entry = join(this.dir, name);
    let ino: number | undefined;
    try {
      ino = (await stat(entry)).ino;
    } catch (err) {
      if (errno(err) === 'ENOENT') return { kind: 'absent' };
      return { kind: 'failed', reason: `cannot read ${entry}: ${(err as Error).message}` };
    }
    try {
      let record: EntryRecord;
      try {
        record = JSON.parse(await readFile(join(entry, 'entry.json'), 'utf8')) as EntryRecord;
      } catch (err) {
        throw new CorruptEntry(`its entry.json cannot be read (${errno(err) ?? (err as Error).message})`);
      }
      if (record.digest !== digest) throw new CorruptEntry(`its entry.json names ${String(record.digest)}`);
      if (record.file !== null && (typeof record.file !== 'string' || !safeRelative(record.file))) throw new CorruptEntry(`its entry.json names the file ${JSON.stringify(record.file)}`);
      // Used from now: an eviction running meanwhile picks older entries before this one.
      await this.touch(entry).catch(() => undefined);
      await emptyDirectory(dest);
      let bytes: number;
      let target: string;
      if (record.file) {
        target = join(dest, record.file);
        await mkdir(dirname(target), { recursive: true });
        const from = join(entry, 'data', record.file);
        if (!(await lstat(from)).isFile()) throw new CorruptEntry(`${record.file} is not a regular file`);
        await copyFile(from, target);
        bytes = (await stat(target)).size;
      } else {
        target = dest;
        bytes = await copyTree(join(entry, 'data'), dest);
      }
      const actual = await verify(target);
      if (actual !== digest) throw new CorruptEntry(`its copy digests to ${actual}`);
      await this.touch(entry);
      return { kind: 'hit', bytes };
    } catch (err) {
      if (err instanceof CorruptEntry) return { kind: 'corrupt', reason: err.message, ino };
      // Vanished mid-copy (evicted, or removed as corrupt by another fetcher): not this entry's fault.
      if (errno(err) === 'ENOENT') return { kind: 'failed', reason: `${name} went away while it was copied` };
      // verify() refusing the copy (a link leaving the tree) is the entry's fault: it holds what the digest forbids.
      if (err instanceof Error && /^refusing the model/.test(err.message)) return { kind: 'corrupt', reason: err.message, ino };
      return { kind: 'failed', reason: `${name}: ${(err as Error).message}` };
    }
  }

  /**
   * Removes a corrupt entry, unless it was replaced since it was read (`ino`): another fetcher may have
   * removed it and put a good one in its place.
   */
  async remove(digest: string, ino?: number): Promise<void> {
    const name = entryName(digest);
    if (!name) return;
    const entry = join(this.dir, name);
    try {
      if (ino !== undefined && (await stat(entry)).ino !== ino) return;
    } catch { return; }
    await this.discard(entry);
  }

  /**
   * Adds a verified model (the file or tree at `source`, `file` being a one-file model's path relative to
   * the model directory) under its digest, then evicts down to the bound. Returns what it did.
   */
  async insert(digest: string, source: string, file: string | null): Promise<'inserted' | 'present' | 'too-large'> {
    const name = entryName(digest);
    if (!name) throw new Error(`not a sha256 digest: ${digest}`);
    const bytes = await treeBytes(source);
    // An entry larger than the whole cache would evict everything else and still not fit.
    if (bytes > this.options.maxBytes) return 'too-large';
    const entry = join(this.dir, name);
    const incoming = await mkdtemp(join(this.dir, '.incoming-'));
    try {
      if (file) {
        const target = join(incoming, 'data', file);
        await mkdir(dirname(target), { recursive: true });
        await copyFile(source, target);
      } else {
        await copyTree(source, join(incoming, 'data'));
      }
      const record: EntryRecord = { digest, file, bytes };
      await writeFile(join(incoming, 'entry.json'), `${JSON.stringify(record)}\n`);
      await writeFile(join(incoming, 'last-used'), new Date().toISOString());
      await this.options.beforeCommit?.(incoming);
      try {
        await rename(incoming, entry);
      } catch (err) {
        // Another fetcher finished first (a rename onto a non-empty directory fails): its entry stands.
        if (errno(err) === 'ENOTEMPTY' || errno(err) === 'EEXIST') {
          await this.discard(incoming);
          await this.touch(entry).catch(() => undefined);
          return 'present';
        }
        throw err;
      }
    } catch (err) {
      await rm(incoming, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
    await this.evict(name);
    return 'inserted';
  }

  /** The entries, with their sizes and last use; unreadable ones count as unused and large, so they go first. */
  async entries(): Promise<CachedEntry[]> {
    const out: CachedEntry[] = [];
    for (const name of await readdir(this.dir)) {
      if (!/^sha256-[a-f0-9]{64}$/.test(name)) continue;
      const entry = join(this.dir, name);
      let bytes = Number.MAX_SAFE_INTEGER;
      let lastUsed = 0;
      try {
        const record = JSON.parse(await readFile(join(entry, 'entry.json'), 'utf8')) as EntryRecord;
        if (Number.isSafeInteger(record.bytes) && record.bytes >= 0) bytes = record.bytes;
        lastUsed = (await stat(join(entry, 'last-used'))).mtimeMs;
      } catch { /* an entry that cannot be read is the first to go */ }
      out.push({ name, bytes, lastUsed });
    }
    return out;
  }

  /** Evicts least-recently-used entries until the cache fits its bound, never `keep`; clears leftovers. */
  async evict(keep?: string): Promise<string[]> {
    const now = Date.now();
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.startsWith('.trash-')) await rm(path, { recursive: true, force: true }).catch(() => undefined);
      if (name.startsWith('.incoming-')) {
        const info = await stat(path).catch(() => undefined);
        if (info && now - info.mtimeMs > abandonedAfterMs) await rm(path, { recursive: true, force: true }).catch(() => undefined);
      }
    }
    const evicted = planEviction(await this.entries(), this.options.maxBytes, keep);
    for (const name of evicted) {
      await this.discard(join(this.dir, name));
      this.log(`model cache: evicted ${name} (least recently used) to stay under ${this.options.maxBytes} bytes`);
    }
    return evicted;
  }

  /** Marks an entry used now; writing the file (rather than setting times) needs only write permission. */
  private async touch(entry: string): Promise<void> {
    const handle = await open(join(entry, 'last-used'), 'w');
    try { await handle.writeFile(new Date().toISOString()); } finally { await handle.close(); }
  }

  /** Renames a directory out of sight, then deletes it: a lookup never sees it half deleted. */
  private async discard(path: string): Promise<void> {
    const trash = join(this.dir, `.trash-${randomBytes(6).toString('hex')}`);
    try {
      await rename(path, trash);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw err;
    }
    await rm(trash, { recursive: true, force: true });
  }
}
