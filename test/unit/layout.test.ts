// Imports run one way: the API types import nothing of the operator, the controller machinery knows
// nothing of ModelDeployments, and the decision (plan, rollout/, desired/) never reaches the client or
// the runners that do I/O. A change that breaks this fails here, with the offending import named.
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(import.meta.url), '../../../operator');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Each file's relative imports, as paths under operator/ without extension. */
const graph = sources(root).map((file) => {
  const text = readFileSync(file, 'utf8');
  const imports = [...text.matchAll(/(?:from|import)\s+'(\.[^']+)'/g)].map((m) => relative(root, resolve(dirname(file), m[1]!)).replace(/\.js$/, ''));
  return { file: relative(root, file).replace(/\.ts$/, ''), imports };
});

const violations = (from: (f: string) => boolean, to: (i: string) => boolean) =>
  graph.filter((g) => from(g.file)).flatMap((g) => g.imports.filter(to).map((i) => `${g.file} → ${i}`));

const io = (i: string) => i.startsWith('runtime/') || i === 'modeldeployment/reconcile' || i === 'modeldeployment/analysis/run' || i === 'modeldeployment/monitoring/run';

test('the API types import nothing but each other', (t) => {
  t.deepEqual(violations((f) => f.startsWith('api/'), (i) => !i.startsWith('api/')), []);
});

test('the controller machinery knows nothing of ModelDeployments', (t) => {
  t.deepEqual(violations((f) => f.startsWith('runtime/'), (i) => i.startsWith('modeldeployment/') || i.startsWith('cli/')), []);
});

test('the decision and the builders never reach the client or the I/O runners', (t) => {
  const pure = (f: string) => f === 'modeldeployment/plan' || f === 'modeldeployment/status' || f === 'modeldeployment/resolve' || f === 'modeldeployment/presets'
    || f.startsWith('modeldeployment/rollout/') || f.startsWith('modeldeployment/desired/') || f === 'modeldeployment/analysis/evaluate' || f === 'modeldeployment/monitoring/decide';
  t.true(graph.some((g) => pure(g.file) && g.imports.length > 0), 'the graph was read');
  t.deepEqual(violations(pure, io), []);
});
