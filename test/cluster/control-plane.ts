// The test control plane: etcd → kube-apiserver → kube-controller-manager → kube-scheduler → kwok,
// real binaries built from Go modules by hack/build-bins.sh, on free loopback ports, with generated
// PKI and an admin kubeconfig. Each component can be stopped and started on its own; ports, data and
// PKI survive, so a restarted apiserver is the same cluster to its clients.
import { readFileSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePki, type Pki } from './pki.js';
import { ManagedProcess } from './process.js';

export const componentNames = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok'] as const;
export type ComponentName = (typeof componentNames)[number];

export interface Ports {
  etcd: number;
  etcdPeer: number;
  apiserver: number;
  controllerManager: number;
  scheduler: number;
  kwok: number;
}

export interface ControlPlaneOptions {
  /** Working directory: PKI, etcd data, logs, kubeconfig. */
  dir: string;
  /** Directory holding the binaries; default: the repository's .bin/. */
  binDir?: string;
  /** Extra kube-apiserver flags (e.g. feature gates) appended last. */
  apiserverArgs?: string[];
  /**
   * The host end of a real node's link (real-node.ts): the apiserver binds and advertises it, so the
   * node and its pods reach the apiserver there. Without it everything stays on 127.0.0.1.
   */
  hostIp?: string;
}

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');

/**
 * A free loopback port below the kernel's ephemeral range (32768+ on Linux), so that the outgoing
 * connections of busy tests can never take it between this check and the component binding it.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await canBind(port)) return port;
  }
  throw new Error('no free port in 20000-31999');
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

interface ProbeTls { ca?: Buffer; cert?: Buffer; key?: Buffer; insecure?: boolean }

/** GET a URL and resolve with the status code and body; rejects on connection errors. */
export function probe(url: string, tls: ProbeTls = {}, timeoutMs = 2_000): Promise<{ status: number; body: string }> {
  return new Promise((resolveProbe, reject) => {
    const isHttps = url.startsWith('https:');
    const options = isHttps
      ? { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: !tls.insecure, timeout: timeoutMs }
      : { timeout: timeoutMs };
    const req = (isHttps ? httpsRequest : httpRequest)(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolveProbe({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export class ControlPlane {
  readonly dir: string;
  readonly binDir: string;
  readonly kubeconfigPath: string;
  private readonly processes = new Map<ComponentName, ManagedProcess>();
  private pki!: Pki;
  ports!: Ports;

  constructor(private readonly options: ControlPlaneOptions) {
    this.dir = resolve(options.dir);
    this.binDir = options.binDir ?? join(repoRoot, '.bin');
    this.kubeconfigPath = join(this.dir, 'admin.kubeconfig');
  }

  get server(): string {
    return `https://${this.options.hostIp ?? '127.0.0.1'}:${this.ports.apiserver}`;
  }

  get pkiFiles(): Pki {
    return this.pki;
  }

  pids(): Partial<Record<ComponentName, number>> {
    const out: Partial<Record<ComponentName, number>> = {};
    for (const [name, p] of this.processes) if (p.running && p.pid) out[name] = p.pid;
    return out;
  }

  isRunning(name: ComponentName): boolean {
    return this.processes.get(name)?.running ?? false;
  }

  /** Starts every component in dependency order and waits for each to be ready. */
  async start(): Promise<void> {
    for (const bin of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok']) {
      if (!existsSync(join(this.binDir, bin))) {
        throw new Error(`${join(this.binDir, bin)} is missing: run hack/build-bins.sh (make bins) first`);
      }
    }
    mkdirSync(join(this.dir, 'logs'), { recursive: true });
    this.pki = ensurePki(join(this.dir, 'pki'), { extraServingIps: this.options.hostIp ? [this.options.hostIp] : [] });
    this.ports = {
      etcd: await freePort(),
      etcdPeer: await freePort(),
      apiserver: await freePort(),
      controllerManager: await freePort(),
      scheduler: await freePort(),
      kwok: await freePort(),
    };
    this.writeKubeconfig();
    this.writeSchedulerConfig();
    this.writeAuditPolicy();
    for (const name of componentNames) {
      this.processes.set(name, new ManagedProcess(this.specFor(name)));
      await this.startComponent(name);
    }
  }

  async startComponent(name: ComponentName): Promise<void> {
    const p = this.processes.get(name);
    if (!p) throw new Error(`unknown component ${name}`);
    await p.start();
  }

  async stopComponent(name: ComponentName): Promise<void> {
    await this.processes.get(name)?.stop();
  }

  async killComponent(name: ComponentName): Promise<void> {
    await this.processes.get(name)?.kill();
  }

  async restartComponent(name: ComponentName): Promise<void> {
    await this.stopComponent(name);
    await this.startComponent(name);
  }

  /** Stops everything in reverse dependency order. */
  async stop(): Promise<void> {
    for (const name of [...componentNames].reverse()) {
      await this.processes.get(name)?.stop();
    }
  }

  private tls(): ProbeTls {
    return {
      ca: readFileSync(this.pki.caCert),
      cert: readFileSync(this.pki.adminCert),
      key: readFileSync(this.pki.adminKey),
    };
  }

  private writeKubeconfig(): void {
    const b64 = (path: string) => readFileSync(path).toString('base64');
    const kubeconfig = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'modelship-test', cluster: { server: this.server, 'certificate-authority-data': b64(this.pki.caCert) } }],
      users: [{ name: 'modelship-admin', user: { 'client-certificate-data': b64(this.pki.adminCert), 'client-key-data': b64(this.pki.adminKey) } }],
      contexts: [{ name: 'modelship-test', context: { cluster: 'modelship-test', user: 'modelship-admin' } }],
      'current-context': 'modelship-test',
    };
    writeFileSync(this.kubeconfigPath, JSON.stringify(kubeconfig, null, 2), { mode: 0o600 });
  }

  /** Where the apiserver records every write; tests count a client's writes from it. */
  get auditLogPath(): string {
    return join(this.dir, 'logs', 'audit.log');
  }

  private writeAuditPolicy(): void {
    // Writes only, at Metadata level: enough to count who changed what, cheap enough for every test.
    // The one exception: every request of the ServiceAccounts in modelship-rbac, reads and lease
    // renewals included, so the RBAC test can hold the chart's rules against what the operator asks for.
    const policy = {
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      omitStages: ['RequestReceived'],
      rules: [
        { level: 'Metadata', userGroups: ['system:serviceaccounts:modelship-rbac'] },
        { level: 'None', resources: [{ group: 'coordination.k8s.io', resources: ['leases'] }] },
        { level: 'Metadata', verbs: ['create', 'update', 'patch', 'delete', 'deletecollection'] },
        { level: 'None' },
      ],
    };
    writeFileSync(join(this.dir, 'audit-policy.yaml'), JSON.stringify(policy, null, 2));
  }

  private writeSchedulerConfig(): void {
    // The default client QPS (50) would make the scheduler, not the operator, the bottleneck in storms.
    const config = {
      apiVersion: 'kubescheduler.config.k8s.io/v1',
      kind: 'KubeSchedulerConfiguration',
      clientConnection: { kubeconfig: this.kubeconfigPath, qps: 1000, burst: 2000 },
      leaderElection: { leaderElect: false },
    };
    writeFileSync(join(this.dir, 'scheduler.yaml'), JSON.stringify(config, null, 2));
  }

  private specFor(name: ComponentName) {
    const bin = (b: string) => join(this.binDir, b);
    const logFile = join(this.dir, 'logs', `${name}.log`);
    const p = this.ports;
    const pki = this.pki;
    const kubeconfig = this.kubeconfigPath;
    switch (name) {
      case 'etcd':
        return {
          name, logFile, binary: bin('etcd'),
          args: [
            '--name=default', `--data-dir=${join(this.dir, 'etcd')}`,
            `--listen-client-urls=http://127.0.0.1:${p.etcd}`, `--advertise-client-urls=http://127.0.0.1:${p.etcd}`,
            `--listen-peer-urls=http://127.0.0.1:${p.etcdPeer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${p.etcdPeer}`,
            `--initial-cluster=default=http://127.0.0.1:${p.etcdPeer}`,
            // Tests never need durability across a machine crash; fsync would dominate write latency.
            '--unsafe-no-fsync=true', '--auto-compaction-mode=periodic', '--auto-compaction-retention=5m',
            '--quota-backend-bytes=8589934592', '--log-level=warn',
          ],
          ready: async () => {
            const r = await probe(`http://127.0.0.1:${p.etcd}/health`);
            return r.status === 200 && r.body.includes('"health":"true"');
          },
        };
      case 'kube-apiserver':
        return {
          name, logFile, binary: bin('kube-apiserver'), readyTimeoutMs: 90_000,
          args: [
            `--etcd-servers=http://127.0.0.1:${p.etcd}`,
            // The sandbox has loopback only; without explicit addresses the apiserver finds no default route.
            `--bind-address=${this.options.hostIp ?? '127.0.0.1'}`, `--advertise-address=${this.options.hostIp ?? '127.0.0.1'}`,
            `--secure-port=${p.apiserver}`,
            // Logs, exec and port-forward reach a real node's kubelet by its address, as a client the kubelet knows.
            '--kubelet-preferred-address-types=InternalIP',
            `--kubelet-client-certificate=${pki.kubeletClientCert}`, `--kubelet-client-key=${pki.kubeletClientKey}`,
            `--tls-cert-file=${pki.servingCert}`, `--tls-private-key-file=${pki.servingKey}`,
            `--client-ca-file=${pki.caCert}`,
            '--authorization-mode=Node,RBAC',
            // As OpenShift and hardened clusters run it: setting blockOwnerDeletion needs update on the
            // owner's finalizers, which the chart's RBAC test then proves the operator is granted.
            '--enable-admission-plugins=OwnerReferencesPermissionEnforcement',
            '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
            `--service-account-key-file=${pki.serviceAccountPub}`, `--service-account-signing-key-file=${pki.serviceAccountKey}`,
            '--service-cluster-ip-range=10.96.0.0/16', '--allow-privileged=true',
            `--requestheader-client-ca-file=${pki.frontProxyCaCert}`,
            '--requestheader-allowed-names=front-proxy-client',
            '--requestheader-username-headers=X-Remote-User', '--requestheader-group-headers=X-Remote-Group',
            '--requestheader-extra-headers-prefix=X-Remote-Extra-',
            `--proxy-client-cert-file=${pki.frontProxyClientCert}`, `--proxy-client-key-file=${pki.frontProxyClientKey}`,
            `--audit-policy-file=${join(this.dir, 'audit-policy.yaml')}`, `--audit-log-path=${this.auditLogPath}`,
            '--audit-log-format=json', '--audit-log-maxsize=200', '--audit-log-maxbackup=2', '--audit-log-mode=batch',
            '--audit-log-batch-max-wait=1s',
            '--enable-priority-and-fairness=false', '--profiling=false',
            '--max-requests-inflight=2000', '--max-mutating-requests-inflight=1000',
            '--v=1',
            ...(this.options.apiserverArgs ?? []),
          ],
          ready: async () => (await probe(`${this.server}/readyz`, this.tls())).status === 200,
        };
      case 'kube-controller-manager':
        return {
          name, logFile, binary: bin('kube-controller-manager'),
          args: [
            `--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`,
            '--bind-address=127.0.0.1', `--secure-port=${p.controllerManager}`, '--leader-elect=false',
            '--controllers=*', `--service-account-private-key-file=${pki.serviceAccountKey}`, `--root-ca-file=${pki.caCert}`,
            '--node-monitor-period=5s', '--node-monitor-grace-period=40s',
            '--horizontal-pod-autoscaler-sync-period=5s', '--horizontal-pod-autoscaler-downscale-stabilization=10s',
            // The default 20 QPS would make the controller manager, not the operator, the limit in storms.
            '--kube-api-qps=1000', '--kube-api-burst=2000',
            '--concurrent-deployment-syncs=20', '--concurrent-replicaset-syncs=20', '--concurrent-gc-syncs=50',
            '--v=1',
          ],
          ready: async () => (await probe(`https://127.0.0.1:${p.controllerManager}/healthz`, { insecure: true })).status === 200,
        };
      case 'kube-scheduler':
        return {
          name, logFile, binary: bin('kube-scheduler'),
          args: [
            `--config=${join(this.dir, 'scheduler.yaml')}`,
            `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`,
            '--bind-address=127.0.0.1', `--secure-port=${p.scheduler}`, '--v=1',
          ],
          ready: async () => (await probe(`https://127.0.0.1:${p.scheduler}/readyz`, { insecure: true })).status === 200,
        };
      case 'kwok':
        return {
          name, logFile, binary: bin('kwok'),
          args: [
            `--kubeconfig=${kubeconfig}`, `--config=${join(repoRoot, 'test/cluster/kwok-stages.yaml')}`,
            // KWOK plays only its own nodes; a real node's kubelet runs its pods.
            '--manage-nodes-with-label-selector=type=kwok',
            // Node liveness comes from Leases: the heartbeat stage only rewrites Node status every ~10 min.
            '--node-lease-duration-seconds=40',
            '--cidr=10.244.0.0/16', '--node-ip=127.0.0.1', '--node-name=localhost',
            `--node-port=${p.kwok}`, `--server-address=127.0.0.1:${p.kwok}`,
          ],
          ready: async () => (await probe(`http://127.0.0.1:${p.kwok}/healthz`)).status === 200,
        };
    }
  }
}
