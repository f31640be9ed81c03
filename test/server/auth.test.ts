import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHome, openApp } from './fixture.ts';

let app: FastifyInstance;
let close: () => Promise<void>;
let cleanup: () => void;
const keys: Record<string, string> = {};

beforeAll(async () => {
  const made = await makeHome();
  cleanup = made.cleanup;
  const opened = await openApp(made.home);
  ({ app, close } = opened);
  const reg = opened.store.registry;
  keys.serve = (await reg.createKey('serve', null)).key;
  keys.write = (await reg.createKey('write', null)).key;
  keys.admin = (await reg.createKey('admin', null)).key;
  keys.itemOnly = (await reg.createKey('serve', ['item_vec'])).key;
  keys.itemV1 = (await reg.createKey('serve', ['item_vec@v1'])).key;
  keys.writeItemV2 = (await reg.createKey('write', ['item_vec@v2'])).key;
});

afterAll(async () => {
  await close?.();
  cleanup?.();
});

type Req = { method: 'GET' | 'POST' | 'PUT'; url: string; payload?: object };

async function as(key: string | undefined, req: Req, header = key === undefined ? undefined : `Bearer ${key}`) {
  const res = await app.inject({ ...req, headers: header === undefined ? {} : { authorization: header } });
  return { status: res.statusCode, code: res.statusCode >= 400 ? (res.json().error?.code as string) : undefined, headers: res.headers, body: res.body };
}

const nearest = (feature: string, extra: object = {}): Req => ({
  method: 'POST',
  url: '/v1/nearest',
  payload: { feature, k: 2, query: { id: 'i1' }, ...extra },
});
const online = (features: string[]): Req => ({ method: 'POST', url: '/v1/online', payload: { ids: ['i1'], features } });
const embed: Req = { method: 'POST', url: '/v1/embed', payload: { model: 'tiny@1', texts: ['a'] } };
const put = (feature: string): Req => ({
  method: 'PUT',
  url: `/v1/features/${feature}/vectors`,
  payload: { upserts: [{ id: 'k1', vector: [1, 0, 0, 0, 0, 0, 0, 0] }] },
});
const registry: Req = { method: 'GET', url: '/v1/registry/features' };

describe('API keys', () => {
  it('once a key exists, /v1 needs a valid bearer key: 401 NL_UNAUTHORIZED', async () => {
    for (const req of [
      nearest('item_vec'),
      online(['item_price']),
      embed,
      put('item_vec@v2'),
      registry,
      { method: 'GET' as const, url: '/v1/registry/models' },
    ]) {
      const none = await as(undefined, req);
      expect({ url: req.url, status: none.status, code: none.code }).toEqual({ url: req.url, status: 401, code: 'NL_UNAUTHORIZED' });
      expect(none.headers['www-authenticate']).toBe('Bearer');
      expect((await as('nl_bad_key', req)).status).toBe(401);
    }
    expect((await as(undefined, nearest('item_vec'), `Basic ${keys.admin}`)).status).toBe(401);
    expect((await as(undefined, nearest('item_vec'), keys.admin)).status).toBe(401);
    expect((await as(undefined, nearest('item_vec'), `Bearer ${keys.admin}x`)).status).toBe(401);
    expect((await as(undefined, nearest('item_vec'), `bearer ${keys.admin}`)).status).toBe(200);
  });

  it('ops endpoints and the docs stay open', async () => {
    for (const url of ['/healthz', '/readyz', '/metrics', '/docs/json']) expect((await as(undefined, { method: 'GET', url })).status).toBe(200);
  });

  it('serve: nearest, batch, online, embed and registry reads, but no writes (403 NL_FORBIDDEN)', async () => {
    expect((await as(keys.serve, nearest('item_vec'))).status).toBe(200);
    expect((await as(keys.serve, { method: 'POST', url: '/v1/nearest/batch', payload: { feature: 'item_vec', k: 1, queries: [{ id: 'i1' }] } })).status).toBe(
      200,
    );
    expect((await as(keys.serve, online(['item_price']))).status).toBe(200);
    expect((await as(keys.serve, embed)).status).toBe(200);
    expect((await as(keys.serve, registry)).status).toBe(200);
    const w = await as(keys.serve, put('item_vec@v2'));
    expect([w.status, w.code]).toEqual([403, 'NL_FORBIDDEN']);
  });

  it('write and admin may also write', async () => {
    expect((await as(keys.write, put('item_vec@v2'))).status).toBe(200);
    expect((await as(keys.admin, put('item_vec@v2'))).status).toBe(200);
    expect((await as(keys.admin, nearest('item_vec'))).status).toBe(200);
  });

  it('a key limited to a feature name: any variant of it, nothing else, joined features included', async () => {
    const k = keys.itemOnly;
    expect((await as(k, nearest('item_vec'))).status).toBe(200);
    expect((await as(k, nearest('item_vec@v2'))).status).toBe(200);
    expect((await as(k, nearest('item_vec@prod'))).status).toBe(200);
    for (const req of [
      nearest('other_vec'),
      nearest('item_vec', { include: { features: ['item_price'] } }),
      { method: 'POST' as const, url: '/v1/nearest/batch', payload: { feature: 'other_vec', k: 1, queries: [{ id: 'i1' }] } },
      {
        method: 'POST' as const,
        url: '/v1/nearest/batch',
        payload: { feature: 'item_vec', k: 1, queries: [{ id: 'i1' }], include: { features: ['item_title'] } },
      },
      online(['item_vec', 'item_price']),
      { method: 'GET' as const, url: '/v1/registry/features/other_vec' },
      { method: 'GET' as const, url: '/v1/registry/aliases/other_vec' },
    ]) {
      const res = await as(k, req);
      expect({ req: req.payload ?? req.url, status: res.status, code: res.code }).toEqual({ req: req.payload ?? req.url, status: 403, code: 'NL_FORBIDDEN' });
    }
    expect((await as(k, online(['item_vec']))).status).toBe(200);
    const list = JSON.parse((await as(k, registry)).body);
    expect(list.features.map((f: { name: string; variant: string }) => `${f.name}@${f.variant}`)).toEqual(['item_vec@v1', 'item_vec@v2']);
  });

  it('a key limited to a variant: that variant by any name that resolves to it', async () => {
    const k = keys.itemV1;
    expect((await as(k, nearest('item_vec@v1'))).status).toBe(200);
    expect((await as(k, nearest('item_vec'))).status).toBe(200);
    expect((await as(k, nearest('item_vec@prod'))).status).toBe(200);
    expect((await as(k, nearest('item_vec@v2'))).status).toBe(403);
    expect((await as(k, nearest('item_vec@nope'))).status).toBe(403);
  });

  it('a write key limited to a feature writes only there', async () => {
    expect((await as(keys.writeItemV2, put('item_vec@v2'))).status).toBe(200);
    const other = await as(keys.writeItemV2, put('other_vec'));
    expect([other.status, other.code]).toEqual([403, 'NL_FORBIDDEN']);
  });
});
