// The response judge (operator/modeldeployment/analysis/response.ts): tenant-controlled JSON, JSON Schema
// and JSONPath judged in a worker thread with a time limit, RE2 patterns, per-schema Ajv instances, a
// bounded compile cache and error texts without the answer's data. Serial: several tests measure time and
// event-loop gaps, which other tests' CPU-heavy jobs would disturb.
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  ResponseJudge,
  ResponseJudgeError,
  jsonPathProblem,
  schemaProblem,
  type ResponseJudgeOptions,
  type ResponseVerdict,
} from '../../operator/modeldeployment/analysis/response.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** A judge whose worker is up (startup does not count against the time limit, but tests time jobs). */
async function judgeFor(t: { teardown(fn: () => Promise<void>): void }, options: ResponseJudgeOptions = {}): Promise<ResponseJudge> {
  const judge = new ResponseJudge(options);
  t.teardown(() => judge.close());
  await judge.judge({ body: '{}' });
  return judge;
}

/** Runs work while a 10 ms interval ticks on this event loop; the longest gap shows whether it froze. */
async function watch<T>(work: () => Promise<T>): Promise<{ value?: T; error?: unknown; elapsed: number; maxGap: number }> {
  let last = performance.now();
  let maxGap = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 10);
  const start = performance.now();
  try {
    const value = await work();
    return { value, elapsed: performance.now() - start, maxGap: Math.max(maxGap, performance.now() - last) };
  } catch (error) {
    return { error, elapsed: performance.now() - start, maxGap: Math.max(maxGap, performance.now() - last) };
  } finally {
    clearInterval(tick);
  }
}

/** uniqueItems over distinct objects: ajv compares every pair deeply, O(n²): ~2·10⁸ comparisons here. */
const slowJob = {
  body: JSON.stringify(Array.from({ length: 20_000 }, (_, i) => ({ id: i }))),
  schema: { type: 'array', uniqueItems: true, items: { type: 'object' } },
};

test.serial('a catastrophically backtracking pattern is linear on RE2, and the event loop keeps ticking', async (t) => {
  const judge = await judgeFor(t);
  const schema = { type: 'string', pattern: '^(a+)+$' };
  const run = await watch(() => judge.judge({ body: JSON.stringify('a'.repeat(40) + '!'), schema }));
  t.is(run.error, undefined);
  t.deepEqual(run.value, { json: true, schemaErrors: ['/: must match the pattern (#/pattern)'] });
  t.true(run.elapsed < 500, `took ${run.elapsed} ms`);
  t.true(run.maxGap < 200, `the event loop stalled ${run.maxGap} ms`);
  t.deepEqual(await judge.judge({ body: JSON.stringify('a'.repeat(100_000)), schema }), { json: true });
});

test.serial('a job over the time limit is cut, the loop stays responsive, and the next job gets a fresh worker', async (t) => {
  const judge = await judgeFor(t, { timeoutMs: 300 });
  const run = await watch(() => judge.judge(slowJob));
  t.true(run.error instanceof ResponseJudgeError, String(run.error));
  t.is((run.error as ResponseJudgeError).kind, 'timeout');
  t.is((run.error as ResponseJudgeError).message, 'response validation took longer than 300 ms');
  t.true(run.elapsed >= 290 && run.elapsed < 1500, `took ${run.elapsed} ms`);
  t.true(run.maxGap < 200, `the event loop stalled ${run.maxGap} ms`);
  t.like(judge.stats(), { timeouts: 1, restarts: 1, cacheEntries: 0 });
  t.deepEqual(await judge.judge({ body: '[{"id":1},{"id":2}]', schema: slowJob.schema }), { json: true });
  t.like(await judge.judge({ body: '[{"id":1},{"id":1}]', schema: slowJob.schema }), {
    schemaErrors: ['/: must not have duplicate items (items 0 and 1 are equal) (#/uniqueItems)'],
  });
  t.like(judge.stats(), { timeouts: 1, restarts: 1, cacheEntries: 1, compiles: 1 });
});

test.serial('two schemas with the same $id both work, compiled again and again', async (t) => {
  const judge = await judgeFor(t, { cacheEntries: 1 }); // every switch between them recompiles
  const schema = (name: string, type: string) => ({
    $id: 'https://tenant.example/schema.json',
    definitions: { v: { $id: 'https://tenant.example/value.json', type } },
    type: 'object',
    required: [name],
    properties: { [name]: { $ref: '#/definitions/v' } },
  });
  for (let i = 0; i < 3; i++) {
    t.deepEqual(await judge.judge({ body: '{"a":1}', schema: schema('a', 'number') }), { json: true });
    t.deepEqual(await judge.judge({ body: '{"a":1}', schema: schema('b', 'string') }), { json: true, schemaErrors: ["/: must have required property 'b' (#/required)"] });
    t.deepEqual(await judge.judge({ body: '{"b":2}', schema: schema('b', 'string') }), { json: true, schemaErrors: ['/b: must be string (#/definitions/v/type)'] });
  }
  t.like(judge.stats(), { compiles: 6, cacheEntries: 1 });
});

test.serial('a $ref to another schema is refused up front and does not resolve in the worker', async (t) => {
  t.regex(schemaProblem({ $ref: 'https://other.example/schema.json' }) ?? '', /refers outside the schema; only local references/);
  t.regex(schemaProblem({ properties: { x: { $ref: 'schema.json#/definitions/a' } } }) ?? '', /at #\/properties\/x refers outside/);
  t.regex(schemaProblem({ items: [{ $ref: 'http://json-schema.org/draft-07/schema#' }] }) ?? '', /refers outside/);
  t.is(schemaProblem({ definitions: { a: { type: 'number' } }, properties: { x: { $ref: '#/definitions/a' } }, items: { $ref: '#' } }), undefined);

  const checked = await judgeFor(t);
  await t.throwsAsync(checked.judge({ body: '1', schema: { $ref: 'https://other.example/schema.json' } }), { instanceOf: ResponseJudgeError, message: /^the response schema is not accepted: \$ref/ });

  // Without the check, the worker's own isolation: the other tenant's schema has been compiled (and in a
  // shared Ajv would be registered under its $id), yet the reference still does not resolve.
  const unchecked = await judgeFor(t, { precheck: false });
  t.deepEqual(await unchecked.judge({ body: '1', schema: { $id: 'https://other.example/schema.json', type: 'number' } }), { json: true });
  const err = await t.throwsAsync(unchecked.judge({ body: '1', schema: { $ref: 'https://other.example/schema.json' } }), { instanceOf: ResponseJudgeError });
  t.is(err?.kind, 'schema');
  t.regex(err?.message ?? '', /^schema does not compile: can't resolve reference https:\/\/other\.example\/schema\.json/);
  await t.throwsAsync(unchecked.judge({ body: '1', schema: { $ref: 'http://json-schema.org/draft-07/schema#' } }), { message: /can't resolve reference/ });
  // And RE2 refuses a backreference in the worker too.
  await t.throwsAsync(unchecked.judge({ body: '"aa"', schema: { pattern: '(a)\\1' } }), { message: /^schema does not compile: .*invalid escape sequence/ });
});

test.serial('each distinct schema is compiled once, and the cache holds cacheEntries schemas', async (t) => {
  const judge = await judgeFor(t, { cacheEntries: 4 });
  for (let i = 0; i < 1000; i++) {
    // A new object every time, with its keys in either order: the same content, the same cache entry.
    const schema = i % 2
      ? { type: 'object', properties: { p: { type: 'number', minimum: 0 } }, required: ['p'] }
      : { required: ['p'], properties: { p: { minimum: 0, type: 'number' } }, type: 'object' };
    const verdict = await judge.judge({ body: '{"p":1}', schema });
    if (verdict.schemaErrors) t.fail(String(verdict.schemaErrors));
  }
  t.like(judge.stats(), { cacheEntries: 1, compiles: 1, cacheHits: 999 });
  for (let i = 0; i < 6; i++) await judge.judge({ body: '{}', schema: { required: [`k${i}`] } });
  t.like(judge.stats(), { cacheEntries: 4, compiles: 7 });
  await judge.judge({ body: '{}', schema: { required: ['k5'] } });
  t.like(judge.stats(), { cacheEntries: 4, compiles: 7 }, 'the newest are kept');
  await judge.judge({ body: '{}', schema: { required: ['k0'] } });
  t.like(judge.stats(), { cacheEntries: 4, compiles: 8 }, 'the oldest were evicted');
});

test.serial('error texts name places, never the answer\'s values or keys', async (t) => {
  const judge = await judgeFor(t);
  const secret = 'SECRET-123';
  const cases: [unknown, unknown, string][] = [
    [{ properties: { token: { type: 'string', pattern: '^[0-9]+$' } } }, { token: secret }, '/token: must match the pattern (#/properties/token/pattern)'],
    [{ properties: { kind: { enum: ['a', 'b'] } } }, { kind: secret }, '/kind: must be one of the allowed values (#/properties/kind/enum)'],
    [{ properties: { c: { const: 'x' } } }, { c: secret }, '/c: must be equal to the constant (#/properties/c/const)'],
    [{ additionalProperties: false }, { [secret]: 1 }, '/: must not have additional properties (#/additionalProperties)'],
    [{ additionalProperties: { type: 'number' } }, { [secret]: 'x' }, '/*: must be number (#/additionalProperties/type)'],
    [{ propertyNames: { pattern: '^[a-z]+$' } }, { [secret]: 1 }, '/: must match the pattern (#/propertyNames/pattern)|/: must have valid property names (#/propertyNames)'],
    [{ properties: { predictions: { type: 'array', items: { type: 'number' } } } }, { predictions: [1, secret] }, '/predictions/1: must be number (#/properties/predictions/items/type)'],
    [{ properties: { s: { maxLength: 3 } } }, { s: secret }, '/s: must have at most 3 characters (#/properties/s/maxLength)'],
    [{ items: { not: { const: secret } } }, [secret], '/0: must not match the schema in not (#/items/not)'],
  ];
  for (const [schema, answer, expected] of cases) {
    const verdict = await judge.judge({ body: JSON.stringify(answer), schema });
    t.deepEqual(verdict.schemaErrors, expected.split('|'));
    t.false(JSON.stringify(verdict).includes(secret));
  }
  t.deepEqual(await judge.judge({ body: `${secret} is not JSON`, schema: { type: 'object' }, jsonPath: '$.a' }), { json: false });
  t.deepEqual(await judge.judge({ body: '', schema: { type: 'object' } }), { json: false });
  // Bytes work as well as a string (and a Buffer that is a view of a larger pool).
  t.deepEqual(await judge.judge({ body: Buffer.from(`xx{"token":"${secret}"}`).subarray(2), schema: cases[0]![0] }), { json: true, schemaErrors: [cases[0]![2]] });
});

test.serial('jsonPath picks values; filter and script expressions are refused', async (t) => {
  const judge = await judgeFor(t);
  const body = JSON.stringify({ predictions: [[0.9, 0.1], [0.2, 0.8]], label: 'cat' });
  t.deepEqual(await judge.judge({ body, jsonPath: '$.predictions[*][0]' }), { json: true, picked: [0.9, 0.2] });
  t.deepEqual(await judge.judge({ body, jsonPath: '$.missing' }), { json: true, picked: [] });
  t.deepEqual(await judge.judge({ body, schema: { required: ['label'] }, jsonPath: '$.label' }), { json: true, picked: ['cat'] });
  const filter = '$.predictions[?(@[0] > 0.5)]';
  t.regex(jsonPathProblem(filter) ?? '', /filter and script expressions/);
  t.regex(jsonPathProblem('$..[(@.length-1)]') ?? '', /filter and script expressions/);
  t.is(jsonPathProblem('$.outputs[0].data'), undefined);
  await t.throwsAsync(judge.judge({ body, jsonPath: filter }), { instanceOf: ResponseJudgeError, message: /filter and script expressions/ });
  const unchecked = await judgeFor(t, { precheck: false });
  const err = await t.throwsAsync(unchecked.judge({ body, jsonPath: filter }), { instanceOf: ResponseJudgeError });
  t.is(err?.kind, 'jsonPath', 'the worker runs jsonpath-plus with eval: false');
});

test.serial('a signal aborts a waiting job and abandons a running one', async (t) => {
  const judge = await judgeFor(t, { timeoutMs: 400 });
  const aborted = AbortSignal.abort();
  await t.throwsAsync(judge.judge({ body: '1' }, aborted), { name: 'AbortError' });

  const slow = judge.judge(slowJob);
  const waiting = new AbortController();
  const queued = judge.judge({ body: '1' }, waiting.signal);
  t.like(judge.stats(), { queued: 1, running: 1 });
  const start = performance.now();
  waiting.abort();
  await t.throwsAsync(queued, { name: 'AbortError' });
  t.true(performance.now() - start < 100);
  t.like(judge.stats(), { queued: 0, running: 1 });
  await t.throwsAsync(slow, { instanceOf: ResponseJudgeError, message: /longer than 400 ms/ });

  await judge.judge({ body: '{}' }); // a fresh worker up again
  const running = new AbortController();
  const abandoned = judge.judge(slowJob, running.signal);
  setTimeout(() => running.abort(new Error('the analysis run moved on')), 50);
  const t0 = performance.now();
  await t.throwsAsync(abandoned, { message: 'the analysis run moved on' });
  t.true(performance.now() - t0 < 300, 'the caller does not wait for the job');
  // The next job waits for the abandoned one to reach the time limit, then runs on a fresh worker.
  t.deepEqual(await judge.judge({ body: '[1]', schema: { items: { type: 'number' } } }), { json: true });
  t.like(judge.stats(), { timeouts: 2, restarts: 2 });
});

test.serial('the queue is bounded; close rejects what is left', async (t) => {
  const judge = await judgeFor(t, { timeoutMs: 400, maxQueue: 2 });
  const slow = judge.judge(slowJob);
  const first = judge.judge({ body: '1' });
  const second = judge.judge({ body: '2' });
  const full = await t.throwsAsync(judge.judge({ body: '3' }), { instanceOf: ResponseJudgeError });
  t.is(full?.kind, 'queueFull');
  t.regex(full?.message ?? '', /2 jobs waiting/);
  await t.throwsAsync(slow, { message: /longer than 400 ms/ });
  t.deepEqual(await first, { json: true });
  t.deepEqual(await second, { json: true });

  const third = judge.judge(slowJob);
  const fourth = judge.judge({ body: '4' });
  await judge.close();
  await t.throwsAsync(third, { message: 'the response judge is closed' });
  await t.throwsAsync(fourth, { message: 'the response judge is closed' });
  await t.throwsAsync(judge.judge({ body: '5' }), { message: 'the response judge is closed' });
});

test('schemaProblem: the safe meta-schema', (t) => {
  for (const s of [[], true, null, 'x', 1]) t.is(schemaProblem(s), 'the schema must be a JSON object');
  t.regex(schemaProblem({ description: 'x'.repeat(70 * 1024) }) ?? '', /^the schema is 70\.\d KiB as JSON; at most 64 KiB/);
  const nest = (levels: number) => {
    let s: Record<string, unknown> = { type: 'number' };
    for (let i = 1; i < levels; i++) s = { items: s };
    return s;
  };
  t.is(schemaProblem(nest(32)), undefined);
  t.is(schemaProblem(nest(33)), 'the schema nests deeper than 32 levels');
  const cyclic: Record<string, unknown> = {};
  cyclic.items = cyclic;
  t.is(schemaProblem(cyclic), 'the schema nests deeper than 32 levels');

  t.regex(schemaProblem({ type: 'nonsense' }) ?? '', /^it is not a valid draft-07 JSON Schema: \/type /);
  t.regex(schemaProblem({ minimum: 'x' }) ?? '', /^it is not a valid draft-07 JSON Schema: \/minimum must be number/);
  t.regex(schemaProblem({ $schema: 'https://json-schema.org/draft/2020-12/schema' }) ?? '', /is not supported; responseSchema is draft-07/);
  t.is(schemaProblem({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' }), undefined);
  t.regex(schemaProblem({ $async: true, type: 'object' }) ?? '', /\$async at # is not supported/);

  t.regex(schemaProblem({ properties: { a: { pattern: '(a)\\1' } } }) ?? '', /^the pattern at #\/properties\/a\/pattern is not supported: patterns use RE2 syntax .*invalid escape sequence/);
  t.regex(schemaProblem({ pattern: '^(?=a)' }) ?? '', /the pattern at #\/pattern is not supported.*\(\?=/);
  t.regex(schemaProblem({ patternProperties: { '(?<!x)y': {} } }) ?? '', /the pattern at #\/patternProperties\/\(\?<!x\)y is not supported/);
  t.regex(schemaProblem({ pattern: 'a{1001}' }) ?? '', /exceeds RE2's limit of 1000/);
  t.regex(schemaProblem({ pattern: 'x'.repeat(5 * 1024) }) ?? '', /at most 4096 are allowed/);
  t.regex(schemaProblem({ pattern: '[a-z]{1000}'.repeat(300) }) ?? '', /too large a program/);
  t.is(schemaProblem({ pattern: '[a-z]{1000}'.repeat(100) }), undefined, 'nested repeats multiply, sequences add');
  t.is(schemaProblem({ properties: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`e${i}`, { pattern: '^[\\w.%+-]{1,64}@[\\w.-]{1,253}\\.[a-z]{2,63}$' }])) }), undefined);
  // Data is not schema: a "pattern" or "$ref" under enum, const or default means nothing to ajv.
  t.is(schemaProblem({ enum: [{ pattern: '(a)\\1', $ref: 'https://x' }], default: { $ref: 'y' } }), undefined);
  // What ECMA-262 and RE2 share is accepted.
  t.is(schemaProblem({
    type: 'object',
    properties: { id: { type: 'string', pattern: '^(?<year>\\d{4})-[a-z0-9_]{1,64}$' }, tag: { pattern: '\\u00e9|\\p{L}+' } },
    patternProperties: { '^x-': { type: 'string' } },
    required: ['id'],
  }), undefined);
  // The meta-schema's uniqueItems on enum compares every pair of values: not on the event loop.
  const start = performance.now();
  t.is(schemaProblem({ enum: Array.from({ length: 6000 }, (_, i) => ({ a: i })) }), undefined);
  t.true(performance.now() - start < 100, `took ${performance.now() - start} ms`);
  // The same content as another object is judged from the memo.
  const bad = () => ({ pattern: '(a)\\1' });
  t.is(schemaProblem(bad()), schemaProblem(bad()));
});

test('the shared judge does not keep the process alive', async (t) => {
  const script = [
    "const { responseJudge } = await import('./operator/modeldeployment/analysis/response.ts');",
    "console.log(JSON.stringify(await responseJudge.judge({ body: '[1,2]', jsonPath: '$[1]' })));",
  ].join('\n');
  const started = performance.now();
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { cwd: root, timeout: 30_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout));
  });
  t.deepEqual(JSON.parse(out) as ResponseVerdict, { json: true, picked: [2] });
  t.true(performance.now() - started < 25_000);
});
