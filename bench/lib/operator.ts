// The operator under test: built JavaScript from dist/ (as `make run` and the image run it), as its
// own process, with its log in a file. The benchmark reads it from outside only: /metrics, and
// /proc/<pid> for CPU time and resident memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, probe } from '../../test/cluster/control-plane.js';

export const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
/** The operator's entry point; OPERATOR_ENTRY points the benchmark at another build (a candidate fix). */
export const operatorEntry = process.env.OPERATOR_ENTRY ? resolve(process.env.OPERATOR_ENTRY) : join(repoRoot, 'dist/operator/main.js');

export interface BenchOperatorOptions {
  kubeconfig: string;
  logDir: string;
  name: string;
  concurrency: number;
  resyncSeconds?: number;
  /** Extra Node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Where --cpu-prof and heap snapshots go (--diagnostic-dir). */
  diagnosticDir?: string;
}

/** One Prometheus sample: a metric name, its labels and its value. */
export interface Sample { name: string; labels: Record<string, string>; value: number }

export class Metrics {
  constructor(readonly samples: Sample[]) {}

  static parse(text: string): Metrics {
    const samples: Sample[] = [];
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels: Record<string, string> = {};
      if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      samples.push({ name: m[1]!, labels, value: Number(m[3]) });
    }
    return new Metrics(samples);
  }

  /** Sum of the samples of `name` whose labels include `match`. */
  sum(name: string, match: Record<string, string> = {}): number {
    let total = 0;
    for (const s of this.samples) {
      if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
    return total;
  }

  /** Sums of `name` grouped by one label. */
  by(name: string, label: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of this.samples) if (s.name === name) out[s.labels[label] ?? ''] = (out[s.labels[label] ?? ''] ?? 0) + s.value;
    return out;
  }

  /** Cumulative buckets of a histogram (le → count). */
  buckets(name: string): { le: number; count: number }[] {
    return this.samples
      .filter((s) => s.name === `${name}_bucket`)
      .map((s) => ({ le: s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le), count: s.value }));
  }
}

export interface ProcStat { cpuSeconds: number; rssBytes: number; fds: number }

const clockTicks = 100; // sysconf(_SC_CLK_TCK) on Linux

/** CPU time (user + system) and resident memory of a process, from /proc; undefined once it is gone. */
export function procStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    let fds = 0;
    try {
      fds = readdirSync(`/proc/${pid}/fd`).length;
    } catch {
      // not ours to read: leave 0
    }
    return { cpuSeconds: (utime + stime) / clockTicks, rssBytes: rssKb * 1024, fds };
  } catch {
    return undefined;
  }
}

/** A controller process the sampler reads from outside: the operator, or a peer controller. */
export interface SampledProcess {
  readonly pid: number | undefined;
  readonly running: boolean;
  proc(): ProcStat | undefined;
  scrape(): Promise<{ metrics: Metrics; ms: number; bytes: number } | undefined>;
}

export class BenchOperator implements SampledProcess {
  private child: ChildProcess | undefined;
  metricsPort = 0;
  readonly logFile: string;
  startedAt = 0;
  readyAt = 0;

  constructor(private readonly opts: BenchOperatorOptions) {
    mkdirSync(opts.logDir, { recursive: true });
    this.logFile = join(opts.logDir, `${opts.name}.log`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    if (!existsSync(operatorEntry)) throw new Error(`${operatorEntry} is missing: run \`make build\` (make bench does) first`);
    this.metricsPort = await freePort();
    if (this.opts.diagnosticDir) mkdirSync(this.opts.diagnosticDir, { recursive: true });
    const nodeArgs = [
      ...(this.opts.diagnosticDir ? [`--diagnostic-dir=${this.opts.diagnosticDir}`, '--heapsnapshot-signal=SIGUSR2'] : []),
      ...(this.opts.nodeArgs ?? []),
    ];
    // The log goes straight to a file descriptor: the benchmark process never relays it.
    const fd = openSync(this.logFile, 'a');
    const setpriv = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--'] : [];
    const argv = [...setpriv, process.execPath, ...nodeArgs, operatorEntry];
    this.child = spawn(argv[0]!, argv.slice(1), {
      cwd: repoRoot,
      stdio: ['ignore', fd, fd],
      env: {
        ...process.env,
        KUBECONFIG: this.opts.kubeconfig,
        MODELSHIP_METRICS_PORT: String(this.metricsPort),
        MODELSHIP_METRICS_HOST: '127.0.0.1',
        MODELSHIP_LEADER_ELECT: 'false',
        MODELSHIP_CONCURRENCY: String(this.opts.concurrency),
        MODELSHIP_RESYNC_SECONDS: String(this.opts.resyncSeconds ?? 600),
        MODELSHIP_FETCHER_IMAGE: 'example.invalid/modelship:bench',
        // The storms measure throughput; the cluster-wide limit on rollouts in progress is a policy
        // that queues them by design (MAX_ROLLOUTS=20 measures it as shipped).
        MODELSHIP_MAX_CONCURRENT_ROLLOUTS: process.env.MAX_ROLLOUTS ?? '0',
      },
    });
    closeSync(fd);
    this.startedAt = Date.now();
  }

  /** Waits until /readyz answers 200 (caches synced); returns when that was. */
  async waitReady(timeoutMs = 600_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`the operator exited; see ${this.logFile}`);
      const ok = await probe(`http://127.0.0.1:${this.metricsPort}/readyz`, {}, 5_000).then((r) => r.status === 200, () => false);
      if (ok) {
        this.readyAt = Date.now();
        return this.readyAt;
      }
      await sleep(50);
    }
    throw new Error(`the operator was not ready within ${timeoutMs} ms; see ${this.logFile}`);
  }

  /** Scrapes /metrics; also returns how long the scrape took and how big it was. */
  scrape(): Promise<{ metrics: Metrics; ms: number; bytes: number } | undefined> {
    return scrapeMetrics(this.metricsPort);
  }

  proc(): ProcStat | undefined {
    return this.pid ? procStat(this.pid) : undefined;
  }

  /** Asks the process for a heap snapshot (--heapsnapshot-signal) and waits until it is written; returns its path. */
  async heapSnapshot(timeoutMs = 180_000): Promise<string | undefined> {
    const dir = this.opts.diagnosticDir;
    if (!dir || !this.child?.pid || !this.running) return undefined;
    const snapshots = () => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
    const before = new Set(snapshots());
    this.child.kill('SIGUSR2');
    const deadline = Date.now() + timeoutMs;
    let lastSize = -1;
    while (Date.now() < deadline) {
      await sleep(1_000);
      const file = snapshots().find((f) => !before.has(f));
      if (!file) continue;
      const size = statSync(join(dir, file)).size;
      // V8 writes the snapshot while the process is paused: once it answers /healthz again, it is done.
      const alive = await probe(`http://127.0.0.1:${this.metricsPort}/healthz`, {}, 1_000).then(() => true, () => false);
      if (size > 0 && size === lastSize && alive) return join(dir, file);
      lastSize = size;
    }
    return undefined;
  }

  /** SIGTERM, which ends the operator through its shutdown path (and writes --cpu-prof profiles). */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.child && this.running) await stopProcess(this.child, timeoutMs);
  }
}

/** A controller's /metrics on localhost; also how long the scrape took and how big it was. */
export async function scrapeMetrics(port: number): Promise<{ metrics: Metrics; ms: number; bytes: number } | undefined> {
  const began = performance.now();
  try {
    const { status, body } = await probe(`http://127.0.0.1:${port}/metrics`, {}, 30_000);
    if (status !== 200) return undefined;
    return { metrics: Metrics.parse(body), ms: performance.now() - began, bytes: body.length };
  } catch {
    return undefined;
  }
}

/** SIGTERM, then SIGKILL if the process has not exited within `timeoutMs`. */
export async function stopProcess(child: ChildProcess, timeoutMs: number): Promise<void> {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)]);
  if (!done) {
    child.kill('SIGKILL');
    await exited;
  }
}
