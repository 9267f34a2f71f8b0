// The local model store `make run` serves the quickstart from on a real node: trains the iris models
// (test/support/train_models.py), serves them over HTTPS with a CA of its own on the host end of the
// node's link, writes what a ModelDeployment needs to DIR/model-store.json (URLs, digests, CA), and
// runs until it is stopped.
//
//   node --import tsx hack/model-store.ts --dir .cluster --host 10.213.N.1
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ModelStore, trainModels } from '../test/support/real-models.js';

const { values } = parseArgs({ options: { dir: { type: 'string' }, host: { type: 'string' } } });
if (!values.dir || !values.host) throw new Error('usage: model-store.ts --dir DIR --host ADDRESS');
const models = trainModels(join(values.dir, 'models'));
const store = new ModelStore(models.dir, values.host, join(values.dir, 'model-store-pki'));
await store.start();
const urls = Object.fromEntries(Object.keys(models.digests).map((path) => [path, store.url(path)]));
writeFileSync(join(values.dir, 'model-store.json'), JSON.stringify({ urls, digests: models.digests, caCert: store.caCert, golden: models.golden }, null, 2));
process.stderr.write(`[model-store] serving ${Object.keys(urls).length} models at https://${values.host}:${store.port}/\n`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => { void store.stop().then(() => process.exit(0)); });
