// The response judge: whether a tenant's answer is JSON, matches the tenant's JSON Schema (responseSchema)
// and which values its jsonPath (compareToStable.jsonPath) picks. The answer (up to 1 MiB), the schema and
// the path all come from the tenant, and each can cost far more CPU than its size suggests: a pattern
// that backtracks (^(a+)+$), uniqueItems over a large array of objects (O(n²) deep comparisons), anyOf
// over a recursive $ref (exponential in the answer's depth), a huge compiled schema. On the event loop
// that would stop timeouts, /healthz and leader renewal for every tenant, so all of it runs in a worker
// thread (response-worker.ts) with a hard time limit: a job that overruns is answered with an error and
// its worker is terminated (worker.terminate() stops even a loop that never yields); the next job gets a
// fresh worker. Jobs wait in one bounded FIFO queue.
//
// Defences, in the order a schema meets them:
//  - schemaProblem() (main thread, synchronous, memoized; also run by judge()): a "safe meta-schema" — a
//    JSON object of at most 64 KiB nested at most 32 deep, a valid draft-07 schema (the draft ajv's
//    default class, used here before, implements), no $async, only local $refs ("#..."), and patterns
//    that RE2 accepts (no backreferences, no lookaround) of bounded total size. It does not ask for
//    maxLength beside pattern or maxItems beside uniqueItems, as ajv's json-schema-secure.json does: RE2
//    makes patterns linear and the time limit bounds the rest, without rejecting schemas that work today.
//  - In the worker each distinct schema (sha256 of its canonical JSON) is compiled once, by an Ajv
//    instance of its own that is dropped after the compile, so a $id is never registered anywhere another
//    tenant's schema (or a later compile of the same one) could collide with or $ref it, and no schema is
//    ever loaded from elsewhere (no loadSchema). Compiled validators live in an LRU of cacheEntries.
//  - Patterns (pattern, patternProperties) run on RE2 semantics (re2js, a pure-JS port of RE2/J): linear
//    in the input, though with a constant that grows with the pattern ([a-z]{1000} over 1 MiB takes
//    seconds) — which the time limit covers.
//  - What the judge says about a failed validation names places (instance path, keyword, schema path),
//    never values: see response-worker.ts.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { Ajv, type ErrorObject, type Options as AjvOptions, type ValidateFunction } from 'ajv';
import { RE2JS } from 're2js';

export interface ResponseVerdict {
  /** false when the body is not JSON (then nothing else is set). */
  json: boolean;
  /** Set when a schema was given and the body does not match it: at most 5 texts, no instance data. */
  schemaErrors?: string[];
  /** Set when a jsonPath was given: the values it picks (wrapped: always an array, [] for none). */
  picked?: unknown[];
}

export interface ResponseJob {
  /** The answer as received. A Uint8Array is copied once and decoded (UTF-8) in the worker. */
  body: string | Uint8Array;
  /** A JSON Schema (draft-07); see schemaProblem for what is accepted. */
  schema?: unknown;
  /** A JSONPath (jsonpath-plus) without filter or script expressions; see jsonPathProblem. */
  jsonPath?: string;
}

/**
 * Why a judgement has no verdict. kind: timeout (the time limit; the worker was replaced), schema (the
 * schema is refused or does not compile), jsonPath (the path is refused or cannot be evaluated),
 * queueFull, worker (the worker failed to start, ran out of memory or crashed), closed. An aborted job
 * rejects with its signal's reason instead, as fetch does.
 */
export type ResponseJudgeErrorKind = 'timeout' | 'schema' | 'jsonPath' | 'queueFull' | 'worker' | 'closed';

export class ResponseJudgeError extends Error {
  readonly kind: ResponseJudgeErrorKind;
  constructor(kind: ResponseJudgeErrorKind, message: string) {
    super(message);
    this.name = 'ResponseJudgeError';
    this.kind = kind;
  }
}

export interface ResponseJudgeOptions {
  /** Hard limit for one job in the worker (compile, parse, validate, pick), in ms. Default 1000. */
  timeoutMs?: number;
  /** Compiled schemas each worker keeps (LRU). Default 256. */
  cacheEntries?: number;
  /** Jobs that may wait for a worker; one more is refused (queueFull). Default 64. */
  maxQueue?: number;
  /**
   * Worker threads, 1 to 2. Default 1: the operator's pods get about two cores, and the event loop needs
   * one of them while a tenant's job keeps a worker busy for up to timeoutMs.
   */
  workers?: number;
  /** Heap limit of each worker (old generation), in MiB; over it the job fails (kind worker). Default 128. */
  memoryMb?: number;
  /**
   * judge() refuses a schema that schemaProblem rejects (and a jsonPath that jsonPathProblem rejects)
   * before it reaches the worker. Default true; false only in tests of the worker's own defences.
   */
  precheck?: boolean;
}

export interface ResponseJudgeStats {
  /** Jobs waiting for a worker. */
  queued: number;
  /** Jobs being judged (including abandoned ones still running). */
  running: number;
  /** Jobs answered by a worker (verdict or error). */
  jobs: number;
  /** Jobs stopped at the time limit. */
  timeouts: number;
  /** Workers terminated (time limit, crash, out of memory); each is replaced on demand. */
  restarts: number;
  /** Compiled schemas held by the live workers, as of their last answer. */
  cacheEntries: number;
  /** Schema compiles by the live workers. */
  compiles: number;
  /** Jobs whose schema the live workers found compiled. */
  cacheHits: number;
}

// ---------------------------------------------------------------------------------------------------
// Shared with the worker (response-worker.ts imports these; nothing here starts anything on import).

/** @internal The worker's view of the cache, sent with every answer. */
export interface WorkerCacheStats { entries: number; compiles: number; hits: number }
/** @internal */
export interface WorkerData { cacheEntries: number }
/** @internal */
export interface WorkerRequest { id: number; body: string | Uint8Array; schema?: unknown; jsonPath?: string }
/** @internal */
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'done'; id: number; verdict: ResponseVerdict; cache: WorkerCacheStats }
  | { type: 'failed'; id: number; kind: 'schema' | 'jsonPath' | 'worker'; message: string; cache: WorkerCacheStats };

/** A least-recently-used map; values must not be undefined. */
export class Lru<K, V> {
  readonly capacity: number;
  readonly #map = new Map<K, V>();
  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }
  get size(): number {
    return this.#map.size;
  }
  get(key: K): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }
  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    while (this.#map.size > this.capacity) this.#map.delete(this.#map.keys().next().value as K);
  }
}

/**
 * JSON with object keys sorted at every level, so equal content gives equal text whatever the key order.
 * Recursive: callers bound the depth first (schemaProblem) or catch the RangeError (the worker).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v) ?? 'null').join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const parts: string[] = [];
    for (const key of Object.keys(obj).sort()) {
      const v = obj[key];
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      parts.push(`${JSON.stringify(key)}:${canonicalJson(v)}`);
    }
    return `{${parts.join(',')}}`;
  }
  // JSON.stringify throws on a BigInt and gives undefined for a function or undefined.
  const text: string | undefined = JSON.stringify(value);
  return text ?? 'null';
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The key a schema is cached under, in the worker and in schemaProblem's memo. */
export function schemaKey(schema: unknown): string {
  return sha256Hex(canonicalJson(schema));
}

type RegExpEngine = NonNullable<NonNullable<AjvOptions['code']>['regExp']>;

/**
 * ajv's code.regExp hook: (pattern, flags) => { test(s) }. ajv passes flags "u" (unicodeRegExp); RE2 is
 * Unicode-aware anyway. JSON Schema patterns are ECMA-262; re2js translates the syntax both share
 * (\uXXXX, \u{...}, (?<name>...)) and refuses what RE2 cannot do in linear time (backreferences,
 * lookaround). The object's toString is ajv's key for reusing a compiled pattern within one schema, so
 * it must differ per pattern, as RegExp's does. `code` is only used by ajv's standalone code, not here.
 */
export const re2RegExp: RegExpEngine = Object.assign(
  (pattern: string, flags: string) => {
    let re2Flags = 0;
    if (flags.includes('i')) re2Flags |= RE2JS.CASE_INSENSITIVE;
    if (flags.includes('m')) re2Flags |= RE2JS.MULTILINE;
    if (flags.includes('s')) re2Flags |= RE2JS.DOTALL;
    const re = RE2JS.compile(RE2JS.translateRegExp(pattern), re2Flags);
    return { test: (s: string) => re.test(s), toString: () => `/${pattern}/${flags}` };
  },
  { code: 're2js' },
);

type SchemaObject = Record<string, unknown>;

function isObject(v: unknown): v is SchemaObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function pointerToken(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

// The places where draft-07 (as ajv's default class implements it, with $defs from its core vocabulary)
// holds subschemas. Values under enum, const, default, examples and unknown keywords are data: a "$ref"
// or "pattern" there means nothing to ajv, so it means nothing here.
const ONE_SCHEMA = ['additionalItems', 'additionalProperties', 'contains', 'not', 'propertyNames', 'if', 'then', 'else'];
const SCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf'];
const SCHEMA_MAPS = ['properties', 'patternProperties', 'definitions', '$defs', 'dependencies'];

/** Calls visit for every subschema object (boolean schemas have nothing to visit), with its pointer. */
export function forEachSubschema(schema: unknown, visit: (s: SchemaObject, at: string) => void, at = '#'): void {
  if (!isObject(schema)) return;
  visit(schema, at);
  for (const k of ONE_SCHEMA) if (Object.hasOwn(schema, k)) forEachSubschema(schema[k], visit, `${at}/${k}`);
  for (const k of SCHEMA_LISTS) {
    const list = schema[k];
    if (Object.hasOwn(schema, k) && Array.isArray(list)) list.forEach((s, i) => forEachSubschema(s, visit, `${at}/${k}/${i}`));
  }
  for (const k of SCHEMA_MAPS) {
    const map = schema[k];
    if (!Object.hasOwn(schema, k) || !isObject(map)) continue;
    for (const name of Object.keys(map)) forEachSubschema(map[name], visit, `${at}/${k}/${pointerToken(name)}`);
  }
  if (Object.hasOwn(schema, 'items')) {
    const items = schema.items;
    if (Array.isArray(items)) items.forEach((s, i) => forEachSubschema(s, visit, `${at}/items/${i}`));
    else forEachSubschema(items, visit, `${at}/items`);
  }
}

// ---------------------------------------------------------------------------------------------------
// schemaProblem: the safe meta-schema.

const MAX_SCHEMA_BYTES = 64 * 1024;
const MAX_SCHEMA_DEPTH = 32;
/** All patterns and patternProperties keys of one schema together, in characters. */
const MAX_PATTERN_CHARS = 4 * 1024;
/**
 * The RE2 programs of all patterns together, roughly (programEstimate): beyond it compiling alone takes a
 * good part of a second, and matching 1 MiB seconds.
 */
const MAX_PATTERN_PROGRAM = 200_000;
const DRAFT7 = new Set(['http://json-schema.org/draft-07/schema', 'http://json-schema.org/draft-07/schema#']);

/**
 * Validates schemas against draft-07's meta-schema, less one keyword: "uniqueItems" on enum, which ajv
 * checks by comparing every pair of values deeply (enum values may be objects), so 5,000 objects in an
 * enum took a quarter of a second of the event loop. Duplicate enum values are harmless to validation.
 * Never compiles or registers a tenant's schema: the tenant's schema is only this validator's data.
 */
let metaValidate: ValidateFunction | undefined;
function metaValidator(): ValidateFunction {
  if (metaValidate) return metaValidate;
  const ajv = new Ajv({ strict: false, logger: false, allErrors: false, code: { regExp: re2RegExp } });
  const draft7 = structuredClone(ajv.getSchema('http://json-schema.org/draft-07/schema')!.schema) as { $id: string; properties: { enum: Record<string, unknown> } };
  delete draft7.properties.enum.uniqueItems;
  draft7.$id = 'urn:modelship:draft-07-without-enum-uniqueness';
  return (metaValidate = ajv.compile(draft7));
}

/** @internal The first few meta-schema errors; their "instance" is the schema itself, the tenant's spec. */
export function metaSchemaProblem(schema: SchemaObject): string | undefined {
  const validate = metaValidator();
  if (validate(schema)) return undefined;
  const errors = (validate.errors ?? []).slice(0, 3).map((e: ErrorObject) => `${e.instancePath || '/'} ${e.message ?? e.keyword}`);
  return `it is not a valid draft-07 JSON Schema: ${clip(errors.join('; '), 300)}`;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function deeperThan(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (levels === 0) return true;
  for (const v of Array.isArray(value) ? value : Object.values(value as SchemaObject)) if (deeperThan(v, levels - 1)) return true;
  return false;
}

const REPEAT = /(\\[xu])?\{(\d+)(?:(,)(\d*))?\}/g;

/**
 * Checks a pattern's syntax with RE2 without paying for its repeat counts: {n,m} becomes {1,1} (a count
 * changes nothing about syntax, only the program's size), so this costs time linear in the pattern; the
 * counts are checked against RE2's limits here, their nesting when the worker compiles.
 */
function patternSyntaxProblem(pattern: string): string | undefined {
  for (const m of pattern.matchAll(REPEAT)) {
    if (m[1]) continue; // \x{...} or \u{...}: a code point, not a count
    const min = Number(m[2]);
    const max = m[4] ? Number(m[4]) : undefined;
    if (min > 1000 || (max !== undefined && max > 1000)) return `repeat count ${m[0]} exceeds RE2's limit of 1000`;
    if (max !== undefined && max < min) return `invalid repeat count ${m[0]}`;
  }
  const neutral = pattern.replace(REPEAT, (all, esc: string | undefined, _min: string, comma: string | undefined, max: string | undefined) =>
    esc ? all : comma ? (max ? '{1,1}' : '{1,}') : '{1}');
  try {
    re2RegExp(neutral, 'u');
    return undefined;
  } catch (err) {
    return clip((err as Error).message, 200);
  }
}

/**
 * A rough size of the RE2 program a pattern compiles to: atoms (a character, a class, an escape) count 1,
 * a sequence adds, an alternation adds its branches, and {n,m} multiplies what it repeats by its larger
 * bound (RE2 expands counted repeats). Nested repeats multiply, as RE2's do. Run after the syntax check,
 * so groups nest at most as deep as RE2 allows.
 */
function programEstimate(p: string): number {
  let i = 0;
  const cap = (n: number) => Math.min(n, 1e12);
  const alternation = (): number => {
    let total = sequence();
    while (p[i] === '|') {
      i++;
      total = cap(total + sequence());
    }
    return total;
  };
  const sequence = (): number => {
    let total = 0;
    while (i < p.length && p[i] !== '|' && p[i] !== ')') {
      let atom = 1;
      const c = p[i];
      if (c === '(') {
        i++;
        atom = Math.max(1, alternation());
        if (p[i] === ')') i++;
      } else if (c === '[') {
        i++;
        if (p[i] === '^') i++;
        if (p[i] === ']') i++;
        while (i < p.length && p[i] !== ']') i += p[i] === '\\' ? 2 : 1;
        i++;
      } else if (c === '\\') {
        i += 2;
        if (p[i] === '{' && /[xupP]/.test(p[i - 1] ?? '')) while (i < p.length && p[i] !== '}') i++;
        if (p[i] === '}') i++;
      } else {
        i++;
      }
      let times = 1;
      const m = /^\{(\d+)(?:,(\d*))?\}/.exec(p.slice(i, i + 16));
      if (m) {
        times = Math.max(1, Number(m[1]), m[2] ? Number(m[2]) : 0);
        i += m[0].length;
      } else if (p[i] === '*' || p[i] === '+' || p[i] === '?') {
        i++;
      }
      if (p[i] === '?') i++; // lazy
      total = cap(total + atom * times);
    }
    return total;
  };
  let total = 0;
  while (i < p.length) {
    total = cap(total + alternation());
    if (p[i] === ')') i++; // unbalanced; RE2 has refused it already
  }
  return total;
}

function contentProblem(schema: SchemaObject): string | undefined {
  const declared = schema.$schema;
  if (declared !== undefined && (typeof declared !== 'string' || !DRAFT7.has(declared))) {
    return `$schema ${clip(JSON.stringify(declared) ?? '', 100)} is not supported; responseSchema is draft-07 (http://json-schema.org/draft-07/schema#)`;
  }
  const meta = metaSchemaProblem(schema);
  if (meta) return meta;
  let problem: string | undefined;
  const patterns: { at: string; pattern: string }[] = [];
  forEachSubschema(schema, (s, at) => {
    if (problem) return;
    if (Object.hasOwn(s, '$async')) problem = `$async at ${at} is not supported`;
    const ref = s.$ref;
    if (typeof ref === 'string' && !ref.startsWith('#')) {
      problem = `$ref ${clip(JSON.stringify(ref), 200)} at ${at} refers outside the schema; only local references (starting with #) are allowed`;
    }
    if (typeof s.pattern === 'string') patterns.push({ at: `${at}/pattern`, pattern: s.pattern });
    if (isObject(s.patternProperties)) {
      for (const key of Object.keys(s.patternProperties)) patterns.push({ at: `${at}/patternProperties/${pointerToken(key)}`, pattern: key });
    }
  });
  if (problem) return problem;
  const chars = patterns.reduce((n, p) => n + p.pattern.length, 0);
  if (chars > MAX_PATTERN_CHARS) return `its patterns have ${chars} characters together; at most ${MAX_PATTERN_CHARS} are allowed`;
  for (const { at, pattern } of patterns) {
    const bad = patternSyntaxProblem(pattern);
    if (bad) return `the pattern at ${at} is not supported: patterns use RE2 syntax (linear time; no backreferences or lookaround): ${bad}`;
  }
  const program = patterns.reduce((n, p) => n + programEstimate(p.pattern), 0);
  if (program > MAX_PATTERN_PROGRAM) return `its patterns' repeat counts make too large a program (about ${program} steps; at most ${MAX_PATTERN_PROGRAM})`;
  return undefined;
}

// Identity is the free first key (a spec object is replaced, not changed in place, so the same object
// means the same schema; the WeakMap holds nothing alive). Content (the schema's hash) is the second,
// bounded by an LRU.
const problemByObject = new WeakMap<object, string | null>();
const problemByKey = new Lru<string, string | null>(256);

/**
 * Why a responseSchema is invalid or unsafe, as a sentence for an InvalidSpec condition; undefined when it
 * is fine. Synchronous and cheap: structure and size first, then (once per distinct schema) the
 * draft-07 meta-schema, $refs and an RE2 syntax check of the patterns.
 */
export function schemaProblem(schema: unknown): string | undefined {
  if (!isObject(schema)) return 'the schema must be a JSON object';
  const known = problemByObject.get(schema);
  if (known !== undefined) return known ?? undefined;
  const problem = assess(schema);
  problemByObject.set(schema, problem ?? null);
  return problem;
}

function assess(schema: SchemaObject): string | undefined {
  if (deeperThan(schema, MAX_SCHEMA_DEPTH)) return `the schema nests deeper than ${MAX_SCHEMA_DEPTH} levels`;
  let text: string;
  try {
    text = canonicalJson(schema);
  } catch {
    return 'the schema is not plain JSON';
  }
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_SCHEMA_BYTES) return `the schema is ${(bytes / 1024).toFixed(1)} KiB as JSON; at most ${MAX_SCHEMA_BYTES / 1024} KiB is allowed`;
  const key = sha256Hex(text);
  const known = problemByKey.get(key);
  if (known !== undefined) return known ?? undefined;
  const problem = contentProblem(schema);
  problemByKey.set(key, problem ?? null);
  return problem;
}

/**
 * Why a compareToStable.jsonPath cannot be used; undefined when it can. Filter and script expressions
 * ([?(...)], [(...)]) are refused: jsonpath-plus evaluates them with its own JavaScript interpreter
 * ("safe" mode), whose sandbox has been escaped more than once (CVE-2024-21534, CVE-2025-1302); the worker shares
 * the operator's process (and its credentials), and picking predictions ($.predictions[*],
 * $.outputs[0].data) needs no filters. The worker runs jsonpath-plus with eval: false, so it refuses
 * them too.
 */
export function jsonPathProblem(path: string): string | undefined {
  if (!path.startsWith('$')) return 'a jsonPath starts with $';
  if (path.length > 512) return 'the jsonPath is longer than 512 characters';
  if (/\?\(|[[']\s*\(/.test(path)) return 'filter and script expressions ([?(...)], [(...)]) are not supported in jsonPath';
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// The judge (main thread).

/**
 * The worker script, beside this module: response-worker.js in dist/ (tsc compiles both files there),
 * response-worker.ts when this module runs as TypeScript (tests and tools run through `node --import
 * tsx`): the worker gets the parent's execArgv (workerExecArgv), so tsx loads the .ts file there too.
 */
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './response-worker.ts' : './response-worker.js', import.meta.url);
/**
 * The parent's Node options for the worker (a Worker inherits them by default, which carries tsx's
 * --import in tests), less those that only make sense for the main script: --eval/--print and
 * --input-type would make the worker refuse to start.
 */
function workerExecArgv(): string[] {
  const out: string[] = [];
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print' || a === '-pe' || a === '--input-type') i++;
    else if (!/^(--eval|--print|--input-type)=/.test(a)) out.push(a);
  }
  return out;
}

/** A worker that has not loaded its modules by then is taken as broken. */
const STARTUP_LIMIT_MS = 30_000;

interface Pending {
  id: number;
  request: WorkerRequest;
  transfer: ArrayBuffer[];
  resolve: (v: ResponseVerdict) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Answered (or rejected) already: an abandoned job still runs, but its answer is dropped. */
  settled: boolean;
}

interface Slot {
  worker: Worker | undefined;
  ready: boolean;
  job: Pending | undefined;
  jobTimer: NodeJS.Timeout | undefined;
  startTimer: NodeJS.Timeout | undefined;
  cache: WorkerCacheStats;
}

const noCache = (): WorkerCacheStats => ({ entries: 0, compiles: 0, hits: 0 });

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

export class ResponseJudge {
  readonly timeoutMs: number;
  readonly cacheEntries: number;
  readonly maxQueue: number;
  readonly memoryMb: number;
  readonly precheck: boolean;
  readonly #slots: Slot[];
  readonly #queue: Pending[] = [];
  #nextId = 1;
  #closed = false;
  #jobs = 0;
  #timeouts = 0;
  #restarts = 0;

  constructor(options: ResponseJudgeOptions = {}) {
    this.timeoutMs = Math.max(1, options.timeoutMs ?? 1000);
    this.cacheEntries = Math.max(1, Math.floor(options.cacheEntries ?? 256));
    this.maxQueue = Math.max(0, Math.floor(options.maxQueue ?? 64));
    this.memoryMb = Math.max(16, options.memoryMb ?? 128);
    this.precheck = options.precheck ?? true;
    const workers = Math.min(2, Math.max(1, Math.floor(options.workers ?? 1)));
    this.#slots = Array.from({ length: workers }, () => ({ worker: undefined, ready: false, job: undefined, jobTimer: undefined, startTimer: undefined, cache: noCache() }));
  }

  /**
   * Judges one answer. Rejects with a ResponseJudgeError (see its kinds), or with signal.reason when the
   * signal aborts: a waiting job then leaves the queue; a running one is abandoned (it runs on, within
   * the time limit, and its answer is dropped; terminating the worker would throw away its schema cache).
   */
  judge(job: ResponseJob, signal?: AbortSignal): Promise<ResponseVerdict> {
    if (this.#closed) return Promise.reject(new ResponseJudgeError('closed', 'the response judge is closed'));
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the signal's reason, as fetch rejects
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.precheck) {
      const schemaBad = job.schema !== undefined ? schemaProblem(job.schema) : undefined;
      if (schemaBad) return Promise.reject(new ResponseJudgeError('schema', `the response schema is not accepted: ${schemaBad}`));
      const pathBad = job.jsonPath !== undefined ? jsonPathProblem(job.jsonPath) : undefined;
      if (pathBad) return Promise.reject(new ResponseJudgeError('jsonPath', pathBad));
    }
    if (this.#queue.length >= this.maxQueue) {
      return Promise.reject(new ResponseJudgeError('queueFull', `the response judge has ${this.#queue.length} jobs waiting already (the limit); try again later`));
    }
    const id = this.#nextId++;
    let body = job.body;
    const transfer: ArrayBuffer[] = [];
    if (typeof body !== 'string') {
      // A copy of exactly the bytes (a Buffer may be a view of a larger pool), moved, not cloned, to the worker.
      const copy = new Uint8Array(body);
      transfer.push(copy.buffer);
      body = copy;
    }
    const request: WorkerRequest = { id, body };
    if (job.schema !== undefined) request.schema = job.schema;
    if (job.jsonPath !== undefined) request.jsonPath = job.jsonPath;
    return new Promise<ResponseVerdict>((resolve, reject) => {
      const p: Pending = { id, request, transfer, resolve, reject, signal, onAbort: undefined, settled: false };
      if (signal) {
        p.onAbort = () => {
          const i = this.#queue.indexOf(p);
          if (i >= 0) this.#queue.splice(i, 1);
          this.#fail(p, abortReason(signal));
          this.#pump();
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#queue.push(p);
      this.#pump();
    });
  }

  stats(): ResponseJudgeStats {
    const live = this.#slots.filter((s) => s.worker);
    return {
      queued: this.#queue.length,
      running: this.#slots.filter((s) => s.job).length,
      jobs: this.#jobs,
      timeouts: this.#timeouts,
      restarts: this.#restarts,
      cacheEntries: live.reduce((n, s) => n + s.cache.entries, 0),
      compiles: live.reduce((n, s) => n + s.cache.compiles, 0),
      cacheHits: live.reduce((n, s) => n + s.cache.hits, 0),
    };
  }

  /** Refuses new jobs, rejects waiting and running ones (kind closed) and terminates the workers. */
  async close(): Promise<void> {
    this.#closed = true;
    const closed = new ResponseJudgeError('closed', 'the response judge is closed');
    for (const p of this.#queue.splice(0)) this.#fail(p, closed);
    const exits: Promise<number>[] = [];
    for (const slot of this.#slots) {
      if (slot.job) this.#fail(slot.job, closed);
      const w = this.#reset(slot);
      if (w) exits.push(w.terminate());
    }
    await Promise.allSettled(exits);
  }

  #succeed(p: Pending, verdict: ResponseVerdict): void {
    if (p.settled) return;
    p.settled = true;
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    p.resolve(verdict);
  }

  #fail(p: Pending, err: unknown): void {
    if (p.settled) return;
    p.settled = true;
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    p.reject(err);
  }

  /** Hands waiting jobs to idle ready workers, starts workers for the rest, and refs only busy workers. */
  #pump(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      const slot = this.#slots.find((s) => s.ready && !s.job);
      if (!slot) break;
      this.#dispatch(slot, this.#queue.shift()!);
    }
    if (this.#queue.length > 0 && !this.#closed) for (const slot of this.#slots) if (!slot.worker) this.#start(slot);
    for (const slot of this.#slots) {
      // An idle worker must not keep the process alive; one with work must, or an awaited judge() could
      // be cut short by the process exiting.
      if (slot.job || (!slot.ready && this.#queue.length > 0)) slot.worker?.ref();
      else slot.worker?.unref();
    }
  }

  #dispatch(slot: Slot, p: Pending): void {
    slot.job = p;
    slot.jobTimer = setTimeout(() => this.#expire(slot, p), this.timeoutMs);
    try {
      slot.worker!.postMessage(p.request, p.transfer);
    } catch (err) {
      // Not structured-cloneable (a function in the schema, say): nothing reached the worker.
      clearTimeout(slot.jobTimer);
      slot.jobTimer = undefined;
      slot.job = undefined;
      this.#fail(p, new ResponseJudgeError('worker', `the job cannot be sent to the worker: ${clip((err as Error).message, 200)}`));
    }
  }

  #expire(slot: Slot, p: Pending): void {
    if (slot.job !== p) return;
    this.#timeouts++;
    this.#fail(p, new ResponseJudgeError('timeout', `response validation took longer than ${this.timeoutMs} ms`));
    this.#retire(slot);
    this.#pump();
  }

  #start(slot: Slot): void {
    const w = new Worker(WORKER_URL, {
      name: 'modelship-response-judge',
      workerData: { cacheEntries: this.cacheEntries } satisfies WorkerData,
      execArgv: workerExecArgv(),
      resourceLimits: { maxOldGenerationSizeMb: this.memoryMb, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    });
    slot.worker = w;
    slot.ready = false;
    slot.cache = noCache();
    slot.startTimer = setTimeout(() => {
      if (slot.worker === w && !slot.ready) this.#crash(slot, new Error(`it did not start within ${STARTUP_LIMIT_MS / 1000} s`));
    }, STARTUP_LIMIT_MS);
    slot.startTimer.unref();
    w.on('message', (m: WorkerReply) => {
      if (slot.worker === w) this.#answer(slot, m);
    });
    w.on('messageerror', () => {
      // The answer could not be deserialized (a picked value nested too deep, say): that job fails.
      if (slot.worker !== w || !slot.job) return;
      const p = slot.job;
      this.#finishJob(slot);
      this.#fail(p, new ResponseJudgeError('worker', 'the worker\'s answer could not be read'));
      this.#pump();
    });
    w.on('error', (err) => {
      if (slot.worker === w) this.#crash(slot, err);
    });
    w.on('exit', (code) => {
      if (slot.worker === w) this.#crash(slot, new Error(`the worker exited with code ${code}`));
    });
  }

  #answer(slot: Slot, m: WorkerReply): void {
    if (m.type === 'ready') {
      slot.ready = true;
      clearTimeout(slot.startTimer);
      slot.startTimer = undefined;
      this.#pump();
      return;
    }
    const p = slot.job;
    if (!p || p.id !== m.id) return;
    this.#finishJob(slot);
    slot.cache = m.cache;
    this.#jobs++;
    if (m.type === 'done') this.#succeed(p, m.verdict);
    else this.#fail(p, new ResponseJudgeError(m.kind, m.message));
    this.#pump();
  }

  #finishJob(slot: Slot): void {
    clearTimeout(slot.jobTimer);
    slot.jobTimer = undefined;
    slot.job = undefined;
  }

  #crash(slot: Slot, err: unknown): void {
    const started = slot.ready;
    const p = slot.job;
    this.#retire(slot);
    const e = err as Error & { code?: string };
    const error = !started
      ? new ResponseJudgeError('worker', `the response judge worker could not start: ${clip(e?.message ?? String(err), 200)}`)
      : e?.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? new ResponseJudgeError('worker', `response validation ran out of memory (limit ${this.memoryMb} MiB)`)
        : new ResponseJudgeError('worker', `the response judge worker failed: ${e?.name ?? 'Error'}: ${clip(e?.message ?? String(err), 200)}`);
    if (p) this.#fail(p, error);
    // A worker that cannot start fails every waiting job rather than being restarted for each in turn
    // (a missing file or a broken install would loop); the next judge() tries again.
    if (!started) for (const q of this.#queue.splice(0)) this.#fail(q, error);
    this.#pump();
  }

  /** Terminates the slot's worker (it is replaced when there is work) and clears the slot. */
  #retire(slot: Slot): void {
    const w = this.#reset(slot);
    if (w) {
      this.#restarts++;
      w.terminate().catch(() => undefined);
    }
  }

  #reset(slot: Slot): Worker | undefined {
    const w = slot.worker;
    clearTimeout(slot.jobTimer);
    clearTimeout(slot.startTimer);
    Object.assign(slot, { worker: undefined, ready: false, job: undefined, jobTimer: undefined, startTimer: undefined, cache: noCache() });
    return w;
  }
}

/**
 * The judge the analysis code uses. Its worker starts with the first job and never keeps the process
 * alive while idle; there is nothing to close at shutdown.
 */
export const responseJudge = new ResponseJudge();
