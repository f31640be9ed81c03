import { createHash } from 'node:crypto';
import { QdrantClient, type Schemas } from '@qdrant/js-client-rest';
import { NearlineError, nlError, providerError } from '../../errors.ts';
import { validateQuery } from '../../filter.ts';
import { toQdrantFilter } from './qdrant-filter.ts';
import type { Hit, Metadata, Metric, Scalar, Vector } from '../../types.ts';
import type { ProviderContext } from '../index.ts';
import type { CollectionSpec, ExampleQuery, SearchQuery, VectorCollection, VectorProvider, VectorRecord } from './types.ts';

export interface QdrantVectorOptions {
  /** Qdrant's REST endpoint. Default `http://127.0.0.1:6333`. */
  url?: string;
  /** API key sent as the `api-key` header; use it over https. Default: none. */
  apiKey?: string;
  /** Prepended to every collection and alias name, so several deployments can share one Qdrant. Default `''`. */
  collectionPrefix?: string;
  /** Shards per collection, spread over the cluster's nodes. Default: Qdrant's (1 standalone, one per node in a cluster). */
  shardNumber?: number;
  /** Copies of every shard on distinct nodes. Default: Qdrant's (1). */
  replicationFactor?: number;
  /** Replicas that must apply a write before it succeeds. Default: Qdrant's (1). */
  writeConsistencyFactor?: number;
  /** Keep original vectors memory-mapped on disk instead of in RAM. Default false. */
  onDisk?: boolean;
  /** Per-request timeout in milliseconds. Default 30000. */
  timeout?: number;
  /** Retries after a 429, a 503 or a reset connection, with exponential backoff. Default 5. */
  retries?: number;
  /** First backoff delay in milliseconds; doubles on every retry, capped at 10 s. Default 200. */
  retryDelay?: number;
  /** Points per upsert request. Default 256. */
  batchSize?: number;
}

/** The part of the Qdrant client this provider uses; tests inject their own. */
export type QdrantClientLike = Pick<
  QdrantClient,
  | 'versionInfo'
  | 'collectionExists'
  | 'getCollection'
  | 'createCollection'
  | 'deleteCollection'
  | 'createPayloadIndex'
  | 'upsert'
  | 'delete'
  | 'retrieve'
  | 'queryBatch'
  | 'count'
  | 'getAliases'
  | 'updateCollectionAliases'
>;

export interface QdrantDeps {
  connect?: (options: Required<Pick<QdrantVectorOptions, 'url' | 'timeout'>> & { apiKey?: string }) => QdrantClientLike;
  sleep?: (ms: number) => Promise<void>;
}

/** The qdrant provider adds alias cutover to the vector provider interface. */
export interface QdrantVectorProvider extends VectorProvider {
  readonly supportsAliases: true;
  /** Points `alias` at `collection` in one atomic request (delete + create), so readers never see a gap. */
  setAlias(alias: string, collection: string): Promise<void>;
  deleteAlias(alias: string): Promise<void>;
  /** Alias -> collection, for this provider's prefix, with the prefix removed. */
  listAliases(): Promise<Record<string, string>>;
}

type QFilter = Schemas['Filter'];
type QCondition = Schemas['Condition'];
type QueryRequest = Schemas['QueryRequest'];
type IndexType = 'keyword' | 'integer' | 'float' | 'bool';

/** Payload key holding nearline's own id; Qdrant point ids must be integers or UUIDs. */
export const ID_KEY = '_nearline_id';
const FIELD_NAME = /^[A-Za-z0-9_-]+$/;
const DISTANCE: Record<Metric, Schemas['Distance']> = { cosine: 'Cosine', dot: 'Dot', l2: 'Euclid' };
// UUIDv5 namespace of nearline point ids; changing it orphans every stored point.
const NAMESPACE = Buffer.from('6b1c7e2a4f9d4e0b8a3c5d2e1f0a9b87', 'hex');
const RETRY_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** Deterministic Qdrant point id for a nearline id: a name-based (v5) UUID. */
export function pointId(id: string): string {
  const h = createHash('sha1').update(NAMESPACE).update(id, 'utf8').digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString('hex', 0, 16);
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

function indexType(values: Scalar[]): IndexType | undefined {
  const present = values.filter((v) => v !== null);
  if (present.length === 0) return undefined;
  if (present.every((v) => typeof v === 'boolean')) return 'bool';
  if (present.every((v) => typeof v === 'number')) return present.every((v) => Number.isSafeInteger(v)) ? 'integer' : 'float';
  return typeof present[0] === 'string' ? 'keyword' : undefined;
}

function checkVector(v: Vector, dims: number): void {
  if (!(v instanceof Float32Array)) throw nlError('NL_BAD_VECTOR', 'vector must be a Float32Array');
  if (v.length !== dims) throw nlError('NL_DIMENSION_MISMATCH', dims, v.length);
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) throw nlError('NL_BAD_VECTOR', `vector has a non-finite value at ${i}`);
}

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw nlError('NL_BAD_REQUEST', `${what} must be a positive integer`);
  return v;
}

type ResolvedOptions = QdrantVectorOptions &
  Required<Pick<QdrantVectorOptions, 'url' | 'collectionPrefix' | 'onDisk' | 'timeout' | 'retries' | 'retryDelay' | 'batchSize'>>;

function readOptions(raw: Record<string, unknown>): ResolvedOptions {
  const known = [
    'url',
    'apiKey',
    'collectionPrefix',
    'shardNumber',
    'replicationFactor',
    'writeConsistencyFactor',
    'onDisk',
    'timeout',
    'retries',
    'retryDelay',
    'batchSize',
  ];
  const unknown = Object.keys(raw).filter((k) => !known.includes(k));
  if (unknown.length) throw nlError('NL_BAD_DEFINITION', `qdrant provider: unknown option(s) ${unknown.join(', ')}`);
  const str = (k: string): string | undefined => {
    if (raw[k] !== undefined && typeof raw[k] !== 'string') throw nlError('NL_BAD_DEFINITION', `qdrant provider: ${k} must be a string`);
    return raw[k] as string | undefined;
  };
  const int = (k: string, min: number): number | undefined => {
    const v = raw[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min)) {
      throw nlError('NL_BAD_DEFINITION', `qdrant provider: ${k} must be an integer >= ${min}`);
    }
    return v as number | undefined;
  };
  if (raw.onDisk !== undefined && typeof raw.onDisk !== 'boolean') throw nlError('NL_BAD_DEFINITION', 'qdrant provider: onDisk must be a boolean');
  return {
    url: str('url') ?? 'http://127.0.0.1:6333',
    apiKey: str('apiKey'),
    collectionPrefix: str('collectionPrefix') ?? '',
    shardNumber: int('shardNumber', 1),
    replicationFactor: int('replicationFactor', 1),
    writeConsistencyFactor: int('writeConsistencyFactor', 1),
    onDisk: (raw.onDisk as boolean | undefined) ?? false,
    timeout: int('timeout', 1) ?? 30_000,
    retries: int('retries', 0) ?? 5,
    retryDelay: int('retryDelay', 0) ?? 200,
    batchSize: int('batchSize', 1) ?? 256,
  };
}

/** Why a call may be retried, or undefined when it may not. */
function transient(e: unknown): { reason: string; retryAfterMs?: number } | undefined {
  const err = e as { status?: number; name?: string; retry_after?: number; code?: string; cause?: { code?: string } } | undefined;
  if (err?.name === 'QdrantClientResourceExhaustedError')
    return { reason: '429 Too Many Requests', retryAfterMs: Math.min((err.retry_after ?? 0) * 1000, 30_000) };
  if (err?.status === 429 || err?.status === 503) return { reason: `${err.status} ${err.status === 429 ? 'Too Many Requests' : 'Service Unavailable'}` };
  const code = err?.code ?? err?.cause?.code;
  if (code && RETRY_CODES.has(code)) return { reason: code };
  return undefined;
}

function explain(e: unknown): string {
  const err = e as { status?: number; data?: { status?: { error?: string } }; message?: string };
  const detail = err?.data?.status?.error;
  if (err?.status) return `${err.status}${detail ? `: ${detail}` : err.message ? ` ${err.message}` : ''}`;
  return e instanceof Error ? e.message : String(e);
}

/** The HTTP status Qdrant answered with, behind nearline's wrapping; undefined if it never answered. */
function status(e: unknown): number | undefined {
  let x: unknown = e;
  for (let depth = 0; x && depth < 4; depth++) {
    const { status: code, cause } = x as { status?: unknown; cause?: unknown };
    if (!(x instanceof NearlineError) && typeof code === 'number') return code;
    x = cause;
  }
  return undefined;
}

export function createQdrantProvider(options: QdrantVectorOptions, ctx: ProviderContext, deps: QdrantDeps = {}): QdrantVectorProvider {
  // Options arrive from definitions files, so their types are checked here rather than trusted.
  const o = readOptions(options as Record<string, unknown>);
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const connect = deps.connect ?? ((c) => new QdrantClient({ url: c.url, apiKey: c.apiKey, timeout: c.timeout, checkCompatibility: false }));
  const open = new Map<string, QdrantCollection>();
  let client: QdrantClientLike | undefined;

  function api(): QdrantClientLike {
    if (!client) throw nlError('NL_INTERNAL', `vector provider ${ctx.name} is not open`);
    return client;
  }

  /** Runs one request, retrying transient failures with exponential backoff and equal jitter. */
  async function call<T>(what: string, fn: (c: QdrantClientLike) => Promise<T>): Promise<T> {
    const c = api();
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(c);
      } catch (e) {
        const t = transient(e);
        if (!t || attempt >= o.retries) {
          const why = t ? `${t.reason} after ${attempt + 1} attempts` : explain(e);
          throw providerError(ctx.name, new Error(`qdrant ${what}: ${why}`, { cause: e }));
        }
        const backoff = Math.min(o.retryDelay * 2 ** attempt, 10_000);
        await sleep(Math.max(t.retryAfterMs ?? 0, backoff / 2 + (Math.random() * backoff) / 2));
      }
    }
  }

  class QdrantCollection implements VectorCollection {
    readonly qname: string;
    private readonly indexed = new Map<string, string>();

    constructor(
      readonly spec: CollectionSpec,
      payloadSchema: Record<string, { data_type: string }>,
    ) {
      this.qname = o.collectionPrefix + spec.name;
      for (const [k, v] of Object.entries(payloadSchema)) this.indexed.set(k, v.data_type);
    }

    async upsert(records: VectorRecord[]): Promise<void> {
      const last = new Map<string, VectorRecord>();
      for (const r of records) {
        if (typeof r.id !== 'string' || r.id === '') throw nlError('NL_BAD_REQUEST', 'every record needs a non-empty string id');
        checkVector(r.vector, this.spec.dims);
        for (const [k, v] of Object.entries(r.metadata ?? {})) {
          if (k === ID_KEY) throw nlError('NL_BAD_REQUEST', `metadata key ${ID_KEY} is reserved`);
          if (!(v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) {
            throw nlError('NL_BAD_REQUEST', `metadata ${k} of ${r.id} must be a string, finite number, boolean or null`);
          }
        }
        last.set(r.id, r);
      }
      if (last.size === 0) return;
      await this.ensureIndexes([...last.values()]);
      const points = [...last.values()].map((r) => ({ id: pointId(r.id), vector: Array.from(r.vector), payload: { ...r.metadata, [ID_KEY]: r.id } }));
      for (let i = 0; i < points.length; i += o.batchSize) {
        const batch = points.slice(i, i + o.batchSize);
        await call(`upsert into ${this.qname}`, (c) => c.upsert(this.qname, { wait: true, points: batch }));
      }
    }

    /** Indexes declared metadata fields before data lands, typed by the values seen. */
    private async ensureIndexes(records: VectorRecord[]): Promise<void> {
      for (const field of this.spec.metadataFields) {
        const type = indexType(records.map((r) => r.metadata?.[field] ?? null));
        const have = this.indexed.get(field);
        // An integer index cannot answer ranges over fractional values, so it is widened to float.
        if (!type || (have && !(have === 'integer' && type === 'float'))) continue;
        await call(`create ${type} index on ${this.qname}.${field}`, (c) =>
          c.createPayloadIndex(this.qname, { field_name: field, field_schema: type, wait: true }),
        );
        this.indexed.set(field, type);
      }
    }

    async delete(ids: string[]): Promise<void> {
      const points = [...new Set(ids)].map(pointId);
      for (let i = 0; i < points.length; i += o.batchSize) {
        const batch = points.slice(i, i + o.batchSize);
        await call(`delete from ${this.qname}`, (c) => c.delete(this.qname, { wait: true, points: batch }));
      }
    }

    async get(ids: string[]): Promise<Array<VectorRecord | null>> {
      if (ids.length === 0) return [];
      const unique = [...new Set(ids)];
      const found = await call(`retrieve from ${this.qname}`, (c) =>
        c.retrieve(this.qname, { ids: unique.map(pointId), with_payload: true, with_vector: true }),
      );
      const byId = new Map<string, VectorRecord>();
      for (const p of found) {
        const { [ID_KEY]: id, ...metadata } = (p.payload ?? {}) as Record<string, unknown>;
        if (typeof id === 'string') byId.set(id, { id, vector: toVector(p.vector), metadata: metadata as Metadata });
      }
      return ids.map((id) => byId.get(id) ?? null);
    }

    async search(queries: SearchQuery[]): Promise<Hit[][]> {
      return this.run(
        queries.map((q) => {
          checkVector(q.vector, this.spec.dims);
          return { query: Array.from(q.vector), base: q };
        }),
      );
    }

    async examples(queries: ExampleQuery[]): Promise<Hit[][]> {
      const input = (x: string | Vector): string | number[] => {
        if (typeof x === 'string') return pointId(x);
        checkVector(x, this.spec.dims);
        return Array.from(x);
      };
      const prepared = queries.map((q) => {
        if (!Array.isArray(q.positive) || q.positive.length === 0) throw nlError('NL_BAD_REQUEST', 'positive needs at least one id or vector');
        const recommend = { positive: q.positive.map(input), negative: (q.negative ?? []).map(input), strategy: 'average_vector' as const };
        return { query: { recommend }, base: q };
      });
      try {
        return await this.run(prepared);
      } catch (e) {
        if (status(e) !== 404) throw e;
        // Qdrant reports an unknown example id as 404; name the id instead of passing its UUID on.
        const refs = [...new Set(queries.flatMap((q) => [...q.positive, ...(q.negative ?? [])]).filter((x): x is string => typeof x === 'string'))];
        const got = await this.get(refs);
        const missing = refs.find((_, i) => got[i] === null);
        if (missing !== undefined) throw nlError('NL_ID_NOT_FOUND', missing, this.spec.name);
        throw e;
      }
    }

    private async run(queries: Array<{ query: QueryRequest['query']; base: Omit<SearchQuery, 'vector'> }>): Promise<Hit[][]> {
      const requests = queries.map(({ query, base }) => this.request(query, base));
      const results: Hit[][] = queries.map(() => []);
      const live = requests.map((r, i) => [r, i] as const).filter(([r]) => r !== null) as Array<readonly [QueryRequest, number]>;
      if (live.length === 0) return results;
      const answers = await call(`query ${this.qname}`, (c) => c.queryBatch(this.qname, { searches: live.map(([r]) => r) }));
      const sign = this.spec.metric === 'l2' ? -1 : 1;
      answers.forEach((answer, j) => {
        const { includeVectors: withVectors, includeMetadata: withMetadata } = queries[live[j][1]].base;
        results[live[j][1]] = answer.points.map((p) => {
          const id = (p.payload as Record<string, unknown> | null | undefined)?.[ID_KEY];
          if (typeof id !== 'string') throw providerError(ctx.name, new Error(`qdrant point ${p.id} in ${this.qname} has no ${ID_KEY}`));
          const hit: Hit = { id, score: sign * p.score };
          if (withVectors) hit.vector = toVector(p.vector);
          if (withMetadata) hit.metadata = payloadMetadata(p.payload, this.spec.metadataFields);
          return hit;
        });
      });
      return results;
    }

    /** One Qdrant query, or null when k is 0 and nothing needs asking. */
    private request(query: QueryRequest['query'], q: Omit<SearchQuery, 'vector'>): QueryRequest | null {
      if (q.k === 0) return null;
      const { k: limit, filter: where } = validateQuery(q, this.spec.metadataFields);
      const ef = positiveInt(q.ef ?? this.spec.index.ef ?? 100, 'ef');
      const must: QCondition[] = [];
      if (where !== undefined) must.push(toQdrantFilter(where));
      const exclude = [...new Set(q.exclude ?? [])].map(pointId);
      const filter: QFilter | undefined =
        must.length || exclude.length ? { ...(must.length ? { must } : {}), ...(exclude.length ? { must_not: [{ has_id: exclude }] } : {}) } : undefined;
      return {
        query,
        filter,
        limit,
        params: q.exact ? { exact: true } : { hnsw_ef: ef },
        with_payload: q.includeMetadata ? [ID_KEY, ...this.spec.metadataFields] : [ID_KEY],
        with_vector: q.includeVectors === true,
      };
    }

    async count(): Promise<number> {
      const r = await call(`count ${this.qname}`, (c) => c.count(this.qname, { exact: true }));
      return r.count;
    }

    async flush(): Promise<void> {
      // Every write already waited for Qdrant to apply it to its write-ahead log; nothing is buffered here.
    }
  }

  function toVector(v: unknown): Vector {
    if (!Array.isArray(v)) throw providerError(ctx.name, new Error('qdrant returned a point without its vector'));
    return Float32Array.from(v as number[]);
  }

  const provider: QdrantVectorProvider = {
    kind: 'qdrant',
    name: ctx.name,
    supportsFilter: true,
    supportsDelete: true,
    supportsExamples: true,
    supportsAliases: true,

    async open() {
      if (client) return;
      client = connect({ url: o.url, apiKey: o.apiKey, timeout: o.timeout });
      try {
        await call(`connect to ${o.url}`, (c) => c.versionInfo());
      } catch (e) {
        client = undefined;
        throw e;
      }
    },

    async close() {
      client = undefined;
      open.clear();
    },

    async collection(spec) {
      for (const f of spec.metadataFields) {
        if (f === ID_KEY || !FIELD_NAME.test(f)) {
          throw nlError('NL_BAD_DEFINITION', `qdrant provider: metadata field ${JSON.stringify(f)} must match ${FIELD_NAME} and not be ${ID_KEY}`);
        }
      }
      if (spec.index.efConstruction !== undefined && spec.index.efConstruction < 4) {
        throw nlError('NL_BAD_DEFINITION', 'qdrant provider: efConstruction must be at least 4');
      }
      const qname = o.collectionPrefix + spec.name;
      // int8: Qdrant's own scalar quantization, codes in memory and the original vectors on disk for its rescoring.
      const int8 = spec.index.quantization === 'int8';
      let info = await describeCollection(qname);
      if (!info) {
        try {
          await call(`create collection ${qname}`, (c) =>
            c.createCollection(qname, {
              vectors: { size: spec.dims, distance: DISTANCE[spec.metric], ...(o.onDisk || int8 ? { on_disk: true } : {}) },
              hnsw_config: { m: spec.index.M ?? 16, ef_construct: spec.index.efConstruction ?? 200 },
              ...(int8 ? { quantization_config: { scalar: { type: 'int8' as const, always_ram: true } } } : {}),
              shard_number: o.shardNumber,
              replication_factor: o.replicationFactor,
              write_consistency_factor: o.writeConsistencyFactor,
            }),
          );
        } catch (e) {
          // Another nearline server may have created it first; then its shape is checked below.
          if (status(e) !== 409) throw e;
        }
        info = await describeCollection(qname);
        if (!info) throw providerError(ctx.name, new Error(`qdrant collection ${qname} vanished after creation`));
      }
      const vectors = info.config.params.vectors as Schemas['VectorParams'] | undefined;
      if (vectors?.size !== spec.dims || vectors?.distance !== DISTANCE[spec.metric]) {
        throw nlError(
          'NL_CONFLICT',
          `qdrant collection ${qname} exists with dims ${vectors?.size} and distance ${vectors?.distance}, not ${spec.dims} ${DISTANCE[spec.metric]}`,
        );
      }
      const quantization = info.config.quantization_config && 'scalar' in info.config.quantization_config ? 'int8' : 'none';
      if (quantization !== (int8 ? 'int8' : 'none')) {
        throw nlError('NL_CONFLICT', `qdrant collection ${qname} exists with quantization ${quantization}, not ${int8 ? 'int8' : 'none'}`);
      }
      const c = new QdrantCollection(spec, info.payload_schema as Record<string, { data_type: string }>);
      open.set(spec.name, c);
      return c;
    },

    async dropCollection(name) {
      open.delete(name);
      try {
        await call(`delete collection ${o.collectionPrefix + name}`, (c) => c.deleteCollection(o.collectionPrefix + name));
      } catch (e) {
        if (status(e) !== 404) throw e;
      }
    },

    async searchExamples(collection, queries) {
      const c = open.get(collection);
      if (!c) throw nlError('NL_NOT_FOUND', `collection ${collection} is not open in vector provider ${ctx.name}`);
      return c.examples(queries);
    },

    async setAlias(alias, collection) {
      const name = o.collectionPrefix + alias;
      const existing = await call('list aliases', (c) => c.getAliases());
      const actions: Schemas['AliasOperations'][] = [];
      // Qdrant refuses to delete an alias that does not exist, which would fail the whole request.
      if (existing.aliases.some((a) => a.alias_name === name)) actions.push({ delete_alias: { alias_name: name } });
      actions.push({ create_alias: { alias_name: name, collection_name: o.collectionPrefix + collection } });
      await call(`point alias ${name} at ${o.collectionPrefix + collection}`, (c) => c.updateCollectionAliases({ actions }));
    },

    async deleteAlias(alias) {
      const name = o.collectionPrefix + alias;
      const existing = await call('list aliases', (c) => c.getAliases());
      if (!existing.aliases.some((a) => a.alias_name === name)) return;
      await call(`delete alias ${name}`, (c) => c.updateCollectionAliases({ actions: [{ delete_alias: { alias_name: name } }] }));
    },

    async listAliases() {
      const existing = await call('list aliases', (c) => c.getAliases());
      const out: Record<string, string> = {};
      for (const a of existing.aliases) {
        if (a.alias_name.startsWith(o.collectionPrefix))
          out[a.alias_name.slice(o.collectionPrefix.length)] = a.collection_name.slice(o.collectionPrefix.length);
      }
      return out;
    },
  };

  async function describeCollection(qname: string): Promise<Schemas['CollectionInfo'] | undefined> {
    const { exists } = await call(`check collection ${qname}`, (c) => c.collectionExists(qname));
    return exists ? call(`describe collection ${qname}`, (c) => c.getCollection(qname)) : undefined;
  }

  return provider;
}

/** A hit's metadata from its payload: every declared field, null where the point has none. */
function payloadMetadata(payload: unknown, fields: string[]): Metadata {
  const p = (payload ?? {}) as Record<string, unknown>;
  return Object.fromEntries(fields.map((f) => [f, (p[f] ?? null) as Scalar]));
}
