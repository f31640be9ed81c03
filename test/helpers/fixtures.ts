import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

export function tempDir(prefix = 'nearline-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Deterministic pseudo-random numbers (Park–Miller), so fixtures are the same on every run. */
export function seeded(seed: number): () => number {
  let s = seed % 2147483647 || 1;
  return () => {
    s = (s * 16807) % 2147483647;
    return s / 2147483647;
  };
}

export interface WordRow {
  id: string;
  vec: number[];
  lang: string;
  freq: number;
}

/** Writes `n` rows of random vectors with metadata to words.jsonl and returns them. */
export function writeWords(dir: string, n: number, dims: number, seed = 1, file = 'words.jsonl'): WordRow[] {
  const rnd = seeded(seed);
  const rows: WordRow[] = [];
  for (let i = 0; i < n; i++) {
    rows.push({ id: `w${i}`, vec: Array.from({ length: dims }, () => Math.round((rnd() - 0.5) * 1e6) / 1e6), lang: i % 3 === 0 ? 'fr' : 'en', freq: i % 10 });
  }
  writeFileSync(path.join(dir, file), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return rows;
}

/**
 * An embedding feature `name@variant` of entity `item` over source `items@v1`, the shape most store, server and
 * lifecycle tests define; each gives its own dims, column, metric, provider, index and metadata.
 */
export function itemVecFeature(
  variant: string,
  o: { dims: number; name?: string; column?: string; metric?: string; provider?: string; index: Record<string, number>; metadata?: string[] },
) {
  return {
    name: o.name ?? 'item_vec',
    variant,
    entity: 'item',
    source: 'items@v1',
    kind: 'embedding',
    vector: { column: o.column ?? 'vec' },
    dims: o.dims,
    metric: o.metric ?? 'cosine',
    provider: o.provider ?? 'local',
    index: o.index,
    metadata: o.metadata ?? [],
  };
}

/** The definitions of PRODUCT.md's example, on a words file in `dir`. */
export function wordDefs(dims: number, overrides: { metric?: string; variant?: string; source?: string } = {}) {
  const variant = overrides.variant ?? 'v1';
  return {
    providers: [
      { name: 'local', kind: 'hnsw' },
      { name: 'kv', kind: 'sqlite' },
    ],
    entities: [{ name: 'word', key: 'id' }],
    sources: [{ name: 'words', variant: 'v1', kind: 'jsonl', path: overrides.source ?? 'words.jsonl' }],
    features: [
      {
        name: 'word_vec',
        variant,
        entity: 'word',
        source: 'words@v1',
        kind: 'embedding',
        vector: { column: 'vec' },
        dims,
        metric: overrides.metric ?? 'cosine',
        provider: 'local',
        index: { M: 16, efConstruction: 200, ef: 100 },
        metadata: ['lang', 'freq'],
      },
      { name: 'word_freq', variant: 'v1', entity: 'word', source: 'words@v1', kind: 'scalar', column: 'freq', type: 'float', provider: 'kv' },
    ],
    aliases: [{ feature: 'word_vec', name: 'prod', variant }],
  };
}

export function writeDefs(dir: string, defs: unknown, file = 'defs.yaml'): string {
  const p = path.join(dir, file);
  writeFileSync(p, file.endsWith('.json') ? JSON.stringify(defs) : YAML.stringify(defs));
  return p;
}

/** Exact top-k by cosine similarity, the ground truth for neighbour checks. */
export function exactCosine(rows: WordRow[], query: number[], k: number, skip?: string): string[] {
  const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const qn = norm(query);
  return rows
    .filter((r) => r.id !== skip)
    .map((r) => ({ id: r.id, s: r.vec.reduce((s, x, i) => s + x * query[i], 0) / (norm(r.vec) * qn) }))
    .sort((a, b) => b.s - a.s)
    .slice(0, k)
    .map((x) => x.id);
}
