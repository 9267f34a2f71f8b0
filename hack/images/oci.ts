// Packs a root filesystem into an OCI image layout and an archive of it, with no registry and no
// container engine: `ctr images import` loads the archive under the image's name, and a user can push
// the layout (e.g. `skopeo copy oci:DIR docker://REGISTRY/NAME:TAG`).
//
//   node --import tsx hack/images/oci.ts --layer ROOTFS.tar [--layer MORE.tar] --name NAME:TAG
//        --config CONFIG.json --out DIR   (writes DIR/ as the layout and DIR.tar as its archive)
//
// Layers are the given tars, gzip-compressed with a fixed header so the same input gives the same
// digest. CONFIG.json holds the OCI config's `config` part (User, Env, Entrypoint, Cmd, WorkingDir,
// ExposedPorts, Labels). Timestamps are SOURCE_DATE_EPOCH (default 0) so the image is reproducible.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { createGzip } from 'node:zlib';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';

interface Descriptor { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** Streams a tar through sha256 (its diff id) and gzip into the blob store; returns both digests. */
async function addLayer(tar: string, blobs: string): Promise<{ descriptor: Descriptor; diffId: string }> {
  const diff = createHash('sha256');
  const compressed = createHash('sha256');
  let size = 0;
  const tmp = join(blobs, `.layer-${process.pid}`);
  const tee = (hash: ReturnType<typeof createHash>, count = false) => new Transform({
    transform(chunk: Buffer, _enc, done) { hash.update(chunk); if (count) size += chunk.length; done(null, chunk); },
  });
  // gzip's header carries no name or time when written by zlib, so equal input gives equal bytes.
  await pipeline(createReadStream(tar), tee(diff), createGzip({ level: 6 }), tee(compressed, true), createWriteStream(tmp));
  const digest = compressed.digest('hex');
  renameSync(tmp, join(blobs, digest));
  return { descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${digest}`, size }, diffId: `sha256:${diff.digest('hex')}` };
}

function addBlob(blobs: string, mediaType: string, content: string): Descriptor {
  const digest = sha256(content);
  writeFileSync(join(blobs, digest), content);
  return { mediaType, digest: `sha256:${digest}`, size: Buffer.byteLength(content) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { layer: { type: 'string', multiple: true }, name: { type: 'string' }, config: { type: 'string' }, out: { type: 'string' } },
  });
  const { layer: layers = [], name, config, out } = values;
  if (!name || !config || !out || layers.length === 0) throw new Error('usage: oci.ts --layer TAR... --name NAME:TAG --config CONFIG.json --out DIR');
  const created = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 0) * 1000).toISOString();
  rmSync(out, { recursive: true, force: true });
  const blobs = join(out, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });

  const added = [];
  for (const l of layers) added.push(await addLayer(l, blobs));
  const imageConfig = {
    created, architecture: 'amd64', os: 'linux',
    config: JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>,
    rootfs: { type: 'layers', diff_ids: added.map((a) => a.diffId) },
    history: added.map(() => ({ created, created_by: 'hack/images/build.sh' })),
  };
  const configDescriptor = addBlob(blobs, 'application/vnd.oci.image.config.v1+json', JSON.stringify(imageConfig));
  const manifest = {
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: configDescriptor, layers: added.map((a) => a.descriptor),
  };
  const manifestDescriptor = addBlob(blobs, 'application/vnd.oci.image.manifest.v1+json', JSON.stringify(manifest));
  const tag = name.slice(name.lastIndexOf(':') + 1);
  const index = {
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    // containerd names the imported image after io.containerd.image.name; other tools read ref.name.
    manifests: [{ ...manifestDescriptor, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag } }],
  };
  writeFileSync(join(out, 'index.json'), JSON.stringify(index));
  writeFileSync(join(out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', out, '-cf', `${out}.tar`, '.']);
  const mb = (statSync(`${out}.tar`).size / 1048576).toFixed(0);
  process.stderr.write(`[images] ${name}: ${manifestDescriptor.digest} (${mb} MiB) in ${out}.tar\n`);
}

main().catch((err: Error) => { process.stderr.write(`${err.stack ?? err.message}\n`); process.exit(1); });
