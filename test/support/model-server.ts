// Stands in for the model servers behind <md>-canary and <md>-stable: the operator reaches Services
// through MODELSHIP_SERVICE_URL_TEMPLATE=http://127.0.0.1:PORT/{namespace}/{service}, and the test
// decides what each revision answers.
import { createServer, type Server } from 'node:http';
import { freePort } from '../cluster/control-plane.js';

export type Responder = (body: unknown) => { status: number; body: unknown };

export class ModelServerStub {
  private server: Server | undefined;
  readonly responders = new Map<string, Responder>();
  readonly requests: { service: string; path: string }[] = [];
  port = 0;

  get urlTemplate(): string {
    return `http://127.0.0.1:${this.port}/{namespace}/{service}`;
  }

  /** What `<service>` in `<namespace>` answers. */
  answer(namespace: string, service: string, responder: Responder): void {
    this.responders.set(`${namespace}/${service}`, responder);
  }

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => { raw += c.toString(); });
      req.on('end', () => {
        const [, namespace = '', service = '', ...rest] = (req.url ?? '').split('/');
        this.requests.push({ service: `${namespace}/${service}`, path: `/${rest.join('/')}` });
        const responder = this.responders.get(`${namespace}/${service}`);
        if (!responder) { res.writeHead(503).end('no such service'); return; }
        const out = responder(raw ? JSON.parse(raw) : undefined);
        res.writeHead(out.status, { 'content-type': 'application/json' }).end(JSON.stringify(out.body));
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
  }

  stop(): void {
    this.server?.close();
  }
}
