// A real worker node beside the KWOK nodes: containerd 2.2 (hack/containerd), a kubelet and kube-proxy
// (hack/k8s) that run real containers, with Debian's runc and CNI plugins. The node lives in a network
// namespace of its own, joined to the host by one veth pair, so the host's routes, firewall and sysctls
// are left as they were:
//
//   host                               node namespace (ms-node-N)
//   ms-hN 10.213.N.1/24  <-- veth -->  ms-nN 10.213.N.2/24   kubelet, kube-proxy, containerd
//   kube-apiserver binds 10.213.N.1                         bridge msbr0 10.214.N.1/24 → pods
//
// Pods reach the host end of the link (the apiserver, a test's model store) and nothing else: the
// namespace drops whatever else would leave through the link, and masquerades pod traffic to the host
// end so the host needs no route back. Host processes reach pods and Services by running inside the
// namespace (`nsenter --net`), which is what `inNodeNetwork` gives.
//
// Facts this rests on (each was a failure first on these machines): cgroup v1 needs failCgroupV1:false
// and the cgroupfs driver; runc cannot raise oom_score_adj here, so the CRI restricts it; the kubelet
// refuses a loopback node IP; the apiserver dials kubelets by InternalIP with a client certificate.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CoreV1Api } from '@kubernetes/client-node';
import { ensureClientIdentity, type Pki } from './pki.js';
import { ManagedProcess } from './process.js';

export const realNodeName = 'modelship-node';
/** Model pods in tests select the real node with this label, and tolerate its taint. */
export const realNodeLabel = { key: 'modelship.io/node', value: 'real' } as const;
export const realNodeTaint = { key: 'modelship.io/node', value: 'real', effect: 'NoSchedule' } as const;
/** The pause image the CRI runs every pod sandbox from; hack/images builds it under this name. */
export const sandboxImage = 'registry.k8s.io/pause:3.10';

const cniBinDir = '/usr/lib/cni';

/** The cgroup hierarchies: v1 controllers, and (`all`) the v2 `unified` one that runc also writes to. */
const cgroupHierarchies = (all = false) => readdirSync('/sys/fs/cgroup')
  .filter((c) => (all || c !== 'unified') && statSync(join('/sys/fs/cgroup', c)).isDirectory() && existsSync(join('/sys/fs/cgroup', c, 'cgroup.procs')));

export interface NodeLink {
  index: number;
  netns: string;
  hostIf: string;
  nodeIf: string;
  hostIp: string;
  nodeIp: string;
  podCidr: string;
}

/** Why this machine cannot run a real node, or undefined when it can. */
export function realNodeUnsupported(binDir: string): string | undefined {
  if (process.getuid?.() !== 0) return 'a real node needs root (containerd, network namespaces, cgroups)';
  const missing = [
    ...['kubelet', 'kube-proxy', 'containerd', 'containerd-shim-runc-v2', 'ctr'].map((b) => join(binDir, b)),
    '/usr/sbin/runc',
    '/usr/bin/nsenter', '/usr/sbin/ip', '/usr/sbin/iptables',
    ...['bridge', 'host-local', 'loopback'].map((b) => join(cniBinDir, b)),
  ].filter((p) => !existsSync(p));
  if (missing.length > 0) return `a real node needs ${missing.join(', ')} (make bins builds the kubelet and containerd; hack/system-deps.sh installs the rest)`;
  if (!existsSync('/sys/fs/cgroup/memory') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup filesystem at /sys/fs/cgroup';
  return undefined;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryRun(cmd: string, args: string[]): void {
  try { run(cmd, args); } catch { /* best effort while tearing down */ }
}

/** Runs a command inside the node's network namespace. */
export function inNodeNetwork(link: NodeLink, cmd: string, args: string[]): string {
  return run('nsenter', [`--net=/run/netns/${link.netns}`, '--', cmd, ...args]);
}

/** The link subnets in use on this host, so two clusters with real nodes never share one. */
function usedLinkIndexes(): Set<number> {
  const used = new Set<number>();
  for (const m of run('ip', ['-o', '-4', 'addr', 'show']).matchAll(/inet 10\.213\.(\d+)\./g)) used.add(Number(m[1]));
  const netnsDir = '/run/netns';
  if (existsSync(netnsDir)) for (const n of readdirSync(netnsDir)) { const m = /^ms-node-(\d+)$/.exec(n); if (m) used.add(Number(m[1])); }
  return used;
}

/**
 * Which process owns each node link, so that a node whose supervisor was killed (SIGKILL leaves its
 * containers, cgroups, mounts and namespace behind) is cleaned up by the next one to start.
 */
const registryDir = '/run/modelship/nodes';
interface Registration { pid: number; dir: string; index: number }

function register(link: NodeLink, dir: string): void {
  mkdirSync(registryDir, { recursive: true });
  writeFileSync(join(registryDir, `${link.index}.json`), JSON.stringify({ pid: process.pid, dir, index: link.index } satisfies Registration));
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Removes what nodes of dead supervisors left behind. */
export function cleanUpAbandonedNodes(): void {
  if (!existsSync(registryDir)) return;
  for (const f of readdirSync(registryDir).filter((n) => n.endsWith('.json'))) {
    let reg: Registration;
    try { reg = JSON.parse(readFileSync(join(registryDir, f), 'utf8')) as Registration; } catch { continue; }
    if (alive(reg.pid)) continue;
    const link = linkOf(reg.index);
    killCgroupTree(cgroupRootOf(reg.index));
    killNamespaceProcesses(link.netns);
    unmountUnder(join(reg.dir, 'node'));
    removeCgroupRoot(cgroupRootOf(reg.index));
    tearDownNodeLink(link);
    rmSync(join(registryDir, f), { force: true });
  }
}

function linkOf(index: number): NodeLink {
  return {
    index, netns: `ms-node-${index}`, hostIf: `ms-h${index}`, nodeIf: `ms-n${index}`,
    hostIp: `10.213.${index}.1`, nodeIp: `10.213.${index}.2`, podCidr: `10.214.${index}.0/24`,
  };
}

const cgroupRootOf = (index: number) => `modelship-${index}`;

/** Creates the node's network namespace and its link to the host; `dir` is the cluster's directory. */
export function setUpNodeLink(dir: string): NodeLink {
  cleanUpAbandonedNodes();
  const used = usedLinkIndexes();
  const free = Array.from({ length: 250 }, (_, i) => i + 1).filter((i) => !used.has(i));
  if (free.length === 0) throw new Error('no free 10.213.N.0/24 link subnet');
  const index = free[Math.floor(Math.random() * free.length)]!;
  const link = linkOf(index);
  register(link, dir);
  try {
    run('ip', ['netns', 'add', link.netns]);
    run('ip', ['link', 'add', link.hostIf, 'type', 'veth', 'peer', 'name', link.nodeIf, 'netns', link.netns]);
    run('ip', ['addr', 'add', `${link.hostIp}/24`, 'dev', link.hostIf]);
    run('ip', ['link', 'set', link.hostIf, 'up']);
    const ns = (...args: string[]) => run('ip', ['-n', link.netns, ...args]);
    ns('link', 'set', 'lo', 'up');
    ns('addr', 'add', `${link.nodeIp}/24`, 'dev', link.nodeIf);
    ns('link', 'set', link.nodeIf, 'up');
    // Locally sent packets to a ClusterIP need some route before kube-proxy's DNAT re-routes them.
    ns('route', 'add', 'default', 'via', link.hostIp);
    // These sysctls belong to the namespace, not the host.
    inNodeNetwork(link, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.bridge.bridge-nf-call-iptables=1']);
    // Pod traffic never leaves the machine: only the host end of the link is reachable through it.
    inNodeNetwork(link, 'iptables', ['-w', '-I', 'FORWARD', '1', '-o', link.nodeIf, '!', '-d', `${link.hostIp}/32`, '-j', 'DROP']);
    inNodeNetwork(link, 'iptables', ['-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', link.podCidr, '-d', `${link.hostIp}/32`, '-o', link.nodeIf, '-j', 'MASQUERADE']);
  } catch (err) {
    tearDownNodeLink(link);
    throw err;
  }
  return link;
}

/** Deletes the namespace (the veth pair goes with it) and the link's registration. */
export function tearDownNodeLink(link: NodeLink): void {
  tryRun('ip', ['netns', 'del', link.netns]);
  tryRun('ip', ['link', 'del', link.hostIf]);
  rmSync(join(registryDir, `${link.index}.json`), { force: true });
}

/** Shims re-parent themselves and outlive containerd; they are the only processes left in the namespace. */
function killNamespaceProcesses(netns: string): void {
  let pids: string[];
  try { pids = run('ip', ['netns', 'pids', netns]).split(/\s+/).filter(Boolean); } catch { return; }
  for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
}

/** Every container of the node, through its cgroup: a stopped containerd leaves them running. */
function killCgroupTree(cgroupRoot: string): void {
  const root = join('/sys/fs/cgroup', 'pids', cgroupRoot);
  if (!existsSync(root)) return;
  const walk = (dir: string): void => {
    try {
      for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
      }
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
    } catch { /* removed meanwhile */ }
  };
  walk(root);
}

function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => l.split(' ')[4]).filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) tryRun('umount', ['-l', m]);
}

function removeCgroupRoot(cgroupRoot: string): void {
  const rmTree = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(dir, e.name));
    tryRun('rmdir', [dir]);
  };
  for (const c of cgroupHierarchies(true)) rmTree(join('/sys/fs/cgroup', c, cgroupRoot));
}

export interface RealNodeOptions {
  dir: string;
  binDir: string;
  link: NodeLink;
  pki: Pki;
  /** The apiserver as the node reaches it (the host end of the link). */
  server: string;
  /** OCI archives to import into the node's containerd before the kubelet starts. */
  images: string[];
  /** Taint the node so that only pods that ask for it land there (tests beside KWOK nodes). */
  tainted: boolean;
}

export class RealNode {
  readonly cgroupRoot: string;
  private readonly processes: ManagedProcess[] = [];
  private readonly paths;

  constructor(private readonly options: RealNodeOptions) {
    const d = join(options.dir, 'node');
    this.cgroupRoot = cgroupRootOf(options.link.index);
    this.paths = {
      dir: d,
      containerdRoot: join(d, 'containerd', 'root'),
      containerdState: join(d, 'containerd', 'state'),
      containerdSock: join(d, 'containerd', 'containerd.sock'),
      containerdConfig: join(d, 'containerd.toml'),
      cniConf: join(d, 'cni', 'net.d'),
      cniData: join(d, 'cni', 'ipam'),
      kubeletRoot: join(d, 'kubelet'),
      kubeletConfig: join(d, 'kubelet.yaml'),
      kubeletKubeconfig: join(d, 'kubelet.kubeconfig'),
      proxyConfig: join(d, 'kube-proxy.yaml'),
      proxyKubeconfig: join(d, 'kube-proxy.kubeconfig'),
      podLogs: join(d, 'pod-logs'),
      resolvConf: join(d, 'resolv.conf'),
      logs: join(options.dir, 'logs'),
    };
  }

  get containerdSocket(): string {
    return this.paths.containerdSock;
  }

  /** containerd → images → kubelet → kube-proxy; resolves once the Node is Ready. */
  async start(core: CoreV1Api): Promise<void> {
    const p = this.paths;
    for (const d of [p.containerdRoot, p.containerdState, p.cniConf, p.cniData, p.kubeletRoot, p.podLogs, p.logs]) mkdirSync(d, { recursive: true });
    this.makeCgroupRoot();
    this.writeConfigs();
    const { link } = this.options;
    const nsenter = (binary: string, args: string[]) => ({ binary: '/usr/bin/nsenter', args: [`--net=/run/netns/${link.netns}`, '--', binary, ...args] });

    await this.startProcess({
      name: 'containerd', ...nsenter(join(this.options.binDir, 'containerd'), ['--config', p.containerdConfig]),
      ready: async () => { this.ctr(['version']); return true; },
    });
    for (const image of this.options.images) this.ctr(['-n', 'k8s.io', 'images', 'import', '--no-unpack=false', image]);

    await this.startProcess({
      name: 'kubelet', readyTimeoutMs: 60_000,
      ...nsenter(join(this.options.binDir, 'kubelet'), [
        `--config=${p.kubeletConfig}`, `--kubeconfig=${p.kubeletKubeconfig}`, `--root-dir=${p.kubeletRoot}`,
        `--cert-dir=${join(p.kubeletRoot, 'pki')}`, `--hostname-override=${realNodeName}`, `--node-ip=${link.nodeIp}`,
        `--node-labels=${realNodeLabel.key}=${realNodeLabel.value}`,
        ...(this.options.tainted ? [`--register-with-taints=${realNodeTaint.key}=${realNodeTaint.value}:${realNodeTaint.effect}`] : []),
        '--v=1',
      ]),
      ready: async () => {
        const node = await core.readNode({ name: realNodeName });
        return node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      },
    });
    await this.startProcess({
      name: 'kube-proxy',
      ...nsenter(join(this.options.binDir, 'kube-proxy'), [`--config=${p.proxyConfig}`, '--v=1']),
      ready: async () => (await fetch(`http://${link.nodeIp}:10256/healthz`, { signal: AbortSignal.timeout(1000) })).status === 200,
    });
  }

  private async startProcess(spec: { name: string; binary: string; args: string[]; ready: () => Promise<boolean>; readyTimeoutMs?: number }): Promise<void> {
    const proc = new ManagedProcess({ ...spec, logFile: join(this.paths.logs, `${spec.name}.log`) });
    this.processes.push(proc);
    await proc.start();
  }

  ctr(args: string[]): string {
    return run(join(this.options.binDir, 'ctr'), ['--address', this.paths.containerdSock, ...args]);
  }

  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of this.processes) if (p.running && p.pid) out[p.spec.name] = p.pid;
    return out;
  }

  /**
   * Stops the node and removes what it made on the host: every container (killed through its cgroup,
   * since a stopped containerd leaves them running), the node's cgroups, and its mounts.
   */
  async stop(): Promise<void> {
    for (const p of [...this.processes].reverse().filter((q) => q.spec.name !== 'containerd')) await p.stop();
    killCgroupTree(this.cgroupRoot);
    await sleep(200);
    await this.processes.find((q) => q.spec.name === 'containerd')?.stop();
    killNamespaceProcesses(this.options.link.netns);
    unmountUnder(this.paths.dir);
    removeCgroupRoot(this.cgroupRoot);
  }

  private makeCgroupRoot(): void {
    for (const c of cgroupHierarchies()) {
      const dir = join('/sys/fs/cgroup', c, this.cgroupRoot);
      mkdirSync(dir, { recursive: true });
      if (c === 'cpuset') {
        // A new cpuset cgroup starts empty; no process can join it until it has CPUs and memory nodes.
        for (const f of ['cpuset.cpus', 'cpuset.mems']) writeFileSync(join(dir, f), readFileSync(join('/sys/fs/cgroup', c, f)));
      }
    }
  }

  private kubeconfig(path: string, identity: { cert: string; key: string }): void {
    const b64 = (f: string) => readFileSync(f).toString('base64');
    writeFileSync(path, JSON.stringify({
      apiVersion: 'v1', kind: 'Config',
      clusters: [{ name: 'local', cluster: { server: this.options.server, 'certificate-authority-data': b64(this.options.pki.caCert) } }],
      users: [{ name: 'node', user: { 'client-certificate-data': b64(identity.cert), 'client-key-data': b64(identity.key) } }],
      contexts: [{ name: 'local', context: { cluster: 'local', user: 'node' } }],
      'current-context': 'local',
    }, null, 2), { mode: 0o600 });
  }

  private writeConfigs(): void {
    const { pki, link } = this.options;
    const p = this.paths;
    // Real kubelet authentication: the Node authorizer knows this identity as the node's kubelet.
    this.kubeconfig(p.kubeletKubeconfig, ensureClientIdentity(pki, 'kubelet-node', `/O=system:nodes/CN=system:node:${realNodeName}`));
    this.kubeconfig(p.proxyKubeconfig, ensureClientIdentity(pki, 'kube-proxy', '/CN=system:kube-proxy'));
    const podGateway = link.podCidr.replace(/\.0\/24$/, '.1');

    // containerd 2.2 (hack/containerd), config version 3: image volumes (oci:// models) need 2.1 or newer.
    writeFileSync(p.containerdConfig, [
      'version = 3',
      `root = ${JSON.stringify(p.containerdRoot)}`,
      `state = ${JSON.stringify(p.containerdState)}`,
      '[grpc]',
      `  address = ${JSON.stringify(p.containerdSock)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${p.containerdSock}.ttrpc`)}`,
      "[plugins.'io.containerd.cri.v1.images']",
      "  snapshotter = 'overlayfs'",
      "  [plugins.'io.containerd.cri.v1.images'.pinned_images]",
      `    sandbox = ${JSON.stringify(sandboxImage)}`,
      "[plugins.'io.containerd.cri.v1.runtime']",
      // runc cannot raise oom_score_adj without CAP_SYS_RESOURCE, which these machines withhold.
      '  restrict_oom_score_adj = true',
      // Pod network namespaces under the node's own directory, not the host's /run/netns.
      '  netns_mounts_under_state_dir = true',
      "  [plugins.'io.containerd.cri.v1.runtime'.containerd]",
      "    default_runtime_name = 'runc'",
      "    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
      "      runtime_type = 'io.containerd.runc.v2'",
      // containerd looks for its shim on PATH before beside itself: name the one built with it.
      `      runtime_path = ${JSON.stringify(join(this.options.binDir, 'containerd-shim-runc-v2'))}`,
      "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
      '        SystemdCgroup = false',
      "  [plugins.'io.containerd.cri.v1.runtime'.cni]",
      `    bin_dirs = [${JSON.stringify(cniBinDir)}]`,
      `    conf_dir = ${JSON.stringify(p.cniConf)}`,
      '',
    ].join('\n'));

    writeFileSync(join(p.cniConf, '10-modelship.conflist'), JSON.stringify({
      cniVersion: '1.0.0', name: 'modelship',
      plugins: [{
        type: 'bridge', bridge: 'msbr0', isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: link.podCidr, gateway: podGateway }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: p.cniData },
      }],
    }, null, 2));

    // Pods get no resolver: cluster DNS is not part of this cluster, and the host's would be off the machine.
    writeFileSync(p.resolvConf, '# no resolver on the test node\noptions ndots:1\n');

    writeFileSync(p.kubeletConfig, JSON.stringify({
      apiVersion: 'kubelet.config.k8s.io/v1beta1', kind: 'KubeletConfiguration',
      failCgroupV1: false, cgroupDriver: 'cgroupfs', cgroupRoot: `/${this.cgroupRoot}`,
      containerRuntimeEndpoint: `unix://${p.containerdSock}`,
      address: link.nodeIp, port: 10250, readOnlyPort: 0, healthzBindAddress: link.nodeIp, healthzPort: 10248,
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: pki.caCert } },
      authorization: { mode: 'Webhook' },
      podLogsDir: p.podLogs, resolvConf: p.resolvConf, failSwapOn: false, maxPods: 40,
      serializeImagePulls: false,
      // Imported images are the only copies (there is no registry): never collect them.
      imageGCHighThresholdPercent: 100, imageGCLowThresholdPercent: 99,
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
      nodeStatusReportFrequency: '10s', nodeStatusUpdateFrequency: '5s',
      syncFrequency: '10s', fileCheckFrequency: '20s',
    }, null, 2));

    writeFileSync(p.proxyConfig, JSON.stringify({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration',
      clientConnection: { kubeconfig: p.proxyKubeconfig },
      mode: 'iptables', hostnameOverride: realNodeName, bindAddress: link.nodeIp, clusterCIDR: link.podCidr,
      healthzBindAddress: `${link.nodeIp}:10256`, metricsBindAddress: `${link.nodeIp}:10249`,
      nodePortAddresses: [`${link.nodeIp}/32`],
      // Zero leaves the host-wide conntrack sysctls alone.
      conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
      iptables: { masqueradeAll: false, localhostNodePorts: false, syncPeriod: '30s', minSyncPeriod: '0s' },
    }, null, 2));
  }
}
