// Owns one test control plane for its whole life and answers a small loopback control API so that
// tests (in other processes) can stop, start and kill single components.
//
//   supervisor up   [--dir D] [--detach] [NODE]   start and keep running (make cluster); --detach returns once ready
//   supervisor run  [--dir D] [NODE] -- CMD ...   start, run CMD with KUBECONFIG set, stop, exit with CMD's code
//   supervisor down [--dir D]                     stop the cluster that `up` started in D
//
// NODE: --real-node off|auto|on (default off) adds a real node (real-node.ts) beside the KWOK nodes,
// with the images of .bin/images/ imported: `auto` falls back to KWOK alone and says why, `on` fails.
// --real-node-role tests (default) taints it so only pods that ask land there; `workloads` leaves it
// untainted and creates no KWOK CPU nodes, so every CPU pod runs for real (make run).
//
// The state file D/state.json says where everything is: kubeconfig, control URL, ports and pids.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ControlPlane, componentNames, type ComponentName } from './control-plane.js';
import { ensureNodes, nodePool, defaultNodePool } from './nodes.js';
import { RealNode, realNodeName, realNodeUnsupported, setUpNodeLink, tearDownNodeLink, type NodeLink } from './real-node.js';

export interface ClusterState {
  dir: string;
  kubeconfig: string;
  server: string;
  auditLog: string;
  controlUrl: string;
  supervisorPid: number;
  pids: Partial<Record<ComponentName, number>>;
  startedInMs: number;
  /** The real node, when the cluster has one; tests run cluster-network clients in its namespace. */
  realNode?: { name: string; link: NodeLink; pids: Record<string, number>; containerdSocket: string };
  /** Why a requested real node is not there (`--real-node auto` on a machine that cannot run one). */
  realNodeUnavailable?: string;
}

type RealNodeMode = 'off' | 'auto' | 'on';
interface NodeOptions { realNode: RealNodeMode; role: 'tests' | 'workloads' }

export const stateFile = (dir: string) => join(dir, 'state.json');
const self = fileURLToPath(import.meta.url);

function parseArgs(argv: string[]) {
  const [mode = 'up', ...rest] = argv;
  let dir: string | undefined;
  let detach = false;
  let command: string[] = [];
  const node: NodeOptions = { realNode: 'off', role: 'tests' };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--dir') dir = rest[++i];
    else if (a === '--detach') detach = true;
    else if (a === '--real-node') {
      const v = rest[++i];
      if (v !== 'off' && v !== 'auto' && v !== 'on') throw new Error('--real-node takes off, auto or on');
      node.realNode = v;
    } else if (a === '--real-node-role') {
      const v = rest[++i];
      if (v !== 'tests' && v !== 'workloads') throw new Error('--real-node-role takes tests or workloads');
      node.role = v;
    }
    else if (a === '--') { command = rest.slice(i + 1); break; }
    else throw new Error(`unknown argument ${a}`);
  }
  return { mode, dir, detach, command, node };
}

function log(msg: string) {
  process.stderr.write(`[cluster] ${msg}\n`);
}

async function serveControl(plane: ControlPlane, onChange: () => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const match = /^\/components\/([a-z-]+)\/(start|stop|kill|restart)$/.exec(req.url ?? '');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/state') {
      send(200, { pids: plane.pids() });
      return;
    }
    if (req.method !== 'POST' || !match || !(componentNames as readonly string[]).includes(match[1]!)) {
      send(404, { error: 'POST /components/{etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok}/{start|stop|kill|restart}' });
      return;
    }
    const name = match[1] as ComponentName;
    const action = match[2] as 'start' | 'stop' | 'kill' | 'restart';
    const run = {
      start: () => plane.startComponent(name),
      stop: () => plane.stopComponent(name),
      kill: () => plane.killComponent(name),
      restart: () => plane.restartComponent(name),
    }[action];
    run().then(
      () => { onChange(); send(200, { component: name, action, running: plane.isRunning(name) }); },
      (err: Error) => send(500, { error: err.message }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('control server has no port');
  return { server, url: `http://127.0.0.1:${address.port}` };
}

/** The OCI archives hack/images/build.sh linked into .bin/images/, imported into a real node. */
function nodeImages(): string[] {
  const dir = resolve(fileURLToPath(import.meta.url), '../../../.bin/images');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.tar')).map((f) => join(dir, f)) : [];
}

/** Starts the control plane and its nodes; returns a stop function. */
async function bringUp(dir: string, nodeOptions: NodeOptions): Promise<{ state: ClusterState; stop: () => Promise<void> }> {
  const began = Date.now();
  mkdirSync(dir, { recursive: true });
  let link: NodeLink | undefined;
  let realNode: RealNode | undefined;
  let realNodeUnavailable: string | undefined;
  if (nodeOptions.realNode !== 'off') {
    realNodeUnavailable = realNodeUnsupported(resolve(fileURLToPath(import.meta.url), '../../../.bin'));
    if (realNodeUnavailable && nodeOptions.realNode === 'on') throw new Error(realNodeUnavailable);
    if (realNodeUnavailable) log(`no real node, KWOK only: ${realNodeUnavailable}`);
    else link = setUpNodeLink(dir);
  }
  const plane = new ControlPlane({ dir, ...(link ? { hostIp: link.hostIp } : {}) });
  let control: { server: Server; url: string } | undefined;
  let state: ClusterState | undefined;
  const writeState = () => {
    if (!state) return;
    state.pids = plane.pids();
    writeFileSync(stateFile(dir), JSON.stringify(state, null, 2));
  };
  const stop = async () => {
    control?.server.close();
    await realNode?.stop();
    await plane.stop();
    if (link) tearDownNodeLink(link);
    rmSync(stateFile(dir), { force: true });
  };
  try {
    await plane.start();
    const kc = new KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    const servesOnRealNode = link !== undefined && nodeOptions.role === 'workloads';
    const pool = {
      ...defaultNodePool,
      cpuNodes: Number(process.env.MODELSHIP_CPU_NODES ?? (servesOnRealNode ? 0 : defaultNodePool.cpuNodes)),
      gpuNodes: Number(process.env.MODELSHIP_GPU_NODES ?? defaultNodePool.gpuNodes),
    };
    const core = kc.makeApiClient(CoreV1Api);
    await ensureNodes(core, nodePool(pool));
    if (link) {
      const images = nodeImages();
      const nodeBegan = Date.now();
      realNode = new RealNode({ dir, binDir: plane.binDir, link, pki: plane.pkiFiles, server: plane.server, images, tainted: !servesOnRealNode });
      await realNode.start(core);
      log(`real node ${realNodeName} Ready in ${((Date.now() - nodeBegan) / 1000).toFixed(1)} s with ${images.length} image(s) imported`);
    }
    control = await serveControl(plane, writeState);
    state = {
      dir, kubeconfig: plane.kubeconfigPath, server: plane.server, auditLog: plane.auditLogPath, controlUrl: control.url,
      supervisorPid: process.pid, pids: plane.pids(), startedInMs: Date.now() - began,
      ...(link && realNode ? { realNode: { name: realNodeName, link, pids: realNode.pids(), containerdSocket: realNode.containerdSocket } } : {}),
      ...(realNodeUnavailable ? { realNodeUnavailable } : {}),
    };
    writeState();
    return { state, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function onSignals(handler: (signal: string) => void) {
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => handler(s));
}

async function up(dir: string, detach: boolean, nodeOptions: NodeOptions): Promise<number> {
  if (detach) {
    if (existsSync(stateFile(dir))) {
      const prior = JSON.parse(readFileSync(stateFile(dir), 'utf8')) as ClusterState;
      if (isAlive(prior.supervisorPid)) {
        log(`already running (pid ${prior.supervisorPid})`);
        printExport(prior);
        return 0;
      }
      rmSync(stateFile(dir), { force: true });
    }
    mkdirSync(dir, { recursive: true });
    const out = openSync(join(dir, 'supervisor.log'), 'a');
    const child = spawn(process.execPath, [...process.execArgv, self, 'up', '--dir', dir, '--real-node', nodeOptions.realNode, '--real-node-role', nodeOptions.role], {
      detached: true, stdio: ['ignore', out, out],
    });
    child.unref();
    // A real node imports its images before it is Ready: a minute or more for large serving images.
    const deadline = Date.now() + 600_000;
    while (Date.now() < deadline) {
      if (existsSync(stateFile(dir))) {
        const state = JSON.parse(readFileSync(stateFile(dir), 'utf8')) as ClusterState;
        log(`control plane ready in ${(state.startedInMs / 1000).toFixed(1)} s (logs in ${join(dir, 'logs')})`);
        printExport(state);
        return 0;
      }
      if (child.exitCode !== null) break;
      await sleep(200);
    }
    log(`the control plane did not start; see ${join(dir, 'supervisor.log')}`);
    return 1;
  }
  const { state, stop } = await bringUp(dir, nodeOptions);
  log(`control plane ready in ${(state.startedInMs / 1000).toFixed(1)} s`);
  await new Promise<void>((r) => onSignals(() => r()));
  log('stopping');
  await stop();
  return 0;
}

function printExport(state: ClusterState) {
  process.stdout.write(`export KUBECONFIG=${state.kubeconfig}\n`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function down(dir: string): Promise<number> {
  if (!existsSync(stateFile(dir))) {
    log(`no cluster running in ${dir}`);
    return 0;
  }
  const state = JSON.parse(readFileSync(stateFile(dir), 'utf8')) as ClusterState;
  if (isAlive(state.supervisorPid)) process.kill(state.supervisorPid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (isAlive(state.supervisorPid) && Date.now() < deadline) await sleep(100);
  if (isAlive(state.supervisorPid)) process.kill(state.supervisorPid, 'SIGKILL');
  rmSync(stateFile(dir), { force: true });
  log('stopped');
  return 0;
}

async function run(dir: string | undefined, command: string[], nodeOptions: NodeOptions): Promise<number> {
  if (command.length === 0) throw new Error('run needs a command after --');
  const workDir = dir ?? mkdtempSync(join(tmpdir(), 'modelship-cluster-'));
  const { state, stop } = await bringUp(workDir, nodeOptions);
  log(`control plane ready in ${(state.startedInMs / 1000).toFixed(1)} s (${workDir})`);
  const child = spawn(command[0]!, command.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, KUBECONFIG: state.kubeconfig, MODELSHIP_CLUSTER_STATE: stateFile(workDir) },
  });
  onSignals((signal) => child.kill(signal as NodeJS.Signals));
  const code = await new Promise<number>((r) => child.on('exit', (c, sig) => r(c ?? (sig ? 130 : 1))));
  await stop();
  if (!dir && code === 0) rmSync(workDir, { recursive: true, force: true });
  else log(`cluster files kept in ${workDir}`);
  return code;
}

async function main() {
  const { mode, dir, detach, command, node } = parseArgs(process.argv.slice(2));
  const resolvedDir = dir ? resolve(dir) : undefined;
  switch (mode) {
    case 'up': return up(resolvedDir ?? resolve('.cluster'), detach, node);
    case 'down': return down(resolvedDir ?? resolve('.cluster'));
    case 'run': return run(resolvedDir, command, node);
    default: throw new Error(`unknown mode ${mode}: use up, down or run`);
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => { log(err.stack ?? err.message); process.exit(1); },
);
