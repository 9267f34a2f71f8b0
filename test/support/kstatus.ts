// kstatus' verdict on objects, from sigs.k8s.io/cli-utils itself (hack/kstatus, linked into .bin/ by
// hack/build-bins.sh): Flux, kpt and Config Sync decide health with this code, so a test that asks it
// sees a ModelDeployment exactly as those tools do.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const kstatusBinary = resolve(fileURLToPath(import.meta.url), '../../../.bin/kstatus');

export type KstatusStatus = 'InProgress' | 'Failed' | 'Current' | 'Terminating' | 'NotFound' | 'Unknown';

export interface KstatusVerdict {
  status: KstatusStatus;
  message: string;
}

/** kstatus' verdict on one object. */
export async function kstatusVerdict(obj: object): Promise<KstatusVerdict> {
  return JSON.parse(await run(JSON.stringify(obj))) as KstatusVerdict;
}

/** kstatus' verdicts on several objects, in their order, from one run of the binary. */
export async function kstatusVerdicts(objs: readonly object[]): Promise<KstatusVerdict[]> {
  if (objs.length === 0) return [];
  return JSON.parse(await run(JSON.stringify(objs))) as KstatusVerdict[];
}

function run(input: string): Promise<string> {
  if (!existsSync(kstatusBinary)) throw new Error(`${kstatusBinary} is missing: run hack/build-bins.sh kstatus (make bins) first`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(kstatusBinary, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(stdout);
      else reject(new Error(`kstatus exited with ${code}: ${stderr.trim()}`));
    });
    child.stdin.end(input);
  });
}
