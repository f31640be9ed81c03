import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeatureStore } from '../../src/store/feature-store.ts';
import { DIMS, makeHome, openApp, seeded, type Item } from './fixture.ts';

let app: FastifyInstance;
let store: FeatureStore;
let items: Item[];
let close: () => Promise<void>;
let cleanup: () => void;

beforeAll(async () => {
  const made = await makeHome();
  ({ items, cleanup } = made);
  ({ app, store, close } = await openApp(made.home));
});

afterAll(async () => {
  await close?.();
  cleanup?.();
});

const REQUESTS = 600;

/** Hostile and malformed requests from a seeded generator: the same sequence on every run. */
function generator(seed: number) {
  const rnd = seeded(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(list: readonly T[]): T => list[int(list.length)];
  const vec = (n = DIMS) => Array.from({ length: n }, () => rnd() - 0.5);

  const weirdNumbers = [-1, 0, 1.5, 1e9, -1e308, 1e308, 2 ** 53 + 1, 'NaN', 'Infinity', '-Infinity', '10', null, true, [], {}, '1e400'];
  const weirdStrings = [
    '',
    ' ',
    'nope',
    '@',
    'item_vec@',
    '@v1',
    'item_vec@@v1',
    'a'.repeat(300),
    '../../etc/passwd',
    'item_price',
    '\u0000',
    '💥',
    '__proto__',
    'constructor',
  ];
  const anything = (): unknown =>
    pick([() => pick(weirdNumbers), () => pick(weirdStrings), () => vec(int(20)), () => ({ a: pick(weirdNumbers) }), () => null, () => [[[]]]])();

  const deep = (depth: number, leaf: unknown): unknown => {
    let x = leaf;
    for (let i = 0; i < depth; i++) x = pick(['not', 'and', 'or']) === 'not' ? { not: x } : { [pick(['and', 'or'])]: [x] };
    return x;
  };

  const filter = (): unknown =>
    pick([
      () => ({
        field: pick(['lang', 'bucket', 'price', '__proto__', '', 'constructor']),
        op: pick(['eq', 'ne', 'in', 'like', '', 'gt', 'nin']),
        value: anything(),
      }),
      () => ({ and: [] }),
      () => ({ or: 'lang' }),
      () => ({ not: null }),
      () => ({ field: 'lang', op: 'in', value: Array.from({ length: int(5000) }, () => pick(weirdStrings)) }),
      () => deep(10 + int(3000), { field: 'lang', op: 'eq', value: 'en' }),
      () => ({ and: [{ field: 'lang', op: 'eq', value: 'en' }], or: [] }),
      () => ({ field: 'bucket', op: 'gt', value: 'NaN' }),
      () => [],
      () => 'lang = en',
    ])();

  const query = (): unknown =>
    pick([
      () => ({ vector: vec(int(3) === 0 ? DIMS + int(5) - 2 : DIMS) }),
      () => ({ vector: vec().map((x, i) => (i === int(DIMS) ? pick(weirdNumbers) : x)) }),
      () => ({ vector: Array.from({ length: 10_000 }, () => 0.1) }),
      () => ({ vector: [vec()] }),
      () => ({ vector: new Array(DIMS).fill(1e39) }),
      () => ({ vector: new Array(DIMS).fill(0) }),
      () => ({ id: pick([...weirdStrings, 123, null, ['i1']]) }),
      () => ({ id: `i${int(400)}` }),
      () => ({ text: pick(['', '   ', 42, 'x'.repeat(25_000), 'hello']) }),
      () => ({
        positive: pick([[], 'i1', [[]], [{}], ['i1', vec(3)], Array.from({ length: 150 }, () => 'i1'), [vec()]]),
        negative: pick([undefined, ['zz'], 'i2', [null]]),
      }),
      () => ({ negative: ['i1'] }),
      () => ({ vector: vec(), id: 'i1' }),
      () => ({ id: 'i1', __proto__: { polluted: true } }),
      () => ({}),
      () => anything(),
    ])();

  const nearestBody = (): Record<string, unknown> => {
    const body: Record<string, unknown> = { feature: pick(['item_vec', 'item_vec@v1', 'item_vec@prod', ...weirdStrings]), k: 5, query: query() };
    const extras: Array<() => void> = [
      () => (body.k = pick(weirdNumbers)),
      () => (body.ef = pick(weirdNumbers)),
      () => (body.filter = filter()),
      () => (body.exclude = pick([['i1', 2], 'i1', [null], Array.from({ length: 20_000 }, () => 'x')])),
      () =>
        (body.include = pick([
          { vectors: 'yes' },
          { features: ['nope'] },
          { features: 'item_price' },
          { features: ['item_price', 'item_vec@v9'] },
          { other: 1 },
          [],
        ])),
      () => (body.diversity = pick([{ lambda: 'NaN' }, { lambda: -1 }, { lambda: 2 }, {}, 0.5, { lambda: 0.5, x: 1 }])),
      () => delete body.feature,
      () => delete body.query,
      () => (body[pick(['filters', 'K', 'constructor', 'prototype'])] = anything()),
      () => (body.feature = anything()),
    ];
    for (let i = 0, n = 1 + int(3); i < n; i++) pick(extras)();
    return body;
  };

  /** Always carries at least one invalid item, so nothing may be written. */
  const writeBody = (): Record<string, unknown> => {
    const upserts: unknown[] = Array.from({ length: int(4) }, (_, i) => ({ id: `fuzz${i}`, vector: vec(), metadata: { lang: 'en' } }));
    const bad = pick<() => unknown>([
      () => ({ id: 'bad', vector: vec(DIMS + 1) }),
      () => ({ id: 'bad', vector: vec().map((x, i) => (i === 0 ? 'NaN' : x)) }),
      () => ({ id: '', vector: vec() }),
      () => ({ id: 'bad', vector: vec(), text: 'both' }),
      () => ({ id: 'bad' }),
      () => ({ id: 'bad', vector: vec(), metadata: { color: 'red' } }),
      () => ({ id: 'bad', vector: vec(), metadata: { lang: { nested: true } } }),
      () => ({ id: 'bad', vector: new Array(DIMS).fill(1e39) }),
      () => ({ id: 'bad', text: 'item_vec has no model' }),
      () => ({ id: 7, vector: vec() }),
      () => 'bad',
    ])();
    upserts.splice(int(upserts.length + 1), 0, bad);
    return { upserts, deletes: pick([['i1', 'i2'], ['i1', 5], undefined]) };
  };

  const json = (url: string, payload: unknown, method: InjectOptions['method'] = 'POST'): InjectOptions => ({
    method,
    url,
    payload: JSON.stringify(payload),
    headers: { 'content-type': 'application/json' },
  });

  return (): InjectOptions =>
    pick<() => InjectOptions>([
      () => json('/v1/nearest', nearestBody()),
      () => json('/v1/nearest', nearestBody()),
      () => json('/v1/nearest', nearestBody()),
      () => {
        const b = nearestBody();
        const queries = pick([Array.from({ length: 1 + int(40) }, query), [], 'x', Array.from({ length: 1100 }, () => ({ id: 'i1' }))]);
        return json('/v1/nearest/batch', { feature: b.feature, k: b.k, queries, ...(b.filter ? { filter: b.filter } : {}) });
      },
      () =>
        json('/v1/online', {
          ids: pick([['i1'], [], 'i1', [1, 2], Array.from({ length: 20_000 }, () => 'i1')]),
          features: pick([['item_price'], [], ['nope'], 'item_price', [null], ['item_vec', 'item_title@v7']]),
        }),
      () =>
        json('/v1/embed', {
          model: pick(['tiny@1', 'tiny', 'tiny@9', '@1', '', 5]),
          texts: pick([['x'.repeat(20_001)], [], ['', ' '], [5], Array.from({ length: 300 }, () => 'a'), 'hello']),
        }),
      () => json(`/v1/features/${encodeURIComponent(pick(['item_vec@v1', 'item_vec', 'item_price', 'nope', '..%2f..', '%00']))}/vectors`, writeBody(), 'PUT'),
      () => ({
        method: 'POST',
        url: '/v1/nearest',
        payload: pick(['{', '{"feature":', 'null', '[]', '"str"', '1', 'true', '\uFEFF{}', '{"a":1}{"b":2}', 'NaN', '{"k":Infinity}']),
        headers: { 'content-type': 'application/json' },
      }),
      () => ({ method: 'POST', url: '/v1/nearest', payload: '['.repeat(50_000 + int(100_000)), headers: { 'content-type': 'application/json' } }),
      () => ({
        method: 'POST',
        url: '/v1/nearest',
        payload: `{"feature":"item_vec","query":${'{"not":'.repeat(20_000)}1${'}'.repeat(20_000)}}`,
        headers: { 'content-type': 'application/json' },
      }),
      () => ({
        method: 'POST',
        url: '/v1/nearest',
        payload: '{"feature":"item_vec","k":5,"query":{"id":"i1"},"__proto__":{"polluted":true}}',
        headers: { 'content-type': 'application/json' },
      }),
      () => ({
        method: 'POST',
        url: '/v1/nearest',
        payload: '{"feature":"item_vec","k":5,"query":{"id":"i1"},"constructor":{"prototype":{"polluted":true}}}',
        headers: { 'content-type': 'application/json' },
      }),
      () => ({
        method: 'POST',
        url: pick(['/v1/nearest', '/v1/embed', '/v1/online']),
        payload: 'feature=item_vec&k=5',
        headers: {
          'content-type': pick([
            'application/x-www-form-urlencoded',
            'text/plain',
            'application/xml',
            'multipart/form-data; boundary=x',
            'application/octet-stream',
            '',
          ]),
        },
      }),
      () => ({
        method: pick(['GET', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']),
        url: pick([
          '/v1/nearest',
          '/v1/features/item_vec/vectors',
          '/v1/registry/features/%00',
          `/v1/registry/features/${'x'.repeat(5000)}`,
          '/v1/registry/models/..',
          '/v1/../healthz',
          '/v1/registry/aliases/__proto__',
        ]),
      }),
      () =>
        int(8) === 0
          ? {
              method: 'POST',
              url: '/v1/nearest',
              payload: JSON.stringify({ feature: 'item_vec', query: { vector: new Array(1_300_000).fill(0.123456789) } }),
              headers: { 'content-type': 'application/json' },
            }
          : json('/v1/nearest', nearestBody()),
    ])();
}

async function snapshot() {
  const collection = await store.collection(await store.servable('item_vec@v1'));
  const q = await app.inject({
    method: 'POST',
    url: '/v1/nearest',
    payload: { feature: 'item_vec', k: 10, query: { vector: items[42].vec }, include: { vectors: true } },
  });
  const count = await collection.count();
  const { hits, variant } = q.json() as { hits: unknown[]; variant: string };
  return { count, rows: (await store.registry.getFeature('item_vec', 'v1'))!.rows, status: q.statusCode, variant, hits };
}

describe('fuzz: malformed and hostile requests', () => {
  it(`${REQUESTS} seeded requests: no 5xx, server alive, index unchanged`, async () => {
    const before = await snapshot();
    expect(before.status).toBe(200);
    expect(before.hits).toHaveLength(10);
    const next = generator(20261126);
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const req = next();
      const res = await app.inject(req);
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      if (res.statusCode >= 500)
        failures.push(
          `#${i} ${req.method} ${String(req.url).slice(0, 100)} ${String(req.payload).slice(0, 200)} -> ${res.statusCode} ${res.body.slice(0, 200)}`,
        );
      if (res.statusCode >= 400 && req.method !== 'HEAD') {
        const body = res.json() as { error?: { code?: string } };
        if (!/^NL_[A-Z_]+$/.test(body.error?.code ?? ''))
          failures.push(`#${i} ${req.method} ${String(req.url).slice(0, 100)}: not the error format: ${res.body.slice(0, 200)}`);
      }
    }
    expect(failures).toEqual([]);
    // The generator must actually reach the store's checks, not only the schema's.
    expect([...statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThanOrEqual(4);
    expect(statuses.get(413) ?? 0).toBeGreaterThan(0);

    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const after = await snapshot();
    expect(after).toEqual(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const v2 = await app.inject({ method: 'POST', url: '/v1/nearest', payload: { feature: 'item_vec', k: 3, query: { id: 'fuzz0' } } });
    expect(v2.statusCode).toBe(404);
  });
});
