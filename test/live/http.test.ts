import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFileLog } from '../../src/log/file.ts';
import { DIMS, makeHome, openApp } from '../server/fixture.ts';

let home: string;
let cleanup: () => void;
let server: Awaited<ReturnType<typeof openApp>>;

beforeAll(async () => {
  ({ home, cleanup } = await makeHome());
  server = await openApp(home);
});

afterAll(async () => {
  await server.close();
  cleanup();
});

const push = (rows: unknown[], source = 'items', key?: string) =>
  server.app.inject({ method: 'POST', url: `/v1/sources/${source}/push`, payload: { rows }, headers: key ? { authorization: `Bearer ${key}` } : {} });
const post = (url: string, payload: object) => server.app.inject({ method: 'POST', url, payload });
const vec = (k: number) => Array.from({ length: DIMS }, (_, i) => (i === k ? 3 : 0.01 * i));

describe('POST /v1/sources/:source/push', () => {
  it('updates every variant of every feature built from the source: vectors, text embeddings, scalars, metadata', async () => {
    const row = { id: 'fresh', vec: vec(2), lang: 'de', bucket: 3, price: 12.5, title: 'quantum teapot' };
    const res = await push([row]);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ source: 'items', accepted: 1, offset: 1 });
    for (const feature of ['item_vec@v1', 'item_vec@v2', 'other_vec@v1']) {
      const q = await post('/v1/nearest', { feature, k: 1, query: { vector: vec(2) }, filter: { field: 'lang', op: 'eq', value: 'de' } });
      expect(
        q.json().hits.map((h: { id: string }) => h.id),
        feature,
      ).toEqual(['fresh']);
    }
    const text = await post('/v1/nearest', { feature: 'doc_vec', k: 1, query: { text: 'quantum teapot' } });
    expect(text.json().hits[0]).toMatchObject({ id: 'fresh' });
    expect(text.json().hits[0].score).toBeGreaterThan(0.999);
    const online = await post('/v1/online', { ids: ['fresh'], features: ['item_price', 'item_title'] });
    expect(online.json().rows[0].features).toEqual({ item_price: 12.5, item_title: 'quantum teapot' });
    // The embedding travels in the log entry: replaying it never runs the model again.
    const log = await openFileLog(path.join(home, 'log', 'items'), 'items');
    const entries = [];
    for await (const e of log.read(0)) entries.push(e);
    expect(entries).toHaveLength(1);
    expect(Object.keys((entries[0].data as { e: Record<string, string> }).e)).toEqual(['tiny@1:title']);
  });

  it('refuses a bad batch whole with 400 naming the row, the variant and the column, and applies nothing', async () => {
    const good = { id: 'never', vec: vec(4), lang: 'en', bucket: 1, price: 1, title: 'fine row' };
    const res = await push([good, { id: 'bad', vec: vec(5), lang: 'en', bucket: 1, price: 1 }]);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('NL_BAD_SOURCE_ROW');
    expect(res.json().error.message).toMatch(/rows\[1\]: doc_vec@v1: text column "title"/);
    const wrongDims = await push([{ ...good, vec: [1, 2] }]);
    expect(wrongDims.statusCode).toBe(400);
    expect(wrongDims.json().error.message).toMatch(/rows\[0\]: item_vec@v1: .*"vec"/);
    const online = await post('/v1/online', { ids: ['never', 'bad'], features: ['item_price', 'item_vec'] });
    expect(online.json().rows.map((r: { features: unknown }) => r.features)).toEqual([
      { item_price: null, item_vec: null },
      { item_price: null, item_vec: null },
    ]);
    expect((await push([], 'items')).statusCode).toBe(400);
    expect((await push(Array.from({ length: 1001 }, (_, i) => ({ id: `x${i}` })))).statusCode).toBe(400);
    const unknown = await push([good], 'nosuch');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().error.code).toBe('NL_SOURCE_NOT_FOUND');
  });

  it('deletes an entity from every variant', async () => {
    expect((await push([{ id: 'i7', _deleted: true }])).statusCode).toBe(200);
    const online = await post('/v1/online', { ids: ['i7'], features: ['item_price', 'item_title', 'item_vec@v1', 'item_vec@v2', 'doc_vec'] });
    expect(Object.values(online.json().rows[0].features)).toEqual([null, null, null, null, null]);
  });

  it('needs scope write once keys exist; a key limited to some features cannot push to a source others are built from', async () => {
    const write = (await server.store.registry.createKey('write', null)).key;
    const serve = (await server.store.registry.createKey('serve', null)).key;
    const narrow = (await server.store.registry.createKey('write', ['item_vec'])).key;
    const row = { id: 'keyed', vec: vec(6), lang: 'en', bucket: 2, price: 3, title: 'keyed row' };
    expect((await push([row])).statusCode).toBe(401);
    expect((await push([row], 'items', serve)).statusCode).toBe(403);
    expect((await push([row], 'items', narrow)).statusCode).toBe(403);
    expect((await push([row], 'items', write)).statusCode).toBe(200);
  });
});
