// Every flag docs/operations.md documents parses, in every form Go's flag package accepts, and so does
// every variable the Helm chart's Deployment sets, with the chart's default values.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { FlagError, flagDefinitions, parseOperatorFlags, type OperatorFlags } from '../../operator/flags.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');

interface DocumentedFlag { flag: string; env: string; defaultCell: string }

/** The rows of the "Flags and environment" table that name a flag. */
function documentedFlags(): DocumentedFlag[] {
  const doc = readFileSync(join(repoRoot, 'docs/operations.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Flags and environment'));
  const rows: DocumentedFlag[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const flag = /^`--([a-z-]+)`$/.exec(cells[1] ?? '')?.[1];
    if (!flag) continue;
    rows.push({ flag, env: /^`([A-Z_]+)`/.exec(cells[2] ?? '')?.[1] ?? '', defaultCell: cells[3] ?? '' });
  }
  return rows;
}

const field = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof OperatorFlags;

/** A value the flag accepts: its documented default when that is one literal, else one of its kind. */
function sampleValue(row: DocumentedFlag): string {
  const literal = /^`([^`]+)`$/.exec(row.defaultCell)?.[1];
  const def = flagDefinitions.find((f) => f.name === row.flag)!;
  if (def.type === 'boolean') return 'false';
  if (def.type === 'port') return '9443';
  if (row.flag === 'max-response-bytes') return '65536';
  if (def.type === 'count') return '7';
  if (row.flag === 'watch-namespaces') return 'team-a,team-b';
  if (row.flag === 'outbound-deny') return '10.0.0.0/24,fd00::/8';
  if (row.flag === 'gateway-parents') return 'infra/shared,infra/public';
  if (row.flag === 'gateway-hostnames') return '*.models.example.com,api.example.com';
  return literal ?? `/tmp/sample-${row.flag}`;
}

function asParsed(flag: string, value: string): unknown {
  const def = flagDefinitions.find((f) => f.name === flag)!;
  if (def.type === 'boolean') return value === 'true';
  if (def.type === 'port' || def.type === 'count') return Number(value);
  if (flag === 'watch-namespaces') return value.split(',');
  return value;
}

const rows = documentedFlags();

test('the documented flags are exactly the ones the operator parses, with the same variables', (t) => {
  t.true(rows.length >= 10, `${rows.length} documented flags`);
  t.deepEqual(rows.map((r) => r.flag).sort(), flagDefinitions.map((f) => f.name).sort());
  for (const row of rows) t.is(row.env, flagDefinitions.find((f) => f.name === row.flag)!.env, `--${row.flag}`);
});

for (const row of rows) {
  test(`--${row.flag} parses as --${row.flag}=value, --${row.flag} value and its variable`, (t) => {
    const value = sampleValue(row);
    const expected = asParsed(row.flag, value);
    const key = field(row.flag);
    t.deepEqual(parseOperatorFlags([`--${row.flag}=${value}`], {})[key], expected);
    const def = flagDefinitions.find((f) => f.name === row.flag)!;
    if (def.type !== 'boolean') t.deepEqual(parseOperatorFlags([`--${row.flag}`, value], {})[key], expected);
    // KUBECONFIG is a list that the kubeconfig loader reads itself, not a flag value.
    if (row.env !== 'KUBECONFIG') t.deepEqual(parseOperatorFlags([], { [row.env]: value })[key], expected);
  });
}

test('documented defaults are the parsed defaults', (t) => {
  const parsed = parseOperatorFlags([], {});
  let compared = 0;
  for (const row of rows) {
    const literal = /^`([^`]+)`$/.exec(row.defaultCell)?.[1];
    if (literal === undefined) continue;
    t.deepEqual(parsed[field(row.flag)], asParsed(row.flag, literal), `--${row.flag}`);
    compared++;
  }
  t.true(compared >= 6, `${compared} defaults compared`);
  t.is(parsed.leaderElectionNamespace, 'default');
  t.is(parseOperatorFlags([], { POD_NAMESPACE: 'modelship-system' }).leaderElectionNamespace, 'modelship-system');
});

test('--leader-elect takes every boolean form Go accepts, and a bare one never swallows the next argument', (t) => {
  t.false(parseOperatorFlags(['--leader-elect=false'], {}).leaderElect);
  t.true(parseOperatorFlags(['--leader-elect=true'], {}).leaderElect);
  t.false(parseOperatorFlags(['--leader-elect=0'], {}).leaderElect);
  t.false(parseOperatorFlags(['--leader-elect=False'], {}).leaderElect);
  const bare = parseOperatorFlags(['--leader-elect', '--concurrency', '2'], { MODELSHIP_LEADER_ELECT: 'false' });
  t.true(bare.leaderElect, 'a bare flag is true and wins over the variable');
  t.is(bare.concurrency, 2);
  t.false(parseOperatorFlags([], { MODELSHIP_LEADER_ELECT: 'false' }).leaderElect);
  // As in Go, a boolean takes its value only after "=": the separate word is an argument, and there are none.
  t.throws(() => parseOperatorFlags(['--leader-elect', 'false'], {}), { instanceOf: FlagError });
  t.throws(() => parseOperatorFlags([], { MODELSHIP_LEADER_ELECT: 'maybe' }), { instanceOf: FlagError, message: /MODELSHIP_LEADER_ELECT/ });
});

test('bad values and unknown flags are usage errors that name the culprit', (t) => {
  t.throws(() => parseOperatorFlags(['--concurrency=0'], {}), { instanceOf: FlagError, message: /--concurrency/ });
  t.throws(() => parseOperatorFlags(['--metrics-port=http'], {}), { instanceOf: FlagError, message: /--metrics-port/ });
  t.throws(() => parseOperatorFlags([], { MODELSHIP_RESYNC_SECONDS: '10m' }), { instanceOf: FlagError, message: /MODELSHIP_RESYNC_SECONDS/ });
  t.throws(() => parseOperatorFlags(['--service-address=ingress'], {}), { instanceOf: FlagError, message: /dns or cluster-ip/ });
  t.throws(() => parseOperatorFlags(['--leader-elect-namespace=x'], {}), { instanceOf: FlagError });
  t.throws(() => parseOperatorFlags(['--outbound-allow=*.svc,not a host'], {}), { instanceOf: FlagError, message: /--outbound-allow: "not a host"/ });
  t.throws(() => parseOperatorFlags([], { MODELSHIP_OUTBOUND_DENY: '10.0.0.0/33' }), { instanceOf: FlagError, message: /MODELSHIP_OUTBOUND_DENY: "10\.0\.0\.0\/33" is not a CIDR/ });
  t.throws(() => parseOperatorFlags(['--gateway-parents=shared'], {}), { instanceOf: FlagError, message: /namespace\/name/ });
  t.throws(() => parseOperatorFlags(['--gateway-hostnames=10.0.0.0/8'], {}), { instanceOf: FlagError, message: /hostname patterns only/ });
  t.throws(() => parseOperatorFlags(['--model-size-limit=1.5Gi'], {}), { instanceOf: FlagError, message: /--model-size-limit/ });
  t.throws(() => parseOperatorFlags(['--max-response-bytes=10'], {}), { instanceOf: FlagError, message: /--max-response-bytes/ });
});

/** The chart's Deployment environment, rendered from values.yaml the way its template does. */
function chartEnvironment(overrides: (values: any) => void = () => undefined): Record<string, string> {
  const template = readFileSync(join(repoRoot, 'charts/modelship/templates/deployment.yaml'), 'utf8');
  const values = yaml.load(readFileSync(join(repoRoot, 'charts/modelship/values.yaml'), 'utf8')) as any;
  overrides(values);
  const chart = yaml.load(readFileSync(join(repoRoot, 'charts/modelship/Chart.yaml'), 'utf8')) as { appVersion: string };
  const lookup = (path: string) => path.split('.').filter(Boolean).reduce((v: any, k) => v?.[k], values);
  const env: Record<string, string> = {};
  for (const m of template.matchAll(/- \{name: ([A-Z_]+), (value: \{\{ (.+?) \}\}|valueFrom: .*)\}/g)) {
    const [, name, , expr] = m;
    if (!expr) {
      env[name!] = 'modelship-system'; // valueFrom the pod's namespace
      continue;
    }
    const quoted = /^\.Values\.([\w.]+) \| quote$/.exec(expr);
    const joined = /^join "," \.Values\.([\w.]+) \| quote$/.exec(expr);
    if (quoted) env[name!] = String(lookup(quoted[1]!));
    else if (joined) env[name!] = (lookup(joined[1]!) as string[]).join(',');
    else if (expr === '. | quote' && name === 'NODE_OPTIONS') env[name] = String(values.nodeOptions); // inside `with .Values.nodeOptions`
    else if (/include "modelship.image"/.test(expr)) env[name!] = `${values.image.repository}:${values.image.tag || chart.appVersion}`;
    else throw new Error(`the test does not know how the chart renders ${name}: ${expr}`);
  }
  return env;
}

test('every variable the chart sets is a documented one, and the chart\'s values parse', (t) => {
  const env = chartEnvironment();
  const known = new Set([...flagDefinitions.map((f) => f.env), 'POD_NAMESPACE', 'LOG_LEVEL', 'NODE_OPTIONS']);
  const set = Object.keys(env);
  t.true(set.length >= 8, `${set.length} variables`);
  for (const name of set) t.true(known.has(name), `${name} is read by the operator`);
  const parsed = parseOperatorFlags([], env);
  t.true(parsed.leaderElect);
  t.is(parsed.leaderElectionNamespace, 'modelship-system');
  t.is(parsed.concurrency, 4);
  t.deepEqual(parsed.watchNamespaces, []);
  t.false(parseOperatorFlags([], chartEnvironment((v) => { v.leaderElection.enabled = false; })).leaderElect);
  t.deepEqual(parseOperatorFlags([], chartEnvironment((v) => { v.watchNamespaces = ['a', 'b']; })).watchNamespaces, ['a', 'b']);
});

test('the operator binary gets past its flags with --leader-elect=false, and a bad flag exits 2 with a message', async (t) => {
  const run = (args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', join(repoRoot, 'operator/main.ts'), ...args], {
    cwd: repoRoot, env: { ...process.env, KUBECONFIG: '' }, timeout: 30_000,
  }).then(() => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }));
  const ok = await run(['--leader-elect=false', '--kubeconfig=/nonexistent/kubeconfig']);
  t.notRegex(ok.stderr, /ERR_PARSE_ARGS/);
  t.regex(ok.stderr, /nonexistent\/kubeconfig/, 'it went on to read the kubeconfig');
  const bad = await run(['--leader-elect', 'false']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /^modelship: /m);
});
