/**
 * What embedding health costs a write: HealthMonitor.observe (norms, per-dimension sums, duplicate hashes,
 * the id sample) against the hnsw upsert it accompanies, on the same vectors in the same process.
 * Rounds alternate the two; the table gives medians and min–max per vector.
 *
 *   npm run bench:health [-- --n 20000 --rounds 5]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createHnswProvider } from '../src/providers/vector/hnsw/provider.ts';
import type { FeatureRecord } from '../src/registry/registry.ts';
import { HealthMonitor } from '../src/store/health.ts';
import { mulberry32 } from '../scripts/random.ts';

const { values: args } = parseArgs({ options: { n: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' } } });
const N = Number(args.n);
const ROUNDS = Number(args.rounds);
const BATCH = 1000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const us = (x: number) => `${x.toFixed(2)} µs`;

const lines = [
  `# health bench: observe vs hnsw upsert, ${N.toLocaleString('en-US')} vectors per round, ${ROUNDS} rounds, batches of ${BATCH}`,
  '',
  '| dims | observe µs/vector (median, min–max) | hnsw upsert µs/vector (median, min–max) | observe / upsert |',
  '|---|---|---|---|',
];
for (const dims of [100, 512]) {
  const rnd = mulberry32(dims);
  const vectors = Array.from({ length: N }, () => Float32Array.from({ length: dims }, () => rnd() * 2 - 1));
  const ids = vectors.map((_, i) => `v${i}`);
  const observe: number[] = [];
  const upsert: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const dir = await mkdtemp(join(tmpdir(), 'nearline-bench-health-'));
    try {
      const health = new HealthMonitor({ dir });
      const feature = { name: 'b', variant: `r${r}`, kind: 'embedding', dims, status: 'materializing' } as FeatureRecord;
      let t = performance.now();
      for (let i = 0; i < N; i += BATCH) health.observe(feature, vectors.slice(i, i + BATCH), ids.slice(i, i + BATCH));
      health.flush(feature);
      observe.push(((performance.now() - t) * 1000) / N);

      const provider = createHnswProvider({ dir, threads: 1 }, { name: 'bench', home: dir });
      await provider.open();
      const c = await provider.collection({ name: `r${r}`, dims, metric: 'cosine', index: { M: 16, efConstruction: 200 }, metadataFields: [] });
      t = performance.now();
      for (let i = 0; i < N; i += BATCH) await c.upsert(vectors.slice(i, i + BATCH).map((vector, j) => ({ id: ids[i + j], vector })));
      upsert.push(((performance.now() - t) * 1000) / N);
      await provider.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const o = median(observe);
  const u = median(upsert);
  lines.push(
    `| ${dims} | ${us(o)} (${us(Math.min(...observe))}–${us(Math.max(...observe))}) | ${us(u)} (${us(Math.min(...upsert))}–${us(Math.max(...upsert))}) | ${(o / u).toFixed(3)} |`,
  );
}
const out = lines.join('\n') + '\n';
process.stdout.write(out);
await writeFile(join(import.meta.dirname, 'results', 'health.md'), out);
