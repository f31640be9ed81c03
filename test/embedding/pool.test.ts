import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEmbeddingModel } from '../../src/providers/index.ts';
import { embedWorkersFromEnv } from '../../src/providers/embedding/pool.ts';
import type { EmbeddingModel } from '../../src/providers/embedding/types.ts';
import { expectCode, makeTiny, SENTENCES, spec, tempDir } from './helpers.ts';

const TEXTS = Array.from({ length: 150 }, (_, i) => `${SENTENCES[i % SENTENCES.length]} ${i}`);

describe('embedding worker pool', () => {
  const tmp = tempDir();
  let dir: string;
  let direct: EmbeddingModel;
  let pooled: EmbeddingModel;

  beforeAll(async () => {
    dir = makeTiny(tmp.dir);
    direct = await createEmbeddingModel(spec('onnx', dir));
    pooled = await createEmbeddingModel(spec('onnx', dir), { workers: 2 });
    await Promise.all([direct.open(), pooled.open()]);
  });

  afterAll(async () => {
    await direct.close();
    await pooled.close();
    tmp.cleanup();
  });

  it('returns the same vectors as the model on the main thread, in order, for one large call and many concurrent small ones', async () => {
    expect(pooled.runtime).toBe('onnx');
    expect(pooled.dims).toBe(direct.dims);
    const truth = await direct.embed(TEXTS);
    const all = await pooled.embed(TEXTS);
    expect(all.map((v) => Array.from(v))).toEqual(truth.map((v) => Array.from(v)));
    // Calls of 1 to 7 texts at once: merged into shared batches per worker, split back per call.
    const calls: Array<{ start: number; count: number }> = [];
    for (let start = 0, n = 1; start < TEXTS.length; start += n, n = (n % 7) + 1) calls.push({ start, count: Math.min(n, TEXTS.length - start) });
    const results = await Promise.all(calls.map((c) => pooled.embed(TEXTS.slice(c.start, c.start + c.count))));
    results.forEach((vectors, i) => {
      expect(vectors).toHaveLength(calls[i].count);
      vectors.forEach((v, j) => expect(Array.from(v)).toEqual(Array.from(truth[calls[i].start + j])));
    });
    expect(await pooled.embed([])).toEqual([]);
  });

  it('refuses bad texts with the runtime codes, and keeps working after', async () => {
    await expectCode(pooled.embed(['fine', '  ']), 'NL_BAD_TEXT');
    await expectCode(pooled.embed([42 as unknown as string]), 'NL_BAD_TEXT');
    expect(await pooled.embed(['fine'])).toHaveLength(1);
  });

  it("a model a worker cannot open fails open() with the worker's coded error, and leaves no thread behind", async () => {
    const bad = await createEmbeddingModel(spec('onnx', `${tmp.dir}/missing`), { workers: 2 });
    await expectCode(bad.open(), 'NL_MODEL_INVALID', /does not exist/);
    await expectCode(bad.embed(['x']), 'NL_PROVIDER_ERROR', /not open/);
  });

  it('the transformers runtime runs in workers with the same vectors as on the main thread', async () => {
    const onThread = await createEmbeddingModel(spec('transformers', dir));
    const inWorkers = await createEmbeddingModel(spec('transformers', dir), { workers: 2 });
    await Promise.all([onThread.open(), inWorkers.open()]);
    try {
      const texts = TEXTS.slice(0, 40);
      const truth = await onThread.embed(texts);
      const got = await Promise.all([inWorkers.embed(texts.slice(0, 25)), inWorkers.embed(texts.slice(25))]);
      expect(got.flat().map((v) => Array.from(v))).toEqual(truth.map((v) => Array.from(v)));
    } finally {
      await onThread.close();
      await inWorkers.close();
    }
  });

  it('the packaged USE runs in workers with the same vectors as on the main thread', async () => {
    const useDirect = await createEmbeddingModel(spec('use', undefined, { normalize: true }));
    const usePooled = await createEmbeddingModel(spec('use', undefined, { normalize: true }), { workers: 2 });
    await Promise.all([useDirect.open(), usePooled.open()]);
    const texts = TEXTS.slice(0, 20);
    const [a, b] = await Promise.all([useDirect.embed(texts), usePooled.embed(texts)]);
    b.forEach((v, i) => {
      expect(v).toHaveLength(512);
      for (let d = 0; d < v.length; d++) expect(v[d]).toBeCloseTo(a[i][d], 5);
    });
    await Promise.all([useDirect.close(), usePooled.close()]);
  });

  it('NEARLINE_EMBED_WORKERS sets the pool size; 0 embeds on the main thread; a bad value is a coded error', async () => {
    expect(embedWorkersFromEnv({ NEARLINE_EMBED_WORKERS: '3' })).toBe(3);
    expect(embedWorkersFromEnv({ NEARLINE_EMBED_WORKERS: '0' })).toBe(0);
    expect(embedWorkersFromEnv({})).toBeGreaterThanOrEqual(1);
    expect(() => embedWorkersFromEnv({ NEARLINE_EMBED_WORKERS: 'two' })).toThrow(expect.objectContaining({ code: 'NL_BAD_REQUEST' }));
    expect(() => embedWorkersFromEnv({ NEARLINE_EMBED_WORKERS: '-1' })).toThrow(expect.objectContaining({ code: 'NL_BAD_REQUEST' }));
  });
});
