// The response judge's worker thread (started by response.ts, which owns the time limit): parses a tenant's
// answer, validates it against the tenant's schema and picks values with the tenant's jsonPath. Nothing
// here needs to bound its own running time: a job that overruns has this whole thread terminated.
//
// Costs that only the time limit bounds (the answer is at most 1 MiB): uniqueItems over objects or arrays
// is O(n²) deep comparisons; anyOf/oneOf over a recursive $ref can be exponential in the answer's depth;
// an RE2 pattern is linear but its constant grows with the pattern's size; compiling a large schema.
// Recursion on deep answers ($ref "#", $..) ends in a RangeError, reported as a failure.
import { parentPort, workerData } from 'node:worker_threads';
import { Ajv, type AnySchema, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import { JSONPath } from 'jsonpath-plus';
import {
  Lru,
  forEachSubschema,
  metaSchemaProblem,
  re2RegExp,
  schemaKey,
  type ResponseVerdict,
  type WorkerCacheStats,
  type WorkerData,
  type WorkerReply,
  type WorkerRequest,
} from './response.js';

const MAX_ERRORS = 5;

// One Ajv per compiled schema, dropped after the compile: whatever $ids the schema declares are registered
// in that instance only, so they never collide with another schema's (or a later compile's) and no other
// schema can $ref them. meta: false keeps the draft-07 meta-schema out of it (no $ref to it either; the
// schema is checked against it by metaSchemaProblem, on the one long-lived validator that registers
// nothing). There is no loadSchema: a $ref that does not resolve inside the schema fails the compile.
const VALIDATOR_OPTIONS: Options = {
  strict: false, // as before: unknown keywords and formats (no formats are installed) are ignored
  // The first error only: with allErrors a 1 MiB array of wrong items makes one error object per item
  // (hundreds of thousands) before anything is reported, and the first is what a person acts on.
  allErrors: false,
  messages: false, // texts are built from keyword, params and paths below; ajv's can quote the answer
  logger: false,
  meta: false,
  validateSchema: false,
  ownProperties: true, // "required": ["constructor"] must not be met by Object.prototype
  code: { regExp: re2RegExp },
};

interface Compiled {
  validate: ValidateFunction;
  /** Property names the schema itself spells: instance path segments that are not data. */
  names: Set<string>;
}

const { cacheEntries } = workerData as WorkerData;
const compiled = new Lru<string, Compiled>(cacheEntries);
let compiles = 0;
let hits = 0;

class JobFailure extends Error {
  readonly kind: 'schema' | 'jsonPath';
  constructor(kind: 'schema' | 'jsonPath', message: string) {
    super(message);
    this.kind = kind;
  }
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function compile(schema: unknown): Compiled {
  const key = schemaKey(schema);
  const hit = compiled.get(key);
  if (hit) {
    hits++;
    return hit;
  }
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new JobFailure('schema', 'schema does not compile: it must be a JSON object');
  const meta = metaSchemaProblem(schema as Record<string, unknown>);
  if (meta) throw new JobFailure('schema', `schema does not compile: ${meta}`);
  let validate: ValidateFunction;
  try {
    validate = new Ajv(VALIDATOR_OPTIONS).compile(schema as AnySchema);
  } catch (err) {
    // ajv's compile errors describe the schema (no answer exists yet): a $ref it cannot resolve, a
    // pattern RE2 refuses, a keyword value of the wrong type.
    throw new JobFailure('schema', `schema does not compile: ${clip((err as Error).message, 300)}`);
  }
  if ((validate as { $async?: unknown }).$async) throw new JobFailure('schema', 'schema does not compile: $async schemas are not supported');
  const names = new Set<string>();
  forEachSubschema(schema, (s) => {
    if (s.properties && typeof s.properties === 'object') for (const k of Object.keys(s.properties)) names.add(k);
    if (Array.isArray(s.required)) for (const k of s.required) if (typeof k === 'string') names.add(k);
    if (s.dependencies && typeof s.dependencies === 'object') {
      for (const [k, v] of Object.entries(s.dependencies)) {
        names.add(k);
        if (Array.isArray(v)) for (const d of v) if (typeof d === 'string') names.add(d);
      }
    }
  });
  const entry = { validate, names };
  compiles++;
  compiled.set(key, entry);
  return entry;
}

/**
 * The instance path with every segment that is not an array index or a property name the schema spells
 * replaced by *: an object key in the answer is data too (a token, a user name).
 */
function maskedPath(instancePath: string, names: Set<string>): string {
  if (instancePath === '') return '/';
  return instancePath
    .split('/')
    .slice(1)
    .map((seg) => {
      if (/^\d{1,7}$/.test(seg)) return seg;
      return names.has(seg.replaceAll('~1', '/').replaceAll('~0', '~')) ? seg : '*';
    })
    .map((seg) => `/${seg}`)
    .join('');
}

const num = (v: unknown): string => (typeof v === 'number' ? String(v) : '?');
const word = (v: unknown): string => (typeof v === 'string' ? clip(v, 80) : Array.isArray(v) ? clip(v.filter((x) => typeof x === 'string').join(','), 80) : '?');

/**
 * What a failed keyword demands, from the keyword and those params that come from the schema (limits,
 * types, required names); never from params that hold the answer's values or keys (additionalProperty,
 * propertyName, allowedValues are schema but may be long), and never ajv's message.
 */
function explain(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'type': return `must be ${word(p.type)}`;
    case 'required': return `must have required property '${word(p.missingProperty)}'`;
    case 'dependencies': return `must have property '${word(p.missingProperty)}' when property '${word(p.property)}' is present`;
    case 'minimum': case 'maximum': case 'exclusiveMinimum': case 'exclusiveMaximum':
      return `must be ${word(p.comparison)} ${num(p.limit)}`;
    case 'multipleOf': return `must be a multiple of ${num(p.multipleOf)}`;
    case 'minLength': return `must have at least ${num(p.limit)} characters`;
    case 'maxLength': return `must have at most ${num(p.limit)} characters`;
    case 'minItems': return `must have at least ${num(p.limit)} items`;
    case 'maxItems': case 'additionalItems': return `must have at most ${num(p.limit)} items`;
    case 'minProperties': return `must have at least ${num(p.limit)} properties`;
    case 'maxProperties': return `must have at most ${num(p.limit)} properties`;
    case 'uniqueItems': return `must not have duplicate items (items ${num(p.j)} and ${num(p.i)} are equal)`;
    case 'pattern': return 'must match the pattern';
    case 'format': return `must match format ${word(p.format)}`;
    case 'enum': return 'must be one of the allowed values';
    case 'const': return 'must be equal to the constant';
    case 'additionalProperties': return 'must not have additional properties';
    case 'propertyNames': return 'must have valid property names';
    case 'contains': return 'must contain a valid item';
    case 'not': return 'must not match the schema in not';
    case 'anyOf': return 'must match a schema in anyOf';
    case 'oneOf': return 'must match exactly one schema in oneOf';
    case 'if': return `must match the ${word(p.failingKeyword)} schema`;
    case 'false schema': return 'must not be present (false schema)';
    default: return `must pass the ${clip(e.keyword, 40)} keyword`;
  }
}

function describe(errors: readonly ErrorObject[], names: Set<string>): string[] {
  return errors.slice(0, MAX_ERRORS).map((e) => clip(`${maskedPath(e.instancePath, names)}: ${explain(e)} (${clip(e.schemaPath, 200)})`, 320));
}

// jsonpath-plus caches every path (and script) it has seen in a global object without bound; a long-lived
// worker sees every path any tenant ever configured.
const PATH_CACHE_LIMIT = 1000;
let pathsSinceReset = 0;

function pick(path: string, data: unknown): unknown[] {
  if (++pathsSinceReset > PATH_CACHE_LIMIT) {
    (JSONPath as unknown as { cache: Record<string, unknown> }).cache = {};
    pathsSinceReset = 0;
  }
  try {
    // eval: false: no filter or script expressions; see jsonPathProblem in response.ts for why.
    const out = JSONPath<unknown[] | undefined>({ path, json: data as object, wrap: true, eval: false });
    return Array.isArray(out) ? out : [];
  } catch (err) {
    const msg = (err as Error).message ?? '';
    if (/prevented in JSONPath/.test(msg)) throw new JobFailure('jsonPath', 'filter and script expressions ([?(...)], [(...)]) are not supported in jsonPath');
    throw new JobFailure('jsonPath', `jsonPath cannot be evaluated: ${clip(msg, 200)}`);
  }
}

const decoder = new TextDecoder('utf-8');

function judge(req: WorkerRequest): ResponseVerdict {
  // The schema first, so a schema that does not compile says so whatever the answer.
  const validator = req.schema !== undefined ? compile(req.schema) : undefined;
  const text = typeof req.body === 'string' ? req.body : decoder.decode(req.body);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // The parser's message quotes the answer: say only that it is not JSON.
    return { json: false };
  }
  const verdict: ResponseVerdict = { json: true };
  if (validator && !validator.validate(data)) verdict.schemaErrors = describe(validator.validate.errors ?? [], validator.names);
  if (req.jsonPath !== undefined) verdict.picked = pick(req.jsonPath, data);
  return verdict;
}

function cacheStats(): WorkerCacheStats {
  return { entries: compiled.size, compiles, hits };
}

const port = parentPort!;
port.on('message', (req: WorkerRequest) => {
  let reply: WorkerReply;
  try {
    reply = { type: 'done', id: req.id, verdict: judge(req), cache: cacheStats() };
  } catch (err) {
    reply = err instanceof JobFailure
      ? { type: 'failed', id: req.id, kind: err.kind, message: err.message, cache: cacheStats() }
      // A RangeError from recursion on a deep answer or schema, or a bug: its class and message, which
      // name no values of the answer.
      : { type: 'failed', id: req.id, kind: 'worker', message: `response validation failed: ${(err as Error)?.name ?? 'Error'}: ${clip((err as Error)?.message ?? String(err), 200)}`, cache: cacheStats() };
  }
  try {
    port.postMessage(reply);
  } catch (err) {
    // The picked values cannot be cloned (nested too deep to serialize, say).
    port.postMessage({ type: 'failed', id: req.id, kind: 'worker', message: `the verdict cannot be sent back: ${clip((err as Error).message, 200)}`, cache: cacheStats() } satisfies WorkerReply);
  }
});
port.postMessage({ type: 'ready' } satisfies WorkerReply);
