import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { itemVecFeature, seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';

/*
 * A model change under live traffic, over real HTTP: 8 clients push rows and 4 query prod while item_vec@v2 is
 * applied, built (backfill, then catch-up from the pushed rows), moved to behind a gate, and rolled back.
 */

const DIMS = 12;

const feature = (variant: string, column: string) => itemVecFeature(variant, { dims: DIMS, column, index: { M: 16, efConstruction: 100, ef: 64 } });

describe('cutover under push load', () => {
  it('no failed query, nothing missing from v2 at cutover, rollback restores v1 exactly', { timeout: 240_000 }, async () => {
    const home = tempDir();
    const rnd = seeded(17);
    const g = () => rnd() - 0.5;
    const row = (id: string) => {
      const vec = Array.from({ length: DIMS }, g);
      return { id, vec, vec2: vec.map((x) => x + 0.1 * g()) };
    };
    writeFileSync(path.join(home, 'items.jsonl'), Array.from({ length: 3000 }, (_, i) => JSON.stringify(row(`i${i}`))).join('\n') + '\n');
    const defs = {
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'item', key: 'id' }],
      sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
      features: [feature('v1', 'vec')],
      aliases: [{ feature: 'item_vec', name: 'prod', variant: 'v1' }],
    };
    writeDefs(home, defs);
    const store = FeatureStore.open({ home, live: { snapshotEntries: 500 } });
    await store.apply(await loadDefinitions(path.join(home, 'defs.yaml')));
    await store.materialize('item_vec@v1', { progress: false });
    await store.setAlias('item_vec', 'prod', 'v1', { force: true });
    await store.live.claim();
    const app = await build({ store, warm: false });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const post = async (p: string, body: unknown) => {
      const res = await fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as any };
    };

    let stop = false;
    const acked = new Set<string>();
    const deleted = new Set<string>();
    let pushFailures = 0;
    const pushers = Array.from({ length: 8 }, async (_, c) => {
      for (let n = 0; !stop; n++) {
        const rows: Array<Record<string, unknown>> = [row(`c${c}_${n}`)];
        if (n % 10 === 9) rows.push({ id: `i${c * 100 + n}`, _deleted: true });
        const r = await post('/v1/sources/items/push', { rows });
        if (r.status !== 200) pushFailures++;
        else
          for (const x of rows) {
            if (x._deleted) deleted.add(x.id as string);
            else acked.add(x.id as string);
          }
      }
    });
    let queries = 0;
    const failedQueries: unknown[] = [];
    const queriers = Array.from({ length: 4 }, async (_, c) => {
      for (let n = 0; !stop; n++) {
        const r = await post('/v1/nearest', { feature: 'item_vec', k: 10, query: { id: `i${(c * 700 + n) % 3000}` } });
        queries++;
        // An id deleted by a push answers 404; anything else is a failure.
        if (r.status !== 200 && !(r.status === 404 && r.body.error.code === 'NL_ID_NOT_FOUND')) failedQueries.push(r.body);
      }
    });
    const settle = () => new Promise((r) => setTimeout(r, 300));
    await settle();

    // The new variant, applied and built while both kinds of traffic run.
    writeDefs(home, { ...defs, features: [feature('v1', 'vec'), feature('v2', 'vec2')], aliases: [] }, 'v2.yaml');
    await store.apply(await loadDefinitions(path.join(home, 'v2.yaml')));
    await store.materialize('item_vec@v2', { progress: false });
    await settle();
    const moved = await store.setAlias('item_vec', 'prod', 'v2', { gate: 'overlap>=0.5,recall>=0.9', sample: 300 });
    expect(moved.report!.overlap).toBeGreaterThanOrEqual(0.5);
    // At cutover v2 holds every entity v1 holds.
    const ids = [...Array.from({ length: 3000 }, (_, i) => `i${i}`), ...acked];
    const missing = (await store.online(ids, ['item_vec@v1', 'item_vec@v2'])).filter(
      (r) => (r.features['item_vec@v1'] === null) !== (r.features['item_vec@v2'] === null),
    );
    expect(missing.map((r) => r.id)).toEqual([]);
    await settle();
    stop = true;
    await Promise.all([...pushers, ...queriers]);
    expect(failedQueries).toEqual([]);
    expect(pushFailures).toBe(0);
    expect(queries).toBeGreaterThan(100);
    expect(acked.size).toBeGreaterThan(100);
    // Every acknowledged row reached both variants; every acknowledged deletion left both.
    const after = await store.online([...acked, ...deleted], ['item_vec@v1', 'item_vec@v2']);
    expect(after.filter((r) => acked.has(r.id) && (r.features['item_vec@v1'] === null || r.features['item_vec@v2'] === null))).toEqual([]);
    expect(after.filter((r) => deleted.has(r.id) && !acked.has(r.id) && (r.features['item_vec@v1'] !== null || r.features['item_vec@v2'] !== null))).toEqual(
      [],
    );

    // Rollback: prod answers exactly as v1 does.
    await store.rollbackAlias('item_vec', 'prod');
    const probe = ['i1', 'i2', [...acked][0]].map((id) => ({ k: 10, query: { id } }));
    const viaProd = await post('/v1/nearest/batch', { feature: 'item_vec', k: 10, queries: probe.map((p) => p.query) });
    const viaV1 = await post('/v1/nearest/batch', { feature: 'item_vec@v1', k: 10, queries: probe.map((p) => p.query) });
    expect(viaProd.body.results).toEqual(viaV1.body.results);
    expect(viaProd.body.results[0].hits.length).toBe(10);
    await app.close();
    await store.close();
  });
});
