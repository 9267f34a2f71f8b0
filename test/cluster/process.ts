// One long-running child process of the control plane: started with its log in a file, probed for
// readiness, stopped with SIGTERM then SIGKILL. Children get PR_SET_PDEATHSIG through setpriv, so they
// die with the supervisor even when it is killed with SIGKILL: a crashed test run leaves no orphans.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessSpec {
  name: string;
  binary: string;
  args: string[];
  logFile: string;
  /** Resolves true once the component serves; called repeatedly until it does. */
  ready: () => Promise<boolean>;
  readyTimeoutMs?: number;
}

const pdeathsig = existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--'] : [];

export class ManagedProcess {
  private child: ChildProcess | undefined;
  private log: WriteStream | undefined;
  private exited: Promise<void> | undefined;

  constructor(readonly spec: ProcessSpec) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const { name, binary, args, logFile } = this.spec;
    this.log = createWriteStream(logFile, { flags: 'a' });
    this.log.write(`\n--- ${new Date().toISOString()} starting ${name}: ${binary} ${args.join(' ')}\n`);
    const [cmd, ...prefix] = pdeathsig.length > 0 ? pdeathsig : [binary];
    const argv = pdeathsig.length > 0 ? [...prefix, binary, ...args] : args;
    const child = spawn(cmd!, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    this.exited = once(child, 'exit').then(() => undefined);
    const spawnError = once(child, 'error').then(([err]) => { throw err as Error; });
    spawnError.catch(() => undefined);
    await Promise.race([this.waitReady(), spawnError]);
  }

  private async waitReady(): Promise<void> {
    const { name, ready, readyTimeoutMs = 60_000, logFile } = this.spec;
    const deadline = Date.now() + readyTimeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) {
        throw new Error(`${name} exited with ${this.child?.exitCode ?? this.child?.signalCode} before it was ready; see ${logFile}`);
      }
      if (await ready().catch(() => false)) return;
      await sleep(100);
    }
    throw new Error(`${name} was not ready within ${readyTimeoutMs} ms; see ${logFile}`);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves once the process is gone. */
  async stop(graceMs = 5_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    child.kill('SIGTERM');
    const killed = await Promise.race([this.exited!.then(() => true), sleep(graceMs).then(() => false)]);
    if (!killed) {
      child.kill('SIGKILL');
      await this.exited;
    }
    this.log?.write(`--- ${new Date().toISOString()} stopped ${this.spec.name}\n`);
  }

  /** Kills at once, as a crash would. */
  async kill(): Promise<void> {
    if (!this.child || !this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}
