// The real Prometheus server (Debian's package) scraping a metrics endpoint the test serves, so rollout
// analysis runs real PromQL against real scraped data.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, probe } from '../cluster/control-plane.js';
import { ManagedProcess } from '../cluster/process.js';

/** Counters the test moves; exposed in Prometheus text format. */
export class TestMetrics {
  private readonly counters = new Map<string, number>();

  inc(name: string, labels: Record<string, string>, by = 1): void {
    const key = `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
    this.counters.set(key, (this.counters.get(key) ?? 0) + by);
  }

  text(): string {
    return [...this.counters].map(([k, v]) => `${k} ${v}`).join('\n') + '\n';
  }
}

export class TestPrometheus {
  readonly metrics = new TestMetrics();
  private server: Server | undefined;
  private process: ManagedProcess | undefined;
  address = '';

  async start(): Promise<void> {
    this.server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.metrics.text()));
    const targetPort = await freePort();
    await new Promise<void>((r) => this.server!.listen(targetPort, '127.0.0.1', r));
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'prometheus-'));
    writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [{ job_name: 'model', static_configs: [{ targets: [`127.0.0.1:${targetPort}`] }] }],
    }));
    this.address = `http://127.0.0.1:${port}`;
    this.process = new ManagedProcess({
      name: 'prometheus', binary: 'prometheus', logFile: join(dir, 'prometheus.log'),
      args: [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      ready: async () => (await probe(`${this.address}/-/ready`)).status === 200,
    });
    await this.process.start();
  }

  async stop(): Promise<void> {
    await this.process?.stop();
    this.server?.close();
  }
}
