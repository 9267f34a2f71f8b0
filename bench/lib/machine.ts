// What a result was measured on: the machine, its load, and the versions of everything involved.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, freemem, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import type { BenchClient } from './client.js';
import { repoRoot } from './operator.js';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGB: number;
  freeMemoryGB: number;
  kernel: string;
  loadAverage: number[];
}

export interface Versions {
  node: string;
  kubernetes?: string;
  etcd?: string;
  kwok?: string;
  modelship: string;
  commit?: string;
  /** Uncommitted changes under operator/ when the run started. */
  operatorTreeDirty?: boolean;
}

export function machine(): Machine {
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    memoryGB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeMemoryGB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

function run(cmd: string, args: string[]): string | undefined {
  try {
    return execFileSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).trim();
  } catch {
    return undefined;
  }
}

export async function versions(client?: BenchClient): Promise<Versions> {
  const bin = (b: string) => join(repoRoot, '.bin', b);
  let kubernetes: string | undefined;
  if (client) {
    kubernetes = await client.request<{ gitVersion?: string }>('GET', '/version').then((v) => v.gitVersion, () => undefined);
  }
  const etcd = run(bin('etcd'), ['--version'])?.split('\n')[0]?.replace(/^etcd Version:\s*/, '');
  const kwok = run(bin('kwok'), ['--version'])?.split('\n')[0];
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const status = run('git', ['status', '--porcelain', '--', 'operator/']);
  return {
    node: process.version,
    kubernetes,
    etcd,
    kwok,
    modelship: pkg.version,
    commit: run('git', ['rev-parse', '--short=12', 'HEAD']),
    operatorTreeDirty: status === undefined ? undefined : status.length > 0,
  };
}
