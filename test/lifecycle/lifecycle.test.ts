import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { itemVecFeature, seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';

/*
 * Model changes: item_vec@v1 (cosine over `vec`) serves as prod; v2 reads `vec2`, the same vectors with noise
 * (a retrained model that mostly agrees); v3 reads `vec3`, unrelated vectors (a model that disagrees).
 */

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');
const DIMS = 16;
const N = 1500;

interface Row {
  id: string;
  vec: number[];
  vec2: number[];
  vec3: number[];
  price: number;
}

let home: string;
let rows: Row[];
let store: FeatureStore;

const feature = (variant: string, column: string) => itemVecFeature(variant, { dims: DIMS, column, index: { M: 16, efConstruction: 100, ef: 64 } });

beforeAll(async () => {
  home = tempDir();
  const rnd = seeded(5);
  const g = () => rnd() - 0.5;
  rows = Array.from({ length: N }, (_, i) => {
    const vec = Array.from({ length: DIMS }, g);
    return { id: `i${i}`, vec, vec2: vec.map((x) => x + 0.15 * g()), vec3: Array.from({ length: DIMS }, g), price: i };
  });
  writeFileSync(path.join(home, 'items.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  writeDefs(home, {
    providers: [
      { name: 'local', kind: 'hnsw' },
      { name: 'kv', kind: 'sqlite' },
    ],
    entities: [{ name: 'item', key: 'id' }],
    sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
    features: [
      feature('v1', 'vec'),
      feature('v2', 'vec2'),
      feature('v3', 'vec3'),
      { name: 'item_price', variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', column: 'price', type: 'float', provider: 'kv' },
    ],
    aliases: [],
  });
  store = FeatureStore.open({ home });
  await store.apply(await loadDefinitions(path.join(home, 'defs.yaml')));
  for (const ref of ['item_vec@v1', 'item_vec@v2', 'item_vec@v3', 'item_price@v1']) await store.materialize(ref, { progress: false });
  await store.setAlias('item_vec', 'prod', 'v1');
});

afterAll(async () => {
  await store?.close();
});

/** Exact cosine top-k of row `i` by column, itself excluded. */
function exactTop(i: number, column: 'vec' | 'vec2' | 'vec3', k: number): string[] {
  const norm = (v: number[]) => Math.hypot(...v);
  const q = rows[i][column];
  return rows
    .filter((_, j) => j !== i)
    .map((r) => ({ id: r.id, s: r[column].reduce((s, x, d) => s + x * q[d], 0) / (norm(r[column]) * norm(q)) }))
    .sort((a, b) => b.s - a.s)
    .slice(0, k)
    .map((x) => x.id);
}

describe('compare', () => {
  it("overlap matches a brute-force computation within 0.05, recall is B's index against an exact scan", async () => {
    const k = 10;
    const report = await store.compare('item_vec@v1', 'item_vec@v2', { sample: 300, k });
    expect(report).toMatchObject({ a: 'item_vec@v1', b: 'item_vec@v2', k, mode: 'sample', queries: 300 });
    // The same 300 entities, by brute force.
    const sampled = (await store.compare('item_vec@v1', 'item_vec@v1', { sample: 300, k })).queries;
    expect(sampled).toBe(300);
    const ids = store.health.sample((await store.registry.getFeature('item_vec', 'v1'))!);
    expect(ids.length).toBeGreaterThanOrEqual(300);
    // Brute force over every row gives the population value; the sample's mean must be close to it.
    let sum = 0;
    for (let i = 0; i < N; i += 5) {
      const a = exactTop(i, 'vec', k);
      const b = new Set(exactTop(i, 'vec2', k));
      sum += a.filter((id) => b.has(id)).length / k;
    }
    const brute = sum / Math.ceil(N / 5);
    expect(Math.abs(report.overlap - brute)).toBeLessThan(0.05);
    expect(report.overlap).toBeGreaterThan(0.3);
    expect(report.recall).toBeGreaterThan(0.9);
    expect(report.rank_correlation).not.toBeNull();
    expect(report.norms!.a.mean).toBeCloseTo(1, 4);
    // Unrelated vectors share almost nothing.
    const far = await store.compare('item_vec@v1', 'item_vec@v3', { sample: 200, k });
    expect(far.overlap).toBeLessThan(0.1);
    // A variant compared with itself agrees fully.
    const self = await store.compare('item_vec@v2', 'item_vec@v2', { sample: 100, k });
    expect(self.overlap).toBe(1);
  });

  it('compares on given queries, and refuses bad input with a coded error', async () => {
    const report = await store.compare('item_vec@v1', 'item_vec@v2', { queries: [{ vector: rows[3].vec }, { id: 'i4' }], k: 5 });
    expect(report).toMatchObject({ mode: 'queries', queries: 2, norms: null });
    await expect(store.compare('item_vec@v1', 'item_vec@v2', { sample: 0 })).rejects.toMatchObject({ code: 'NL_BAD_REQUEST' });
    await expect(store.compare('item_vec@v1', 'item_price@v1')).rejects.toMatchObject({ code: 'NL_UNSUPPORTED' });
    await expect(store.compare('item_vec@v1', 'nope@v1')).rejects.toMatchObject({ code: 'NL_FEATURE_NOT_FOUND' });
  });
});

describe('gated alias moves, rollback, drop, shadow', () => {
  it('a failing gate refuses the move and changes nothing; a passing one moves; rollback restores the answers exactly', async () => {
    const before = await store.nearest({ feature: 'item_vec', k: 10, query: { id: 'i9' } });
    await expect(store.setAlias('item_vec', 'prod', 'v3', { gate: 'overlap>=0.6', sample: 200 })).rejects.toMatchObject({ code: 'NL_GATE_FAILED' });
    expect((await store.registry.getAlias('item_vec', 'prod'))!.variant).toBe('v1');
    await expect(store.setAlias('item_vec', 'prod', 'v2', { gate: 'overlap>=>0.6' })).rejects.toMatchObject({ code: 'NL_BAD_REQUEST' });
    await expect(store.setAlias('item_vec', 'prod', 'v2', { gate: 'ovrlap>=0.6' })).rejects.toMatchObject({ code: 'NL_BAD_REQUEST' });
    const moved = await store.setAlias('item_vec', 'prod', 'v2', { gate: 'overlap>=0.3,recall>=0.9', sample: 200 });
    expect(moved.report!.overlap).toBeGreaterThanOrEqual(0.3);
    expect((await store.registry.getAlias('item_vec', 'prod'))!.variant).toBe('v2');
    expect((await store.nearest({ feature: 'item_vec', k: 1, query: { id: 'i9' } })).variant).toBe('v2');
    const back = await store.rollbackAlias('item_vec', 'prod');
    expect(back).toMatchObject({ previous: 'v2', alias: { variant: 'v1' } });
    expect(await store.nearest({ feature: 'item_vec', k: 10, query: { id: 'i9' } })).toMatchObject({ variant: 'v1', hits: before.hits });
    await store.setAlias('item_vec', 'canary', 'v3');
    await expect(store.rollbackAlias('item_vec', 'canary')).rejects.toMatchObject({ code: 'NL_CONFLICT' });
  });

  it('shadow traffic mirrors a share of the alias queries off the request path and records their overlap', async () => {
    await store.shadowAlias('item_vec', 'prod', 'v2', 1);
    for (let i = 0; i < 40; i++) await store.nearest({ feature: 'item_vec', k: 10, query: { id: `i${i}` } });
    // Queries naming a variant directly are not the alias's traffic.
    await store.nearest({ feature: 'item_vec@v1', k: 10, query: { id: 'i1' } });
    for (let i = 0; i < 100 && (store.shadowStats()[0]?.queries ?? 0) < 40; i++) await new Promise((r) => setTimeout(r, 10));
    const [live] = store.shadowStats();
    expect(live).toMatchObject({ feature: 'item_vec', alias: 'prod', variant: 'v2', queries: 40, errors: 0 });
    expect(live.overlap!).toBeGreaterThan(0.3);
    await store.flushShadows();
    expect((await store.registry.listShadows('item_vec'))[0]).toMatchObject({ variant: 'v2', fraction: 1, queries: 40 });
    await expect(Promise.resolve().then(() => store.shadowAlias('item_vec', 'prod', 'v2', 2))).rejects.toMatchObject({ code: 'NL_BAD_REQUEST' });
  });

  it('drop is refused while an alias points at or shadows the variant; then removes its data and keeps its record', async () => {
    await expect(store.drop('item_vec@v1')).rejects.toMatchObject({ code: 'NL_CONFLICT', message: expect.stringMatching(/alias item_vec@prod/) });
    await expect(store.drop('item_vec@v2')).rejects.toMatchObject({ code: 'NL_CONFLICT', message: expect.stringMatching(/shadow/) });
    await expect(store.drop('item_vec@v3')).rejects.toMatchObject({ code: 'NL_CONFLICT', message: expect.stringMatching(/canary/) });
    await store.shadowAlias('item_vec', 'prod', 'v2', 0);
    const dropped = await store.drop('item_vec@v2');
    expect(dropped).toMatchObject({ status: 'dropped', rows: 0, vector: { column: 'vec2' } });
    expect(existsSync(path.join(home, 'indexes', 'item_vec__v2'))).toBe(false);
    await expect(store.nearest({ feature: 'item_vec@v2', k: 1, query: { id: 'i1' } })).rejects.toMatchObject({ code: 'NL_NOT_MATERIALIZED' });
    // Pushes no longer reach it, and everything else still follows them.
    await store.push('items', [{ id: 'new', vec: rows[1].vec, vec2: rows[1].vec2, vec3: rows[1].vec3, price: 1 }]);
    expect(existsSync(path.join(home, 'indexes', 'item_vec__v2'))).toBe(false);
    expect((await store.nearest({ feature: 'item_vec', k: 1, query: { vector: rows[1].vec }, exclude: ['i1'] })).hits[0].id).toBe('new');
    expect((await store.registry.listEvents({ feature: 'item_vec' })).some((e) => e.action === 'drop' && e.name === 'item_vec@v2')).toBe(true);
  });
});

describe('one builder per variant', () => {
  it('a second materialization of a variant held by another builder is refused, naming the holder', async () => {
    const defs = { ...(await loadDefinitions(path.join(home, 'defs.yaml'))) };
    defs.features = [{ ...defs.features[0], variant: 'v4' }];
    defs.aliases = [];
    await store.apply(defs);
    const other = { id: 'builder-host:4242:abcd', host: 'builder-host', pid: 4242 };
    expect(await store.registry.acquireLease('item_vec', 'v4', other, 60_000, () => true)).toEqual({ ok: true });
    await expect(store.materialize('item_vec@v4', { progress: false })).rejects.toMatchObject({
      code: 'NL_LEASE_HELD',
      message: expect.stringMatching(/builder-host:4242/),
    });
    expect((await store.registry.getFeature('item_vec', 'v4'))!.status).toBe('registered');
    // A holder on this host whose process is gone loses its lease at once (a kill -9, then --resume).
    await store.registry.releaseLease('item_vec', 'v4', other.id);
    const dead = { id: 'dead', host: (await import('node:os')).hostname(), pid: 999_999 };
    await store.registry.acquireLease('item_vec', 'v4', dead, 60_000, () => true);
    await expect(store.materialize('item_vec@v4', { progress: false })).resolves.toMatchObject({ status: 'done' });
  });
});

describe('over HTTP and the CLI', () => {
  it('POST /v1/compare and gated alias moves need scope admin; a failed gate answers 409 and moves nothing', async () => {
    const app = await build({ store, warm: false });
    const admin = (await store.registry.createKey('admin', null)).key;
    const serve = (await store.registry.createKey('serve', null)).key;
    const call = (method: 'POST' | 'PUT', url: string, payload: object | undefined, key: string) =>
      app.inject({ method, url, payload, headers: { authorization: `Bearer ${key}` } });
    expect((await call('POST', '/v1/compare', { a: 'item_vec@v1', b: 'item_vec@v3', sample: 50 }, serve)).statusCode).toBe(403);
    const cmp = await call('POST', '/v1/compare', { a: 'item_vec@v1', b: 'item_vec@v3', sample: 50, gate: 'overlap>=0.5' }, admin);
    expect(cmp.statusCode).toBe(200);
    expect(cmp.json()).toMatchObject({ queries: 50, gate: { passed: false } });
    const refused = await call('PUT', '/v1/registry/aliases/item_vec/prod', { variant: 'v3', gate: 'overlap>=0.5', sample: 50 }, admin);
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error.code).toBe('NL_GATE_FAILED');
    expect((await store.registry.getAlias('item_vec', 'prod'))!.variant).toBe('v1');
    const moved = await call('PUT', '/v1/registry/aliases/item_vec/prod', { variant: 'v3', force: false }, admin);
    expect(moved.json()).toMatchObject({ variant: 'v3', previous: 'v1' });
    const back = await call('POST', '/v1/registry/aliases/item_vec/prod/rollback', undefined, admin);
    expect(back.json()).toMatchObject({ variant: 'v1', previous: 'v3' });
    await app.close();
    for (const k of await store.registry.listKeys()) await store.registry.revokeKey(k.id);
  });

  it('nearline compare --json --gate exits non-zero when a condition fails', async () => {
    await store.close();
    const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', cwd: home });
    const pass = cli('compare', 'item_vec@v1', 'item_vec@v1', '--sample', '50', '--json', '--gate', 'overlap>=0.99');
    expect(pass.status, pass.stderr).toBe(0);
    expect(JSON.parse(pass.stdout)).toMatchObject({ overlap: 1, gate: { passed: true, failed: [] } });
    const fail = cli('compare', 'item_vec@v1', 'item_vec@v3', '--sample', '50', '--gate', 'overlap>=0.9');
    expect(fail.status).toBe(1);
    expect(fail.stderr).toMatch(/NL_GATE_FAILED: overlap .* is not >= 0.9/);
    const gated = cli('alias', 'set', 'item_vec', 'prod', 'v3', '--gate', 'overlap>=0.9', '--sample', '50');
    expect(gated.status).toBe(1);
    expect(JSON.parse(cli('show', 'item_vec@v1').stdout)).toMatchObject({ status: 'live', aliases: ['prod'] });
    store = FeatureStore.open({ home });
  });
});
