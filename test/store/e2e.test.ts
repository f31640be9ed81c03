import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { itemVecFeature, seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';
import { startQdrantTestServer, type QdrantTestServer } from '../helpers/qdrant-test-server.ts';
import { skipRedisTests, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

/*
 * One scenario, as a user runs it: definitions file -> `apply` -> `materialize` through the CLI, then
 * serving through the HTTP API and the CLI. It runs unchanged on every provider set; only the providers
 * block of the definitions differs, and the answers of all sets must be the same.
 */

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');
const DIMS = 16;
const N = 400;
const LANGS = ['en', 'fr', 'de'];

interface Item {
  id: string;
  vec: number[];
  lang: string;
  bucket: number;
  price: number;
  title: string;
}

function makeItems(): Item[] {
  const rnd = seeded(11);
  return Array.from({ length: N }, (_, i) => ({
    id: `i${i}`,
    vec: Array.from({ length: DIMS }, () => Math.round((rnd() - 0.5) * 1e4) / 1e4),
    lang: LANGS[i % 3],
    bucket: i % 10,
    price: Math.round(rnd() * 100_000) / 100,
    title: `item ${i}`,
  }));
}

type Metric = 'cosine' | 'l2';
type Row = Pick<Item, 'id' | 'vec' | 'lang' | 'bucket'>;

/** Brute force, in float64: the answer any exact search must give (higher score is closer). */
function exact(rows: Row[], q: number[], k: number, metric: Metric, keep: (r: Row) => boolean = () => true, skip?: string) {
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
  const score = (v: number[]) => (metric === 'cosine' ? dot(v, q) / Math.sqrt(dot(v, v) * dot(q, q)) : -Math.hypot(...v.map((x, i) => x - q[i])));
  return rows
    .filter((r) => r.id !== skip && keep(r))
    .map((r) => ({ id: r.id, score: score(r.vec) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
}

const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));

/** The CLI in a child process; asynchronous, since the Qdrant test server answers from this process. */
function cli(home: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args, '--home', home], { cwd: home });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, out, err }));
  });
}

interface ProviderSet {
  name: string;
  skip?: boolean;
  /** Starts what the set needs and returns the providers block, named `vec` and `kv`. */
  start(): Promise<Array<Record<string, unknown>>>;
  stop(): Promise<void>;
  /** Checks run after every step (e.g. no request outside a backend's published API). */
  afterStep?(): void;
  qdrant?: () => QdrantTestServer;
}

let qdrant: QdrantTestServer | undefined;
let redis: RedisServer | undefined;
const run = Math.random().toString(36).slice(2, 8);

const SETS: ProviderSet[] = [
  {
    name: 'hnsw + sqlite',
    start: async () => [
      { name: 'vec', kind: 'hnsw' },
      { name: 'kv', kind: 'sqlite' },
    ],
    stop: async () => {},
  },
  {
    name: 'qdrant + redis',
    skip: skipRedisTests(),
    start: async () => {
      qdrant = await startQdrantTestServer();
      redis = await startRedisServer();
      return [
        { name: 'vec', kind: 'qdrant', url: qdrant.url, retryDelay: 1 },
        { name: 'kv', kind: 'redis', url: redis.url, keyPrefix: `nle2e_${run}:` },
      ];
    },
    stop: async () => {
      await qdrant?.close();
      await redis?.stop();
    },
    afterStep: () => expect(qdrant!.takeViolations()).toEqual([]),
    qdrant: () => qdrant!,
  },
];

/** What each set answered to the exact-answer checks, compared across sets at the end. */
const answers = new Map<string, Record<string, Array<{ id: string; score: number }>>>();

describe.each(SETS)('end to end on $name', (set) => {
  if (set.skip) {
    it.skip('SKIPPED: redis-server not installed and NEARLINE_SKIP_REDIS=1', () => {});
    return;
  }
  const items = makeItems();
  const live: Row[] = items.map(({ id, vec, lang, bucket }) => ({ id, vec, lang, bucket }));
  const seen: Record<string, Array<{ id: string; score: number }>> = {};
  answers.set(set.name, seen);
  let home: string;
  let store: FeatureStore | undefined;
  let app: FastifyInstance | undefined;

  const post = async (url: string, payload: object, method: 'POST' | 'PUT' = 'POST') => {
    const res = await app!.inject({ method, url, payload });
    return { status: res.statusCode, body: res.json() };
  };
  const record = (step: string, hits: Array<{ id: string; score: number }>) => (seen[step] = hits.map(({ id, score }) => ({ id, score })));
  const expectExact = (hits: Array<{ id: string; score: number }>, want: Array<{ id: string; score: number }>) => {
    expect(hits.map((h) => h.id)).toEqual(want.map((w) => w.id));
    hits.forEach((h, i) => expect(h.score).toBeCloseTo(want[i].score, 4));
  };

  beforeAll(async () => {
    home = tempDir('nearline-e2e-');
    writeFileSync(path.join(home, 'items.jsonl'), items.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const embedding = (variant: string, metric: Metric) =>
      itemVecFeature(variant, { dims: DIMS, metric, provider: 'vec', index: { M: 16, efConstruction: 200, ef: 200 }, metadata: ['lang', 'bucket'] });
    writeDefs(home, {
      providers: await set.start(),
      entities: [{ name: 'item', key: 'id' }],
      sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
      features: [
        embedding('v1', 'cosine'),
        embedding('v2', 'l2'),
        { name: 'item_price', variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', column: 'price', type: 'float', provider: 'kv' },
        { name: 'item_title', variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', column: 'title', type: 'string', provider: 'kv' },
      ],
      aliases: [{ feature: 'item_vec', name: 'prod', variant: 'v1' }],
    });
  });

  afterAll(async () => {
    await app?.close();
    await store?.close();
    await set.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('apply prints the plan, writes it, and a second apply changes nothing', async () => {
    const first = await cli(home, 'apply', 'defs.yaml');
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const plan = first.out.trim().split('\n');
    expect(plan.slice(0, -1).map((l) => l.trim().split(/\s+/))).toEqual([
      ['create', 'provider', 'vec'],
      ['create', 'provider', 'kv'],
      ['create', 'entity', 'item'],
      ['create', 'source', 'items@v1'],
      ['create', 'feature', 'item_vec@v1'],
      ['create', 'feature', 'item_vec@v2'],
      ['create', 'feature', 'item_price@v1'],
      ['create', 'feature', 'item_title@v1'],
      ['create', 'alias', 'item_vec@prod'],
    ]);
    expect(plan.at(-1)).toBe('plan: 9 create, 0 update, 0 unchanged, 0 refused — applied');
    const again = await cli(home, 'apply', 'defs.yaml');
    expect(again.code).toBe(0);
    expect(again.out.trim().split('\n').at(-1)).toBe('plan: 0 create, 0 update, 9 unchanged, 0 refused — nothing to change');
    set.afterStep?.();
  });

  it('materialize writes every row of the embedding and the scalar features', async () => {
    for (const ref of ['item_vec@v1', 'item_vec@v2', 'item_price@v1', 'item_title@v1']) {
      const r = await cli(home, 'materialize', ref);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toMatch(new RegExp(`materialize ${ref} done \\(${N} rows`));
    }
    const show = JSON.parse((await cli(home, 'show', 'item_vec')).out);
    expect(show).toMatchObject({ feature: 'item_vec@v1', status: 'live', rows: N, aliases: ['prod'] });
    store = FeatureStore.open({ home });
    app = await build({ store, auth: { cacheMs: 0 } });
    await app.ready();
    for (let i = 0; i < 500 && (await app.inject({ method: 'GET', url: '/readyz' })).statusCode !== 200; i++) await new Promise((r) => setTimeout(r, 10));
    if (set.qdrant) {
      // Publishing v1 moved the Qdrant alias that apply could not create while v1 had no data.
      const aliases = await set.qdrant().raw('GET', '/aliases');
      expect((aliases.body as { result: { aliases: unknown[] } }).result.aliases).toEqual([{ alias_name: 'item_vec__prod', collection_name: 'item_vec__v1' }]);
    }
    set.afterStep?.();
  });

  const filter = {
    and: [
      { field: 'lang', op: 'in', value: ['fr', 'de'] },
      { field: 'bucket', op: 'gte', value: 3 },
    ],
  };
  const keep = (r: Row) => (r.lang === 'fr' || r.lang === 'de') && r.bucket >= 3;
  const probe = Array.from({ length: DIMS }, (_, i) => Math.sin(i + 1) / 2);

  it('/v1/nearest by id and by vector, filtered, with scalar features joined: the exact answer', async () => {
    const include = { features: ['item_price', 'item_title'] };
    const byId = await post('/v1/nearest', { feature: 'item_vec', k: 8, query: { id: 'i7' }, filter, include: { ...include, metadata: true } });
    expect(byId.status, JSON.stringify(byId.body)).toBe(200);
    expect(byId.body).toMatchObject({ feature: 'item_vec', variant: 'v1' });
    expectExact(byId.body.hits, exact(live, items[7].vec, 8, 'cosine', keep, 'i7'));
    for (const h of byId.body.hits) {
      const item = items[Number(h.id.slice(1))];
      expect(h.features).toEqual({ item_price: item.price, item_title: item.title });
      // Regression test for hits without their metadata: include.metadata returns it, like Qdrant's with_payload.
      expect(h.metadata).toEqual({ lang: item.lang, bucket: item.bucket });
    }
    record('nearest by id', byId.body.hits);

    const byVector = await post('/v1/nearest', { feature: 'item_vec@prod', k: 12, query: { vector: probe }, filter: { not: filter }, include });
    expect(byVector.status).toBe(200);
    expectExact(
      byVector.body.hits,
      exact(live, probe, 12, 'cosine', (r) => !keep(r)),
    );
    expect(byVector.body.hits.every((h: { features: object }) => Object.keys(h.features).length === 2)).toBe(true);
    record('nearest by vector', byVector.body.hits);
    set.afterStep?.();
  });

  it('/v1/nearest/batch answers every query in order, exactly', async () => {
    // The last query carries its own filter, which replaces the batch's (regression test for one filter per batch).
    const queries = [{ id: 'i1' }, { vector: probe }, { id: 'i399' }, { query: { vector: probe }, filter: { field: 'bucket', op: 'lt', value: 3 } }];
    const res = await post('/v1/nearest/batch', { feature: 'item_vec', k: 5, queries, filter: { field: 'lang', op: 'eq', value: 'en' } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results).toHaveLength(4);
    const en = (r: Row) => r.lang === 'en';
    expectExact(res.body.results[0].hits, exact(live, items[1].vec, 5, 'cosine', en, 'i1'));
    expectExact(res.body.results[1].hits, exact(live, probe, 5, 'cosine', en));
    expectExact(res.body.results[2].hits, exact(live, items[399].vec, 5, 'cosine', en, 'i399'));
    expectExact(
      res.body.results[3].hits,
      exact(live, probe, 5, 'cosine', (r) => r.bucket < 3),
    );
    res.body.results.forEach((r: { hits: Array<{ id: string; score: number }> }, i: number) => record(`batch ${i}`, r.hits));
    set.afterStep?.();
  });

  it('/v1/online returns scalar and vector features for many ids, null where absent', async () => {
    const ids = [...items.filter((_, i) => i % 7 === 0).map((i) => i.id), 'nobody'];
    const res = await post('/v1/online', { ids, features: ['item_price', 'item_title@v1', 'item_vec@v1'] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.rows.map((r: { id: string }) => r.id)).toEqual(ids);
    for (const row of res.body.rows.slice(0, -1)) {
      const item = items[Number(row.id.slice(1))];
      expect(row.features.item_price).toBe(item.price);
      expect(row.features['item_title@v1']).toBe(item.title);
      // A cosine feature stores the direction.
      unit(item.vec).forEach((x, i) => expect(row.features['item_vec@v1'][i]).toBeCloseTo(x, 5));
    }
    expect(res.body.rows.at(-1).features).toEqual({ item_price: null, 'item_title@v1': null, 'item_vec@v1': null });
    set.afterStep?.();
  });

  it('PUT /v1/features/.../vectors: upserts and deletes are visible to the next query', async () => {
    const before = exact(live, probe, 5, 'cosine');
    const gone = before[0].id;
    const near = probe.map((x, i) => x + (i % 2 ? 0.01 : -0.01));
    const res = await post(
      '/v1/features/item_vec/vectors',
      {
        upserts: [
          { id: 'new1', vector: near, metadata: { lang: 'en', bucket: 5 } },
          { id: 'i3', vector: probe.map((x) => -x), metadata: { lang: 'fr', bucket: 9 } },
        ],
        deletes: [gone],
      },
      'PUT',
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ feature: 'item_vec', variant: 'v1', upserted: 2, deleted: 1 });
    live.splice(
      live.findIndex((r) => r.id === gone),
      1,
    );
    live[live.findIndex((r) => r.id === 'i3')] = { id: 'i3', vec: probe.map((x) => -x), lang: 'fr', bucket: 9 };
    live.push({ id: 'new1', vec: near, lang: 'en', bucket: 5 });

    const after = await post('/v1/nearest', { feature: 'item_vec', k: 5, query: { vector: probe } });
    expect(after.body.hits[0].id).toBe('new1');
    expect(after.body.hits.map((h: { id: string }) => h.id)).not.toContain(gone);
    expectExact(after.body.hits, exact(live, probe, 5, 'cosine'));
    const farthest = await post('/v1/nearest', {
      feature: 'item_vec',
      k: 1,
      query: { vector: probe.map((x) => -x) },
      filter: { field: 'bucket', op: 'eq', value: 9 },
    });
    expect(farthest.body.hits.map((h: { id: string }) => h.id)).toEqual(['i3']);
    record('after upsert', after.body.hits);
    set.afterStep?.();
  });

  it('nearline nearest --id through the CLI gives the same hits as the HTTP API', async () => {
    const http = await post('/v1/nearest', { feature: 'item_vec', k: 10, query: { id: 'new1' } });
    expect(http.status).toBe(200);
    const r = await cli(home, 'nearest', 'item_vec', '--id', 'new1', '--k', '10');
    expect(r.code, r.err).toBe(0);
    const out = JSON.parse(r.out);
    expect(out).toMatchObject({ feature: 'item_vec', variant: 'v1' });
    expect(out.hits.map((h: { id: string }) => h.id)).toEqual(http.body.hits.map((h: { id: string }) => h.id));
    out.hits.forEach((h: { score: number }, i: number) => expect(h.score).toBeCloseTo(http.body.hits[i].score, 5));
    expectExact(out.hits, exact(live, live.at(-1)!.vec, 10, 'cosine', undefined, 'new1'));
    record('cli nearest', out.hits);
    const joined = await cli(home, 'nearest', 'item_vec', '--id', 'new1', '--k', '3', '--include-metadata', '--include-features', 'item_price,item_title');
    expect(joined.code, joined.err).toBe(0);
    const withFeatures = JSON.parse(joined.out);
    expect(withFeatures.variants).toEqual({ item_vec: 'item_vec@v1', item_price: 'item_price@v1', item_title: 'item_title@v1' });
    for (const h of withFeatures.hits) {
      const row = live.find((r) => r.id === h.id)!;
      expect(h.metadata).toEqual({ lang: row.lang, bucket: row.bucket });
      expect(Object.keys(h.features)).toEqual(['item_price', 'item_title']);
    }
    set.afterStep?.();
  });

  it('alias set moves prod to v2: the bare name follows it, v1 stays servable', async () => {
    const r = await cli(home, 'alias', 'set', 'item_vec', 'prod', 'v2');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('item_vec@prod -> v2 (was v1)\n');
    const bare = await post('/v1/nearest', { feature: 'item_vec', k: 10, query: { id: 'i5' } });
    expect(bare.body).toMatchObject({ feature: 'item_vec', variant: 'v2' });
    // v2 was materialized from the source and never saw the online writes to v1.
    const v2rows: Row[] = items;
    expectExact(bare.body.hits, exact(v2rows, items[5].vec, 10, 'l2', undefined, 'i5'));
    record('after alias switch', bare.body.hits);
    const rollback = await post('/v1/nearest', { feature: 'item_vec@v1', k: 3, query: { id: 'i5' } });
    expect(rollback.body.variant).toBe('v1');
    expectExact(rollback.body.hits, exact(live, items[5].vec, 3, 'cosine', undefined, 'i5'));

    if (set.qdrant) {
      const server = set.qdrant();
      const moves = server.requests.filter((q) => q.operation === 'POST /collections/aliases');
      expect(moves.at(-1)!.body).toEqual({
        actions: [{ delete_alias: { alias_name: 'item_vec__prod' } }, { create_alias: { alias_name: 'item_vec__prod', collection_name: 'item_vec__v2' } }],
      });
      // A consumer that reads Qdrant directly through the alias sees the cutover too.
      const direct = await server.raw('POST', '/collections/item_vec__prod/points/query/batch', {
        searches: [{ query: items[5].vec, limit: 4, with_payload: true }],
      });
      expect(direct.status, JSON.stringify(direct.body)).toBe(200);
      const [{ points }] = (direct.body as { result: Array<{ points: Array<{ payload: Record<string, unknown> }> }> }).result;
      expect(points.map((p) => p.payload._nearline_id)).toEqual(['i5', ...exact(v2rows, items[5].vec, 3, 'l2', undefined, 'i5').map((h) => h.id)]);
    }
    set.afterStep?.();
  });
});

describe('every provider set', () => {
  it('gives the same answers: same ids in the same order, same scores', () => {
    const runs = [...answers.entries()].filter(([, seen]) => Object.keys(seen).length > 0);
    expect(runs.length, 'provider sets that ran').toBeGreaterThanOrEqual(SETS.filter((s) => !s.skip).length);
    const [first, ...rest] = runs;
    expect(Object.keys(first[1])).toEqual([
      'nearest by id',
      'nearest by vector',
      'batch 0',
      'batch 1',
      'batch 2',
      'batch 3',
      'after upsert',
      'cli nearest',
      'after alias switch',
    ]);
    for (const [, seen] of rest) {
      expect(Object.keys(seen)).toEqual(Object.keys(first[1]));
      for (const step of Object.keys(seen)) {
        expect(
          seen[step].map((h) => h.id),
          step,
        ).toEqual(first[1][step].map((h) => h.id));
        seen[step].forEach((h, i) => expect(h.score, `${step} #${i}`).toBeCloseTo(first[1][step][i].score, 4));
      }
    }
  });
});
