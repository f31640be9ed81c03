import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { exactCosine, tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';

async function setup(n: number, dims: number, mutate?: (home: string) => void) {
  const home = tempDir();
  const rows = writeWords(home, n, dims);
  mutate?.(home);
  const store = FeatureStore.open({ home });
  await store.apply(await loadDefinitions(writeDefs(home, wordDefs(dims))));
  return { home, rows, store };
}

describe('materialization of precomputed vectors and scalars', () => {
  it('writes every row, serves the right neighbours, and a re-run changes nothing', async () => {
    const { rows, store } = await setup(2000, 16);
    const r = await store.materialize('word_vec@v1', { progress: false });
    expect(r).toMatchObject({ status: 'done', rows: 2000, skipped: 0 });
    const again = await store.materialize('word_vec@v1', { progress: false });
    expect(again.status).toBe('unchanged');
    const q = rows[7];
    const res = await store.nearest({ feature: 'word_vec', k: 10, query: { id: q.id } });
    expect(res.variant).toBe('v1');
    const truth = exactCosine(rows, q.vec, 10, q.id);
    const overlap = res.hits.filter((h) => truth.includes(h.id)).length;
    expect(overlap).toBeGreaterThanOrEqual(9);
    expect(res.hits.map((h) => h.id)).not.toContain(q.id);
    await store.close();
  });

  it('scalar features land in the online store and join into nearest results', async () => {
    const { rows, store } = await setup(300, 8);
    await store.materialize('word_vec@v1', { progress: false });
    await store.materialize('word_freq@v1', { progress: false });
    const online = await store.online(['w1', 'w2', 'missing'], ['word_freq', 'word_vec']);
    expect(online[0].features.word_freq).toBe(rows[1].freq);
    // Cosine features keep unit-length vectors (as Qdrant does): compare directions.
    const got = online[1].features.word_vec as Float32Array;
    const want = rows[2].vec;
    const norm = Math.hypot(...want);
    want.forEach((x, i) => expect(got[i]).toBeCloseTo(x / norm, 6));
    expect(online[2].features).toEqual({ word_freq: null, word_vec: null });
    const res = await store.nearest({
      feature: 'word_vec',
      k: 5,
      query: { vector: rows[3].vec },
      filter: { field: 'lang', op: 'eq', value: 'fr' },
      include: { features: ['word_freq'] },
    });
    expect(res.hits).toHaveLength(5);
    for (const h of res.hits) {
      const row = rows[Number(h.id.slice(1))];
      expect(row.lang).toBe('fr');
      expect(h.features).toEqual({ word_freq: row.freq });
    }
    await store.close();
  });

  it.each([
    ['a wrong dimension', '{"id":"bad","vec":[1,2,3],"lang":"en","freq":1}', /dimension mismatch/],
    ['a NaN element', '{"id":"bad","vec":[1,2,3,4,5,6,7,"NaN"],"lang":"en","freq":1}', /not a finite number/],
    ['a missing id', '{"vec":[1,2,3,4,5,6,7,8],"lang":"en","freq":1}', /missing id/],
  ])('fails on %s with the line number, publishing nothing', async (_label, line, pattern) => {
    const { home, store } = await setup(1500, 8, (h) => appendFileSync(path.join(h, 'words.jsonl'), line + '\n'));
    const err = await store.materialize('word_vec@v1', { progress: false, batchSize: 100 }).catch((e) => e);
    expect(err.code).toBe('NL_BAD_SOURCE_ROW');
    expect(err.message).toContain('line 1501');
    expect(err.message).toMatch(pattern);
    expect((await store.registry.getFeature('word_vec', 'v1'))?.status).toBe('failed');
    await expect(store.nearest({ feature: 'word_vec@v1', query: { id: 'w1' } })).rejects.toMatchObject({ code: 'NL_NOT_MATERIALIZED' });
    const coll = await store.collection((await store.registry.getFeature('word_vec', 'v1'))!);
    expect(await coll.count()).toBe(0);
    expect(home).toBeTruthy();
    await store.close();
  });

  it('--skip-invalid skips bad rows, reports their count and lines, and publishes the rest', async () => {
    const { store } = await setup(100, 8, (h) => {
      appendFileSync(path.join(h, 'words.jsonl'), '{"id":"x","vec":[1]}\nnot json\n{"id":"y","vec":[0,0,0,0,0,0,0,null]}\n');
    });
    const r = await store.materialize('word_vec@v1', { progress: false, skipInvalid: true, maxInvalid: 3 });
    expect(r).toMatchObject({ status: 'done', rows: 100, skipped: 3 });
    expect(r.invalid.map((x) => x.line)).toEqual([101, 102, 103]);
    await store.close();
  });
});
