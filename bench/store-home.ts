/**
 * A store home for the live benchmarks (write.ts, filter.ts): one JSONL source `items` of `size` rows, the
 * given definitions applied and every feature materialized, so that pushes go through the store's real path
 * (source log, fsync, apply) into variants built the way users build them.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';

/**
 * Definitions of the items every live benchmark builds: source `items` (items.jsonl), entity `item` keyed by
 * `id`, and `item_vec@v1`, a cosine hnsw feature over the `vec` column with the given metadata and index.
 * `scalars` adds scalar features on an embedded sqlite online store `kv`.
 */
export function itemDefs(opts: {
  dims: number;
  metadata: string[];
  index: Record<string, number>;
  scalars?: Array<{ name: string } & Record<string, unknown>>;
}) {
  return {
    providers: [{ name: 'local', kind: 'hnsw' }, ...(opts.scalars?.length ? [{ name: 'kv', kind: 'sqlite' }] : [])],
    entities: [{ name: 'item', key: 'id' }],
    sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
    features: [
      {
        name: 'item_vec',
        variant: 'v1',
        entity: 'item',
        source: 'items@v1',
        kind: 'embedding',
        vector: { column: 'vec' },
        dims: opts.dims,
        metric: 'cosine',
        provider: 'local',
        index: opts.index,
        metadata: opts.metadata,
      },
      ...(opts.scalars ?? []).map((f) => ({ variant: 'v1', entity: 'item', source: 'items@v1', kind: 'scalar', provider: 'kv', ...f })),
    ],
  };
}

export async function buildStoreHome(opts: {
  prefix: string;
  size: number;
  row: (i: number) => Record<string, unknown>;
  defs: { features: Array<{ name: string; variant: string } & Record<string, unknown>> } & Record<string, unknown>;
  log: (msg: string) => void;
}): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), opts.prefix));
  const file = createWriteStream(join(home, 'items.jsonl'));
  for (let i = 0; i < opts.size; i++) {
    if (!file.write(`${JSON.stringify(opts.row(i))}\n`)) await new Promise<void>((r) => file.once('drain', () => r()));
  }
  await new Promise<void>((r) => file.end(r));
  await writeFile(join(home, 'defs.yaml'), YAML.stringify(opts.defs));
  const { FeatureStore } = await import('../src/store/feature-store.ts');
  const { loadDefinitions } = await import('../src/config.ts');
  const store = FeatureStore.open({ home });
  try {
    await store.apply(await loadDefinitions(join(home, 'defs.yaml')));
    const t0 = performance.now();
    for (const f of opts.defs.features) await store.materialize(`${f.name}@${f.variant}`, { progress: false });
    opts.log(`built ${opts.size} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await store.close();
  }
  return home;
}
