// Runs one scenario on the control plane that `supervisor run` started for it (MODELSHIP_CLUSTER_STATE)
// and writes its result. bench/bench.ts (make bench) starts one control plane per scenario.
//
//   node --import tsx test/cluster/supervisor.ts run -- node --import tsx bench/scenario.ts --scenario create --n 1000
import { appendFileSync, existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { BenchContext, paramsFromEnv } from './lib/context.js';
import { machine, versions } from './lib/machine.js';
import { profileMarkdown, summarizeProfile } from './lib/profile.js';
import { operatorEntry, repoRoot } from './lib/operator.js';
import { latestFloor, resultBase, resultsDir, scenarios, writeResult, type Result, type Scenario } from './lib/report.js';
import { churn } from './scenarios/churn.js';
import { create } from './scenarios/create.js';
import { floor } from './scenarios/floor.js';
import { peer } from './scenarios/peer.js';
import { rollout } from './scenarios/rollout.js';
import { steady } from './scenarios/steady.js';

const run: Record<Scenario, (ctx: BenchContext) => Promise<boolean>> = { floor, create, rollout, steady, churn, peer };

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { scenario: { type: 'string' }, n: { type: 'string' } } });
  const scenario = values.scenario as Scenario;
  if (!(scenario in run)) throw new Error(`--scenario must be one of ${scenarios.join(', ')}, peer`);
  const n = Number(values.n);
  if (!Number.isInteger(n) || n < 1) throw new Error('--n must be a positive integer');
  const params = paramsFromEnv(n);
  const startedAt = new Date();
  const date = startedAt.toISOString().slice(0, 10);
  const label = process.env.LABEL ? process.env.LABEL.replace(/[^a-z0-9-]/gi, '-').toLowerCase() : undefined;
  const profileDir = join(resultsDir, 'profiles', resultBase({ date, scenario, n, label }));
  const ctx = new BenchContext(scenario, n, params, profileDir);
  if (scenario !== 'floor' && scenario !== 'peer') {
    const f = latestFloor(n);
    ctx.floor = f?.result;
    ctx.floorFile = f?.file;
    if (!f) ctx.notes.push(`no floor result for N=${n} in bench/results/: run \`make bench SCENARIO=floor N=${n}\` for the ratios`);
  }
  const machineAtStart = machine();
  let complete = false;
  try {
    complete = await run[scenario](ctx);
  } catch (err) {
    ctx.notes.push(`failed: ${(err as Error).stack ?? (err as Error).message}`);
    ctx.log(`failed: ${(err as Error).stack ?? (err as Error).message}`);
  }
  const v = await versions(ctx.client);
  await ctx.tearDown().catch(() => undefined);
  const finishedAt = new Date();
  const m = machine();
  const result: Result = {
    scenario,
    n,
    ...(label ? { label } : {}),
    date,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    complete,
    machine: machineAtStart,
    machineAtEnd: { loadAverage: m.loadAverage },
    versions: v,
    parameters: {
      concurrency: params.concurrency,
      applyConcurrency: params.applyConcurrency,
      nodes: ctx.nodes,
      maxPodsPerNode: params.maxPodsPerNode,
      metricsEveryMs: params.metricsMs,
      ...(scenario === 'steady' ? { resyncSeconds: params.resyncSeconds } : {}),
      ...(scenario === 'churn' || scenario === 'floor' ? { churnRate: params.churnRate, churnSeconds: params.churnSeconds } : {}),
      ...(params.profile ? { profile: true } : {}),
      ...(process.env.OPERATOR_ENTRY ? { operatorEntry: relative(repoRoot, operatorEntry) } : {}),
      ...(process.env.OPERATOR_NODE_ARGS ? { operatorNodeArgs: process.env.OPERATOR_NODE_ARGS } : {}),
    },
    ...(ctx.floor && ctx.floorFile ? { floorRef: { file: ctx.floorFile, startedAt: ctx.floor.startedAt } } : {}),
    rows: ctx.rows,
    phases: ctx.sampler?.phases ?? [],
    details: ctx.details,
    notes: ctx.notes,
  };
  if (params.profile && existsSync(profileDir)) {
    const profiles = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(profileDir, f));
    result.details.profiles = profiles.map((f) => ({ ...summarizeProfile(f), file: relative(repoRoot, f) }));
    result.details.heapSnapshots = readdirSync(profileDir).filter((f) => f.endsWith('.heapsnapshot')).map((f) => relative(repoRoot, join(profileDir, f)));
    if (typeof result.details.heapSnapshot === 'string') result.details.heapSnapshot = relative(repoRoot, result.details.heapSnapshot);
  }
  const files = writeResult(result);
  if (params.profile && Array.isArray(result.details.profiles)) {
    for (const p of result.details.profiles as ReturnType<typeof summarizeProfile>[]) appendFileSync(files.md, `\n## CPU profile\n\n${profileMarkdown(p)}`);
  }
  ctx.log(`${complete ? 'done' : 'INCOMPLETE'}: ${files.md}`);
  return complete ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => { process.stderr.write(`${err.stack ?? err.message}\n`); process.exit(2); },
);
