import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { FeatureStore } from '../../src/store/feature-store.ts';
import { build } from '../../src/server/app.ts';
import { DIMS, exactCosine, makeHome, openApp, type Item } from './fixture.ts';

let home: string;
let items: Item[];
let app: FastifyInstance;
let store: FeatureStore;
let closeApp: () => Promise<void>;
let cleanup: () => void;

beforeAll(async () => {
  ({ home, items, cleanup } = await makeHome());
  ({ app, store, close: closeApp } = await openApp(home));
});

afterAll(async () => {
  await closeApp?.();
  cleanup?.();
});

const byId = (id: string) => items.find((i) => i.id === id)!;
const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));

async function call(opts: InjectOptions) {
  const res = await app.inject(opts);
  return { status: res.statusCode, body: res.headers['content-type']?.toString().startsWith('application/json') ? res.json() : res.body, headers: res.headers };
}

const nearest = (payload: object) => call({ method: 'POST', url: '/v1/nearest', payload });
const ids = (hits: Array<{ id: string }>) => hits.map((h) => h.id);

function expectError(res: { status: number; body: any }, status: number, code: string) {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(typeof res.body.error.message).toBe('string');
  expect(res.body.error.message.length).toBeGreaterThan(0);
}

describe('POST /v1/nearest', () => {
  it('answers a vector query with the exact neighbours, from the prod alias, scores descending', async () => {
    const q = byId('i10').vec;
    const res = await nearest({ feature: 'item_vec', k: 5, query: { vector: q } });
    expect(res.status).toBe(200);
    expect(res.body.feature).toBe('item_vec');
    expect(res.body.variant).toBe('v1');
    expect(ids(res.body.hits)).toEqual(exactCosine(items, q, 5));
    const scores = res.body.hits.map((h: { score: number }) => h.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    expect(scores[0]).toBeCloseTo(1, 5);
    expect(res.body.hits[0]).not.toHaveProperty('vector');
    expect(res.body.hits[0]).not.toHaveProperty('features');
    expect(typeof res.body.took_ms).toBe('number');
  });

  it('defaults k to 10', async () => {
    const res = await nearest({ feature: 'item_vec', query: { id: 'i3' } });
    expect(res.body.hits).toHaveLength(10);
  });

  it('answers an id query with that entity excluded', async () => {
    const res = await nearest({ feature: 'item_vec', k: 5, query: { id: 'i7' } });
    expect(res.status).toBe(200);
    expect(ids(res.body.hits)).toEqual(exactCosine(items, byId('i7').vec, 5, ['i7']));
  });

  it('embeds a text query with the feature model: same hits as the vector /v1/embed returns', async () => {
    const text = 'red shoe lamp';
    const res = await nearest({ feature: 'doc_vec', k: 4, query: { text } });
    expect(res.status).toBe(200);
    expect(res.body.hits).toHaveLength(4);
    const emb = await call({ method: 'POST', url: '/v1/embed', payload: { model: 'tiny@1', texts: [text] } });
    const byVector = await nearest({ feature: 'doc_vec', k: 4, query: { vector: emb.body.vectors[0] } });
    expect(ids(res.body.hits)).toEqual(ids(byVector.body.hits));
  });

  it('answers positive/negative examples, mixing ids and vectors, excluding the example ids', async () => {
    const single = await nearest({ feature: 'item_vec', k: 5, query: { positive: ['i7'] } });
    expect(single.status).toBe(200);
    expect(ids(single.body.hits)).toEqual(exactCosine(items, byId('i7').vec, 5, ['i7']));

    const p = [byId('i1').vec, byId('i2').vec];
    const n = byId('i3').vec;
    const res = await nearest({ feature: 'item_vec', k: 5, query: { positive: ['i1', p[1]], negative: ['i3'] } });
    expect(res.status).toBe(200);
    // Cosine features store unit vectors, so examples given by id weigh in normalized; given vectors as sent.
    const avg = unit(p[0]).map((x, i) => (x + p[1][i]) / 2);
    const target = avg.map((x, i) => 2 * x - unit(n)[i]);
    expect(ids(res.body.hits)).toEqual(exactCosine(items, target, 5, ['i1', 'i3']));
  });

  it('applies a metadata filter and still returns k hits', async () => {
    const res = await nearest({
      feature: 'item_vec',
      k: 8,
      query: { id: 'i1' },
      filter: {
        and: [
          { field: 'lang', op: 'eq', value: 'fr' },
          { field: 'bucket', op: 'lt', value: 5 },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.hits).toHaveLength(8);
    for (const h of res.body.hits) expect([byId(h.id).lang, byId(h.id).bucket < 5]).toEqual(['fr', true]);
    const allowed = items.filter((i) => i.lang === 'fr' && i.bucket < 5);
    expect(ids(res.body.hits)).toEqual(exactCosine(allowed, byId('i1').vec, 8, ['i1']));
  });

  it('leaves out excluded ids', async () => {
    const plain = await nearest({ feature: 'item_vec', k: 5, query: { id: 'i1' } });
    const drop = ids(plain.body.hits).slice(0, 2);
    const res = await nearest({ feature: 'item_vec', k: 5, query: { id: 'i1' }, exclude: drop });
    expect(ids(res.body.hits)).toEqual(exactCosine(items, byId('i1').vec, 5, ['i1', ...drop]));
  });

  it('accepts ef up to the store limit', async () => {
    const res = await nearest({ feature: 'item_vec', k: 5, ef: 300, query: { id: 'i1' } });
    expect(res.status).toBe(200);
    expect(ids(res.body.hits)).toEqual(exactCosine(items, byId('i1').vec, 5, ['i1']));
  });

  it('returns vectors and joins scalar and vector features for two-stage ranking', async () => {
    const res = await nearest({
      feature: 'item_vec',
      k: 3,
      query: { id: 'i4' },
      include: { vectors: true, features: ['item_price', 'item_title@v1', 'item_vec@v2'] },
    });
    expect(res.status).toBe(200);
    for (const h of res.body.hits) {
      const item = byId(h.id);
      expect(h.vector).toHaveLength(DIMS);
      unit(item.vec).forEach((x, i) => expect(h.vector[i]).toBeCloseTo(x, 5));
      expect(h.features.item_price).toBeCloseTo(item.price, 5);
      expect(h.features['item_title@v1']).toBe(item.title);
      expect(h.features['item_vec@v2']).toHaveLength(DIMS);
    }
  });

  it('re-ranks with MMR: lambda 1 keeps relevance order, a low lambda trades it for diversity', async () => {
    const base = await nearest({ feature: 'item_vec', k: 6, query: { id: 'i9' } });
    const pure = await nearest({ feature: 'item_vec', k: 6, query: { id: 'i9' }, diversity: { lambda: 1 } });
    expect(ids(pure.body.hits)).toEqual(ids(base.body.hits));
    const diverse = await nearest({ feature: 'item_vec', k: 6, query: { id: 'i9' }, diversity: { lambda: 0.2 } });
    expect(diverse.status).toBe(200);
    expect(diverse.body.hits).toHaveLength(6);
    expect(new Set(ids(diverse.body.hits)).size).toBe(6);
    expect(diverse.body.hits[0].id).toBe(base.body.hits[0].id);
    expect(ids(diverse.body.hits)).not.toEqual(ids(base.body.hits));
    expect(diverse.body.hits[0]).not.toHaveProperty('vector');
  });

  it('names the variant that served: an explicit variant, and an alias', async () => {
    const v2 = await nearest({ feature: 'item_vec@v2', k: 3, query: { vector: byId('i5').vec } });
    expect(v2.body.variant).toBe('v2');
    // l2: negative distance; the item itself is at distance 0.
    expect(v2.body.hits[0].score).toBeCloseTo(0, 5);
    for (const h of v2.body.hits) expect(h.score).toBeLessThanOrEqual(0);
    const prod = await nearest({ feature: 'item_vec@prod', k: 3, query: { id: 'i5' } });
    expect(prod.body.variant).toBe('v1');
  });

  it.each([
    [{ feature: 'nope', k: 3, query: { id: 'i1' } }, 404, 'NL_FEATURE_NOT_FOUND'],
    [{ feature: 'item_vec@v9', k: 3, query: { id: 'i1' } }, 404, 'NL_FEATURE_NOT_FOUND'],
    [{ feature: 'item_price', k: 3, query: { id: 'i1' } }, 422, 'NL_UNSUPPORTED'],
    [{ feature: 'item_vec', k: 3, query: { id: 'missing' } }, 404, 'NL_ID_NOT_FOUND'],
    [{ feature: 'item_vec', k: 3, query: { vector: [1, 2, 3] } }, 400, 'NL_DIMENSION_MISMATCH'],
    [{ feature: 'item_vec', k: 3, query: { vector: new Array(DIMS).fill(1e39) } }, 400, 'NL_BAD_VECTOR'],
    [{ feature: 'item_vec', k: 3, query: { text: 'hello' } }, 422, 'NL_UNSUPPORTED'],
    [{ feature: 'item_vec', k: 3, query: { id: 'i1' }, filter: { field: 'price', op: 'eq', value: 1 } }, 400, 'NL_BAD_FILTER'],
    [{ feature: 'item_vec', k: 3, query: { id: 'i1' }, filter: { field: 'lang', op: 'like', value: 'x' } }, 400, 'NL_BAD_FILTER'],
    [{ feature: 'item_vec', k: 3, query: { id: 'i1' }, include: { features: ['nope'] } }, 404, 'NL_FEATURE_NOT_FOUND'],
    [{ feature: 'item_vec', k: 1001, query: { id: 'i1' } }, 400, 'NL_LIMIT_EXCEEDED'],
    [{ feature: 'item_vec', k: 3, ef: 5000, query: { id: 'i1' } }, 400, 'NL_LIMIT_EXCEEDED'],
    [{ feature: 'item_vec', k: 0, query: { id: 'i1' } }, 400, 'NL_BAD_REQUEST'],
    [{ feature: 'item_vec', k: 2.5, query: { id: 'i1' } }, 400, 'NL_BAD_REQUEST'],
    [{ feature: 'item_vec', k: '3', query: { id: 'i1' } }, 400, 'NL_BAD_REQUEST'],
    [{ feature: 'item_vec', k: 3, query: { id: 'i1', text: 'x' } }, 400, 'NL_BAD_REQUEST'],
    [{ feature: 'item_vec', k: 3, query: {} }, 400, 'NL_BAD_REQUEST'],
    [{ feature: 'item_vec', k: 3, query: { positive: [] } }, 400, 'NL_BAD_REQUEST'],
    [{ feature: 'item_vec', k: 3, query: { id: 'i1' }, diversity: { lambda: 2 } }, 400, 'NL_LIMIT_EXCEEDED'],
    [{ feature: 'item_vec', k: 3, query: { id: 'i1' }, filters: {} }, 400, 'NL_BAD_REQUEST'],
    [{ k: 3, query: { id: 'i1' } }, 400, 'NL_BAD_REQUEST'],
  ])('rejects %j with %i %s', async (payload, status, code) => {
    expectError(await nearest(payload), status, code);
  });

  it('names the query forms when the query fits none', async () => {
    const res = await nearest({ feature: 'item_vec', query: { vector: [1], id: 'x' } });
    expect(res.body.error.message).toMatch(/\{vector\}, \{id\}, \{text\}, \{positive, negative\?\}/);
  });
});

describe('concurrent /v1/nearest calls', () => {
  it('are answered as one store batch, each with its own result, and a bad one fails alone', async () => {
    const spy = vi.spyOn(store, 'nearestMany');
    try {
      const queries = Array.from({ length: 12 }, (_, i) => ({ id: `i${i * 3}` }));
      const payloads: object[] = queries.map((query) => ({ feature: 'item_vec', k: 4, query }));
      payloads.splice(5, 0, { feature: 'item_vec', k: 4, query: { id: 'missing' } });
      payloads.splice(9, 0, { feature: 'item_vec', k: 4, query: { vector: [1, 2] } });
      const results = await Promise.all(payloads.map((p) => nearest(p)));
      expectError(results[5], 404, 'NL_ID_NOT_FOUND');
      expectError(results[9], 400, 'NL_DIMENSION_MISMATCH');
      const good = results.filter((_, i) => i !== 5 && i !== 9);
      good.forEach((r, i) => {
        expect(r.status).toBe(200);
        expect(ids(r.body.hits)).toEqual(exactCosine(items, byId(queries[i].id).vec, 4, [queries[i].id]));
      });
      expect(Math.max(...spy.mock.calls.map((c) => c[1].length))).toBeGreaterThan(1);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('POST /v1/nearest/batch', () => {
  it('answers each query in order, as the single endpoint does', async () => {
    const queries = [{ id: 'i1' }, { vector: byId('i20').vec }, { positive: ['i2', 'i3'] }, { id: 'i40' }];
    const res = await call({ method: 'POST', url: '/v1/nearest/batch', payload: { feature: 'item_vec', k: 4, queries } });
    expect(res.status).toBe(200);
    expect(res.body.variant).toBe('v1');
    expect(res.body.results).toHaveLength(queries.length);
    for (let i = 0; i < queries.length; i++) {
      const single = await nearest({ feature: 'item_vec', k: 4, query: queries[i] });
      expect(ids(res.body.results[i].hits)).toEqual(ids(single.body.hits));
    }
  });

  it('applies filter and include to every query', async () => {
    const res = await call({
      method: 'POST',
      url: '/v1/nearest/batch',
      payload: {
        feature: 'item_vec',
        k: 3,
        queries: [{ id: 'i1' }, { id: 'i2' }],
        filter: { field: 'lang', op: 'eq', value: 'en' },
        include: { features: ['item_price'] },
      },
    });
    expect(res.status).toBe(200);
    for (const r of res.body.results) {
      expect(r.hits).toHaveLength(3);
      for (const h of r.hits) {
        expect(byId(h.id).lang).toBe('en');
        expect(h.features.item_price).toBeCloseTo(byId(h.id).price, 5);
      }
    }
  });

  it('refuses more than 1024 queries, an empty batch, and fails whole when one query is bad', async () => {
    const many = Array.from({ length: 1025 }, () => ({ id: 'i1' }));
    expectError(await call({ method: 'POST', url: '/v1/nearest/batch', payload: { feature: 'item_vec', k: 1, queries: many } }), 400, 'NL_LIMIT_EXCEEDED');
    expectError(await call({ method: 'POST', url: '/v1/nearest/batch', payload: { feature: 'item_vec', k: 1, queries: [] } }), 400, 'NL_BAD_REQUEST');
    expectError(
      await call({ method: 'POST', url: '/v1/nearest/batch', payload: { feature: 'item_vec', k: 1, queries: [{ id: 'i1' }, { id: 'zz' }] } }),
      404,
      'NL_ID_NOT_FOUND',
    );
  });
});

describe('POST /v1/online', () => {
  it('returns scalars and vectors per id, null where absent', async () => {
    const res = await call({ method: 'POST', url: '/v1/online', payload: { ids: ['i8', 'ghost'], features: ['item_price', 'item_title', 'item_vec'] } });
    expect(res.status).toBe(200);
    const [row, ghost] = res.body.rows;
    expect(row.id).toBe('i8');
    expect(row.features.item_price).toBeCloseTo(byId('i8').price, 5);
    expect(row.features.item_title).toBe(byId('i8').title);
    unit(byId('i8').vec).forEach((x, i) => expect(row.features.item_vec[i]).toBeCloseTo(x, 5));
    expect(ghost).toEqual({ id: 'ghost', features: { item_price: null, item_title: null, item_vec: null } });
  });

  it('rejects unknown features and empty feature lists', async () => {
    expectError(await call({ method: 'POST', url: '/v1/online', payload: { ids: ['i1'], features: ['nope'] } }), 404, 'NL_FEATURE_NOT_FOUND');
    expectError(await call({ method: 'POST', url: '/v1/online', payload: { ids: ['i1'], features: [] } }), 400, 'NL_BAD_REQUEST');
  });
});

describe('POST /v1/embed', () => {
  it('embeds texts with a registered model', async () => {
    const res = await call({ method: 'POST', url: '/v1/embed', payload: { model: 'tiny@1', texts: ['red shoe', 'blue lamp'] } });
    expect(res.status).toBe(200);
    expect(res.body.model).toBe('tiny@1');
    expect(res.body.dims).toBe(32);
    expect(res.body.vectors).toHaveLength(2);
    for (const v of res.body.vectors) expect(Math.hypot(...v)).toBeCloseTo(1, 4);
    expect(res.body.vectors[0]).not.toEqual(res.body.vectors[1]);
  });

  it('enforces texts per call and text length, and knows its models', async () => {
    const post = (payload: object) => call({ method: 'POST', url: '/v1/embed', payload });
    expectError(await post({ model: 'tiny@1', texts: Array.from({ length: 257 }, () => 'x') }), 400, 'NL_LIMIT_EXCEEDED');
    expectError(await post({ model: 'tiny@1', texts: ['x'.repeat(20_001)] }), 400, 'NL_LIMIT_EXCEEDED');
    expectError(await post({ model: 'tiny@1', texts: ['   '] }), 400, 'NL_BAD_TEXT');
    expectError(await post({ model: 'tiny@2', texts: ['x'] }), 404, 'NL_MODEL_NOT_FOUND');
    expectError(await post({ model: 'tiny', texts: ['x'] }), 400, 'NL_BAD_REQUEST');
  });
});

describe('PUT /v1/features/:feature/vectors', () => {
  const put = (feature: string, payload: object) => call({ method: 'PUT', url: `/v1/features/${feature}/vectors`, payload });

  it('upserts and deletes, and the index serves the change', async () => {
    const v = [0.9, -0.1, 0.3, 0.3, -0.7, 0.2, 0.05, 0.4];
    const res = await put('item_vec@v2', { upserts: [{ id: 'fresh', vector: v, metadata: { lang: 'de', bucket: 3 } }], deletes: ['i299'] });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ feature: 'item_vec', variant: 'v2', upserted: 1, deleted: 1, offset: 2 });
    const q = await nearest({ feature: 'item_vec@v2', k: 1, query: { vector: v }, filter: { field: 'lang', op: 'eq', value: 'de' } });
    expect(ids(q.body.hits)).toEqual(['fresh']);
    expectError(await nearest({ feature: 'item_vec@v2', k: 1, query: { id: 'i299' } }), 404, 'NL_ID_NOT_FOUND');
    const reg = await call({ method: 'GET', url: '/v1/registry/features/item_vec@v2' });
    expect(reg.body.features[0].rows).toBe(300);
  });

  it('writes nothing when any item is bad', async () => {
    const good = { id: 'never1', vector: new Array(DIMS).fill(0.5) };
    const bad = [
      { id: 'never2', vector: [1, 2] },
      { id: 'never2', vector: new Array(DIMS).fill(0.5), metadata: { color: 'red' } },
      { id: 'never2', text: 'item_vec has no model' },
    ];
    for (const b of bad) {
      const res = await put('item_vec@v2', { upserts: [good, b], deletes: ['i1'] });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
    expectError(await nearest({ feature: 'item_vec@v2', k: 1, query: { id: 'never1' } }), 404, 'NL_ID_NOT_FOUND');
    expect((await nearest({ feature: 'item_vec@v2', k: 1, query: { id: 'i1' } })).status).toBe(200);
  });

  it('embeds text upserts for a text feature', async () => {
    const res = await put('doc_vec', { upserts: [{ id: 'doc-new', text: 'green phone cable', metadata: { lang: 'en' } }] });
    expect(res.status).toBe(200);
    const q = await nearest({ feature: 'doc_vec', k: 1, query: { text: 'green phone cable' } });
    expect(q.body.hits[0]).toMatchObject({ id: 'doc-new' });
    expect(q.body.hits[0].score).toBeCloseTo(1, 4);
  });

  it('refuses scalar features, unknown features and too many upserts', async () => {
    expectError(await put('item_price', { upserts: [{ id: 'x', vector: [1] }] }), 422, 'NL_UNSUPPORTED');
    expectError(await put('nope', { deletes: ['x'] }), 404, 'NL_FEATURE_NOT_FOUND');
    const many = Array.from({ length: 10_001 }, (_, i) => ({ id: `m${i}`, vector: [1, 0, 0, 0, 0, 0, 0, 0] }));
    expectError(await put('item_vec@v2', { upserts: many }), 400, 'NL_LIMIT_EXCEEDED');
  });
});

describe('GET /v1/registry', () => {
  it('lists features with their aliases, and one feature by name, variant or alias', async () => {
    const all = await call({ method: 'GET', url: '/v1/registry/features' });
    expect(all.status).toBe(200);
    expect(all.body.features.map((f: { name: string; variant: string }) => `${f.name}@${f.variant}`).sort()).toEqual(
      ['doc_vec@v1', 'item_price@v1', 'item_title@v1', 'item_vec@v1', 'item_vec@v2', 'other_vec@v1'].sort(),
    );
    const one = await call({ method: 'GET', url: '/v1/registry/features/item_vec' });
    expect(one.body.features.map((f: { variant: string }) => f.variant)).toEqual(['v1', 'v2']);
    expect(one.body.features[0]).toMatchObject({
      kind: 'embedding',
      dims: DIMS,
      metric: 'cosine',
      status: 'materialized',
      aliases: ['prod'],
      metadata: ['lang', 'bucket'],
    });
    const alias = await call({ method: 'GET', url: '/v1/registry/features/item_vec@prod' });
    expect(alias.body.features.map((f: { variant: string }) => f.variant)).toEqual(['v1']);
    expectError(await call({ method: 'GET', url: '/v1/registry/features/nope' }), 404, 'NL_FEATURE_NOT_FOUND');
  });

  it('lists models without their server paths', async () => {
    const res = await call({ method: 'GET', url: '/v1/registry/models' });
    expect(res.body.models).toHaveLength(1);
    expect(res.body.models[0]).toMatchObject({ name: 'tiny', version: '1', runtime: 'onnx', dims: 32 });
    expect(res.body.models[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(res.body.models[0]).not.toHaveProperty('path');
    expect((await call({ method: 'GET', url: '/v1/registry/models/tiny@1' })).body.models).toHaveLength(1);
    expectError(await call({ method: 'GET', url: '/v1/registry/models/nope' }), 404, 'NL_MODEL_NOT_FOUND');
  });

  it('lists aliases, all and per feature', async () => {
    const all = await call({ method: 'GET', url: '/v1/registry/aliases' });
    expect(all.body.aliases).toEqual([expect.objectContaining({ feature: 'item_vec', name: 'prod', variant: 'v1' })]);
    const one = await call({ method: 'GET', url: '/v1/registry/aliases/item_vec' });
    expect(one.body.aliases).toHaveLength(1);
    expect((await call({ method: 'GET', url: '/v1/registry/aliases/doc_vec' })).body.aliases).toEqual([]);
    expectError(await call({ method: 'GET', url: '/v1/registry/aliases/nope' }), 404, 'NL_FEATURE_NOT_FOUND');
  });
});

describe('ops endpoints', () => {
  it('healthz and readyz', async () => {
    expect(await call({ method: 'GET', url: '/healthz' })).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await call({ method: 'GET', url: '/readyz' })).toMatchObject({ status: 200, body: { status: 'ready', failed: [] } });
  });

  it('readyz is 503 until the indexes are loaded', async () => {
    const slow = await build({ store, warm: true });
    let release!: () => void;
    const spy = vi.spyOn(store, 'collection').mockImplementation(() => new Promise((r) => (release = () => r(undefined as never))));
    try {
      await slow.ready();
      expect((await slow.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
      release();
      await new Promise((r) => setTimeout(r, 20));
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
      await slow.close();
    }
  });

  it('metrics: latency per route and feature, index sizes, errors by code', async () => {
    await nearest({ feature: 'item_vec', k: 2, query: { id: 'i1' } });
    await nearest({ feature: 'nope', k: 2, query: { id: 'i1' } });
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = res.body;
    expect(text).toMatch(/# TYPE nearline_http_request_duration_seconds histogram/);
    // prom-client writes `le` first; Prometheus does not care about label order.
    expect(text).toMatch(
      /nearline_http_request_duration_seconds_bucket\{le="0\.005",method="POST",route="\/v1\/nearest",feature="item_vec@v1",status="200"\} \d+/,
    );
    expect(text).toMatch(/nearline_http_request_duration_seconds_count\{method="POST",route="\/v1\/nearest",feature="",status="404"\} [1-9]/);
    expect(text).toMatch(/nearline_index_rows\{feature="item_vec",variant="v1"\} 300\n/);
    expect(text).toMatch(/nearline_http_errors_total\{code="NL_FEATURE_NOT_FOUND"\} [1-9]/);
    expect(text).toMatch(/nearline_lane_queued\{lane="search"\} 0/);
    expect(text).toMatch(/nearline_event_loop_delay_p99_seconds \d/);
    // prom-client's default process metrics sit beside nearline's own.
    expect(text).toMatch(/\nprocess_resident_memory_bytes [1-9]\d*\n/);
    expect(text).toMatch(/\nprocess_cpu_seconds_total \d/);
    expect(text).toMatch(/\nnodejs_eventloop_lag_p99_seconds \d/);
    expect(text).toMatch(/# TYPE nodejs_gc_duration_seconds histogram/);
    expect(text.match(/^# TYPE (\S+)/gm)!.length).toBe(new Set(text.match(/^# TYPE (\S+)/gm)).size);
  });

  it('serves the OpenAPI document and the docs UI', async () => {
    const spec = await call({ method: 'GET', url: '/docs/json' });
    expect(spec.status).toBe(200);
    expect(spec.body.openapi).toMatch(/^3\./);
    for (const p of [
      '/v1/nearest',
      '/v1/nearest/batch',
      '/v1/online',
      '/v1/embed',
      '/v1/features/{feature}/vectors',
      '/v1/registry/features',
      '/healthz',
      '/metrics',
    ]) {
      expect(Object.keys(spec.body.paths)).toContain(p);
    }
    const op = spec.body.paths['/v1/nearest'].post;
    expect(op.requestBody.content['application/json'].schema.properties.query.oneOf).toHaveLength(4);
    expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['200', '4XX', '5XX']));
    const ui = await app.inject({ method: 'GET', url: '/docs/' });
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toMatch(/swagger/i);
  });
});

describe('the one error format', () => {
  it('unknown routes', async () => {
    expectError(await call({ method: 'GET', url: '/v1/nothing' }), 404, 'NL_NOT_FOUND');
    expectError(await call({ method: 'DELETE', url: '/v1/nearest' }), 404, 'NL_NOT_FOUND');
  });

  it('bodies that are not JSON objects, or carry prototype keys', async () => {
    const raw = (payload: string, type = 'application/json') => call({ method: 'POST', url: '/v1/nearest', payload, headers: { 'content-type': type } });
    expectError(await raw('{"feature": '), 400, 'NL_BAD_REQUEST');
    expectError(await raw(''), 400, 'NL_BAD_REQUEST');
    expectError(await raw('[1,2]'), 400, 'NL_BAD_REQUEST');
    expectError(await raw('hello', 'text/plain'), 400, 'NL_BAD_REQUEST');
    expectError(await raw('<a/>', 'application/xml'), 400, 'NL_BAD_REQUEST');
    expectError(await raw('{"feature":"item_vec","query":{"id":"i1"},"__proto__":{"polluted":1}}'), 400, 'NL_BAD_REQUEST');
    expectError(await raw('{"feature":"item_vec","query":{"id":"i1"},"constructor":{"prototype":{"polluted":1}}}'), 400, 'NL_BAD_REQUEST');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('bodies over 8 MiB', async () => {
    const payload = JSON.stringify({ feature: 'item_vec', query: { id: 'x'.repeat(8 * 1024 * 1024) } });
    expectError(await call({ method: 'POST', url: '/v1/nearest', payload, headers: { 'content-type': 'application/json' } }), 413, 'NL_PAYLOAD_TOO_LARGE');
  });

  it('unexpected errors: 500 NL_INTERNAL without the internals', async () => {
    const spy = vi.spyOn(store, 'nearestMany').mockRejectedValueOnce(new TypeError('secret internals'));
    try {
      const res = await nearest({ feature: 'item_vec', k: 1, query: { id: 'i1' } });
      expectError(res, 500, 'NL_INTERNAL');
      expect(res.body.error.message).not.toMatch(/secret/);
    } finally {
      spy.mockRestore();
    }
    expect((await nearest({ feature: 'item_vec', k: 1, query: { id: 'i1' } })).status).toBe(200);
  });

  it('a full queue answers 503 NL_OVERLOADED with Retry-After', async () => {
    const tight = await build({ store, warm: false, heavy: { concurrency: 1, queue: 1 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const real = store.nearestMany.bind(store);
    const spy = vi.spyOn(store, 'nearestMany').mockImplementation(async (...args) => {
      await gate;
      return real(...args);
    });
    try {
      const heavy = { feature: 'item_vec', k: 150, query: { id: 'i1' } };
      const first = tight.inject({ method: 'POST', url: '/v1/nearest', payload: heavy });
      const second = tight.inject({ method: 'POST', url: '/v1/nearest', payload: heavy });
      await new Promise((r) => setTimeout(r, 20));
      const third = await tight.inject({ method: 'POST', url: '/v1/nearest', payload: heavy });
      expect(third.statusCode).toBe(503);
      expect(third.json().error.code).toBe('NL_OVERLOADED');
      expect(third.headers['retry-after']).toBe('1');
      // Cheap queries have their own lane and still pass while the heavy one is full.
      spy.mockImplementation(real);
      const cheap = await tight.inject({ method: 'POST', url: '/v1/nearest', payload: { feature: 'item_vec', k: 3, query: { id: 'i1' } } });
      expect(cheap.statusCode).toBe(200);
      release();
      expect((await first).statusCode).toBe(200);
      expect((await second).statusCode).toBe(200);
    } finally {
      release();
      spy.mockRestore();
      await tight.close();
    }
  });
});
