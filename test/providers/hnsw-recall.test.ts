import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';
import type { Metric } from '../../src/types.ts';
import { mulberry32 } from './vector.suite.ts';

const N = 20_000;
const DIMS = 64;
const QUERIES = 200;
const K = 10;

/**
 * Overlapping clusters, each spread along its own 12-d subspace of the 64-d space: like real embeddings,
 * the intrinsic dimension is far below the ambient one, and neighbours often sit in a neighbouring cluster.
 */
function clustered(seed: number, n: number): Float32Array[] {
  const rand = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const world = mulberry32(1);
  const g = () => Math.sqrt(-2 * Math.log(1 - world())) * Math.cos(2 * Math.PI * world());
  const centers = Array.from({ length: 64 }, () => Float32Array.from({ length: DIMS }, () => g() * 0.7));
  const bases = centers.map(() => Array.from({ length: 12 }, () => Float32Array.from({ length: DIMS }, () => g() / Math.sqrt(12))));
  return Array.from({ length: n }, () => {
    const c = Math.floor(rand() * centers.length);
    const v = centers[c].map((x) => x + gauss() * 0.05);
    for (const axis of bases[c]) {
      const z = gauss();
      for (let j = 0; j < DIMS; j++) v[j] += axis[j] * z;
    }
    return v;
  });
}

function exactTopK(data: Float32Array[], norms: number[], q: Float32Array, metric: Metric): string[] {
  const best: Array<[number, number]> = [];
  const qn = Math.hypot(...q);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    let d = 0;
    if (metric === 'l2') for (let j = 0; j < DIMS; j++) d += (v[j] - q[j]) ** 2;
    else {
      for (let j = 0; j < DIMS; j++) d -= v[j] * q[j];
      d /= norms[i] * qn;
    }
    if (best.length < K || d < best[K - 1][0]) {
      best.push([d, i]);
      best.sort((a, b) => a[0] - b[0]);
      if (best.length > K) best.pop();
    }
  }
  return best.map(([, i]) => `v${i}`);
}

const home = await mkdtemp(join(tmpdir(), 'nearline-recall-'));
afterAll(() => rm(home, { recursive: true, force: true }));

// int8: codes in the graph, the best k * rescore candidates reordered by their f32 vectors on disk.
for (const [metric, quantization] of [
  ['l2', 'none'],
  ['cosine', 'none'],
  ['l2', 'int8'],
  ['cosine', 'int8'],
] as const) {
  it(`hnsw recall@10 >= 0.95 against an exact scan (${metric}, quantization ${quantization}, ${N} x ${DIMS}-d clustered)`, async () => {
    const data = clustered(42, N);
    const queries = clustered(43, QUERIES);
    const provider = createHnswProvider({}, { name: 'local', home });
    await provider.open();
    const c = await provider.collection({
      name: `recall_${metric}_${quantization}`,
      dims: DIMS,
      metric,
      index: { M: 16, efConstruction: 200, ef: 128, quantization },
      metadataFields: [],
    });
    for (let i = 0; i < N; i += 5000) await c.upsert(data.slice(i, i + 5000).map((vector, j) => ({ id: `v${i + j}`, vector })));
    const results = await c.search(queries.map((vector) => ({ vector, k: K })));
    const norms = data.map((v) => Math.hypot(...v));
    let found = 0;
    results.forEach((hits, qi) => {
      const truth = new Set(exactTopK(data, norms, queries[qi], metric));
      found += hits.filter((h) => truth.has(h.id)).length;
    });
    const recall = found / (QUERIES * K);
    expect(recall).toBeGreaterThanOrEqual(0.95);
    expect(results.every((hits) => hits.length === K)).toBe(true);
    await provider.close();
  }, 300_000);
}
