// The kstatus convention for ModelDeployments, checked with kstatus itself (sigs.k8s.io/cli-utils, the
// code Flux, kpt and Config Sync use) on objects written by hand: Reconciling=True while a revision
// deploys or a rollout runs, Stalled=True when nothing will move without a change, neither when the
// stable revision serves and nothing is in progress. Ready alone means "stable serves", which is why
// it cannot carry the verdict: a canary held at a gate or rolled back still has a serving stable.
import { execFileSync } from 'node:child_process';
import test from 'ava';
import yaml from 'js-yaml';
import type { Condition, ModelDeployment, ModelDeploymentStatus } from '../../operator/api/generated.js';
import { modelDeployment } from '../support/builders.js';
import { kstatusBinary, kstatusVerdict, kstatusVerdicts } from '../support/kstatus.js';

const at = '2026-01-01T00:00:00Z';
const cond = (type: string, status: Condition['status'], reason: string, message = `${type} ${reason}`): Condition =>
  ({ type, status, reason, message, lastTransitionTime: at, observedGeneration: 2 });

/** A ModelDeployment at generation 2 whose status the operator wrote for generation `observed`. */
function observed(conditions: Condition[], extra: Partial<ModelDeploymentStatus> = {}, observedGeneration = 2): ModelDeployment {
  const md = modelDeployment('fraud', 'ml');
  md.metadata = { ...md.metadata, generation: 2 };
  md.status = { observedGeneration, conditions, ...extra };
  return md;
}

const stableServes = cond('Ready', 'True', 'StableServing', 'revision aaaa (model 1) serves 2/2 ready replicas');

test('the stable revision serving with nothing in progress is Current', async (t) => {
  const md = observed([stableServes, cond('Progressing', 'False', 'Complete'), cond('Reconciling', 'False', 'Complete'), cond('Stalled', 'False', 'Complete')]);
  t.deepEqual(await kstatusVerdict(md), { status: 'Current', message: 'Resource is Ready' });
  const withoutThem = observed([stableServes, cond('Progressing', 'False', 'Complete')]);
  t.deepEqual(await kstatusVerdict(withoutThem), { status: 'Current', message: 'Resource is Ready' }, 'absent means the same as False');
});

test('Reconciling=True is InProgress even while Ready=True: a canary at a setWeight step, a manual gate, a pause', async (t) => {
  for (const [reason, message] of [
    ['CanaryStep', 'canary bbbb at step 1/3 (50%)'],
    ['ManualGate', 'canary bbbb waits at step 2/3 for modelship.io/promote'],
    ['Paused', 'rollout paused by spec.paused'],
  ] as const) {
    const md = observed([stableServes, cond('Progressing', 'True', reason), cond('Reconciling', 'True', reason, message)], { canaryRevision: { hash: 'bbbb' } });
    t.deepEqual(await kstatusVerdict(md), { status: 'InProgress', message }, reason);
  }
});

test('a first revision deploying (Ready=False, Reconciling=True) is InProgress with the Reconciling message', async (t) => {
  const md = observed([cond('Ready', 'False', 'WaitingForReplicas'), cond('Reconciling', 'True', 'Deploying', '0/2 replicas of revision aaaa ready')]);
  t.deepEqual(await kstatusVerdict(md), { status: 'InProgress', message: '0/2 replicas of revision aaaa ready' });
});

test('Stalled=True is Failed: a rolled-back or aborted canary beside a serving stable, an invalid spec, a missed deadline', async (t) => {
  const cases: [string, Condition[]][] = [
    ['revision bbbb was rolled back: CrashLoopBackOff', [stableServes, cond('Degraded', 'True', 'RolledBack')]],
    ['revision bbbb was aborted by modelship.io/abort', [stableServes, cond('Degraded', 'True', 'Aborted')]],
    ['mlserver cannot serve onnx models; use triton', [cond('Ready', 'False', 'InvalidSpec')]],
    ['revision aaaa did not become ready within its progress deadline', [cond('Ready', 'False', 'WaitingForReplicas'), cond('Degraded', 'True', 'ProgressDeadlineExceeded')]],
  ];
  const reasons = ['RolledBack', 'Aborted', 'InvalidSpec', 'ProgressDeadlineExceeded'];
  const mds = cases.map(([message, conditions], i) =>
    observed([...conditions, cond('Reconciling', 'False', reasons[i]!), cond('Stalled', 'True', reasons[i]!, message)]));
  t.deepEqual(await kstatusVerdicts(mds), cases.map(([message]) => ({ status: 'Failed', message })));
});

test('without Reconciling and Stalled, kstatus falls back to Ready and misreads held and failed rollouts', async (t) => {
  // What the conditions above exist to fix: only Ready and Degraded, as a rollout held at its gate
  // and a rejected canary report them, read as healthy; a missed deadline reads as still working.
  const [gate, rolledBack, deadline] = await kstatusVerdicts([
    observed([stableServes, cond('Progressing', 'True', 'ManualGate')], { canaryRevision: { hash: 'bbbb' } }),
    observed([stableServes, cond('Progressing', 'False', 'RolledBack'), cond('Degraded', 'True', 'RolledBack')]),
    observed([cond('Ready', 'False', 'WaitingForReplicas', '0/2 replicas ready'), cond('Degraded', 'True', 'ProgressDeadlineExceeded')]),
  ]);
  t.is(gate?.status, 'Current');
  t.is(rolledBack?.status, 'Current');
  t.deepEqual(deadline, { status: 'InProgress', message: '0/2 replicas ready' });
});

test('a status written for an older generation is InProgress whatever its conditions say', async (t) => {
  // A spec fixed after InvalidSpec must not read as Failed until the operator has looked at it.
  const md = observed([cond('Ready', 'False', 'InvalidSpec'), cond('Stalled', 'True', 'InvalidSpec')], {}, 1);
  t.deepEqual(await kstatusVerdict(md), { status: 'InProgress', message: 'ModelDeployment generation is 2, but latest observed generation is 1' });
});

test('the tool reads YAML streams, Lists and JSON arrays, and answers Unknown for what kstatus cannot judge', async (t) => {
  const failed = observed([stableServes, cond('Stalled', 'True', 'Aborted', 'aborted')]);
  const current = observed([stableServes]);
  const run = (input: string) => JSON.parse(execFileSync(kstatusBinary, { input, encoding: 'utf8', stdio: 'pipe' }));
  const verdicts = [{ status: 'Failed', message: 'aborted' }, { status: 'Current', message: 'Resource is Ready' }];
  t.deepEqual(run(yaml.dump(failed)), verdicts[0]);
  t.deepEqual(run(`${yaml.dump(failed)}---\n${yaml.dump(current)}`), verdicts);
  t.deepEqual(run(JSON.stringify({ apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeploymentList', items: [failed, current] })), verdicts);
  t.deepEqual(await kstatusVerdicts([failed]), [verdicts[0]], 'a one-element array answers with an array');
  const broken = { ...failed, metadata: { ...failed.metadata, generation: 'two' } };
  const [verdict] = await kstatusVerdicts([broken]);
  t.is(verdict?.status, 'Unknown');
  t.regex(verdict?.message ?? '', /metadata\.generation/);
  const unreadable = t.throws(() => run('{ not: [yaml'));
  t.is((unreadable as Error & { status?: number }).status, 2, 'unreadable input fails the run');
  t.regex(String((unreadable as Error & { stderr?: string }).stderr), /^kstatus: decoding object 1/);
});
