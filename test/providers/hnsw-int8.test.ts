import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isNearlineError } from '../../src/errors.ts';
import type { Manifest } from '../../src/providers/vector/hnsw/files.ts';
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';
import type { CollectionSpec, Quantization } from '../../src/providers/vector/types.ts';
import { mulberry32 } from './vector.suite.ts';

/** int8 collections on disk: the graph's codes and the f32 vectors file, through snapshots, reopens, crashes and churn. */
describe('hnsw int8 files', () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'nearline-int8-'));
  });
  afterEach(() => rm(home, { recursive: true, force: true }));

  const spec = (name: string, dims: number, quantization: Quantization = 'int8', metric: CollectionSpec['metric'] = 'l2'): CollectionSpec => ({
    name,
    dims,
    metric,
    index: { M: 8, efConstruction: 64, ef: 32, quantization },
    metadataFields: [],
  });
  const provider = () => createHnswProvider({}, { name: 'local', home });
  const folder = (name: string) => join(home, 'indexes', name);
  const manifest = async (name: string) => JSON.parse(await readFile(join(folder(name), 'manifest.json'), 'utf8')) as Manifest;
  const vectors = (seed: number, n: number, dims: number) => {
    const rand = mulberry32(seed);
    return Array.from({ length: n }, () => Float32Array.from({ length: dims }, () => rand() * 2 - 1));
  };

  it('a snapshot keeps the codes in the index file and the f32 vectors beside it; a reopen returns the vectors exactly', async () => {
    const dims = 384;
    const data = vectors(1, 300, dims);
    const p = provider();
    await p.open();
    for (const q of ['none', 'int8'] as const) {
      const c = await p.collection(spec(`snap_${q}`, dims, q, 'cosine'));
      await c.upsert(data.map((vector, i) => ({ id: `r${i}`, vector })));
      await c.flush();
    }
    await p.close();

    const m = await manifest('snap_int8');
    expect(m).toMatchObject({ quantization: 'int8', vectors: 'vectors-1.f32', slots: `slots-${m.generation}.bin` });
    expect((await stat(join(folder('snap_int8'), m.vectors!))).size).toBe(300 * dims * 4);
    // The graph of the int8 collection holds a code (384 + 8 bytes) where the f32 one holds 1536 bytes.
    const f32 = await manifest('snap_none');
    expect(f32.quantization).toBeUndefined();
    const int8Index = (await stat(join(folder('snap_int8'), m.index))).size;
    const f32Index = (await stat(join(folder('snap_none'), f32.index))).size;
    expect(int8Index / f32Index).toBeLessThan(0.4);

    const again = provider();
    await again.open();
    const plain = await again.collection(spec('snap_none', dims, 'none', 'cosine'));
    const c = await again.collection(spec('snap_int8', dims, 'int8', 'cosine'));
    const ids = ['r0', 'r17', 'r299'];
    // Both store the unit vector; the int8 collection reads it back from its file, bit for bit.
    expect((await c.get(ids)).map((r) => Array.from(r!.vector))).toEqual((await plain.get(ids)).map((r) => Array.from(r!.vector)));
    const hits = await c.search(data.slice(0, 20).map((vector) => ({ vector, k: 3, includeVectors: true })));
    hits.forEach((h, i) => {
      expect(h[0].id).toBe(`r${i}`);
      expect(h[0].score).toBeCloseTo(1, 5);
    });
    const exact = await plain.search(data.slice(0, 20).map((vector) => ({ vector, k: 3 })));
    // Rescored in f32: the same scores as the f32 collection's, not the codes' approximations.
    hits.forEach((h, i) => h.forEach((hit, j) => expect(hit.score).toBeCloseTo(exact[i][j].score, 5)));
    expect(Array.from(hits[3][0].vector!)).toEqual(Array.from((await plain.get(['r3']))[0]!.vector));
    await again.close();
  });

  it('a reopen after writes no snapshot holds reads the snapshot rows, even of a reused label; a second process appends beside the first', async () => {
    const dims = 8;
    const p = provider();
    await p.open();
    const c = await p.collection(spec('crash', dims));
    const a = new Float32Array(dims).fill(1);
    await c.upsert([
      { id: 'a', vector: a },
      { id: 'b', vector: new Float32Array(dims).fill(2) },
    ]);
    await c.flush();
    const m = await manifest('crash');
    const size = (await stat(join(folder('crash'), m.vectors!))).size;
    // Not flushed: 'a' is deleted and its label goes to 'x', 'b' is rewritten twice, 'y' is new.
    await c.delete(['a']);
    await c.upsert([
      { id: 'x', vector: new Float32Array(dims).fill(9) },
      { id: 'b', vector: new Float32Array(dims).fill(3) },
    ]);
    await c.upsert([
      { id: 'b', vector: new Float32Array(dims).fill(4) },
      { id: 'y', vector: new Float32Array(dims).fill(5) },
    ]);
    const grown = (await stat(join(folder('crash'), m.vectors!))).size;
    expect(grown).toBeGreaterThan(size);

    // As after a SIGKILL, or a second process reading the collection: the first provider never closes.
    const again = provider();
    await again.open();
    const c2 = await again.collection(spec('crash', dims));
    // Rows past the snapshot are not its own: left alone (dead to it, live to the first provider).
    expect((await stat(join(folder('crash'), m.vectors!))).size).toBe(grown);
    const got = await c2.get(['a', 'b', 'x', 'y']);
    expect(got.map((r) => r && Array.from(r.vector))).toEqual([Array.from(a), Array.from(new Float32Array(dims).fill(2)), null, null]);
    const [hits] = await c2.search([{ vector: new Float32Array(dims).fill(1.1), k: 2 }]);
    expect(hits.map((h) => h.id)).toEqual(['a', 'b']);
    await c2.upsert([
      { id: 'z', vector: new Float32Array(dims).fill(7) },
      { id: 'b', vector: new Float32Array(dims).fill(8) },
    ]);
    expect((await c2.get(['z', 'b'])).map((r) => r!.vector[0])).toEqual([7, 8]);
    // Each appended to rows of its own: neither overwrote the other's.
    expect((await c.get(['b', 'x', 'y', 'z'])).map((r) => r && r.vector[0])).toEqual([4, 9, 5, null]);
    await again.close();
  });

  it('rewrites move the live rows to a new vectors file once dead rows make up most of it', async () => {
    const dims = 16;
    const n = 300;
    const p = provider();
    await p.open();
    const c = await p.collection(spec('churn', dims));
    const files = new Set<string>();
    let last: Float32Array[] = [];
    for (let round = 0; round < 5; round++) {
      last = vectors(round, n, dims);
      await c.upsert(last.map((vector, i) => ({ id: `r${i}`, vector })));
      await c.flush();
      files.add((await manifest('churn')).vectors!);
    }
    // 1200 dead rows beside 300 live ones at the 5th round's snapshot: compacted into a file of its generation.
    const m = await manifest('churn');
    expect([...files]).toEqual(['vectors-1.f32', `vectors-${m.generation}.f32`]);
    expect((await stat(join(folder('churn'), m.vectors!))).size).toBe(n * dims * 4);
    expect((await readdir(folder('churn'))).filter((f) => f.startsWith('vectors-'))).toEqual([m.vectors]);
    await p.close();

    const again = provider();
    await again.open();
    const c2 = await again.collection(spec('churn', dims));
    const got = await c2.get(['r0', 'r150', 'r299']);
    expect(got.map((r) => Array.from(r!.vector))).toEqual([0, 150, 299].map((i) => Array.from(last[i])));
    const [hits] = await c2.search([{ vector: last[42], k: 1 }]);
    expect(hits[0].id).toBe('r42');
    await again.close();
  });

  it('an int8 collection opens only as int8, and an f32 one only as none', async () => {
    const p = provider();
    await p.open();
    await p.collection(spec('shape', 4, 'int8'));
    await p.collection(spec('plain', 4, 'none'));
    for (const [name, q] of [
      ['shape', 'none'],
      ['plain', 'int8'],
    ] as const) {
      const err = await p.collection(spec(name, 4, q)).catch((e: unknown) => e);
      expect(isNearlineError(err) && err.code).toBe('NL_CONFLICT');
    }
    await p.close();
    const again = provider();
    await again.open();
    const err = await again.collection(spec('shape', 4, 'none')).catch((e: unknown) => e);
    expect(isNearlineError(err) && err.code).toBe('NL_CONFLICT');
    expect(String(err)).toContain('quantization int8');
    await again.close();
  });
});
