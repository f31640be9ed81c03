import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadQdrantOpenApi, type OpenApiValidator } from './qdrant-openapi.ts';

/**
 * A Qdrant stand-in for tests: the REST endpoints nearline's qdrant provider uses, answered exactly
 * (brute force, Qdrant's filter semantics, cosine normalization at insert, f32 arithmetic), with
 * every request and every response checked against Qdrant's own OpenAPI document.
 *
 * A request the document rejects is recorded as a violation and answered 400, so the provider fails
 * loudly; a request the document allows but this server does not implement is also a violation.
 */

type Json = Record<string, unknown>;
type PointId = string | number;

interface Point {
  id: PointId;
  vector: Float32Array;
  payload: Json;
  version: number;
}

interface Collection {
  size: number;
  distance: 'Cosine' | 'Dot' | 'Euclid' | 'Manhattan';
  onDisk?: boolean;
  /** Accepted and reported back; searches stay exact, as Qdrant's rescoring aims to be. */
  quantization?: Json;
  hnsw: { m: number; ef_construct: number };
  shardNumber: number;
  replicationFactor: number;
  writeConsistencyFactor: number;
  points: Map<string, Point>;
  payloadSchema: Map<string, { data_type: string; params?: Json }>;
  version: number;
}

export interface LoggedRequest {
  method: string;
  path: string;
  /** The documented operation, e.g. `PUT /collections/{collection_name}/points`. */
  operation?: string;
  query: Record<string, string>;
  body: unknown;
  status: number;
}

export type Failure = { status: 429 | 503 | 500; retryAfter?: number } | { reset: true };

export interface QdrantTestServer {
  readonly url: string;
  /** Whether requests and responses are checked against the OpenAPI document (false when it is absent). */
  readonly validating: boolean;
  readonly validator?: OpenApiValidator;
  readonly requests: LoggedRequest[];
  /** Fail the next `n` requests before handling them: an HTTP error status, or a reset connection. */
  failNext(n: number, failure?: Failure): void;
  /** Returns and clears the violations recorded so far. */
  takeViolations(): string[];
  /** Sends a raw request (for checking the checker itself). */
  raw(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  collectionNames(): string[];
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

class Unsupported extends HttpError {
  constructor(what: string) {
    super(400, `not implemented by the test server: ${what}`);
  }
}

const notFound = (what: string): HttpError => new HttpError(404, `Not found: ${what}`);

// ---------------------------------------------------------------- ids, vectors, scores

const UUID = /^(?:urn:uuid:)?\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?$/i;

/** Qdrant parses a string id as a UUID and prints it back hyphenated, lower case. */
function parseId(id: unknown): PointId {
  if (typeof id === 'number') return id;
  const m = UUID.exec(String(id));
  if (!m) throw new HttpError(400, `Wrong input: invalid point id ${JSON.stringify(id)}`);
  return m.slice(1).join('-').toLowerCase();
}

const idKey = (id: PointId): string => (typeof id === 'number' ? `n${id}` : `u${id}`);

const f = Math.fround;

/** Qdrant's cosine preprocessing, in f32: unchanged when zero or already unit length. */
function normalize(v: Float32Array): Float32Array {
  let len = 0;
  for (const x of v) len = f(len + f(x * x));
  if (len < 1.1920929e-7 || Math.abs(len - 1) <= 1e-6) return v;
  const n = f(Math.sqrt(len));
  return v.map((x) => f(x / n));
}

/** Similarity as Qdrant ranks it (higher is better), and as it reports it. */
function scorer(distance: Collection['distance']): { similarity: (a: Float32Array, b: Float32Array) => number; report: (s: number) => number } {
  switch (distance) {
    case 'Cosine':
    case 'Dot':
      return {
        similarity: (a, b) => {
          let s = 0;
          for (let i = 0; i < a.length; i++) s = f(s + f(a[i] * b[i]));
          return s;
        },
        report: (s) => s,
      };
    case 'Euclid':
      return {
        similarity: (a, b) => {
          let s = 0;
          for (let i = 0; i < a.length; i++) s = f(s + f((a[i] - b[i]) ** 2));
          return -s;
        },
        report: (s) => f(Math.sqrt(Math.abs(s))),
      };
    case 'Manhattan':
      return {
        similarity: (a, b) => {
          let s = 0;
          for (let i = 0; i < a.length; i++) s = f(s + f(Math.abs(a[i] - b[i])));
          return -s;
        },
        report: (s) => Math.abs(s),
      };
  }
}

function denseVector(v: unknown, size: number, what: string): Float32Array {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new Unsupported(`${what} other than a dense vector`);
  if (v.length !== size) throw new HttpError(400, `Wrong input: Vector dimension error: expected dim: ${size}, got ${v.length}`);
  return Float32Array.from(v as number[]);
}

// ---------------------------------------------------------------- filters, as Qdrant evaluates them

const list = (x: unknown): unknown[] => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);

function valuesAt(payload: Json, key: string): unknown[] {
  if (/[.[\]"]/.test(key)) throw new Unsupported(`nested payload key ${key}`);
  const v = payload[key];
  return v === undefined ? [] : [v];
}

function checkMatch(match: Json, v: unknown): boolean {
  const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);
  if ('value' in match) {
    const want = match.value;
    if (typeof v === 'boolean' && typeof want === 'boolean') return v === want;
    if (typeof v === 'string' && typeof want === 'string') return v === want;
    if (typeof v === 'number' && isInt(want)) return isInt(v) && v === want;
    return false;
  }
  if ('any' in match) {
    const any = match.any as unknown[];
    const strings = any.length === 0 || typeof any[0] === 'string';
    if (typeof v === 'string' && strings) return any.includes(v);
    if (typeof v === 'number' && !strings) return isInt(v) && any.includes(v);
    return false;
  }
  if ('except' in match) {
    const except = match.except as unknown[];
    const strings = except.length === 0 || typeof except[0] === 'string';
    if (typeof v === 'string') return strings ? !except.includes(v) : true;
    if (typeof v === 'number') return strings ? true : !isInt(v) || !except.includes(v);
    return v !== null;
  }
  throw new Unsupported(`match ${JSON.stringify(match)}`);
}

function checkRange(range: Json, v: unknown): boolean {
  if (typeof v !== 'number') return false;
  for (const [op, bound] of Object.entries(range)) {
    if (bound === null || bound === undefined) continue;
    if (typeof bound !== 'number') throw new Unsupported('datetime ranges');
    if (op === 'lt' && !(v < bound)) return false;
    if (op === 'gt' && !(v > bound)) return false;
    if (op === 'lte' && !(v <= bound)) return false;
    if (op === 'gte' && !(v >= bound)) return false;
  }
  return true;
}

function checkField(c: Json, payload: Json): boolean {
  const known = new Set(['key', 'match', 'range', 'is_empty', 'is_null']);
  for (const k of Object.keys(c)) if (!known.has(k) && c[k] !== null) throw new Unsupported(`field condition ${k}`);
  const key = c.key as string;
  const values = valuesAt(payload, key);
  const isEmpty = c.is_empty as boolean | null | undefined;
  const isNull = c.is_null as boolean | null | undefined;
  if (c.match == null && c.range == null && isEmpty == null && isNull == null) {
    throw new HttpError(400, 'Validation error in JSON body: at least one field condition must be specified');
  }
  if (values.length === 0) {
    if (isEmpty != null) return isEmpty;
    if (isNull != null) return !isNull;
    return false;
  }
  return values.some((p) => {
    if (isEmpty != null) return (p === null || (Array.isArray(p) && p.length === 0)) === isEmpty;
    if (isNull != null) return (p === null || (Array.isArray(p) && p.some((x) => x === null))) === isNull;
    const one = (x: unknown): boolean => (c.match != null && checkMatch(c.match as Json, x)) || (c.range != null && checkRange(c.range as Json, x));
    return Array.isArray(p) ? p.some(one) : one(p);
  });
}

function checkCondition(c: Json, point: Point): boolean {
  if ('key' in c) return checkField(c, point.payload);
  if ('is_empty' in c) {
    const v = point.payload[(c.is_empty as Json).key as string];
    return v === undefined || v === null || (Array.isArray(v) && v.length === 0);
  }
  if ('is_null' in c) return point.payload[(c.is_null as Json).key as string] === null;
  if ('has_id' in c) {
    const wanted = new Set((c.has_id as unknown[]).map((x) => idKey(parseId(x))));
    return wanted.has(idKey(point.id));
  }
  if ('has_vector' in c || 'nested' in c) throw new Unsupported(`condition ${Object.keys(c)[0]}`);
  return checkFilter(c, point);
}

function checkFilter(filter: Json | null | undefined, point: Point): boolean {
  if (!filter) return true;
  if (filter.min_should != null) throw new Unsupported('min_should');
  const { should, must, must_not } = filter;
  if (should != null && !list(should).some((c) => checkCondition(c as Json, point))) return false;
  if (must != null && !list(must).every((c) => checkCondition(c as Json, point))) return false;
  if (must_not != null && list(must_not).some((c) => checkCondition(c as Json, point))) return false;
  return true;
}

// ---------------------------------------------------------------- the server

export interface TestServerOptions {
  /** Validate against the OpenAPI document when present. Default true. */
  validate?: boolean;
  /** Require this `api-key` header, as a Qdrant configured with `service.api_key` does. Default: none. */
  apiKey?: string;
}

export async function startQdrantTestServer(options: TestServerOptions = {}): Promise<QdrantTestServer> {
  const validator = options.validate === false ? undefined : loadQdrantOpenApi();
  const collections = new Map<string, Collection>();
  const aliases = new Map<string, string>();
  const requests: LoggedRequest[] = [];
  let violations: string[] = [];
  const failures: Failure[] = [];

  function collection(name: string): Collection {
    const c = collections.get(aliases.get(name) ?? name);
    if (!c) throw notFound(`Collection \`${name}\` doesn't exist!`);
    return c;
  }

  const updated = (c: Collection): Json => ({ operation_id: c.version, status: 'completed' });

  function collectionInfo(c: Collection): Json {
    return {
      status: 'green',
      optimizer_status: 'ok',
      indexed_vectors_count: 0,
      points_count: c.points.size,
      segments_count: 1,
      config: {
        params: {
          vectors: { size: c.size, distance: c.distance, ...(c.onDisk ? { on_disk: true } : {}) },
          shard_number: c.shardNumber,
          replication_factor: c.replicationFactor,
          write_consistency_factor: c.writeConsistencyFactor,
          on_disk_payload: true,
        },
        hnsw_config: { m: c.hnsw.m, ef_construct: c.hnsw.ef_construct, full_scan_threshold: 10000, max_indexing_threads: 0, on_disk: false },
        optimizer_config: {
          deleted_threshold: 0.2,
          vacuum_min_vector_number: 1000,
          default_segment_number: 0,
          max_segment_size: null,
          memmap_threshold: null,
          indexing_threshold: 10000,
          flush_interval_sec: 5,
          max_optimization_threads: null,
        },
        wal_config: { wal_capacity_mb: 32, wal_segments_ahead: 0 },
        quantization_config: c.quantization ?? null,
      },
      payload_schema: Object.fromEntries(
        [...c.payloadSchema].map(([field, s]) => [
          field,
          {
            data_type: s.data_type,
            ...(s.params ? { params: s.params } : {}),
            points: [...c.points.values()].filter((p) => p.payload[field] !== undefined).length,
          },
        ]),
      ),
    };
  }

  function selectPayload(p: Point, sel: unknown): Json | undefined {
    if (sel === undefined || sel === null || sel === false) return undefined;
    if (sel === true) return p.payload;
    if (Array.isArray(sel)) return Object.fromEntries(Object.entries(p.payload).filter(([k]) => sel.includes(k)));
    throw new Unsupported(`with_payload ${JSON.stringify(sel)}`);
  }

  function withVector(sel: unknown): boolean {
    if (sel === undefined || sel === null || typeof sel === 'boolean') return sel === true;
    throw new Unsupported(`with_vector ${JSON.stringify(sel)}`);
  }

  function query(c: Collection, q: Json): Json {
    for (const k of ['prefetch', 'using', 'offset', 'score_threshold', 'lookup_from', 'shard_key']) {
      if (q[k] !== undefined && q[k] !== null) throw new Unsupported(`query ${k}`);
    }
    const { similarity, report } = scorer(c.distance);
    const stored = (id: unknown): Float32Array => {
      const p = c.points.get(idKey(parseId(id)));
      if (!p) throw notFound(`No point with id ${parseId(id)} found`);
      return p.vector;
    };
    const input = (v: unknown): Float32Array => (typeof v === 'string' || typeof v === 'number' ? stored(v) : denseVector(v, c.size, 'a query'));
    const referenced: PointId[] = [];
    let target: Float32Array;
    const spec = q.query as unknown;
    if (spec === undefined || spec === null) throw new Unsupported('a query without a vector (scroll order)');
    if (Array.isArray(spec)) target = denseVector(spec, c.size, 'a query');
    else if (typeof spec === 'string' || typeof spec === 'number') {
      target = stored(spec);
      referenced.push(parseId(spec));
    } else if ('nearest' in (spec as Json)) {
      if ((spec as Json).mmr != null) throw new Unsupported('mmr');
      target = denseVector((spec as Json).nearest, c.size, 'a nearest query');
    } else if ('recommend' in (spec as Json)) {
      const r = (spec as Json).recommend as Json;
      if (r.strategy != null && r.strategy !== 'average_vector') throw new Unsupported(`recommend strategy ${String(r.strategy)}`);
      const pos = list(r.positive);
      const neg = list(r.negative);
      for (const x of [...pos, ...neg]) if (typeof x === 'string' || typeof x === 'number') referenced.push(parseId(x));
      if (pos.length === 0) throw new HttpError(400, 'Wrong input: At least one positive vector ID required');
      const avg = (xs: unknown[]): Float32Array => {
        const out = new Float32Array(c.size);
        for (const x of xs.map(input)) for (let i = 0; i < c.size; i++) out[i] += x[i];
        return out.map((v) => f(v / xs.length));
      };
      const ap = avg(pos);
      const an = neg.length ? avg(neg) : undefined;
      // Qdrant's average_vector strategy: avg(positive) + (avg(positive) - avg(negative)).
      target = an ? ap.map((v, i) => f(v + f(v - an[i]))) : ap;
    } else throw new Unsupported(`query ${JSON.stringify(spec).slice(0, 80)}`);
    if (c.distance === 'Cosine') target = normalize(target);
    const limit = (q.limit as number | null | undefined) ?? 10;
    const excluded = new Set(referenced.map(idKey));
    const vectors = withVector(q.with_vector);
    const scored = [...c.points.entries()]
      .filter(([k, p]) => !excluded.has(k) && checkFilter(q.filter as Json | undefined, p))
      .map(([k, p]) => ({ k, p, s: similarity(target, p.vector) }))
      .sort((a, b) => b.s - a.s || (a.k < b.k ? -1 : 1))
      .slice(0, limit);
    return {
      points: scored.map(({ p, s }) => {
        const payload = selectPayload(p, q.with_payload);
        return { id: p.id, version: p.version, score: report(s), ...(payload ? { payload } : {}), ...(vectors ? { vector: Array.from(p.vector) } : {}) };
      }),
    };
  }

  /** The endpoints, keyed by documented operation. */
  const routes: Record<string, (params: Record<string, string>, body: Json) => unknown> = {
    'GET /': () => ({ title: 'qdrant - vector search engine', version: validator?.version.replace(/^v|\.x$/g, '') ?? '1.19.0' }),

    'GET /collections/{collection_name}/exists': ({ collection_name }) => ({ exists: collections.has(collection_name) }),

    'GET /collections/{collection_name}': ({ collection_name }) => collectionInfo(collection(collection_name)),

    'PUT /collections/{collection_name}': ({ collection_name }, b) => {
      if (collections.has(collection_name) || aliases.has(collection_name)) {
        throw new HttpError(409, `Wrong input: Collection \`${collection_name}\` already exists!`);
      }
      const v = b.vectors as Json | undefined;
      if (!v || typeof v.size !== 'number') throw new Unsupported('named or missing vectors config');
      for (const k of ['sparse_vectors', 'sharding_method', 'wal_config', 'optimizers_config', 'strict_mode_config']) {
        if (b[k] != null) throw new Unsupported(`create collection ${k}`);
      }
      const quantization = b.quantization_config as Json | undefined;
      if (quantization != null && (quantization.scalar as Json | undefined)?.type !== 'int8')
        throw new Unsupported('create collection quantization_config other than scalar int8');
      const hnsw = (b.hnsw_config ?? {}) as Json;
      collections.set(collection_name, {
        size: v.size,
        distance: v.distance as Collection['distance'],
        onDisk: v.on_disk === true,
        ...(quantization ? { quantization } : {}),
        hnsw: { m: (hnsw.m as number | undefined) ?? 16, ef_construct: (hnsw.ef_construct as number | undefined) ?? 100 },
        shardNumber: (b.shard_number as number | undefined) ?? 1,
        replicationFactor: (b.replication_factor as number | undefined) ?? 1,
        writeConsistencyFactor: (b.write_consistency_factor as number | undefined) ?? 1,
        points: new Map(),
        payloadSchema: new Map(),
        version: 0,
      });
      return true;
    },

    'DELETE /collections/{collection_name}': ({ collection_name }) => {
      const existed = collections.delete(collection_name);
      for (const [a, target] of aliases) if (target === collection_name) aliases.delete(a);
      return existed;
    },

    'GET /aliases': () => ({ aliases: [...aliases].map(([alias_name, collection_name]) => ({ alias_name, collection_name })) }),

    'POST /collections/aliases': (_, b) => {
      // All actions apply or none do, as in Qdrant, which holds one lock for the whole list.
      const next = new Map(aliases);
      for (const action of b.actions as Json[]) {
        if (action.create_alias) {
          const { alias_name, collection_name } = action.create_alias as Record<string, string>;
          if (!collections.has(collection_name)) throw notFound(`Collection \`${collection_name}\` doesn't exist!`);
          if (collections.has(alias_name)) throw new HttpError(409, `Wrong input: Collection \`${alias_name}\` already exists!`);
          next.set(alias_name, collection_name);
        } else if (action.delete_alias) {
          const { alias_name } = action.delete_alias as Record<string, string>;
          if (!next.delete(alias_name)) throw notFound(`Alias ${alias_name} does not exist`);
        } else throw new Unsupported('rename_alias');
      }
      aliases.clear();
      for (const [k, v] of next) aliases.set(k, v);
      return true;
    },

    'PUT /collections/{collection_name}/index': ({ collection_name }, b) => {
      const c = collection(collection_name);
      const schema = b.field_schema;
      if (schema == null) throw new HttpError(400, 'Wrong input: field_schema is required');
      const data_type = typeof schema === 'string' ? schema : ((schema as Json).type as string);
      c.payloadSchema.set(b.field_name as string, typeof schema === 'string' ? { data_type } : { data_type, params: schema as Json });
      c.version++;
      return updated(c);
    },

    'PUT /collections/{collection_name}/points': ({ collection_name }, b) => {
      const c = collection(collection_name);
      if (!Array.isArray(b.points)) throw new Unsupported('points batch format');
      for (const k of ['shard_key', 'update_filter', 'update_mode']) if (b[k] != null) throw new Unsupported(`upsert ${k}`);
      // Every vector is checked before any point is written, as Qdrant validates the whole request first.
      const points = (b.points as Json[]).map((p) => {
        const vector = denseVector(p.vector, c.size, 'a point vector');
        return { id: parseId(p.id), vector: c.distance === 'Cosine' ? normalize(vector) : vector, payload: (p.payload ?? {}) as Json };
      });
      c.version++;
      for (const p of points) c.points.set(idKey(p.id), { ...p, version: c.version });
      return updated(c);
    },

    'POST /collections/{collection_name}/points': ({ collection_name }, b) => {
      const c = collection(collection_name);
      if (b.shard_key != null) throw new Unsupported('retrieve shard_key');
      const vectors = withVector(b.with_vector);
      const out: Json[] = [];
      const seen = new Set<string>();
      for (const raw of b.ids as unknown[]) {
        const k = idKey(parseId(raw));
        const p = c.points.get(k);
        if (!p || seen.has(k)) continue;
        seen.add(k);
        const payload = selectPayload(p, b.with_payload ?? true);
        out.push({ id: p.id, ...(payload ? { payload } : {}), ...(vectors ? { vector: Array.from(p.vector) } : {}) });
      }
      // Qdrant does not promise the order asked for; reversing makes a provider that relies on it fail here.
      return out.reverse();
    },

    'POST /collections/{collection_name}/points/delete': ({ collection_name }, b) => {
      const c = collection(collection_name);
      if (b.shard_key != null) throw new Unsupported('delete shard_key');
      if (Array.isArray(b.points)) for (const id of b.points) c.points.delete(idKey(parseId(id)));
      else for (const [k, p] of [...c.points]) if (checkFilter(b.filter as Json, p)) c.points.delete(k);
      c.version++;
      return updated(c);
    },

    'POST /collections/{collection_name}/points/count': ({ collection_name }, b) => {
      const c = collection(collection_name);
      if (b.exact === false) throw new Unsupported('approximate count');
      return { count: [...c.points.values()].filter((p) => checkFilter(b.filter as Json | undefined, p)).length };
    },

    'POST /collections/{collection_name}/points/query/batch': ({ collection_name }, b) => {
      const c = collection(collection_name);
      return (b.searches as Json[]).map((q) => query(c, q));
    },
  };

  function documented(method: string, path: string): { operation?: string; params: Record<string, string> } {
    // Without the document, match the few templates this server knows by shape.
    for (const op of Object.keys(routes)) {
      const [m, t] = op.split(' ');
      if (m !== method) continue;
      const ts = t.split('/').filter(Boolean);
      const ps = path.split('/').filter(Boolean);
      if (ts.length !== ps.length) continue;
      const params: Record<string, string> = {};
      if (ts.every((s, i) => (s.startsWith('{') ? ((params[s.slice(1, -1)] = decodeURIComponent(ps[i])), true) : s === ps[i]))) {
        return { operation: op, params };
      }
    }
    return { params: {} };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const method = req.method ?? 'GET';
    const entry: LoggedRequest = { method, path: url.pathname, query: Object.fromEntries(url.searchParams), body: undefined, status: 0 };
    requests.push(entry);
    const where = `${method} ${url.pathname}${url.search}`;

    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      entry.status = status;
      if (validator && entry.operation) {
        for (const e of validator.checkResponse(entry.operation, status, body)) violations.push(`${where}: response: ${e}`);
      }
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const fail = (status: number, message: string): void => send(status, { status: { error: message }, time: 0.0001 });

    let body: unknown;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        violations.push(`${where}: body is not JSON`);
        return fail(400, 'Format error in JSON body: not JSON');
      }
    }
    entry.body = body;

    let operation: string | undefined;
    let params: Record<string, string>;
    if (validator) {
      const checked = validator.checkRequest({ method, path: url.pathname, query: url.searchParams, contentType: req.headers['content-type'], body });
      operation = checked.operation;
      params = checked.pathParams;
      entry.operation = operation;
      if (checked.errors.length) {
        violations.push(...checked.errors.map((e) => `${where}: request: ${e}`));
        return fail(400, `Request rejected by Qdrant's OpenAPI document: ${checked.errors.join('; ')}`);
      }
    } else {
      ({ operation, params } = documented(method, url.pathname));
      entry.operation = operation;
    }

    if (options.apiKey !== undefined && req.headers['api-key'] !== options.apiKey) {
      return fail(401, 'Unauthorized: must provide a valid api-key');
    }

    const failure = failures.shift();
    if (failure) {
      if ('reset' in failure) {
        req.socket.destroy();
        return;
      }
      const headers: Record<string, string> = failure.retryAfter !== undefined ? { 'retry-after': String(failure.retryAfter) } : {};
      return send(failure.status, { status: { error: `injected ${failure.status}` }, time: 0.0001 }, headers);
    }

    const route = operation ? routes[operation] : undefined;
    if (!route) {
      violations.push(`${where}: not implemented by the test server`);
      return fail(400, `not implemented by the test server: ${where}`);
    }
    try {
      const result = route(params, (body ?? {}) as Json);
      send(200, operation === 'GET /' ? result : { result, status: 'ok', time: 0.0001 });
    } catch (e) {
      if (e instanceof Unsupported) violations.push(`${where}: ${e.message}`);
      if (e instanceof HttpError) return fail(e.status, e.message);
      violations.push(`${where}: test server crashed: ${(e as Error).stack}`);
      fail(500, `Service internal error: ${(e as Error).message}`);
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      violations.push(`test server crashed: ${(e as Error).stack}`);
      res.destroy();
    });
  });
  await new Promise<void>((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    validating: validator !== undefined,
    validator,
    requests,
    failNext(n, failure = { status: 503 }) {
      for (let i = 0; i < n; i++) failures.push(failure);
    },
    takeViolations() {
      const out = violations;
      violations = [];
      return out;
    },
    async raw(method, path, body) {
      const r = await fetch(url + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, body: await r.json() };
    },
    collectionNames: () => [...collections.keys()],
    close: () =>
      new Promise<void>((resolveClose) => {
        server.closeAllConnections();
        server.close(() => resolveClose());
      }),
  };
}
