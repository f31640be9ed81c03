import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { createOnnxModel } from '../../src/providers/embedding/onnx.ts';
import { cacheBytesFromEnv, cacheModelId, EmbeddingCache, withCache } from '../../src/store/embedding-cache.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { makeEncoder } from '../../scripts/make-encoder.ts';
import { tempDir, writeDefs } from '../helpers/fixtures.ts';
import { SENTENCES, spec, TINY } from './helpers.ts';

const DOCS = Array.from({ length: 50 }, (_, i) => ({ id: `d${i}`, body: `${SENTENCES[i % SENTENCES.length]} number ${i}` }));

function defs(features: Array<{ variant: string; model: string }>, models = [{ version: '1', path: 'models/tiny' }]) {
  return {
    providers: [{ name: 'local', kind: 'hnsw' }],
    entities: [{ name: 'doc', key: 'id' }],
    sources: [{ name: 'docs', variant: 'v1', kind: 'jsonl', path: 'docs.jsonl' }],
    models: models.map((m) => ({ name: 'tiny', version: m.version, runtime: 'onnx', path: m.path, pooling: 'mean', normalize: true, maxTokens: 32 })),
    features: features.map((f) => ({
      name: 'doc_vec',
      variant: f.variant,
      entity: 'doc',
      source: 'docs@v1',
      kind: 'embedding',
      text: { column: 'body', model: f.model },
      metric: 'cosine',
      provider: 'local',
    })),
  };
}

function vec(values: number[]): Float32Array {
  return Float32Array.from(values);
}

describe('embedding cache in the store', () => {
  let home: string;

  beforeAll(() => {
    home = tempDir();
    makeEncoder({ ...TINY, out: path.join(home, 'models/tiny') });
    // Another version: same shape, other weights, so other files and another sha256.
    makeEncoder({ ...TINY, seed: 2, out: path.join(home, 'models/tiny2') });
    writeFileSync(path.join(home, 'docs.jsonl'), DOCS.map((d) => JSON.stringify(d)).join('\n') + '\n');
  });

  it('a second variant with the same model takes every text from the cache, with identical vectors; another model version never hits', async () => {
    const store = FeatureStore.open({ home });
    const models = [
      { version: '1', path: 'models/tiny' },
      { version: '2', path: 'models/tiny2' },
    ];
    const features = [
      { variant: 'v1', model: 'tiny@1' },
      { variant: 'v2', model: 'tiny@1' },
      { variant: 'v3', model: 'tiny@2' },
    ];
    await store.apply(await loadDefinitions(writeDefs(home, defs(features, models))));
    expect((await store.registry.getModel('tiny', '1'))!.sha256).not.toBe((await store.registry.getModel('tiny', '2'))!.sha256);

    const first = await store.materialize('doc_vec@v1', { progress: false, batchSize: 16 });
    expect(first).toMatchObject({ rows: DOCS.length, cacheHits: 0, embedded: DOCS.length });
    const second = await store.materialize('doc_vec@v2', { progress: false, batchSize: 16 });
    expect(second).toMatchObject({ rows: DOCS.length, cacheHits: DOCS.length, embedded: 0 });
    const other = await store.materialize('doc_vec@v3', { progress: false, batchSize: 16 });
    expect(other).toMatchObject({ rows: DOCS.length, cacheHits: 0, embedded: DOCS.length });

    const ids = DOCS.map((d) => d.id);
    const rows = await store.online(ids, ['doc_vec@v1', 'doc_vec@v2', 'doc_vec@v3']);
    for (const row of rows) {
      expect(Array.from(row.features['doc_vec@v2'] as Float32Array)).toEqual(Array.from(row.features['doc_vec@v1'] as Float32Array));
      expect(Array.from(row.features['doc_vec@v3'] as Float32Array)).not.toEqual(Array.from(row.features['doc_vec@v1'] as Float32Array));
    }
    // Text queries and /v1/embed go through the same cache: the stored vector of a document is its text's.
    const embedded = await store.embed('tiny@1', [DOCS[3].body]);
    expect(Array.from(embedded.vectors[0])).toEqual(Array.from(rows[3].features['doc_vec@v1'] as Float32Array));
    expect(store.embeddingCache!.count()).toBe(2 * DOCS.length);
    // The store's onnx models embed in worker threads, so its text queries do not hold the JS thread.
    expect(await store.textBlocks('doc_vec@v1')).toBe(false);
    expect(await store.textBlocks('no_such_feature')).toBe(true);
    await store.close();
  });

  it('embeddingCacheBytes 0 turns the cache off; embedWorkers 0 embeds on the JS thread', async () => {
    const dir = tempDir();
    makeEncoder({ ...TINY, out: path.join(dir, 'models/tiny') });
    writeFileSync(path.join(dir, 'docs.jsonl'), DOCS.map((d) => JSON.stringify(d)).join('\n') + '\n');
    const store = FeatureStore.open({ home: dir, embeddingCacheBytes: 0, embedWorkers: 0 });
    await store.apply(
      await loadDefinitions(
        writeDefs(
          dir,
          defs([
            { variant: 'v1', model: 'tiny@1' },
            { variant: 'v2', model: 'tiny@1' },
          ]),
        ),
      ),
    );
    await store.materialize('doc_vec@v1', { progress: false });
    const again = await store.materialize('doc_vec@v2', { progress: false });
    expect(again).toMatchObject({ cacheHits: 0, embedded: DOCS.length });
    expect(store.embeddingCache).toBeUndefined();
    expect(await store.textBlocks('doc_vec@v1')).toBe(true);
    await store.close();
  });

  it('NEARLINE_EMBED_CACHE_MB sets the bound in MiB; a bad value is a coded error', () => {
    expect(cacheBytesFromEnv({ NEARLINE_EMBED_CACHE_MB: '2' })).toBe(2 * 1024 * 1024);
    expect(cacheBytesFromEnv({ NEARLINE_EMBED_CACHE_MB: '0' })).toBe(0);
    expect(cacheBytesFromEnv({})).toBeUndefined();
    expect(() => cacheBytesFromEnv({ NEARLINE_EMBED_CACHE_MB: 'lots' })).toThrow(expect.objectContaining({ code: 'NL_BAD_REQUEST' }));
    expect(() => cacheBytesFromEnv({ NEARLINE_EMBED_CACHE_MB: '-1' })).toThrow(expect.objectContaining({ code: 'NL_BAD_REQUEST' }));
  });
});

describe('EmbeddingCache', () => {
  it('stays within its bound, evicting the least recently used entries first', () => {
    const cache = new EmbeddingCache({ file: path.join(tempDir(), 'cache', 'e.db'), maxBytes: 20_000 });
    const dims = 64; // 256 bytes of vector per entry, plus overhead
    const texts = Array.from({ length: 200 }, (_, i) => `text ${i}`);
    const vectors = texts.map((_, i) => new Float32Array(dims).fill(i));
    cache.put('m', texts.slice(0, 10), vectors.slice(0, 10));
    for (let i = 10; i < 200; i += 10) {
      // Read between writes: always more recently used than the oldest writes, so never evicted.
      expect(cache.get('m', dims, ['text 0'])[0]).toBeDefined();
      cache.put('m', texts.slice(i, i + 10), vectors.slice(i, i + 10));
      expect(cache.totalBytes()).toBeLessThanOrEqual(20_000);
    }
    expect(cache.count()).toBeLessThan(200);
    expect(cache.count()).toBeGreaterThan(30);
    const got = cache.get('m', dims, texts);
    expect(got[0]?.[0]).toBe(0);
    expect(got[1]).toBeUndefined();
    expect(got[199]?.[0]).toBe(199);
    cache.close();
  });

  it('keeps models apart, and never serves an entry of the wrong dims or a torn vector', () => {
    const file = path.join(tempDir(), 'e.db');
    const cache = new EmbeddingCache({ file });
    cache.put('model-a', ['hello', 'world'], [vec([1, 2, 3]), vec([4, 5, 6])]);
    expect(cache.get('model-b', 3, ['hello'])).toEqual([undefined]);
    expect(cache.get('model-a', 4, ['hello'])).toEqual([undefined]);
    expect(Array.from(cache.get('model-a', 3, ['hello'])[0]!)).toEqual([1, 2, 3]);
    // A torn write: the entry claims 3 dims but holds 2 floats.
    const db = new Database(file);
    db.prepare('UPDATE entries SET vector = ? WHERE dims = 3 AND vector = ?').run(Buffer.from(vec([9, 9]).buffer), Buffer.from(vec([4, 5, 6]).buffer));
    db.close();
    expect(cache.get('model-a', 3, ['world'])).toEqual([undefined]);
    cache.close();
  });

  it('a corrupt entry is re-embedded and replaced, not served', async () => {
    const dir = tempDir();
    const modelDir = makeEncoder({ ...TINY, out: path.join(dir, 'tiny') });
    const raw = createOnnxModel(spec('onnx', modelDir));
    await raw.open();
    const file = path.join(dir, 'e.db');
    const cache = new EmbeddingCache({ file });
    const id = cacheModelId('f'.repeat(64), spec('onnx', modelDir));
    const model = withCache(raw, cache, id);
    const texts = SENTENCES.slice(0, 3);
    const truth = await raw.embed(texts);
    expect(await model.embedCounted(texts)).toMatchObject({ hits: 0 });
    const db = new Database(file);
    db.prepare('UPDATE entries SET dims = 7').run();
    db.close();
    const again = await model.embedCounted(texts);
    expect(again.hits).toBe(0);
    again.vectors.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(truth[i])));
    const third = await model.embedCounted([...texts, texts[0]]);
    expect(third.hits).toBe(4);
    third.vectors.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(truth[i % 3])));
    // Bad input is refused before the cache is read or written.
    await expect(model.embedCounted(['ok', ''])).rejects.toMatchObject({ code: 'NL_BAD_TEXT' });
    expect(cache.count()).toBe(3);
    // Settings that change a vector change the model id.
    expect(cacheModelId('f'.repeat(64), spec('onnx', modelDir, { normalize: true }))).not.toBe(id);
    await raw.close();
    cache.close();
  });
});
