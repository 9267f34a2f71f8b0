// kubectl-modelship as a person uses it, as its own process, against the real control plane.
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const operator = new OperatorProcess({ name: 'plugin' });
const plugin = fileURLToPath(new URL('../../operator/cli/kubectl-modelship.ts', import.meta.url));

test.before(async () => {
  await installCrd();
  await operator.start();
});

test.after.always(async () => {
  await operator.stop();
  await namespaces.deleteAll();
});

function kubectlModelship(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', plugin, ...args], { env: { ...process.env, KUBECONFIG: testCluster().state.kubeconfig } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

type Md = ModelDeployment & KubeObject;
const get = (ns: string, name: string) => client.get<Md>(Resources.ModelDeployment, ns, name);

test('list, status, promote, abort, retry, history and rollback', async (t) => {
  const ns = await namespaces.create('plugin');
  await client.create(Resources.ModelDeployment, modelDeployment('fraud', ns, withReplicas(2), withSpec({ rollout: { steps: [{ setWeight: 50 }, { pause: {} }, { setWeight: 100 }] } })));
  await waitFor('v1 serving', async () => (await get(ns, 'fraud')).status?.stableRevision);

  const list = await kubectlModelship('list', '-n', ns);
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /^NAME\s+READY\s+PHASE\s+VERSION\s+CANARY\s+WEIGHT\s+STEP\s+AGE/);
  t.regex(list.stdout, /fraud\s+True\s+Healthy\s+1\s+-/);
  const asJson = JSON.parse((await kubectlModelship('list', '-n', ns, '-o', 'json')).stdout) as Md[];
  t.is(asJson[0]?.metadata?.name, 'fraud');

  t.is((await kubectlModelship('promote', 'fraud', '-n', ns)).code, 4, 'no rollout in progress: a distinct exit code');

  await client.mergePatch(Resources.ModelDeployment, ns, 'fraud', { spec: { model: { version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' } } });
  await waitFor('at the gate', async () => (await get(ns, 'fraud')).status?.rollout?.pauseReason === 'ManualGate', 30_000, 250);
  const status = await kubectlModelship('status', 'fraud', '-n', ns);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /Canary:\s+\w+\s+model 2/);
  t.regex(status.stdout, /Step:\s+2\/3\s+\[#+-+\]\s+paused: ManualGate/);
  t.regex(status.stdout, /Weight:\s+50% to canary/);
  t.regex(status.stdout, /✔ pods\s+Passed\s+2\/2 ready/);
  t.regex(status.stdout, /waiting for: kubectl modelship promote fraud/);
  const statusYaml = await kubectlModelship('status', 'fraud', '-n', ns, '-o', 'yaml');
  t.regex(statusYaml.stdout, /pauseReason: ManualGate/);

  t.is((await kubectlModelship('abort', 'fraud', '-n', ns)).code, 0);
  const aborted = await waitFor('aborted', async () => {
    const m = await get(ns, 'fraud');
    return m.status?.rejectedRevision ? m : undefined;
  });
  const afterAbort = await kubectlModelship('status', 'fraud', '-n', ns);
  t.regex(afterAbort.stdout, new RegExp(`Rejected:\\s+${aborted.status!.rejectedRevision!.hash}`));
  t.regex(afterAbort.stdout, /Degraded:\s+Aborted/);

  t.is((await kubectlModelship('retry', 'fraud', '-n', ns)).code, 0);
  await waitFor('retried to the gate', async () => {
    const m = await get(ns, 'fraud');
    return !m.status?.rejectedRevision && m.status?.rollout?.pauseReason === 'ManualGate';
  }, 30_000, 250);
  t.is((await kubectlModelship('promote', 'fraud', '-n', ns, '--full')).code, 0);
  await waitFor('v2 promoted', async () => (await get(ns, 'fraud')).status?.stableRevision?.modelVersion === '2', 30_000, 250);

  const upToDate = await kubectlModelship('upgrade-runtime', 'fraud', '-n', ns);
  t.is(upToDate.code, 4, 'nothing to upgrade: the pods run this operator\'s images');
  t.regex(upToDate.stderr, /already runs this operator's images/);

  const history = await kubectlModelship('history', 'fraud', '-n', ns);
  t.is(history.code, 0);
  t.regex(history.stdout, /^REVISION\s+HASH\s+VERSION\s+OUTCOME/);
  t.regex(history.stdout, /\n1\s+\w+\s+1\s+Promoted/);
  t.regex(history.stdout, /\n2\s+\w+\s+2\s+Aborted/);
  t.regex(history.stdout, /\n3\*\s+\w+\s+2\s+Promoted/);

  const rollback = await kubectlModelship('rollback', 'fraud', '-n', ns, '--to-revision', '1');
  t.is(rollback.code, 0, rollback.stderr);
  const back = await waitFor('back on v1', async () => {
    const m = await get(ns, 'fraud');
    return m.status?.stableRevision?.modelVersion === '1' && !m.status.canaryRevision ? m : undefined;
  }, 30_000, 250);
  t.is(back.spec.model.version, '1', 'the spec holds revision 1 again');
  t.is(back.status?.history?.[0]?.outcome, 'Promoted', 'a rollback to a promoted revision skips the steps');
});

test('pause and resume write spec.paused', async (t) => {
  const ns = await namespaces.create('plugin-pause');
  await client.create(Resources.ModelDeployment, modelDeployment('m', ns));
  t.is((await kubectlModelship('pause', 'm', '-n', ns)).code, 0);
  t.true((await get(ns, 'm')).spec.paused);
  t.is((await kubectlModelship('resume', 'm', '-n', ns)).code, 0);
  t.false((await get(ns, 'm')).spec.paused);
});

test('clear errors with distinct exit codes', async (t) => {
  const ns = await namespaces.create('plugin-errors');
  const missing = await kubectlModelship('status', 'nope', '-n', ns);
  t.is(missing.code, 3);
  t.regex(missing.stderr, /modeldeployment "nope" in namespace "plugin-errors-\w+" not found/);
  t.is((await kubectlModelship('status')).code, 2);
  t.is((await kubectlModelship('frobnicate', 'x')).code, 2);
  t.is((await kubectlModelship('list', '--bogus')).code, 2);
  t.is((await kubectlModelship('list', '-o', 'xml')).code, 2);
  t.is((await kubectlModelship('rollback', 'x')).code, 2);
  t.is((await kubectlModelship('list', '--context', 'nowhere')).code, 2);
  const unreachable = await new Promise<number>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', plugin, 'list', '--kubeconfig', '/dev/null'], { env: { ...process.env, KUBECONFIG: '' } }, (err) => resolve(err ? (err.code as number) : 0));
  });
  t.not(unreachable, 0);
});
