// A TCP proxy in front of the apiserver for one client, switchable at run time to the faults a leader
// must survive without doing harm:
//  - forward: bytes pass both ways untouched (TLS end to end, the client's certificate included);
//  - blackhole: a partition. Connections open at the switch freeze (nothing more passes either way,
//    nothing is closed), and new ones are accepted but never forwarded. Frozen connections stay frozen
//    after `forward` again, as connections through a partition that heals do: the client has to give up
//    on them. Bytes a client wrote into a frozen connection are never delivered late;
//  - throttle: an overloaded apiserver. Open connections are cut, and every request on a new one is
//    answered 429 with Retry-After, over TLS with the apiserver's own serving certificate, so the client
//    cannot tell. Requests are recorded, so a test can measure the rate the client keeps to.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { testCluster } from '../cluster/cluster.js';

export type ProxyMode = 'forward' | 'blackhole' | 'throttle';

export interface ThrottledRequest {
  at: number;
  method: string;
  path: string;
  userAgent: string;
}

export class ApiserverProxy {
  private mode: ProxyMode = 'forward';
  private server: Server | undefined;
  private readonly throttler: HttpsServer;
  private readonly live = new Set<Socket>();
  private readonly frozen = new Set<Socket>();
  private readonly throttled = new Set<Socket>();
  readonly requests: ThrottledRequest[] = [];
  port = 0;

  /** `retryAfterSeconds`: what the throttle answers say. */
  constructor(private readonly retryAfterSeconds = 1) {
    const pkiDir = join(testCluster().state.dir, 'pki');
    this.throttler = createHttpsServer({ cert: readFileSync(join(pkiDir, 'apiserver.crt')), key: readFileSync(join(pkiDir, 'apiserver.key')) }, (req, res) => {
      this.requests.push({ at: Date.now(), method: req.method ?? '', path: req.url ?? '', userAgent: req.headers['user-agent'] ?? '' });
      req.resume();
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(this.retryAfterSeconds) }).end(JSON.stringify({
        kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'TooManyRequests', code: 429,
        message: 'The apiserver is overloaded: too many requests, please try again later',
      }));
    });
    this.throttler.on('connection', (socket: Socket) => {
      this.throttled.add(socket);
      socket.on('close', () => this.throttled.delete(socket));
    });
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const target = new URL(testCluster().state.server);
    this.server = createServer((client) => this.accept(client, target));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  private accept(client: Socket, target: URL): void {
    client.on('error', () => undefined);
    if (this.mode === 'blackhole') {
      this.freeze(client);
      return;
    }
    if (this.mode === 'throttle') {
      this.throttler.emit('connection', client);
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) {
      this.live.add(s);
      s.on('close', () => {
        this.live.delete(s);
        if (!this.frozen.has(s)) (s === client ? upstream : client).destroy();
      });
    }
  }

  private freeze(socket: Socket): void {
    this.frozen.add(socket);
    socket.on('close', () => this.frozen.delete(socket));
    socket.unpipe();
    socket.pause();
  }

  /** Switches mode; see the header for what each does to connections already open. */
  setMode(mode: ProxyMode): void {
    this.mode = mode;
    if (mode === 'blackhole') {
      for (const s of [...this.live]) {
        this.live.delete(s);
        this.freeze(s);
      }
    }
    if (mode === 'throttle') for (const s of [...this.live]) s.destroy();
    if (mode !== 'throttle') for (const s of [...this.throttled]) s.destroy();
  }

  /** A copy of the cluster's admin kubeconfig that reaches the apiserver through this proxy. */
  writeKubeconfig(path: string): string {
    const doc = yaml.load(readFileSync(testCluster().state.kubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
    for (const c of doc.clusters) c.cluster.server = this.url;
    writeFileSync(path, yaml.dump(doc));
    return path;
  }

  async close(): Promise<void> {
    for (const s of [...this.live, ...this.frozen, ...this.throttled]) s.destroy();
    this.throttler.close();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
