import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';

describe('the dashboard routes', () => {
  let store: FeatureStore;
  let app: FastifyInstance;

  beforeAll(async () => {
    const home = tempDir();
    writeWords(home, 400, 8);
    store = FeatureStore.open({ home });
    await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
    await store.materialize('word_vec@v1', { progress: false });
    await store.materialize('word_freq@v1', { progress: false });
    app = await build({ store, warm: false, series: { intervalSeconds: 0.2 } });
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
    await store?.close();
  });

  const get = async (url: string, key?: string) => {
    const res = await app.inject({ method: 'GET', url, ...(key ? { headers: { authorization: `Bearer ${key}` } } : {}) });
    return {
      status: res.statusCode,
      body: String(res.headers['content-type']).startsWith('application/json') ? res.json() : res.body,
      type: res.headers['content-type'],
    };
  };

  it('serves the page, its module, its styles and uPlot from the installed package', async () => {
    expect(await get('/ui')).toMatchObject({ status: 302 });
    for (const [url, type] of [
      ['/ui/', /^text\/html/],
      ['/ui/app.js', /^text\/javascript/],
      ['/ui/style.css', /^text\/css/],
      ['/ui/vendor/uplot.js', /^text\/javascript/],
      ['/ui/vendor/uplot.css', /^text\/css/],
    ] as const) {
      const r = await get(url);
      expect(r.status, url).toBe(200);
      expect(r.type).toMatch(type);
    }
    expect((await get('/ui/vendor/uplot.js')).body).toContain('uPlot');
    for (const url of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/vendor/../../src/index.ts', '/ui/nope.js']) {
      const r = await get(url);
      expect(r.status, url).toBe(404);
    }
    // Not in the API document: it is a page, not an API.
    const doc = (await get('/docs/json')).body as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/ui'))).toEqual([]);
  });

  it('the map: every sampled point with its metadata, cached per variant until refreshed', async () => {
    const a = await get('/v1/features/word_vec/map');
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ feature: 'word_vec', variant: 'v1', rows: 400, fields: ['lang', 'freq'] });
    expect(a.body.points).toHaveLength(400);
    expect(a.body.points[0]).toEqual({
      id: expect.any(String),
      x: expect.any(Number),
      y: expect.any(Number),
      metadata: { lang: expect.any(String), freq: expect.any(Number) },
    });
    expect(a.body.explained[0]).toBeGreaterThanOrEqual(a.body.explained[1]);
    const b = await get('/v1/features/word_vec@prod/map');
    expect(b.body.computedAt).toBe(a.body.computedAt);
    await new Promise((r) => setTimeout(r, 5));
    const c = await get('/v1/features/word_vec/map?refresh=true');
    expect(c.body.computedAt).not.toBe(a.body.computedAt);
    expect(c.body.points).toEqual(a.body.points);
    expect((await get('/v1/features/word_freq/map')).body.error.code).toBe('NL_UNSUPPORTED');
    expect((await get('/v1/features/nope/map')).body.error.code).toBe('NL_FEATURE_NOT_FOUND');
    expect((await get('/v1/features/word_vec/map?refresh=maybe')).body.error.code).toBe('NL_BAD_REQUEST');
  });

  it('the charts: numbers from the metrics, null where a family is absent', async () => {
    for (let i = 0; i < 5; i++) await app.inject({ method: 'POST', url: '/v1/nearest', payload: { feature: 'word_vec', k: 3, query: { id: `w${i}` } } });
    await new Promise((r) => setTimeout(r, 700));
    const r = await get('/v1/dashboard/series');
    expect(r.status).toBe(200);
    expect(r.body.times.length).toBeGreaterThanOrEqual(2);
    const series = Object.fromEntries(r.body.series.map((s: { key: string; values: Array<number | null> }) => [s.key, s.values]));
    for (const values of Object.values(series) as Array<unknown[]>) expect(values).toHaveLength(r.body.times.length);
    const queries = (series.qps as number[]).reduce((sum, q, i) => sum + q * (i ? r.body.times[i] - r.body.times[i - 1] : 0.2), 0);
    expect(queries).toBeGreaterThan(2);
    expect((series.p99 as Array<number | null>).some((v) => v !== null && v > 0)).toBe(true);
    expect((series.rss as number[]).every((v) => v > 10)).toBe(true);
    expect((series.shadowOverlap as unknown[]).every((v) => v === null)).toBe(true);
  });

  it('the page asks for a key only once a key exists, and the data routes need one', async () => {
    expect((await get('/ui/session.json')).body).toEqual({ keyRequired: false });
    const { key } = await store.registry.createKey('serve', ['word_freq']);
    await new Promise((r) => setTimeout(r, 600));
    expect((await get('/ui/session.json')).body).toEqual({ keyRequired: true });
    expect((await get('/ui/app.js')).status).toBe(200);
    expect((await get('/v1/dashboard/series')).status).toBe(401);
    expect((await get('/v1/features/word_vec/map')).status).toBe(401);
    expect((await get('/v1/features/word_vec/map', key)).status).toBe(403);
    expect((await get('/v1/features/word_vec/health', key)).status).toBe(403);
    expect((await get('/v1/dashboard/series', key)).status).toBe(200);
  });
});
