import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';

const D = 16;
/** Cosine of each cluster's centre to the query e0; the centres are orthogonal to each other besides e0. */
const RELEVANCE = [0.95, 0.8, 0.65, 0.5, 0.35];

/**
 * 50 candidates: 5 clusters of 10 near-duplicates. Once a c0 item is picked, a candidate of cluster c scores
 * about rel_c·(lambda − (1 − lambda)·0.95) (its similarity to the pick is about 0.95·rel_c), and a c0 one about
 * 0.95·lambda − (1 − lambda). So at lambda 0.5 the second hit must come from the most relevant other cluster, c1,
 * and at 0.2 (negative factor) from the least relevant, c4: the two lists must differ.
 */
function clusters() {
  const rnd = seeded(5);
  return RELEVANCE.flatMap((rel, c) =>
    Array.from({ length: 10 }, (_, j) => {
      const v = Array.from({ length: D }, () => (rnd() - 0.5) * 0.002);
      v[0] += rel;
      v[c + 1] += Math.sqrt(1 - rel * rel);
      return { id: `c${c}_${j}`, vec: v };
    }),
  );
}

describe('MMR diversity (regression: lambda 0.5 and 0.2 gave identical lists)', () => {
  let store: FeatureStore;
  const query = Array.from({ length: D }, (_, i) => (i === 0 ? 1 : 0));
  const ids = async (lambda?: number, candidates?: number) =>
    (
      await store.nearest({
        feature: 'vec',
        k: 5,
        query: { vector: query },
        ...(lambda === undefined ? {} : { diversity: { lambda, ...(candidates ? { candidates } : {}) } }),
      })
    ).hits;

  beforeAll(async () => {
    const home = tempDir();
    writeFileSync(
      path.join(home, 'items.jsonl'),
      clusters()
        .map((r) => JSON.stringify(r))
        .join('\n') + '\n',
    );
    writeDefs(home, {
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'item', key: 'id' }],
      sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
      features: [
        {
          name: 'vec',
          variant: 'v1',
          entity: 'item',
          source: 'items@v1',
          kind: 'embedding',
          vector: { column: 'vec' },
          dims: D,
          metric: 'cosine',
          provider: 'local',
        },
      ],
    });
    store = FeatureStore.open({ home });
    await store.apply(await loadDefinitions(path.join(home, 'defs.yaml')));
    await store.materialize('vec@v1', { progress: false });
    return () => store.close();
  });

  const cluster = (id: string) => id.slice(0, 2);

  it('lambda 1 is the plain nearest-neighbour list, in score order', async () => {
    const plain = await ids();
    const pure = await ids(1, 50);
    expect(pure.map((h) => h.id)).toEqual(plain.map((h) => h.id));
    expect(new Set(pure.map((h) => cluster(h.id)))).toEqual(new Set(['c0']));
  });

  it('lambda 0.5 and 0.2 differ where they must: the second hit from c1, then from c4', async () => {
    const half = await ids(0.5, 50);
    const low = await ids(0.2, 50);
    expect(cluster(half[0].id)).toBe('c0');
    expect(cluster(low[0].id)).toBe('c0');
    expect(cluster(half[1].id)).toBe('c1');
    expect(cluster(low[1].id)).toBe('c4');
    expect(half.map((h) => h.id)).not.toEqual(low.map((h) => h.id));
    // Both spread over every cluster; hits keep their similarity to the query as score, in selection order.
    expect(new Set(half.map((h) => cluster(h.id))).size).toBe(5);
    expect(new Set(low.map((h) => cluster(h.id))).size).toBe(5);
    expect(half[1].score).toBeGreaterThan(half[2].score);
    expect(low[1].score).toBeLessThan(low[2].score);
  });

  it('draws from a pool of 4·k candidates by default; diversity.candidates widens it', async () => {
    // The nearest 20 are c0 and c1 only, so the default pool cannot reach c4.
    expect(new Set((await ids(0.2)).map((h) => cluster(h.id)))).toEqual(new Set(['c0', 'c1']));
    await expect(store.nearest({ feature: 'vec', k: 5, query: { vector: query }, diversity: { lambda: 0.5, candidates: 3 } })).rejects.toMatchObject({
      code: 'NL_LIMIT_EXCEEDED',
    });
  });

  it('k and the filter are checked in one place: k outside 1..1000, an unknown field', async () => {
    const near = (extra: Record<string, unknown>) => store.nearest({ feature: 'vec', k: 5, query: { vector: query }, ...extra });
    await expect(near({ k: 0 })).rejects.toMatchObject({ code: 'NL_LIMIT_EXCEEDED', message: expect.stringContaining('k must be an integer from 1 to 1000') });
    await expect(near({ k: 2.5 })).rejects.toMatchObject({ code: 'NL_LIMIT_EXCEEDED' });
    await expect(near({ k: 1001 })).rejects.toMatchObject({ code: 'NL_LIMIT_EXCEEDED' });
    await expect(near({ filter: { field: 'nope', op: 'eq', value: 1 } })).rejects.toMatchObject({ code: 'NL_BAD_FILTER' });
    await expect(store.compare('vec@v1', 'vec@v1', { k: 1001 })).rejects.toMatchObject({ code: 'NL_LIMIT_EXCEEDED' });
  });
});
