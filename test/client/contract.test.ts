import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Nearline, NearlineClientError } from '../../src/client/index.ts';
import type { Registry } from '../../src/registry/registry.ts';
import { DIMS, exactCosine, makeHome, openApp, type Item } from '../server/fixture.ts';

let home: string;
let items: Item[];
let cleanup: () => void;
let close: () => Promise<void>;
let url: string;
let nl: Nearline;
let registry: Registry;

/** The client against a real server listening on a loopback port, for every /v1 route. */
beforeAll(async () => {
  ({ home, items, cleanup } = await makeHome());
  const opened = await openApp(home);
  close = opened.close;
  registry = opened.store.registry;
  url = await opened.app.listen({ port: 0, host: '127.0.0.1' });
  nl = new Nearline({ url, timeoutMs: 30_000 });
}, 180_000);

afterAll(async () => {
  await close?.();
  cleanup?.();
});

const expectCode = async (p: Promise<unknown>, code: string, status: number) => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(NearlineClientError);
  expect((e as NearlineClientError).code).toBe(code);
  expect((e as NearlineClientError).status).toBe(status);
  return e as NearlineClientError;
};

describe('client contract', () => {
  it('has a method for every /v1 route of the OpenAPI document, and no route the server lacks', async () => {
    const spec = (await (await fetch(`${url}/docs/json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const served = new Set<string>();
    for (const [p, ops] of Object.entries(spec.paths)) {
      if (!p.startsWith('/v1/')) continue;
      for (const m of Object.keys(ops)) served.add(`${m.toUpperCase()} ${p}`);
    }
    expect(served.size).toBeGreaterThanOrEqual(11);
    const client = new Set<string>(Object.values(Nearline.routes));
    expect([...served].filter((r) => !client.has(r))).toEqual([]);
    expect([...client].filter((r) => !served.has(r))).toEqual([]);
  });

  it('imports nothing at run time: request and response types come from the server schemas as types only', () => {
    const source = readFileSync(path.resolve(import.meta.dirname, '../../src/client/index.ts'), 'utf8');
    const imports = source.match(/^(import|export) .* from .*$/gm) ?? [];
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((line) => !/^(import|export) type /.test(line))).toEqual([]);
  });

  it('nearest and nearestBatch return the exact neighbours of the fixture', async () => {
    const q = items[5].vec;
    const res = await nl.nearest({ feature: 'item_vec@v1', k: 5, query: { vector: q }, include: { features: ['item_price'] } });
    expect(res.variant).toBe('v1');
    expect(res.hits.map((h) => h.id)).toEqual(exactCosine(items, q, 5));
    expect(res.hits[0].features?.item_price).toBe(items[5].price);
    const batch = await nl.nearestBatch({ feature: 'item_vec', k: 3, queries: [{ vector: items[1].vec }, { id: 'i2' }] });
    expect(batch.results).toHaveLength(2);
    expect(batch.results[0].hits.map((h) => h.id)).toEqual(exactCosine(items, items[1].vec, 3));
    expect(batch.results[1].hits.map((h) => h.id)).not.toContain('i2');
    // Float32Array vectors are sent as JSON arrays.
    const typed = await nl.nearest({ feature: 'item_vec@v1', k: 5, query: { vector: Float32Array.from(q) as unknown as number[] } });
    expect(typed.hits.map((h) => h.id)).toEqual(res.hits.map((h) => h.id));
  });

  it('online, embed and writeVectors', async () => {
    const online = await nl.online({ ids: ['i3', 'missing'], features: ['item_price', 'item_title'] });
    expect(online.rows).toEqual([
      { id: 'i3', features: { item_price: items[3].price, item_title: items[3].title } },
      { id: 'missing', features: { item_price: null, item_title: null } },
    ]);
    const emb = await nl.embed({ model: 'tiny@1', texts: ['red shoe', 'blue lamp'] });
    expect(emb.dims).toBe(32);
    expect(emb.vectors).toHaveLength(2);
    const vector = Array.from({ length: DIMS }, (_, i) => (i === 0 ? 1 : 0));
    const write = await nl.writeVectors('item_vec@v2', { upserts: [{ id: 'new-item', vector, metadata: { lang: 'en', bucket: 1 } }], deletes: ['i9'] });
    expect(write).toEqual({ feature: 'item_vec', variant: 'v2', upserted: 1, deleted: 1, offset: expect.any(Number) });
    const hit = await nl.nearest({ feature: 'item_vec@v2', k: 1, query: { vector } });
    expect(hit.hits[0].id).toBe('new-item');
  });

  it('push: rows to a source by name, served right after the answer; a bad batch changes nothing', async () => {
    const vec = Array.from({ length: DIMS }, (_, i) => (i === 1 ? 1 : 0));
    const row = { id: 'pushed-1', vec, lang: 'en', bucket: 3, price: 1.5, title: 'red lamp pushed' };
    const res = await nl.push('items', { rows: [row] });
    expect(res).toEqual({ source: 'items', accepted: 1, offset: expect.any(Number) });
    expect((await nl.nearest({ feature: 'item_vec@v1', k: 1, query: { vector: vec } })).hits[0].id).toBe('pushed-1');
    const bad = await expectCode(
      nl.push('items', {
        rows: [
          { ...row, id: 'pushed-2' },
          { ...row, id: 'pushed-3', vec: [1, 2] },
        ],
      }),
      'NL_BAD_SOURCE_ROW',
      400,
    );
    expect(bad.message).toContain('1');
    expect((await nl.online({ ids: ['pushed-2'], features: ['item_price'] })).rows[0].features.item_price).toBeNull();
  });

  it('health of a variant, alone and against another', async () => {
    const alone = await nl.health('item_vec@v1');
    expect(alone).toMatchObject({ feature: 'item_vec', variant: 'v1', dims: DIMS });
    expect(alone.baseline.count).toBeGreaterThan(0);
    const both = await nl.health('item_vec@v1', { against: 'item_vec@v2' });
    expect(both.comparison).toBeDefined();
    await expectCode(nl.health('item_price'), 'NL_UNSUPPORTED', 422);
  });

  it('the dashboard map and series', async () => {
    const map = await nl.map('item_vec@v1', { refresh: 'true' });
    expect(map).toMatchObject({ feature: 'item_vec', variant: 'v1' });
    expect(map.points.length).toBeGreaterThan(0);
    expect(map.fields).toEqual(expect.arrayContaining(['lang', 'bucket']));
    const series = await nl.series();
    expect(series.times.length).toBe(series.series[0]?.values?.length ?? series.times.length);
    expect(typeof series.intervalSeconds).toBe('number');
  });

  it('compare two variants, move an alias and roll it back', async () => {
    const report = await nl.compare({ a: 'item_vec@v1', b: 'item_vec@v2', k: 5, sample: 20 });
    expect(report).toMatchObject({ a: 'item_vec@v1', b: 'item_vec@v2', k: 5 });
    expect(report.overlap).toBeGreaterThanOrEqual(0);
    const moved = await nl.setAlias('item_vec', 'prod', { variant: 'v2' });
    expect(moved).toMatchObject({ feature: 'item_vec', alias: 'prod', variant: 'v2', previous: 'v1' });
    const back = await nl.rollbackAlias('item_vec', 'prod');
    expect(back).toMatchObject({ variant: 'v1' });
    const refused = await nl.setAlias('item_vec', 'prod', { variant: 'v9' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NearlineClientError);
    expect((refused as NearlineClientError).status).toBeGreaterThanOrEqual(400);
    expect((await nl.registry.aliases('item_vec')).aliases[0].variant).toBe('v1');
  });

  it('registry views by kind and by name', async () => {
    const features = await nl.registry.features();
    expect(features.features.map((f) => `${f.name}@${f.variant}`)).toContain('item_vec@v1');
    const one = await nl.registry.features('item_vec');
    expect(one.features.map((f) => f.variant)).toEqual(['v1', 'v2']);
    expect(one.features[0].aliases).toEqual(['prod']);
    expect((await nl.registry.models()).models.map((m) => `${m.name}@${m.version}`)).toEqual(['tiny@1']);
    expect((await nl.registry.models('tiny@1')).models[0].dims).toBe(32);
    expect((await nl.registry.aliases()).aliases).toEqual([expect.objectContaining({ feature: 'item_vec', name: 'prod', variant: 'v1' })]);
    expect((await nl.registry.aliases('item_vec')).aliases).toHaveLength(1);
    const history = await nl.registry.history({ feature: 'item_vec', limit: '2' });
    expect(history.events).toHaveLength(2);
    const older = await nl.registry.history({ feature: 'item_vec', before: String(history.events[1].id) });
    expect(older.events.every((e) => e.id < history.events[1].id && e.feature?.startsWith('item_vec'))).toBe(true);
    await expectCode(nl.registry.history({ limit: '5000' }), 'NL_BAD_REQUEST', 400);
  });

  it('throws typed errors with the NL_* code and the HTTP status', async () => {
    await expectCode(nl.nearest({ feature: 'nope', k: 1, query: { id: 'i1' } }), 'NL_FEATURE_NOT_FOUND', 404);
    await expectCode(nl.nearest({ feature: 'item_vec', k: 1, query: { vector: [1, 2] } }), 'NL_DIMENSION_MISMATCH', 400);
    await expectCode(nl.nearest({ feature: 'item_vec', k: 5000, query: { id: 'i1' } }), 'NL_LIMIT_EXCEEDED', 400);
    await expectCode(nl.registry.models('nope@1'), 'NL_MODEL_NOT_FOUND', 404);
  });
});

describe('client retries and timeouts', () => {
  it('retries NL_OVERLOADED with backoff until the server has room', async () => {
    // A server that embeds one request at a time with no queue sheds concurrent embeds with 503 NL_OVERLOADED.
    const tight = await openApp(home, { heavy: { concurrency: 1, queue: 0 } });
    const tightUrl = await tight.app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const texts = (i: number) => Array.from({ length: 16 }, (_, j) => `red shoe ${i} blue lamp ${j}`);
      const burst = (client: Nearline) => Promise.allSettled(Array.from({ length: 48 }, (_, i) => client.embed({ model: 'tiny@1', texts: texts(i) })));
      // Whether a burst overlaps depends on how fast the server drains it; a few bursts make one overlap.
      let shed: NearlineClientError[] = [];
      for (let attempt = 0; attempt < 5 && shed.length === 0; attempt++) {
        const once = await burst(new Nearline({ url: tightUrl, retries: 0 }));
        shed = once.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as NearlineClientError);
      }
      expect(shed.length).toBeGreaterThan(0);
      expect(shed.every((e) => e.code === 'NL_OVERLOADED' && e.status === 503)).toBe(true);
      const retried = await burst(new Nearline({ url: tightUrl, retries: 200, backoffMs: 2, maxBackoffMs: 10 }));
      expect(retried.filter((r) => r.status === 'rejected')).toEqual([]);
    } finally {
      await tight.close();
    }
  });

  it('times out each attempt and resends only idempotent calls', async () => {
    let requests = 0;
    const silent: Server = createServer(() => void requests++);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const client = new Nearline({ url: silentUrl, timeoutMs: 100, retries: 2, backoffMs: 1 });
      await expectCode(client.nearest({ feature: 'x', k: 1, query: { id: 'a' } }), 'NL_TIMEOUT', 0);
      expect(requests).toBe(3);
      requests = 0;
      await expectCode(client.push('items', { rows: [{ id: 'a' }] }), 'NL_TIMEOUT', 0);
      expect(requests).toBe(1);
      // The caller's own signal ends every attempt at once.
      requests = 0;
      const aborted = client.nearest({ feature: 'x', k: 1, query: { id: 'a' } }, { signal: AbortSignal.timeout(50), timeoutMs: 5000 });
      await expect(aborted).rejects.toThrow();
      expect(requests).toBe(1);
    } finally {
      silent.closeAllConnections();
      await new Promise((r) => silent.close(r));
    }
  });

  it('reports an unreachable server after its retries', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const client = new Nearline({ url: `http://127.0.0.1:${port}/`, retries: 1, backoffMs: 1 });
    const e = await expectCode(client.registry.features(), 'NL_UNREACHABLE', 0);
    expect(e.message).toContain('/v1/registry/features');
  });
});

describe('client auth', () => {
  it('sends the API key and surfaces NL_UNAUTHORIZED / NL_FORBIDDEN', async () => {
    // Last in the file: once a key exists, every call needs one.
    const serve = (await registry.createKey('serve', null)).key;
    await expectCode(nl.registry.features(), 'NL_UNAUTHORIZED', 401);
    const keyed = new Nearline({ url, apiKey: serve });
    expect((await keyed.nearest({ feature: 'item_vec', k: 1, query: { id: 'i1' } })).hits).toHaveLength(1);
    await expectCode(keyed.writeVectors('item_vec@v2', { deletes: ['i8'] }), 'NL_FORBIDDEN', 403);
  });
});
