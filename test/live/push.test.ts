import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore, type FeatureStoreOptions } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';

const DIMS = 8;

async function setup(opts: Partial<FeatureStoreOptions> = {}, n = 300) {
  const home = tempDir();
  const rows = writeWords(home, n, DIMS);
  const store = FeatureStore.open({ home, ...opts });
  await store.apply(await loadDefinitions(writeDefs(home, wordDefs(DIMS))));
  await store.materialize('word_vec@v1', { progress: false });
  await store.materialize('word_freq@v1', { progress: false });
  return { home, rows, store };
}

const vec = (seed: number) => Array.from({ length: DIMS }, (_, i) => Math.sin(seed * 31 + i * 7) + (i === seed % DIMS ? 2 : 0));

/** What one id looks like to every variant: vector present, scalar value, and whether a metadata filter finds it. */
async function view(store: FeatureStore, id: string, filter: unknown) {
  const [row] = await store.online([id], ['word_vec', 'word_freq']);
  const byFilter = await store.nearest({
    feature: 'word_vec',
    k: 5,
    query: { vector: Array.from((row.features.word_vec as Float32Array | null) ?? vec(1)) },
    filter,
  });
  return { hasVector: row.features.word_vec !== null, freq: row.features.word_freq, filtered: byFilter.hits.some((h) => h.id === id) };
}

describe('push rows to a source', () => {
  it('every variant built from the source updates from the same row, and a query right after sees it', async () => {
    const { store } = await setup();
    const r = await store.push('words', [
      { id: 'new1', vec: vec(1), lang: 'de', freq: 42 },
      { id: 'w5', vec: vec(2), lang: 'de', freq: 7 },
    ]);
    expect(r).toMatchObject({ source: 'words', accepted: 2, offset: 2 });
    const hit = await store.nearest({ feature: 'word_vec', k: 1, query: { vector: vec(1) } });
    expect(hit.hits[0].id).toBe('new1');
    expect(await view(store, 'new1', { field: 'lang', op: 'eq', value: 'de' })).toEqual({ hasVector: true, freq: 42, filtered: true });
    expect(await view(store, 'w5', { field: 'lang', op: 'eq', value: 'de' })).toEqual({ hasVector: true, freq: 7, filtered: true });
    // A deletion removes the entity from every variant.
    await store.push('words', [{ id: 'w5', _deleted: true }]);
    const [gone] = await store.online(['w5'], ['word_vec', 'word_freq']);
    expect(gone.features).toEqual({ word_vec: null, word_freq: null });
    const byId = await store.nearest({ feature: 'word_vec', k: 300, query: { vector: vec(2) } });
    expect(byId.hits.map((h) => h.id)).not.toContain('w5');
    await store.close();
  });

  it('a bad batch is refused whole, naming the row, the variant and the column, and changes nothing', async () => {
    const { store, home } = await setup();
    const before = await store.online(['w1', 'x'], ['word_vec', 'word_freq']);
    const cases: Array<[unknown[], RegExp]> = [
      [
        [
          { id: 'x', vec: vec(1), lang: 'en', freq: 1 },
          { id: 'y', vec: [1, 2, 3], lang: 'en', freq: 1 },
        ],
        /rows\[1\]: word_vec@v1: .*expected 8.*"vec"/,
      ],
      [[{ id: 'x', vec: vec(1), lang: 'en', freq: 'many' }], /rows\[0\]: word_freq@v1: "many" is not a finite number/],
      [[{ id: 'x', vec: vec(1), lang: 'en', freqq: 1 }], /rows\[0\]: column "freqq" is not a column of source words \(did you mean "freq"\?\)/],
      [[{ vec: vec(1), lang: 'en', freq: 1 }], /rows\[0\]: key column "id"/],
      [[{ id: 'x', vec: [...vec(1).slice(1), Number.NaN], lang: 'en' }], /rows\[0\]: word_vec@v1/],
      [[{ id: 'x', vec: new Array(DIMS).fill(0), lang: 'en' }], /rows\[0\]: word_vec@v1: column "vec": a zero vector/],
      [[{ id: 'x', vec: vec(1), _deleted: 'yes' }], /_deleted must be true or false/],
      [['not a row'], /rows\[0\]: expected an object/],
    ];
    for (const [rows, message] of cases) {
      await expect(store.push('words', rows), JSON.stringify(rows).slice(0, 60)).rejects.toMatchObject({
        code: 'NL_BAD_SOURCE_ROW',
        message: expect.stringMatching(message),
      });
    }
    await expect(store.push('nope', [{ id: 'x' }])).rejects.toMatchObject({ code: 'NL_SOURCE_NOT_FOUND' });
    await expect(store.push('words', [])).rejects.toMatchObject({ code: 'NL_BAD_REQUEST' });
    await expect(
      store.push(
        'words',
        Array.from({ length: 1001 }, (_, i) => ({ id: `z${i}`, vec: vec(i), lang: 'en' })),
      ),
    ).rejects.toMatchObject({ code: 'NL_LIMIT_EXCEEDED' });
    expect(await store.online(['w1', 'x'], ['word_vec', 'word_freq'])).toEqual(before);
    expect((await store.live.stats()).sources[0].end).toBe(0);
    const logDir = path.join(home, 'log', 'words');
    expect(existsSync(logDir) ? readdirSync(logDir).filter((f) => f.endsWith('.log')) : []).toEqual([]);
    await store.close();
  });

  it('vector writes go through the log: a second store on the same home sees them without any snapshot', async () => {
    const { store, home } = await setup({ live: { snapshotSeconds: 3600 } });
    const res = await store.writeVectors('word_vec', [{ id: 'put1', vector: vec(3), metadata: { lang: 'xx' } }], ['w2']);
    expect(res).toMatchObject({ upserted: 1, deleted: 1, offset: 2 });
    await store.push('words', [{ id: 'pushed', vec: vec(4), lang: 'yy', freq: 3 }]);
    // The writer has not snapshotted: the reader rebuilds the state from the snapshot plus the log. A vector
    // write touches its one variant: w2 keeps its scalar.
    const reader = FeatureStore.open({ home });
    const got = await reader.online(['put1', 'w2', 'pushed'], ['word_vec', 'word_freq']);
    expect(got.map((r) => [r.id, r.features.word_vec !== null, r.features.word_freq])).toEqual([
      ['put1', true, null],
      ['w2', false, 2],
      ['pushed', true, 3],
    ]);
    const near = await reader.nearest({ feature: 'word_vec', k: 1, query: { vector: vec(3) }, filter: { field: 'lang', op: 'eq', value: 'xx' } });
    expect(near.hits.map((h) => h.id)).toEqual(['put1']);
    await reader.close();
    await store.close();
  });

  it('an int8 variant takes pushes: a second store replays them from the log, and a snapshot keeps the codes and the f32 vectors', async () => {
    const home = tempDir();
    writeWords(home, 300, DIMS);
    const store = FeatureStore.open({ home, live: { snapshotSeconds: 3600 } });
    const defs = wordDefs(DIMS);
    (defs.features[0].index as Record<string, unknown>).quantization = 'int8';
    await store.apply(await loadDefinitions(writeDefs(home, defs)));
    await store.materialize('word_vec@v1', { progress: false });
    await store.materialize('word_freq@v1', { progress: false });
    await store.push('words', [
      { id: 'new1', vec: vec(1), lang: 'de', freq: 42 },
      { id: 'w5', vec: vec(2), lang: 'de', freq: 7 },
      { id: 'w6', _deleted: true },
    ]);
    expect((await store.nearest({ feature: 'word_vec', k: 1, query: { vector: vec(1) } })).hits[0].id).toBe('new1');
    const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));
    const expectRows = async (s: FeatureStore) => {
      const got = await s.online(['new1', 'w5', 'w6'], ['word_vec']);
      expect(got[2].features.word_vec).toBeNull();
      // Full precision, read back from the vectors file: not the int8 codes' approximation.
      [vec(1), vec(2)].forEach((v, i) => Array.from(got[i].features.word_vec as Float32Array).forEach((x, j) => expect(x).toBeCloseTo(unit(v)[j], 6)));
      const near = await s.nearest({ feature: 'word_vec', k: 2, query: { vector: vec(2) }, filter: { field: 'lang', op: 'eq', value: 'de' } });
      expect(near.hits.map((h) => h.id)).toEqual(['w5', 'new1']);
      expect(near.hits[0].score).toBeCloseTo(1, 5);
    };
    // Nothing snapshotted since the pushes: the reader applies them from the log.
    const reader = FeatureStore.open({ home });
    await expectRows(reader);
    await reader.close();
    await store.close();
    const manifest = JSON.parse(readFileSync(path.join(home, 'indexes', 'word_vec__v1', 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ quantization: 'int8', logOffset: 3 });
    const again = FeatureStore.open({ home });
    await expectRows(again);
    await again.close();
  });

  it('snapshots run in the background by rows, record their offset, and a reopen replays only past it', async () => {
    const { store, home } = await setup({ live: { snapshotEntries: 50, snapshotSeconds: 3600 } });
    for (let b = 0; b < 4; b++) {
      await store.push(
        'words',
        Array.from({ length: 40 }, (_, i) => ({ id: `p${b}_${i}`, vec: vec(b * 40 + i), lang: 'en', freq: i })),
      );
    }
    const manifest = () => JSON.parse(readFileSync(path.join(home, 'indexes', 'word_vec__v1', 'manifest.json'), 'utf8'));
    const deadline = Date.now() + 10_000;
    while (manifest().logOffset < 120 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(manifest().logOffset).toBeGreaterThanOrEqual(120);
    expect(await store.registry.getLogOffset('word_freq', 'v1')).toBeGreaterThanOrEqual(120);
    await store.close();
    // A graceful close snapshots everything.
    expect(manifest().logOffset).toBe(160);
    const again = FeatureStore.open({ home });
    const [row] = await again.online(['p3_39'], ['word_vec', 'word_freq']);
    expect(row.features.word_freq).toBe(39);
    expect((await again.live.stats()).variants.find((v) => v.feature === 'word_vec')).toMatchObject({ applied: 160, durable: 160 });
    await again.close();
  });

  it('a variant created later is built from the file rows overridden by every pushed row, deletions included', async () => {
    const { store, home, rows } = await setup();
    await store.push('words', [
      { id: 'late1', vec: vec(9), lang: 'fr', freq: 1 },
      { id: 'w3', vec: vec(10), lang: 'fr', freq: 2 },
      { id: 'w4', _deleted: true },
    ]);
    const defs = wordDefs(DIMS, { variant: 'v2', metric: 'l2' });
    defs.aliases = [];
    defs.features = defs.features.filter((f) => f.kind === 'embedding');
    await store.apply(await loadDefinitions(writeDefs(home, defs, 'v2.yaml')));
    const r = await store.materialize('word_vec@v2', { progress: false });
    expect(r.rows).toBe(rows.length + 1 - 1);
    const got = await store.online(['late1', 'w3', 'w4'], ['word_vec@v2']);
    expect(got.map((x) => x.features['word_vec@v2'] !== null)).toEqual([true, true, false]);
    expect(Array.from(got[1].features['word_vec@v2'] as Float32Array).map((x) => Math.round(x * 1e4) / 1e4)).toEqual(
      vec(10).map((x) => Math.round(x * 1e4) / 1e4),
    );
    // Pushes after it was built reach it too.
    await store.push('words', [{ id: 'late2', vec: vec(11), lang: 'fr', freq: 5 }]);
    const [late2] = await store.online(['late2'], ['word_vec@v2']);
    expect(late2.features['word_vec@v2']).not.toBeNull();
    await store.close();
  });

  it('compaction keeps the log to the latest row per id once every variant has snapshotted past it', async () => {
    const { store, home } = await setup({ live: { snapshotEntries: 1, segmentBytes: 4096 } });
    for (let round = 0; round < 12; round++) {
      await store.push(
        'words',
        Array.from({ length: 20 }, (_, i) => ({ id: `c${i}`, vec: vec(round * 20 + i), lang: 'en', freq: round })),
      );
    }
    await store.live.snapshotDue(true);
    const stats = (await store.live.stats()).sources[0];
    expect(stats.compactions).toBeGreaterThan(0);
    await store.close();
    const again = FeatureStore.open({ home });
    const got = await again.online(['c0', 'c19'], ['word_freq']);
    expect(got.map((r) => r.features.word_freq)).toEqual([11, 11]);
    // A new variant built now sees exactly the latest rows.
    const defs = wordDefs(DIMS, { variant: 'v3' });
    defs.aliases = [];
    defs.features = defs.features.filter((f) => f.kind === 'embedding');
    await again.apply(await loadDefinitions(writeDefs(home, defs, 'v3.yaml')));
    await again.materialize('word_vec@v3', { progress: false });
    const [c7] = await again.online(['c7'], ['word_vec@v3']);
    const expected = vec(11 * 20 + 7);
    const norm = Math.hypot(...expected);
    expect(Array.from(c7.features['word_vec@v3'] as Float32Array).map((x) => Math.round(x * 1e4))).toEqual(expected.map((x) => Math.round((x / norm) * 1e4)));
    await again.close();
  });
});
