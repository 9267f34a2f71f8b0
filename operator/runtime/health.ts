// /healthz (the process is alive and its event loop turns), /readyz (caches synced; a standby
// replica is ready too, so a rolling update of the operator is not blocked by leader election) and
// /metrics (Prometheus text format from prom-client).
import type { Server } from 'node:http';
import { http } from './node-http.js';
import type { Registry } from 'prom-client';

export interface HealthChecks {
  live(): boolean;
  ready(): boolean;
}

export function startHealthServer(port: number, host: string, registry: Registry, checks: HealthChecks): Promise<Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/livez') {
      const ok = checks.live();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok' : 'not live');
    } else if (path === '/readyz') {
      const ok = checks.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok' : 'not ready');
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
