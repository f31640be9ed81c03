import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import YAML from 'yaml';
import { makeEncoder } from '../../scripts/make-encoder.ts';
import { loadDefinitions } from '../../src/config.ts';
import { build, type BuildOptions } from '../../src/server/app.ts';
import { FeatureStore, type FeatureStoreOptions } from '../../src/store/feature-store.ts';
import { itemVecFeature } from '../helpers/fixtures.ts';

export const DIMS = 8;
export const ITEMS = 300;

/** Deterministic pseudo-random numbers (Park–Miller), so fixtures are the same on every run. */
export function seeded(seed: number): () => number {
  let s = seed % 2147483647 || 1;
  return () => {
    s = (s * 16807) % 2147483647;
    return s / 2147483647;
  };
}

export interface Item {
  id: string;
  vec: number[];
  lang: string;
  bucket: number;
  price: number;
  title: string;
}

const WORDS = ['red', 'blue', 'green', 'shoe', 'shirt', 'lamp', 'chair', 'table', 'phone', 'cable', 'book', 'pen'];

export function makeItems(n = ITEMS, seed = 7): Item[] {
  const rnd = seeded(seed);
  return Array.from({ length: n }, (_, i) => ({
    id: `i${i}`,
    vec: Array.from({ length: DIMS }, () => Math.round((rnd() - 0.5) * 1e4) / 1e4),
    lang: i % 3 === 0 ? 'fr' : 'en',
    bucket: i % 10,
    price: Math.round(rnd() * 10000) / 100,
    title: `${WORDS[i % WORDS.length]} ${WORDS[(i * 7 + 3) % WORDS.length]} ${i}`,
  }));
}

/**
 * A temp home with: item_vec@v1 (cosine, alias prod) and item_vec@v2 (l2) over 300 8-d items with
 * metadata lang and bucket; scalar item_price and item_title; doc_vec@v1, a text feature embedded by a
 * tiny generated encoder (tiny@1, 32-d); and other_vec@v1 for per-feature key limits. `store` places the
 * registry, snapshots and log elsewhere (several nodes sharing them).
 */
export async function makeHome(store: Omit<FeatureStoreOptions, 'home'> = {}): Promise<{ home: string; items: Item[]; cleanup: () => void }> {
  const home = mkdtempSync(path.join(tmpdir(), 'nearline-server-'));
  const items = makeItems();
  writeFileSync(path.join(home, 'items.jsonl'), items.map((r) => JSON.stringify(r)).join('\n') + '\n');
  makeEncoder({ out: path.join(home, 'tiny'), layers: 1, hidden: 32, heads: 2, ffn: 64, vocab: 1000, maxPositions: 64, seed: 1 });
  const vecFeature = (name: string, variant: string, metric: string) =>
    itemVecFeature(variant, { name, dims: DIMS, metric, index: { M: 16, efConstruction: 100, ef: 50 }, metadata: ['lang', 'bucket'] });
  const defs = {
    providers: [
      { name: 'local', kind: 'hnsw' },
      { name: 'kv', kind: 'sqlite' },
    ],
    entities: [{ name: 'item', key: 'id' }],
    sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
    models: [{ name: 'tiny', version: '1', runtime: 'onnx', path: 'tiny', pooling: 'mean', normalize: true, maxTokens: 64 }],
    features: [
      vecFeature('item_vec', 'v1', 'cosine'),
      vecFeature('item_vec', 'v2', 'l2'),
      vecFeature('other_vec', 'v1', 'cosine'),
      { name: 'item_price', variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', column: 'price', type: 'float', provider: 'kv' },
      { name: 'item_title', variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', column: 'title', type: 'string', provider: 'kv' },
      {
        name: 'doc_vec',
        variant: 'v1',
        entity: 'item',
        source: 'items@v1',
        kind: 'embedding',
        text: { column: 'title', model: 'tiny@1' },
        dims: 32,
        metric: 'cosine',
        provider: 'local',
        metadata: ['lang'],
      },
    ],
    aliases: [{ feature: 'item_vec', name: 'prod', variant: 'v1' }],
  };
  const file = path.join(home, 'defs.yaml');
  writeFileSync(file, YAML.stringify(defs));
  const opened = FeatureStore.open({ home, ...store });
  try {
    const { applied, plan } = await opened.apply(await loadDefinitions(file));
    if (!applied) throw new Error(`fixture definitions refused: ${JSON.stringify(plan)}`);
    for (const ref of ['item_vec@v1', 'item_vec@v2', 'other_vec@v1', 'item_price@v1', 'item_title@v1', 'doc_vec@v1']) {
      await opened.materialize(ref, { progress: false });
    }
  } finally {
    await opened.close();
  }
  return { home, items, cleanup: () => rmSync(home, { recursive: true, force: true }) };
}

/** The app over a store on `home`, ready (indexes loaded). */
export async function openApp(
  home: string,
  opts: Partial<BuildOptions> = {},
): Promise<{ app: FastifyInstance; store: FeatureStore; close: () => Promise<void> }> {
  const store = FeatureStore.open({ home });
  const app = await build({ store, auth: { cacheMs: 0 }, ...opts });
  await app.ready();
  // Indexes load in the background after listen; a loaded machine can take seconds.
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if ((await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    app,
    store,
    close: async () => {
      await app.close();
      await store.close();
    },
  };
}

/** Exact top-k ids by cosine similarity, the ground truth for small fixtures. */
export function exactCosine(items: Item[], query: number[], k: number, skip: string[] = []): string[] {
  const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const qn = norm(query);
  return items
    .filter((r) => !skip.includes(r.id))
    .map((r) => ({ id: r.id, s: r.vec.reduce((s, x, i) => s + x * query[i], 0) / (norm(r.vec) * qn) }))
    .sort((a, b) => b.s - a.s)
    .slice(0, k)
    .map((r) => r.id);
}
