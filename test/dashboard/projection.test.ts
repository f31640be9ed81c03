import { describe, expect, it } from 'vitest';
import { quantile } from '../../src/server/series.ts';
import { pca2 } from '../../src/store/projection.ts';
import { seeded } from '../helpers/fixtures.ts';

describe('pca2, the map projection', () => {
  it('finds the axes of largest variance and keeps clusters apart', () => {
    const rnd = seeded(3);
    const dims = 12;
    // Spread 10 along dims 0 and 1 (rotated 45 degrees), 3 along dim 2, 0.1 elsewhere.
    const vectors = Array.from({ length: 800 }, () => {
      const a = (rnd() - 0.5) * 20;
      const b = (rnd() - 0.5) * 6;
      return Array.from({ length: dims }, (_, j) => (j === 0 ? a : j === 1 ? a : j === 2 ? b : (rnd() - 0.5) * 0.2));
    });
    const { points, explained } = pca2(vectors);
    expect(points).toHaveLength(800);
    // First axis: the 45-degree diagonal, whose coordinate is (v0 + v1) / sqrt(2) up to sign.
    const along = vectors.map((v) => (v[0] + v[1]) / Math.SQRT2);
    const mean = along.reduce((s, x) => s + x, 0) / along.length;
    points.forEach(([x], i) => expect(Math.abs(Math.abs(x) - Math.abs(along[i] - mean))).toBeLessThan(0.05));
    expect(explained[0]).toBeGreaterThan(0.9);
    expect(explained[1]).toBeGreaterThan(0.04);
    expect(explained[0] + explained[1]).toBeLessThanOrEqual(1.000001);
  });

  it('is deterministic and copes with tiny or flat samples', () => {
    const v = [
      [1, 2, 3],
      [2, 3, 5],
      [0, 1, 0],
    ];
    expect(pca2(v)).toEqual(pca2(v));
    expect(pca2([])).toEqual({ points: [], explained: [0, 0] });
    expect(
      pca2([
        [1, 1],
        [1, 1],
      ]).points,
    ).toEqual([
      [0, 0],
      [0, 0],
    ]);
  });
});

describe('quantile from histogram buckets (as Prometheus histogram_quantile)', () => {
  const buckets: Array<[number, number]> = [
    [0.001, 10],
    [0.005, 60],
    [0.01, 90],
    [Infinity, 100],
  ];
  it('interpolates inside the bucket holding the rank', () => {
    expect(quantile(buckets, 100, 0.5)).toBeCloseTo(0.001 + (0.004 * 40) / 50);
    expect(quantile(buckets, 100, 0.05)).toBeCloseTo(0.0005);
    expect(quantile(buckets, 100, 0.9)).toBeCloseTo(0.01);
  });
  it('answers the highest finite bound for ranks in the +Inf bucket', () => {
    expect(quantile(buckets, 100, 0.99)).toBe(0.01);
  });
});
