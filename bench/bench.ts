// make bench: runs scenarios, each on a fresh control plane of its own, then writes
// bench/results/latest.md (and, with PUBLISH=1, the table in docs/performance.md).
//
//   node --import tsx bench/bench.ts --scenario all|floor|create|rollout|steady|churn[,...] --n 100[,1000]
//   node --import tsx bench/bench.ts --peer argo-rollouts --n 1000     (RUNS=3: side by side, interleaved)
//
// Parameters from the environment (make passes command-line variables through): CONCURRENCY,
// APPLY_CONCURRENCY, TIMEOUT, RESYNC, CHURN_RATE, CHURN_SECONDS, IDLE_SECONDS, METRICS_MS, MAX_PODS,
// PROFILE=1 (CPU profile and heap snapshot of the operator), PUBLISH=1, FLOOR=fresh.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { operatorEntry, repoRoot } from './lib/operator.js';
import { latestFloor, publish, scenarios, title, writeLatest, type Scenario } from './lib/report.js';
import { peerContenders, publishPeer, writePeerSummary } from './lib/peer-report.js';

function runScenario(scenario: Scenario, n: number, env: Record<string, string> = {}): Promise<number> {
  const tsx = ['--import', 'tsx'];
  const argv = [
    ...tsx, join(repoRoot, 'test/cluster/supervisor.ts'), 'run', '--',
    process.execPath, ...tsx, join(repoRoot, 'bench/scenario.ts'), '--scenario', scenario, '--n', String(n),
  ];
  process.stderr.write(`\n=== ${title(scenario)}, N = ${n}${env.PEER_CONTROLLER ? `, ${env.PEER_CONTROLLER} (run ${env.PEER_RUN})` : ''}\n`);
  const child = spawn(process.execPath, argv, { cwd: repoRoot, stdio: 'inherit', env: { ...process.env, ...env } });
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => child.kill(s));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 130 : 1))));
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { scenario: { type: 'string', default: 'all' }, n: { type: 'string', default: '100' }, peer: { type: 'string', default: '' } } });
  if (values.peer) return sideBySide(values.peer, values.n);
  const wanted = values.scenario === 'all' ? [...scenarios] : values.scenario.split(',').map((s) => s.trim()) as Scenario[];
  for (const s of wanted) if (!scenarios.includes(s)) throw new Error(`unknown scenario ${s}: use all or ${scenarios.join(', ')}`);
  const ns = values.n.split(',').map((x) => Number(x.trim()));
  for (const n of ns) if (!Number.isInteger(n) || n < 1) throw new Error(`N must be a positive integer, not ${n}`);
  for (const bin of ['kube-apiserver', 'etcd', 'kwok']) {
    if (!existsSync(join(repoRoot, '.bin', bin))) throw new Error(`.bin/${bin} is missing: run \`make bins\` first`);
  }
  if (!existsSync(operatorEntry)) throw new Error('dist/ is missing: run `make build` first');

  const failed: string[] = [];
  for (const n of ns) {
    let list = [...wanted];
    const needsFloor = list.some((s) => s !== 'floor' && s !== 'steady');
    if (needsFloor && !list.includes('floor') && (process.env.FLOOR === 'fresh' || !latestFloor(n))) {
      process.stderr.write(`no floor result for N=${n} yet: measuring it first\n`);
      list = ['floor', ...list];
    }
    // The floor first, so the others' ratios use it.
    list.sort((a, b) => scenarios.indexOf(a) - scenarios.indexOf(b));
    for (const s of list) {
      const code = await runScenario(s, n);
      if (code !== 0) failed.push(`${s} N=${n} (exit ${code})`);
    }
  }
  const latest = writeLatest();
  process.stderr.write(`\nresults: ${latest}\n`);
  if (['1', 'true', 'yes'].includes(process.env.PUBLISH ?? '')) process.stderr.write(`published: ${publish()}\n`);
  if (failed.length) process.stderr.write(`incomplete or failed: ${failed.join(', ')}\n`);
  return failed.length ? 1 : 0;
}

/**
 * RUNS rounds (3 by default); each round runs every contender once, each on a fresh control plane, in an
 * order that rotates from round to round so that no contender always runs first or last.
 */
async function sideBySide(peerName: string, nList: string): Promise<number> {
  if (peerName !== 'argo-rollouts') throw new Error(`PEER=${peerName}: the only peer is argo-rollouts`);
  if (!existsSync(join(repoRoot, '.bin', 'rollouts-controller'))) throw new Error('.bin/rollouts-controller is missing: run `hack/build-bins.sh argo-rollouts`');
  if (!existsSync(operatorEntry)) throw new Error('dist/ is missing: run `make build` first');
  const runs = Number(process.env.RUNS ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`RUNS must be a positive integer, not ${process.env.RUNS}`);
  const failed: string[] = [];
  for (const n of nList.split(',').map((x) => Number(x.trim()))) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`N must be a positive integer, not ${n}`);
    const series = new Date().toISOString().replace(/[:.]/g, '-');
    for (let run = 1; run <= runs; run++) {
      const order = peerContenders.map((_, i) => peerContenders[(i + run - 1) % peerContenders.length]!);
      for (const contender of order) {
        const code = await runScenario('peer', n, {
          PEER_CONTROLLER: contender, PEER_RUN: String(run), BENCH_SERIES: series, LABEL: `${contender}-${series}-r${run}`,
        });
        if (code !== 0) failed.push(`${contender} run ${run} N=${n} (exit ${code})`);
      }
    }
    const written = writePeerSummary(series);
    if (!written) continue;
    process.stderr.write(`\nside by side, N = ${n}: ${written.md}\n`);
    if (['1', 'true', 'yes'].includes(process.env.PUBLISH ?? '')) process.stderr.write(`published: ${publishPeer(written.summary)}\n`);
  }
  if (failed.length) process.stderr.write(`incomplete or failed: ${failed.join(', ')}\n`);
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => { process.stderr.write(`${err.message}\n`); process.exit(2); },
);
