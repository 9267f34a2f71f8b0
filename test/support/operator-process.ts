// Runs the operator as its own process, as it runs in a cluster, against the test control plane.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, probe } from '../cluster/control-plane.js';
import { testCluster, waitFor } from '../cluster/cluster.js';
import { userAgentPrefix } from '../../operator/runtime/kube.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');

export interface OperatorOptions {
  leaderElect?: boolean;
  leaseNamespace?: string;
  env?: Record<string, string>;
  name?: string;
  /** Another way to the apiserver than the cluster's own kubeconfig (a proxy in front of it, say). */
  kubeconfig?: string;
  /**
   * Run inside the real node's network namespace (test/cluster/real-node.ts), where Services' ClusterIPs
   * and pods answer, as an operator in a cluster would; its metrics then listen on the node's address.
   */
  nodeNetwork?: { netns: string; nodeIp: string };
}

export class OperatorProcess {
  private child: ChildProcess | undefined;
  metricsPort = 0;
  readonly logFile: string;
  private readonly metricsHost: string;

  constructor(private readonly opts: OperatorOptions = {}) {
    const dir = join(testCluster().state.dir, 'operators');
    mkdirSync(dir, { recursive: true });
    this.logFile = join(dir, `${opts.name ?? 'operator'}-${Date.now()}.log`);
    this.metricsHost = opts.nodeNetwork?.nodeIp ?? '127.0.0.1';
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** What the operator calls itself in its Lease and Events: `<hostname>_<pid>`, as operator/main.ts makes it. */
  get identity(): string | undefined {
    return this.child?.pid === undefined ? undefined : `${hostname()}_${this.child.pid}`;
  }

  /** The user agent of its requests, which tells its writes apart from another replica's in the audit log. */
  get userAgent(): string | undefined {
    return this.identity && `${userAgentPrefix} (${this.identity})`;
  }

  get exitCode(): number | null | undefined {
    return this.child?.exitCode;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(opts: { waitReady?: boolean } = {}): Promise<void> {
    this.metricsPort = await freePort();
    const log = createWriteStream(this.logFile, { flags: 'a' });
    const setpriv = ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--'];
    const netns = this.opts.nodeNetwork ? ['/usr/bin/nsenter', `--net=/run/netns/${this.opts.nodeNetwork.netns}`, '--'] : [];
    this.child = spawn(setpriv[0]!, [...setpriv.slice(1), ...netns, process.execPath, '--import', 'tsx', join(repoRoot, 'operator/main.ts')], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        KUBECONFIG: this.opts.kubeconfig ?? testCluster().state.kubeconfig,
        MODELSHIP_METRICS_PORT: String(this.metricsPort),
        MODELSHIP_METRICS_HOST: this.metricsHost,
        MODELSHIP_LEADER_ELECT: String(this.opts.leaderElect ?? false),
        MODELSHIP_LEADER_ELECTION_NAMESPACE: this.opts.leaseNamespace ?? 'default',
        MODELSHIP_FETCHER_IMAGE: 'example.invalid/modelship:test',
        // The tests' Prometheus and webhook receivers listen on 127.0.0.1, which the default outbound
        // policy denies; 127.0.0.1 alone is opened, so the rest of loopback (127.0.0.2, the tenancy
        // suite's stand-in for a metadata server) stays denied.
        MODELSHIP_OUTBOUND_ALLOW: '*.svc,*.svc.cluster.local,127.0.0.1/32',
        // KWOK's nodes report 127.0.0.1 as their address (test/cluster/control-plane.ts), which the
        // operator would refuse to tenant URLs like any node's; the suites that test that refusal, and
        // those that run the operator as the chart configures it, turn it back on.
        MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES: 'false',
        ...this.opts.env,
      },
    });
    this.child.stdout?.pipe(log);
    this.child.stderr?.pipe(log);
    if (opts.waitReady === false) return;
    await waitFor('operator ready', async () => {
      if (!this.running) throw new Error(`operator exited; see ${this.logFile}`);
      return (await probe(`http://${this.metricsHost}:${this.metricsPort}/readyz`)).status === 200;
    }, 30_000);
  }

  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { body } = await probe(`http://${this.metricsHost}:${this.metricsPort}/metrics`);
    let total = 0;
    for (const line of body.split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = /^([a-z_:]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      if (Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) total += Number(m[3]);
    }
    return total;
  }

  /** Resolves with the exit code (or signal) once the process ends, or undefined after `timeoutMs`. */
  async exited(timeoutMs: number): Promise<number | string | undefined> {
    const child = this.child;
    if (!child) return undefined;
    if (!this.running) return child.exitCode ?? child.signalCode ?? undefined;
    const ended = once(child, 'exit').then(() => child.exitCode ?? child.signalCode ?? undefined);
    return Promise.race([ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs))]);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.child || !this.running) return;
    const exited = once(this.child, 'exit');
    this.child.kill(signal);
    await exited;
  }
}
