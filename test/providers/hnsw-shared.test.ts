import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';
import type { CollectionSpec } from '../../src/providers/vector/types.ts';

/*
 * A snapshot folder shared by several nodes (NEARLINE_SNAPSHOTS): each node keeps its own copy in memory and
 * publishes snapshots there; the one holding the highest log offset stays current, and no node removes the
 * files of the snapshot another one published.
 */

const specOf = (quantization: 'none' | 'int8'): CollectionSpec => ({
  name: 'item_vec__v1',
  dims: 4,
  metric: 'l2',
  index: { M: 8, efConstruction: 50, ef: 50, ...(quantization === 'int8' ? { quantization } : {}) },
  metadataFields: ['n'],
});
const rec = (id: string, n: number) => ({ id, vector: Float32Array.from([n, n + 1, n + 2, n + 3]), metadata: { n } });

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'nearline-snapshots-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const node = (home: string) => createHnswProvider({}, { name: 'local', home, snapshots: root });

describe.each(['none', 'int8'] as const)('hnsw snapshots in a shared folder (quantization %s)', (quantization) => {
  const spec = specOf(quantization);
  const manifest = async () => JSON.parse(await readFile(join(root, spec.name, 'manifest.json'), 'utf8'));

  it('the newest log offset wins, each publisher names its own files, and a new node loads the newest', async () => {
    const [a, b] = [node(join(root, 'home-a')), node(join(root, 'home-b'))];
    const ca = await a.collection(spec);
    await ca.upsert([rec('x', 1)]);
    await ca.flush();
    const cb = await b.collection(spec);
    expect(await cb.count()).toBe(1);

    // Both apply the same log; A gets further before it snapshots.
    await ca.upsert([rec('y', 2), rec('z', 3)], { logOffset: 2 });
    await cb.upsert([rec('y', 2)], { logOffset: 1 });
    await ca.flush();
    const published = await manifest();
    expect(published.logOffset).toBe(2);
    expect(published.index).toMatch(/^index-\d+-[0-9a-f]{8}\.hnsw$/);
    // B's older snapshot does not replace A's newer one, and removes none of A's files.
    await cb.flush();
    expect(await manifest()).toEqual(published);
    const files = await readdir(join(root, spec.name));
    for (const f of [published.index, published.rows, published.columns]) expect(files).toContain(f);
    expect(cb.logOffsets!()).toEqual({ applied: 1, durable: 1 });

    // B catches up past A and publishes: its snapshot is current now.
    await cb.upsert([rec('z', 3), rec('w', 4)], { logOffset: 3 });
    await cb.flush();
    const newest = await manifest();
    expect(newest.logOffset).toBe(3);
    expect(newest.index).not.toBe(published.index);

    // A new node loads the newest snapshot.
    const c = node(join(root, 'home-c'));
    const cc = await c.collection(spec);
    expect(cc.logOffsets!()).toEqual({ applied: 3, durable: 3 });
    expect(await cc.count()).toBe(4);
    // With the vectors exactly as written (int8 reads them from the published vectors file).
    expect((await cc.get(['x', 'w'])).map((r) => Array.from(r!.vector))).toEqual([Array.from(rec('x', 1).vector), Array.from(rec('w', 4).vector)]);
    const [hits] = await cc.search([{ vector: Float32Array.from([2.9, 3.9, 4.9, 5.9]), k: 2 }]);
    expect(hits.map((h) => h.id)).toEqual(['z', 'y']);
    for (const p of [a, b, c]) await p.close();
  });
});
