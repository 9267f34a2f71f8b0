// Real models for the real node: trained at test time (train_models.py) with the library versions
// MLServer's image pins, and served over HTTPS from a model store on the host end of the node's link,
// so the `fetch-model` init container downloads them and verifies their digests as it would in a cluster.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { homedir } from 'node:os';
import { join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureServingIdentity } from '../cluster/pki.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
const constraints = join(repoRoot, 'hack/images/mlserver/constraints.txt');

export interface TrainedModels {
  dir: string;
  /** Path under dir → sha256:<hex>. */
  digests: Record<string, string>;
  /** Four iris rows, and what each model answers for them. */
  golden: number[][];
  expected: Record<'v1' | 'v2' | 'wrong' | 'xgboost' | 'lightgbm', number[]>;
  v1_v2_agreement: number;
}

/**
 * A Python with scikit-learn, XGBoost and LightGBM at MLServer's pins, and TorchServe's model archiver
 * (pure Python, no torch), in a venv cached by those pins.
 */
const trainingPackages = ['scikit-learn', 'xgboost', 'lightgbm', 'joblib', 'numpy', 'scipy', 'torch-model-archiver==0.12.0', 'enum-compat==0.0.3'];

export function trainingPython(): string {
  const key = createHash('sha256').update(readFileSync(constraints)).update(trainingPackages.join(' ')).digest('hex').slice(0, 12);
  const cache = process.env.MODELSHIP_TRAIN_VENV ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'modelship', `train-venv-${key}`);
  const python = join(cache, 'bin', 'python');
  if (!existsSync(join(cache, '.complete'))) {
    execFileSync('python3', ['-m', 'venv', '--clear', cache], { stdio: 'inherit' });
    execFileSync(python, ['-m', 'pip', 'install', '--quiet', '--only-binary=:all:', '-c', constraints, ...trainingPackages], { stdio: 'inherit' });
    execFileSync('touch', [join(cache, '.complete')]);
  }
  return python;
}

export function trainModels(dir: string): TrainedModels {
  mkdirSync(dir, { recursive: true });
  const out = execFileSync(trainingPython(), [join(repoRoot, 'test/support/train_models.py'), dir], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return { dir, ...(JSON.parse(out) as Omit<TrainedModels, 'dir'>) };
}

/** An HTTPS file server with a CA of its own, listening where the node's pods can reach it. */
export class ModelStore {
  private server: Server | undefined;
  readonly requests: string[] = [];
  port = 0;
  readonly caCert: string;
  private readonly identity;

  constructor(private readonly root: string, private readonly host: string, pkiDir: string) {
    this.identity = ensureServingIdentity(pkiDir, [host, '127.0.0.1']);
    this.caCert = readFileSync(this.identity.caCert, 'utf8');
  }

  url(path: string): string {
    return `https://${this.host}:${this.port}/${path}`;
  }

  async start(): Promise<void> {
    this.server = createServer({ cert: readFileSync(this.identity.cert), key: readFileSync(this.identity.key) }, (req, res) => {
      const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0]!)).replace(/^\/+/, '');
      this.requests.push(path);
      const file = join(this.root, path);
      if (path.startsWith('..') || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': statSync(file).size });
      createReadStream(file).pipe(res);
    });
    await new Promise<void>((r) => this.server!.listen(0, this.host, r));
    const address = this.server.address();
    if (!address || typeof address === 'string') throw new Error('model store has no port');
    this.port = address.port;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
