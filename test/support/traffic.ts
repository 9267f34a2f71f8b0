// Live traffic through a Service, as users send it, from inside the real node's network namespace
// (where ClusterIPs answer): one V2 inference request at a time, each on a new connection so that
// kube-proxy picks a backend per request, recording when it was sent, its status and the model_version
// that answered. Run as `traffic.ts --url URL --body JSON` in the namespace; it prints one JSON line per
// request until stdin closes or --seconds pass. The Traffic class runs it from a test.
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Answer {
  /** ms since the epoch, when the request was sent. */
  at: number;
  /** HTTP status, or 0 when the request failed without one. */
  status: number;
  version?: string;
  error?: string;
}

function once(url: string, body: string, timeoutMs: number): Promise<Omit<Answer, 'at'>> {
  return new Promise((resolveAnswer) => {
    const req = request(url, {
      method: 'POST', agent: false, timeout: timeoutMs,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => {
        let version: string | undefined;
        try { version = (JSON.parse(text) as { model_version?: string }).model_version; } catch { /* not JSON */ }
        resolveAnswer({ status: res.statusCode ?? 0, ...(version ? { version } : {}), ...(res.statusCode === 200 ? {} : { error: text.slice(0, 200) }) });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (err) => resolveAnswer({ status: 0, error: err.message }));
    req.end(body);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { url: { type: 'string' }, body: { type: 'string' }, seconds: { type: 'string', default: '600' }, gap: { type: 'string', default: '20' } } });
  const deadline = Date.now() + Number(values.seconds) * 1000;
  let stopped = false;
  process.stdin.on('end', () => { stopped = true; }).resume();
  while (!stopped && Date.now() < deadline) {
    const at = Date.now();
    const answer = await once(values.url!, values.body!, 5_000);
    process.stdout.write(`${JSON.stringify({ at, ...answer })}\n`);
    await sleep(Number(values.gap));
  }
}

/** Runs the client in the node's network namespace and keeps every answer. */
export class Traffic {
  readonly answers: Answer[] = [];
  private child: ChildProcess | undefined;

  constructor(private readonly netns: string, private readonly url: string, private readonly body: unknown) {}

  start(): void {
    const self = fileURLToPath(import.meta.url);
    this.child = spawn('/usr/bin/setpriv', ['--pdeathsig', 'KILL', '--', '/usr/bin/nsenter', `--net=/run/netns/${this.netns}`, '--',
      process.execPath, '--import', 'tsx', self, '--url', this.url, '--body', JSON.stringify(this.body)], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try { this.answers.push(JSON.parse(line) as Answer); } catch { /* partial line at exit */ }
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin?.end();
    await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))]);
  }

  /** Failed requests sent at or after `from`. */
  failures(from = 0): Answer[] {
    return this.answers.filter((a) => a.at >= from && a.status !== 200);
  }

  /** When the first request that was answered was sent. */
  firstAnswered(): number | undefined {
    return this.answers.find((a) => a.status === 200)?.at;
  }

  /** Answers sent within [from, to), counted by the model_version that answered. */
  byVersion(from = 0, to = Number.MAX_SAFE_INTEGER): Record<string, number> {
    const out: Record<string, number> = {};
    for (const a of this.answers) if (a.at >= from && a.at < to && a.status === 200) out[a.version ?? '?'] = (out[a.version ?? '?'] ?? 0) + 1;
    return out;
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: Error) => { process.stderr.write(`${err.message}\n`); process.exit(1); });
}
