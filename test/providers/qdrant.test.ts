import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { isNearlineError, type ErrorCode } from '../../src/errors.ts';
import { compileFilter, validateFilter } from '../../src/filter.ts';
import { toQdrantFilter } from '../../src/providers/vector/qdrant-filter.ts';
import {
  createQdrantProvider,
  ID_KEY,
  pointId,
  type QdrantClientLike,
  type QdrantVectorOptions,
  type QdrantVectorProvider,
} from '../../src/providers/vector/qdrant.ts';
import type { CollectionSpec, VectorRecord } from '../../src/providers/vector/types.ts';
import type { Filter, Metadata, Scalar } from '../../src/types.ts';
import { loadQdrantOpenApi, QDRANT_OPENAPI_PATH } from '../helpers/qdrant-openapi.ts';
import { startQdrantTestServer, type LoggedRequest, type QdrantTestServer } from '../helpers/qdrant-test-server.ts';
import { mulberry32, vectorProviderSuite } from './vector.suite.ts';

const REAL_URL = process.env.QDRANT_URL;
const TARGET = REAL_URL
  ? `real Qdrant at ${REAL_URL} (OpenAPI validation not applied)`
  : `in-process Qdrant test server (${loadQdrantOpenApi() ? "every request and response checked against Qdrant's OpenAPI document" : 'OpenAPI document absent: NOT validated'})`;
console.info(`[qdrant tests] conformance suite runs on the ${TARGET}`);

// uuid5(namespace 6b1c7e2a-4f9d-4e0b-8a3c-5d2e1f0a9b87, 'item-42'), as any UUIDv5 implementation computes it.
const PINNED_ITEM_42 = 'f0106897-b71a-5947-bfec-88c29f94c931';
const vec = (xs: number[]): Float32Array => Float32Array.from(xs);
const run = Math.random().toString(36).slice(2, 8);
let seq = 0;
const uniqueName = (): string => `q${run}_${seq++}`;

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<unknown> {
  const caught = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(caught, `expected ${code}`).toBeDefined();
  expect(isNearlineError(caught) ? caught.code : String(caught)).toBe(code);
  return caught;
}

let server: QdrantTestServer;

beforeAll(async () => {
  server = await startQdrantTestServer();
});

afterAll(async () => {
  await server?.close();
});

// Every test on the test server ends with no request or response outside Qdrant's published API.
afterEach(() => {
  expect(server.takeViolations()).toEqual([]);
});

function provider(options: QdrantVectorOptions = {}, url = server.url): QdrantVectorProvider {
  return createQdrantProvider({ url, retryDelay: 1, ...options }, { name: 'vectors-q', home: '/nonexistent' });
}

vectorProviderSuite(`qdrant on the ${TARGET}`, async () => ({
  // On a shared real instance a per-run prefix keeps this run's collections apart from anything else there.
  provider: REAL_URL ? provider({ collectionPrefix: `nltest_${run}_`, retryDelay: 100 }, REAL_URL) : provider(),
}));

describe("Qdrant's OpenAPI document", () => {
  const doc = loadQdrantOpenApi();

  it.skipIf(doc === undefined)(
    doc ? `validates traffic against ${doc.title} ${doc.version}, and rejects a malformed request` : `SKIPPED, not validated: ${QDRANT_OPENAPI_PATH} not found`,
    async () => {
      expect(server.validating).toBe(true);
      const bad = await server.raw('PUT', '/collections/x/points?wait=true', { points: [{ id: 'not-a-uuid', vector: [1, 2] }] });
      expect(bad.status).toBe(400);
      const undocumented = await server.raw('POST', '/collections/x/points/count?fast=1', {});
      expect(undocumented.status).toBe(400);
      const wrongEnum = await server.raw('PUT', '/collections/x', { vectors: { size: 3, distance: 'cosine' } });
      expect(wrongEnum.status).toBe(400);
      const misspelt = await server.raw('POST', '/collections/x/points/query/batch', { searches: [{ query: [1], limit: 1, hnsw_ef: 5 }] });
      expect(misspelt.status).toBe(400);
      const violations = server.takeViolations();
      expect(violations.some((v) => v.includes('format "uuid"'))).toBe(true);
      expect(violations.some((v) => v.includes('query parameter fast is not documented'))).toBe(true);
      expect(violations.some((v) => v.includes('allowedValues'))).toBe(true);
      expect(violations.some((v) => v.includes('"additionalProperty":"hnsw_ef"'))).toBe(true);
      expect(doc!.checkResponse('POST /collections/{collection_name}/points/count', 200, { result: { count: -1 }, status: 'ok', time: 0 })).not.toEqual([]);
    },
  );
});

describe('qdrant provider specifics (test server)', () => {
  let p: QdrantVectorProvider;
  const specOf = (over: Partial<CollectionSpec> = {}): CollectionSpec => ({
    name: uniqueName(),
    dims: 3,
    metric: 'l2',
    index: { M: 12, efConstruction: 80, ef: 40 },
    metadataFields: [],
    ...over,
  });
  const sent = (op: string): LoggedRequest[] =>
    server.requests.filter((r) => `${r.method} ${r.operation?.split(' ')[1] ?? r.path}` === op || r.operation === op);

  beforeEach(async () => {
    p = provider();
    await p.open();
    server.requests.length = 0;
  });

  afterEach(async () => {
    for (const name of server.collectionNames()) if (name.startsWith(`q${run}_`)) await p.dropCollection(name);
    await p.close();
  });

  it('maps string ids to name-based UUIDs, deterministically, and keeps the id in the payload', async () => {
    expect(pointId('item-42')).toBe(pointId('item-42'));
    expect(pointId('item-42')).not.toBe(pointId('item-43'));
    expect(pointId('')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // Pinned: a different mapping would orphan every point already stored.
    expect(pointId('item-42')).toBe(PINNED_ITEM_42);
    const c = await p.collection(specOf());
    await c.upsert([{ id: 'item-42', vector: vec([1, 2, 3]), metadata: { n: 1 } }]);
    const [upsert] = sent('PUT /collections/{collection_name}/points');
    expect(upsert.query).toEqual({ wait: 'true' });
    expect(upsert.body).toEqual({ points: [{ id: PINNED_ITEM_42, vector: [1, 2, 3], payload: { n: 1, [ID_KEY]: 'item-42' } }] });
    expect((await c.get(['item-42']))[0]).toEqual({ id: 'item-42', vector: vec([1, 2, 3]), metadata: { n: 1 } });
  });

  it('creates the collection with its HNSW parameters and scaling options, and searches with hnsw_ef', async () => {
    const q = provider({ shardNumber: 2, replicationFactor: 2, writeConsistencyFactor: 2, onDisk: true, collectionPrefix: 'pre_' });
    await q.open();
    const s = specOf({ metric: 'cosine', dims: 4 });
    const c = await q.collection(s);
    expect(sent('PUT /collections/{collection_name}')[0].body).toEqual({
      vectors: { size: 4, distance: 'Cosine', on_disk: true },
      hnsw_config: { m: 12, ef_construct: 80 },
      shard_number: 2,
      replication_factor: 2,
      write_consistency_factor: 2,
    });
    expect(server.collectionNames()).toContain(`pre_${s.name}`);
    await c.search([
      { vector: vec([1, 0, 0, 0]), k: 3 },
      { vector: vec([0, 1, 0, 0]), k: 2, ef: 7, exclude: ['x', 'y', 'x'] },
    ]);
    const batches = sent('POST /collections/{collection_name}/points/query/batch');
    expect(batches).toHaveLength(1);
    expect(batches[0].body).toEqual({
      searches: [
        { query: [1, 0, 0, 0], limit: 3, params: { hnsw_ef: 40 }, with_payload: [ID_KEY], with_vector: false },
        {
          query: [0, 1, 0, 0],
          limit: 2,
          params: { hnsw_ef: 7 },
          with_payload: [ID_KEY],
          with_vector: false,
          filter: { must_not: [{ has_id: [pointId('x'), pointId('y')] }] },
        },
      ],
    });
    server.requests.length = 0;
    const many = Array.from({ length: 600 }, (_, i) => ({ id: `m${i}`, vector: vec([i, 1, 0, 0]) }));
    await c.upsert(many);
    expect(sent('PUT /collections/{collection_name}/points').map((r) => (r.body as { points: unknown[] }).points.length)).toEqual([256, 256, 88]);
    expect(await c.count()).toBe(600);
    await q.dropCollection(s.name);
    expect(server.collectionNames()).not.toContain(`pre_${s.name}`);
    await q.close();
  });

  it('int8 quantization creates the collection with Qdrant scalar int8 codes in memory and the vectors on disk; it opens only as int8', async () => {
    const q = provider();
    await q.open();
    const s = specOf({ metric: 'cosine', dims: 4, index: { M: 12, efConstruction: 80, quantization: 'int8' } });
    const c = await q.collection(s);
    expect(sent('PUT /collections/{collection_name}')[0].body).toEqual({
      vectors: { size: 4, distance: 'Cosine', on_disk: true },
      hnsw_config: { m: 12, ef_construct: 80 },
      quantization_config: { scalar: { type: 'int8', always_ram: true } },
    });
    await c.upsert([
      { id: 'a', vector: vec([1, 0, 0, 0]) },
      { id: 'b', vector: vec([0, 1, 0, 0]) },
    ]);
    expect((await c.search([{ vector: vec([1, 0.1, 0, 0]), k: 1 }]))[0].map((h) => h.id)).toEqual(['a']);
    await q.close();
    const again = provider();
    await again.open();
    await expect(again.collection({ ...s, index: { M: 12, efConstruction: 80 } })).rejects.toMatchObject({
      code: 'NL_CONFLICT',
      message: expect.stringContaining('quantization int8'),
    });
    await again.dropCollection(s.name);
    await again.close();
  });

  it('creates payload indexes typed by the metadata values, once, and widens integer to float', async () => {
    const s = specOf({ metadataFields: ['color', 'size', 'even', 'price', 'never'] });
    const c = await p.collection(s);
    await c.upsert([
      { id: 'a', vector: vec([1, 0, 0]), metadata: { color: 'red', size: 3, even: false, price: 1.5 } },
      { id: 'b', vector: vec([0, 1, 0]), metadata: { color: null, size: 4, even: true, price: 2 } },
    ]);
    const indexes = () => sent('PUT /collections/{collection_name}/index').map((r) => r.body);
    expect(indexes()).toEqual([
      { field_name: 'color', field_schema: 'keyword' },
      { field_name: 'size', field_schema: 'integer' },
      { field_name: 'even', field_schema: 'bool' },
      { field_name: 'price', field_schema: 'float' },
    ]);
    expect(sent('PUT /collections/{collection_name}/index').every((r) => r.query.wait === 'true')).toBe(true);
    server.requests.length = 0;
    await c.upsert([{ id: 'c', vector: vec([0, 0, 1]), metadata: { color: 'blue', size: 5 } }]);
    expect(indexes()).toEqual([]);
    await c.upsert([{ id: 'd', vector: vec([0, 0, 2]), metadata: { size: 5.5 } }]);
    expect(indexes()).toEqual([{ field_name: 'size', field_schema: 'float' }]);
    // A second opening learns the indexes from Qdrant instead of creating them again.
    server.requests.length = 0;
    const again = await p.collection(s);
    await again.upsert([{ id: 'e', vector: vec([1, 1, 1]), metadata: { color: 'x', size: 1.25, even: true, price: 3 } }]);
    expect(indexes()).toEqual([]);
    const [hits] = await again.search([{ vector: vec([0, 0, 0]), k: 10, filter: { field: 'size', op: 'gt', value: 4.5 } }]);
    expect(hits.map((h) => h.id).sort()).toEqual(['c', 'd']);
  });

  it('refuses metadata field names Qdrant would read as paths, and the reserved id key', async () => {
    await expectCode(p.collection(specOf({ metadataFields: ['a.b'] })), 'NL_BAD_DEFINITION');
    await expectCode(p.collection(specOf({ metadataFields: [ID_KEY] })), 'NL_BAD_DEFINITION');
    const c = await p.collection(specOf());
    await expectCode(c.upsert([{ id: 'x', vector: vec([1, 1, 1]), metadata: { [ID_KEY]: 'y' } }]), 'NL_BAD_REQUEST');
  });

  it('recommends from positive and negative examples with Qdrant average_vector, excluding the examples', async () => {
    const s = specOf({ metric: 'dot', metadataFields: ['g'] });
    const c = await p.collection(s);
    const rand = mulberry32(5);
    const rows: VectorRecord[] = Array.from({ length: 40 }, (_, i) => ({
      id: `r${i}`,
      vector: vec([rand() - 0.5, rand() - 0.5, rand() - 0.5]),
      metadata: { g: i % 2 },
    }));
    await c.upsert(rows);
    const byId = new Map(rows.map((r) => [r.id, r.vector]));
    const extra = vec([0.3, -0.2, 0.9]);
    const [hits, filtered] = await p.searchExamples!(s.name, [
      { positive: ['r1', extra], negative: ['r2'], k: 5 },
      { positive: ['r3'], k: 3, filter: { field: 'g', op: 'eq', value: 0 }, exclude: ['r0'] },
    ]);
    const body = sent('POST /collections/{collection_name}/points/query/batch')[0].body as { searches: Array<{ query: unknown; filter?: unknown }> };
    expect(body.searches[0].query).toEqual({
      recommend: { positive: [pointId('r1'), Array.from(extra)], negative: [pointId('r2')], strategy: 'average_vector' },
    });
    const avgPos = [0, 1, 2].map((i) => (byId.get('r1')![i] + extra[i]) / 2);
    const target = avgPos.map((v, i) => v + (v - byId.get('r2')![i]));
    const expected = rows
      .filter((r) => r.id !== 'r1' && r.id !== 'r2')
      .map((r) => [r.id, r.vector[0] * target[0] + r.vector[1] * target[1] + r.vector[2] * target[2]] as const)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5);
    expect(hits.map((h) => h.id)).toEqual(expected.map(([id]) => id));
    hits.forEach((h, i) => expect(h.score).toBeCloseTo(expected[i][1], 4));
    expect(filtered).toHaveLength(3);
    expect(filtered.every((h) => Number(h.id.slice(1)) % 2 === 0 && h.id !== 'r0' && h.id !== 'r3')).toBe(true);
    await expectCode(p.searchExamples!(s.name, [{ positive: ['nope'], k: 3 }]), 'NL_ID_NOT_FOUND');
    await expectCode(p.searchExamples!(s.name, [{ positive: [], k: 3 }]), 'NL_BAD_REQUEST');
  });

  it('moves an alias atomically: delete and create in one request', async () => {
    const v1 = specOf();
    const v2 = specOf();
    await p.collection(v1);
    await p.collection(v2);
    const alias = `a${run}_prod`;
    await p.setAlias(alias, v1.name);
    expect((await p.listAliases())[alias]).toBe(v1.name);
    server.requests.length = 0;
    await p.setAlias(alias, v2.name);
    const updates = sent('POST /collections/aliases');
    expect(updates).toHaveLength(1);
    expect(updates[0].body).toEqual({
      actions: [{ delete_alias: { alias_name: alias } }, { create_alias: { alias_name: alias, collection_name: v2.name } }],
    });
    expect((await p.listAliases())[alias]).toBe(v2.name);
    await p.deleteAlias(alias);
    await p.deleteAlias(alias);
    expect((await p.listAliases())[alias]).toBeUndefined();
  });

  it('retries 503, 429 and reset connections with exponential backoff, then succeeds', async () => {
    const delays: number[] = [];
    const q = createQdrantProvider(
      { url: server.url, retries: 5, retryDelay: 100 },
      { name: 'vectors-q', home: '/x' },
      { sleep: async (ms) => void delays.push(ms) },
    );
    await q.open();
    const c = await q.collection(specOf());
    server.requests.length = 0;
    server.failNext(1, { status: 503 });
    server.failNext(1, { status: 429, retryAfter: 0 });
    server.failNext(1, { reset: true });
    server.failNext(1, { status: 429 });
    await c.upsert([{ id: 'a', vector: vec([1, 2, 3]) }]);
    expect(sent('PUT /collections/{collection_name}/points').map((r) => r.status)).toEqual([503, 429, 0, 429, 200]);
    expect(await c.count()).toBe(1);
    expect(delays).toHaveLength(4);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual((100 * 2 ** i) / 2);
      expect(d).toBeLessThanOrEqual(100 * 2 ** i);
    });
    await q.close();
  });

  it('gives up after the configured retries with NL_PROVIDER_ERROR naming the provider, and never retries other errors', async () => {
    const q = createQdrantProvider({ url: server.url, retries: 2, retryDelay: 1 }, { name: 'vectors-q', home: '/x' });
    await q.open();
    const c = await q.collection(specOf());
    server.requests.length = 0;
    server.failNext(3, { status: 503 });
    const e = await expectCode(c.count(), 'NL_PROVIDER_ERROR');
    expect(String((e as Error).message)).toMatch(/^provider vectors-q failed: qdrant count .*503 Service Unavailable after 3 attempts/);
    expect(server.requests).toHaveLength(3);
    server.requests.length = 0;
    server.failNext(1, { status: 500 });
    await expectCode(c.count(), 'NL_PROVIDER_ERROR');
    expect(server.requests).toHaveLength(1);
    expect(await c.count()).toBe(0);
    await q.close();
  });

  it('sends the api key to a Qdrant that requires one', async () => {
    const secured = await startQdrantTestServer({ apiKey: 's3cret' });
    // The client warns about an api key over plain http, which is what a loopback test uses.
    const quiet = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      const good = provider({ apiKey: 's3cret' }, secured.url);
      await good.open();
      const s = specOf();
      const c = await good.collection(s);
      expect(await c.count()).toBe(0);
      await good.dropCollection(s.name);
      const bad = provider({ apiKey: 'wrong' }, secured.url);
      const e = await expectCode(bad.open(), 'NL_PROVIDER_ERROR');
      expect(String((e as Error).message)).toContain('401');
      expect(secured.takeViolations()).toEqual([]);
    } finally {
      quiet.mockRestore();
      await secured.close();
    }
  });

  it('opens one connection in open() and reuses it; an unreachable Qdrant is a coded error', async () => {
    let connects = 0;
    const fake = { versionInfo: async () => ({ title: 'qdrant', version: '1.19.0' }) } as unknown as QdrantClientLike;
    const q = createQdrantProvider({}, { name: 'vectors-q', home: '/x' }, { connect: () => (connects++, fake) });
    await q.open();
    await q.open();
    expect(connects).toBe(1);
    const down = createQdrantProvider({ url: 'http://127.0.0.1:9', retries: 1, retryDelay: 1 }, { name: 'vectors-q', home: '/x' });
    await expectCode(down.open(), 'NL_PROVIDER_ERROR');
    expect(() => createQdrantProvider({ url: server.url, shards: 2 } as QdrantVectorOptions, { name: 'vectors-q', home: '/x' })).toThrow(/unknown option/);
  });
});

describe('filter translation', () => {
  const table: Array<[string, Filter, unknown]> = [
    ['eq string', { field: 'c', op: 'eq', value: 'red' }, { must: [{ key: 'c', match: { value: 'red' } }] }],
    ['eq integer', { field: 'n', op: 'eq', value: 3 }, { must: [{ key: 'n', match: { value: 3 } }] }],
    ['eq fraction', { field: 'n', op: 'eq', value: 2.5 }, { must: [{ key: 'n', range: { gte: 2.5, lte: 2.5 } }] }],
    ['eq boolean', { field: 'b', op: 'eq', value: false }, { must: [{ key: 'b', match: { value: false } }] }],
    ['eq null', { field: 'c', op: 'eq', value: null }, { must: [{ is_empty: { key: 'c' } }] }],
    ['ne', { field: 'c', op: 'ne', value: 'red' }, { must_not: [{ key: 'c', match: { value: 'red' } }] }],
    ['ne null', { field: 'c', op: 'ne', value: null }, { must_not: [{ is_empty: { key: 'c' } }] }],
    ['in strings', { field: 'c', op: 'in', value: ['a', 'b', 'a'] }, { must: [{ key: 'c', match: { any: ['a', 'b'] } }] }],
    ['in integers', { field: 'n', op: 'in', value: [1, 2] }, { must: [{ key: 'n', match: { any: [1, 2] } }] }],
    [
      'in mixed',
      { field: 'x', op: 'in', value: ['a', 1, true, 0.5, null] },
      {
        should: [
          { key: 'x', match: { value: 'a' } },
          { key: 'x', match: { value: 1 } },
          { key: 'x', match: { value: true } },
          { key: 'x', range: { gte: 0.5, lte: 0.5 } },
          { is_empty: { key: 'x' } },
        ],
      },
    ],
    ['in empty', { field: 'c', op: 'in', value: [] }, { must: [{ is_empty: { key: 'c' } }, { must_not: [{ is_empty: { key: 'c' } }] }] }],
    ['nin empty', { field: 'c', op: 'nin', value: [] }, { must_not: [{ must: [{ is_empty: { key: 'c' } }, { must_not: [{ is_empty: { key: 'c' } }] }] }] }],
    ['nin', { field: 'c', op: 'nin', value: ['a', 'b'] }, { must_not: [{ key: 'c', match: { any: ['a', 'b'] } }] }],
    ['gt', { field: 'n', op: 'gt', value: 1 }, { must: [{ key: 'n', range: { gt: 1 } }] }],
    ['gte', { field: 'n', op: 'gte', value: 1 }, { must: [{ key: 'n', range: { gte: 1 } }] }],
    ['lt', { field: 'n', op: 'lt', value: 1.5 }, { must: [{ key: 'n', range: { lt: 1.5 } }] }],
    ['lte', { field: 'n', op: 'lte', value: -1 }, { must: [{ key: 'n', range: { lte: -1 } }] }],
    [
      'and / or / not',
      {
        and: [
          {
            or: [
              { field: 'c', op: 'eq', value: 'a' },
              { field: 'n', op: 'lt', value: 2 },
            ],
          },
          { not: { field: 'b', op: 'eq', value: true } },
        ],
      },
      {
        must: [
          {
            should: [
              { key: 'c', match: { value: 'a' } },
              { key: 'n', range: { lt: 2 } },
            ],
          },
          { must_not: [{ key: 'b', match: { value: true } }] },
        ],
      },
    ],
  ];
  for (const [name, filter, expected] of table) {
    it(`${name} -> ${JSON.stringify(expected)}`, () => {
      expect(toQdrantFilter(filter)).toEqual(expected);
      const doc = loadQdrantOpenApi();
      if (doc) {
        const body = { searches: [{ query: [0], filter: toQdrantFilter(filter), limit: 1 }] };
        expect(
          doc.checkRequest({ method: 'POST', path: '/collections/c/points/query/batch', query: new URLSearchParams(), contentType: 'application/json', body })
            .errors,
        ).toEqual([]);
      }
    });
  }

  it('rejects what Qdrant cannot express (string ranges) with NL_BAD_FILTER, before sending anything', async () => {
    expect(() => toQdrantFilter({ field: 'c', op: 'gt', value: 'm' })).toThrow(expect.objectContaining({ code: 'NL_BAD_FILTER' }));
    const p = provider();
    await p.open();
    const s: CollectionSpec = { name: uniqueName(), dims: 1, metric: 'l2', index: {}, metadataFields: ['c'] };
    const c = await p.collection(s);
    server.requests.length = 0;
    await expectCode(c.search([{ vector: vec([0]), k: 1, filter: { field: 'c', op: 'lte', value: 'm' } }]), 'NL_BAD_FILTER');
    expect(server.requests).toHaveLength(0);
    await p.dropCollection(s.name);
    await p.close();
  });

  it(`agrees with compileFilter on random filters over nulls, missing fields, booleans and fractions (${REAL_URL ? 'real Qdrant' : 'test server'})`, async () => {
    const rand = mulberry32(2024);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const pool: Record<string, readonly Scalar[]> = { s: ['a', 'b', 'c', null], n: [0, 1, 2, 2.5, -1, null], b: [true, false, null] };
    const fields = Object.keys(pool);
    const rows: VectorRecord[] = Array.from({ length: 60 }, (_, i) => {
      const metadata: Metadata = {};
      for (const f of fields) if (rand() < 0.8) metadata[f] = pick(pool[f]);
      return { id: `m${i}`, vector: vec([i]), metadata };
    });
    const leaf = (): Filter => {
      const field = pick(fields);
      const op = field === 'n' ? pick(['eq', 'ne', 'in', 'nin', 'gt', 'gte', 'lt', 'lte'] as const) : pick(['eq', 'ne', 'in', 'nin'] as const);
      const values = pool[field].filter((v) => v !== null || (op !== 'gt' && op !== 'gte' && op !== 'lt' && op !== 'lte'));
      const value = op === 'in' || op === 'nin' ? values.filter(() => rand() < 0.5) : pick(values);
      return { field, op, value } as Filter;
    };
    const random = (depth: number): Filter => {
      const r = rand();
      if (depth > 2 || r < 0.5) return leaf();
      if (r < 0.7) return { and: [random(depth + 1), random(depth + 1)] };
      if (r < 0.9) return { or: [random(depth + 1), random(depth + 1)] };
      return { not: random(depth + 1) };
    };
    const p = REAL_URL ? provider({ collectionPrefix: `nltest_${run}_` }, REAL_URL) : provider();
    await p.open();
    const s: CollectionSpec = { name: uniqueName(), dims: 1, metric: 'l2', index: {}, metadataFields: fields };
    try {
      const c = await p.collection(s);
      await c.upsert(rows);
      const filters = Array.from({ length: 120 }, () => validateFilter(random(0), fields));
      const results = await c.search(filters.map((filter) => ({ vector: vec([0]), k: rows.length, filter })));
      filters.forEach((filter, i) => {
        const keep = compileFilter(filter);
        const expected = rows.filter((r) => keep(r.metadata)).map((r) => r.id);
        expect(
          results[i].map((h) => h.id),
          JSON.stringify(filter),
        ).toEqual(expected);
      });
    } finally {
      await p.dropCollection(s.name);
      await p.close();
    }
  });
});
