// Per-object series cost memory and scrape time at scale: every one of them goes with its object,
// and a check removed from the spec takes its series with it.
import test from 'ava';
import { OperatorMetrics } from '../../operator/runtime/metrics.js';

const seriesOf = async (m: OperatorMetrics, name: string) =>
  (await m.registry.metrics()).split('\n').filter((l) => !l.startsWith('#') && l.includes(`name="${name}"`));

test('a deleted ModelDeployment leaves no series behind, checks and counters included', async (t) => {
  const m = new OperatorMetrics();
  for (const name of ['gone', 'kept']) {
    m.ready.set({ namespace: 'ns', name }, 1);
    m.phase.set({ namespace: 'ns', name, phase: 'Healthy' }, 1);
    m.rollbacks.inc({ namespace: 'ns', name, reason: 'RolledBack' });
    m.rollbacks.inc({ namespace: 'ns', name, reason: 'Aborted' });
    m.driftTransitions.inc({ namespace: 'ns', name, to: 'True' });
    m.drifting.set({ namespace: 'ns', name }, 1);
    m.setChecks('analysis', 'ns', name, [{ check: 'p99', value: '0.2', passed: true }, { check: 'schema', value: 'ok', passed: true }]);
    m.setChecks('monitoring', 'ns', name, [{ check: 'drift', value: 0.05, passed: true }]);
  }
  t.true((await seriesOf(m, 'gone')).length >= 10);
  m.forget('ns', 'gone');
  t.deepEqual(await seriesOf(m, 'gone'), []);
  t.true((await seriesOf(m, 'kept')).length >= 10, 'the other object keeps its series');
});

test('a check no longer in the results loses its series', async (t) => {
  const m = new OperatorMetrics();
  m.setChecks('analysis', 'ns', 'md', [{ check: 'p99', value: 1, passed: true }, { check: 'errors', value: 0, passed: true }]);
  m.setChecks('analysis', 'ns', 'md', [{ check: 'p99', value: 2, passed: false }]);
  const lines = await seriesOf(m, 'md');
  t.false(lines.some((l) => l.includes('check="errors"')));
  t.true(lines.some((l) => l.startsWith('modelship_analysis_value') && l.includes('check="p99"') && l.endsWith(' 2')));
  t.true(lines.some((l) => l.startsWith('modelship_analysis_passed') && l.includes('check="p99"') && l.endsWith(' 0')));
});
