import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createUseModel } from '../../src/providers/embedding/use.ts';
import type { EmbeddingModel } from '../../src/providers/embedding/types.ts';
import { cosine, expectCode, maxAbsDiff, norm, spec } from './helpers.ts';

let model: EmbeddingModel;

beforeAll(async () => {
  // Offline means offline: any fetch during load or embedding fails the test.
  vi.stubGlobal('fetch', () => Promise.reject(new Error('network access during a USE test')));
  model = createUseModel(spec('use', undefined, { name: 'use', maxTokens: 256, normalize: true }));
  await model.open();
});

afterAll(async () => {
  await model?.close();
  vi.unstubAllGlobals();
});

describe('use runtime (packaged Universal Sentence Encoder lite)', () => {
  it('embeds offline into 512 unit-length dims', async () => {
    expect(model.runtime).toBe('use');
    expect(model.dims).toBe(512);
    const [v] = await model.embed(['a sentence to embed']);
    expect(v).toBeInstanceOf(Float32Array);
    expect(v.length).toBe(512);
    expect(norm(v)).toBeCloseTo(1, 5);
  });

  it('scores similar sentences above unrelated ones', async () => {
    const [cat, kitten, stocks, weather, rain] = await model.embed([
      'the cat sat on the mat',
      'a kitten is sitting on a rug',
      'stock markets fell sharply today',
      'how is the weather tomorrow',
      'will it rain tomorrow',
    ]);
    expect(cosine(cat, kitten)).toBeGreaterThan(cosine(cat, stocks) + 0.2);
    expect(cosine(weather, rain)).toBeGreaterThan(cosine(weather, stocks) + 0.2);
  });

  it('keeps a vector independent of its batch and handles long text', async () => {
    const [alone] = await model.embed(['hello world']);
    const long = 'word after word '.repeat(10_000);
    const out = await model.embed([...Array.from({ length: 70 }, (_, i) => `sentence number ${i}`), 'hello world', long]);
    expect(out.length).toBe(72);
    expect(maxAbsDiff(out[70], alone)).toBeLessThan(1e-4);
    expect(out[71].length).toBe(512);
  });

  it('rejects empty and non-string text', async () => {
    await expectCode(model.embed(['']), 'NL_BAD_TEXT');
    await expectCode(model.embed([42 as unknown as string]), 'NL_BAD_TEXT');
  });
});
