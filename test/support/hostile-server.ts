// A tenant's hostile model server and the "metadata" server it points at. The operator reaches
// `<md>-canary` and `<md>-stable` through MODELSHIP_SERVICE_URL_TEMPLATE=http://127.0.0.1:PORT/{namespace}/{service};
// what each Service does is set per Service. The metadata stand-in listens on 127.0.0.2, which the
// tests' outbound policy (127.0.0.1/32 only) leaves denied, as 169.254.169.254 is in a cluster.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { freePort } from '../cluster/control-plane.js';

/** Text every hostile answer carries: it must never appear in a status, an Event or a log line. */
export const hostileMarker = 'TENANT-ANSWER-7f3a9c';

export type Behaviour =
  | { kind: 'json'; status?: number; body: unknown }
  | { kind: 'redirect'; location: string }
  | { kind: 'huge'; bytes: number }
  | { kind: 'hang' };

export class HostileServer {
  private server: Server | undefined;
  private metadataServer: Server | undefined;
  private readonly behaviours = new Map<string, Behaviour>();
  readonly requests: string[] = [];
  /** Requests the metadata stand-in received: the tests assert there are none. */
  readonly metadataHits: string[] = [];
  /** Requests the node stand-in (a "kubelet" on 127.0.0.3, a node address) received: none either. */
  readonly kubeletHits: string[] = [];
  kubeletUrl = '';
  private kubeletServer: Server | undefined;
  /** Bytes written by huge answers, summed. */
  hugeBytesSent = 0;
  port = 0;
  metadataUrl = '';
  private readonly hanging = new Set<ServerResponse>();

  get urlTemplate(): string {
    return `http://127.0.0.1:${this.port}/{namespace}/{service}`;
  }

  set(namespace: string, service: string, b: Behaviour): void {
    this.behaviours.set(`${namespace}/${service}`, b);
  }

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
    this.metadataServer = createServer((req, res) => {
      this.metadataHits.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`AccessKeyId=${hostileMarker}-metadata`);
    });
    await new Promise<void>((r) => this.metadataServer!.listen(0, '127.0.0.2', r));
    this.metadataUrl = `http://127.0.0.2:${(this.metadataServer.address() as { port: number }).port}`;
    this.kubeletServer = createServer((req, res) => {
      this.kubeletHits.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items: [hostileMarker] }));
    });
    await new Promise<void>((r) => this.kubeletServer!.listen(0, '127.0.0.3', r));
    this.kubeletUrl = `http://127.0.0.3:${(this.kubeletServer.address() as { port: number }).port}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    req.on('end', () => {
      const [, namespace = '', service = ''] = (req.url ?? '').split('/');
      this.requests.push(`${namespace}/${service}`);
      const b = this.behaviours.get(`${namespace}/${service}`);
      if (!b) return void res.writeHead(503).end(`${hostileMarker} no such service`);
      switch (b.kind) {
        case 'json':
          res.writeHead(b.status ?? 200, { 'content-type': 'application/json' }).end(JSON.stringify(b.body));
          return;
        case 'redirect':
          res.writeHead(307, { location: b.location, 'content-type': 'text/plain' }).end(`${hostileMarker} moved`);
          return;
        case 'hang':
          this.hanging.add(res);
          res.on('close', () => this.hanging.delete(res));
          return;
        case 'huge': {
          res.writeHead(200, { 'content-type': 'application/json' });
          const chunk = Buffer.from(`${hostileMarker} `.repeat(4096));
          let sent = 0;
          const write = () => {
            while (sent < b.bytes && !res.destroyed) {
              sent += chunk.length;
              this.hugeBytesSent += chunk.length;
              if (!res.write(chunk)) return void res.once('drain', write);
            }
            res.end();
          };
          write();
        }
      }
    });
  }

  stop(): void {
    for (const r of this.hanging) r.destroy();
    this.server?.closeAllConnections();
    this.server?.close();
    this.metadataServer?.close();
    this.kubeletServer?.close();
  }
}
