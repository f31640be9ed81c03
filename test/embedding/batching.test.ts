import { describe, expect, it } from 'vitest';
import { MAX_BATCH, batchesByLength, embedInBatches, tokenBudget } from '../../src/providers/embedding/common.ts';

describe('batchesByLength', () => {
  const lengths = Array.from({ length: 500 }, (_, i) => 3 + ((i * 7919) % 300));

  it('places every text exactly once, within the batch and token limits', () => {
    const batches = batchesByLength(lengths);
    expect(tokenBudget(4)).toBe(4 * tokenBudget());
    expect(batches.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const b of batches) {
      expect(b.length).toBeLessThanOrEqual(MAX_BATCH);
      const padded = b.length * Math.max(...b.map((i) => lengths[i]));
      if (b.length > 1) expect(padded).toBeLessThanOrEqual(tokenBudget());
    }
  });

  it('keeps padding under a quarter of a batch', () => {
    for (const b of batchesByLength(lengths)) {
      const real = b.reduce((s, i) => s + lengths[i], 0);
      const padded = b.length * Math.max(...b.map((i) => lengths[i]));
      expect(padded).toBeLessThanOrEqual(1.25 * real);
    }
  });

  it('gives a text longer than the budget a batch of its own', () => {
    expect(batchesByLength([300, 400, 10])).toEqual([[2], [0], [1]]);
  });

  it('fills batches of equal short texts up to the batch size', () => {
    const batches = batchesByLength(new Array(100).fill(6));
    expect(batches.map((b) => b.length)).toEqual([32, 32, 32, 4]);
  });

  it('returns results in input order', async () => {
    const texts = ['ccc', 'a', 'bb', 'dddd'];
    const batches = batchesByLength(
      texts.map((t) => t.length),
      4,
    );
    const out = await embedInBatches(texts.length, batches, async (batch) => batch.map((i) => Float32Array.of(texts[i].length)));
    expect(out.map((v) => v[0])).toEqual([3, 1, 2, 4]);
  });
});
