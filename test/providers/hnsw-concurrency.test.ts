import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeIndexClass } from '../../src/providers/vector/hnsw/native.ts';
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';
import type { CollectionSpec, VectorCollection } from '../../src/providers/vector/types.ts';
import { mulberry32 } from './vector.suite.ts';

/*
 * Inserts into new slots run beside searches (the addon reads links under hnswlib's per-node locks), and a
 * snapshot copies the graph while writes wait only for the copy. These tests run both against live writes.
 */

const dims = 16;
const spec = (name: string): CollectionSpec => ({ name, dims, metric: 'l2', index: { M: 8, efConstruction: 64, ef: 64 }, metadataFields: ['part'] });

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}

describe('hnsw searches beside inserts', () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-conc-'));
  });
  afterAll(() => rm(home, { recursive: true, force: true }));

  it('answers with right ids and scores, and reads no half-inserted row, while a large insert runs', async () => {
    const p = createHnswProvider({ threads: 2, initialCapacity: 8192 }, { name: 'local', home });
    await p.open();
    const c: VectorCollection = await p.collection(spec('beside'));
    const rand = mulberry32(11);
    const vec = () => Float32Array.from({ length: dims }, () => rand());
    const truth = new Map<string, Float32Array>();
    const old = Array.from({ length: 2000 }, (_, i) => ({ id: `old${i}`, vector: vec(), metadata: { part: 'old' } }));
    const fresh = Array.from({ length: 4000 }, (_, i) => ({ id: `new${i}`, vector: vec(), metadata: { part: 'new' } }));
    for (const r of [...old, ...fresh]) truth.set(r.id, r.vector);
    await c.upsert(old);

    let done = false;
    const insert = c.upsert(fresh).finally(() => (done = true));
    let during = 0;
    let sawNew = 0;
    const checkHits = (query: Float32Array, hits: Array<{ id: string; score: number }>) => {
      for (const h of hits) {
        const v = truth.get(h.id);
        expect(v, h.id).toBeDefined();
        // l2 scores are -sqrt(distance): a hit's score is its own row's distance, never a neighbour's or a torn one.
        expect(h.score).toBeCloseTo(-Math.sqrt(l2(query, v!)), 4);
        if (h.id.startsWith('new')) sawNew++;
      }
    };
    while (!done) {
      const i = during % old.length;
      // One query on the calling thread, a batch on the thread pool, and an exact scan under a filter.
      const [one] = await c.search([{ vector: old[i].vector, k: 5 }]);
      expect(one[0].id).toBe(old[i].id);
      checkHits(old[i].vector, one);
      const batch = old.slice(0, 64).map((r) => ({ vector: r.vector, k: 3, ef: 64 }));
      const many = await c.search(batch);
      many.forEach((hits, j) => checkHits(batch[j].vector, hits));
      const [exact] = await c.search([{ vector: fresh[i].vector, k: 3, exact: true, filter: { field: 'part', op: 'eq', value: 'new' } }]);
      checkHits(fresh[i].vector, exact);
      // A row still being inserted reads as absent, never as a half-written vector.
      const [got] = await c.get([fresh[(i * 7) % fresh.length].id]);
      if (got) expect(Array.from(got.vector)).toEqual(Array.from(truth.get(got.id)!));
      during++;
      await new Promise((r) => setImmediate(r));
    }
    await insert;
    expect(during).toBeGreaterThan(0);
    expect(sawNew).toBeGreaterThan(0);
    expect(await c.count()).toBe(6000);
    const after = await c.search(fresh.map((r) => ({ vector: r.vector, k: 1, ef: 64 })));
    expect(after.filter((hits, i) => hits[0]?.id === fresh[i].id).length).toBeGreaterThan(3950);
    await p.close();
  }, 120_000);

  it("updates in place and revived deleted slots run beside searches: no hit carries a slot's earlier row, no get a half-written vector", async () => {
    const p = createHnswProvider({ threads: 2, initialCapacity: 4096 }, { name: 'local', home });
    await p.open();
    const c: VectorCollection = await p.collection(spec('rewrites'));
    const rand = mulberry32(21);
    const vec = () => Float32Array.from({ length: dims }, () => rand());
    const base = Array.from({ length: 3000 }, (_, i) => ({ id: `a${i}`, vector: vec(), metadata: { part: 'base' } }));
    await c.upsert(base);
    const gone = base.slice(2000).map((r) => r.id);
    await c.delete(gone);
    const before = new Map(base.map((r) => [r.id, r.vector]));
    // One write: 1,000 rows rewritten in place and 1,000 new ids, which take the 1,000 deleted slots.
    const updated = base.slice(0, 1000).map((r) => ({ id: r.id, vector: vec(), metadata: { part: 'updated' } }));
    const revived = Array.from({ length: 1000 }, (_, i) => ({ id: `b${i}`, vector: vec(), metadata: { part: 'revived' } }));
    const after = new Map([...updated, ...revived].map((r) => [r.id, r.vector]));
    const deleted = new Set(gone);
    let done = false;
    const write = c.upsert([...updated, ...revived]).finally(() => (done = true));
    let rounds = 0;
    while (!done) {
      const q = vec();
      // A batch on the thread pool asking for the deleted rows' own vectors: a revived slot still holding its
      // earlier row would come first, at distance 0, under its new id.
      const olds = gone.slice((rounds * 64) % 1000, ((rounds * 64) % 1000) + 64).map((id) => before.get(id)!);
      const batch = await c.search(olds.map((vector) => ({ vector, k: 3 })));
      batch.forEach((hits, j) => {
        for (const h of hits) {
          expect(deleted.has(h.id), h.id).toBe(false);
          if (h.id.startsWith('b')) expect(h.score).toBeCloseTo(-Math.sqrt(l2(olds[j], after.get(h.id)!)), 4);
        }
      });
      const [first] = await c.search([{ vector: q, k: 10 }]);
      for (const h of first) {
        expect(deleted.has(h.id), h.id).toBe(false);
        // A revived slot is found only once it holds its new row: its score is that row's distance.
        if (h.id.startsWith('b')) expect(h.score).toBeCloseTo(-Math.sqrt(l2(q, after.get(h.id)!)), 4);
        else if (!after.has(h.id)) expect(h.score).toBeCloseTo(-Math.sqrt(l2(q, before.get(h.id)!)), 4);
      }
      // A row being rewritten reads as its old or its new vector, never a mix.
      const ids = [updated[rounds % 1000].id, revived[rounds % 1000].id];
      const got = await c.get(ids);
      const old = Array.from(before.get(ids[0])!);
      const now = Array.from(after.get(ids[0])!);
      expect([JSON.stringify(old), JSON.stringify(now)]).toContain(JSON.stringify(Array.from(got[0]!.vector)));
      if (got[1]) expect(Array.from(got[1].vector)).toEqual(Array.from(after.get(ids[1])!));
      rounds++;
    }
    await write;
    expect(rounds).toBeGreaterThan(0);
    expect(await c.count()).toBe(3000);
    const found = await c.search([...updated, ...revived].map((r) => ({ vector: r.vector, k: 1, ef: 64 })));
    expect(found.filter((hits, i) => hits[0]?.id === [...updated, ...revived][i].id).length).toBeGreaterThan(1980);
    const got = await c.get([...updated, ...revived].map((r) => r.id));
    got.forEach((g, i) => expect(Array.from(g!.vector)).toEqual(Array.from([...updated, ...revived][i].vector)));
    await p.close();
  }, 120_000);

  it.each(['copy', 'inline', 'fork'] as const)(
    'a snapshot (%s writer) taken while log writes continue holds exactly the rows up to the offset it records',
    async (snapshotWriter) => {
      const name = `snap-${snapshotWriter}`;
      const p = createHnswProvider({ initialCapacity: 64, snapshotWriter }, { name: 'local', home });
      await p.open();
      const c: VectorCollection = await p.collection(spec(name));
      const rand = mulberry32(12);
      let offset = 0;
      let stop = false;
      /** Offset -> an earlier row it also rewrote in place, to -offset. */
      const updates = new Map<number, string>();
      const row = (id: string, x: number) => ({ id, vector: Float32Array.from({ length: dims }, () => x), metadata: { part: x < 0 ? 'updated' : 'new' } });
      // Offset o writes row r<o>; some offsets also update an earlier row, and the index grows as they go.
      const writer = (async () => {
        while (!stop) {
          const batch = Array.from({ length: 1 + Math.floor(rand() * 20) }, () => ++offset);
          const records = batch.map((o) => row(`r${o}`, o));
          const last = batch[batch.length - 1];
          if (last > 10 && rand() < 0.3) {
            updates.set(last, `r${Math.floor(last / 2)}`);
            records.push(row(`r${Math.floor(last / 2)}`, -last));
          }
          await c.upsert(records, { logOffset: last });
        }
      })();
      const copies: Array<{ dir: string; offset: number }> = [];
      for (let i = 0; i < 6; i++) {
        // Each snapshot after more writes than the last one (a loaded machine may run the writer slowly).
        const seen = offset;
        while (offset === seen) await new Promise((r) => setTimeout(r, 1));
        await c.flush();
        const dir = await mkdtemp(join(tmpdir(), 'nearline-hnsw-snap-'));
        await cp(join(home, 'indexes', name), join(dir, 'indexes', name), { recursive: true });
        const manifest = JSON.parse(await readFile(join(dir, 'indexes', name, 'manifest.json'), 'utf8')) as { logOffset: number };
        copies.push({ dir, offset: manifest.logOffset });
        await new Promise((r) => setTimeout(r, 5));
      }
      stop = true;
      await writer;
      await p.close();
      expect(new Set(copies.map((x) => x.offset)).size).toBeGreaterThan(1);
      for (const { dir, offset: at } of copies) {
        const q = createHnswProvider({}, { name: 'local', home: dir });
        await q.open();
        const s = await q.collection(spec(name));
        expect(s.logOffsets!().durable).toBe(at);
        expect(await s.count()).toBe(at);
        const ids = Array.from({ length: at + 1 }, (_, i) => `r${i + 1}`);
        const got = await s.get(ids);
        // Rows 1..offset, each with its latest value up to the offset; nothing written after it.
        const value = new Map<string, number>(ids.slice(0, at).map((id, i) => [id, i + 1]));
        for (const [o, id] of [...updates].sort((a, b) => a[0] - b[0])) if (o <= at) value.set(id, -o);
        expect(got.map((r) => (r ? r.vector[0] : null))).toEqual(ids.map((id) => value.get(id) ?? null));
        // No row copied while a write changed it: every component of a row holds its one value, and its metadata goes with it.
        for (const r of got) if (r) expect(r.vector.every((x) => x === r.vector[0])).toBe(true);
        expect(got.map((r) => r?.metadata?.part ?? null)).toEqual(got.map((r) => (r ? (r.vector[0] < 0 ? 'updated' : 'new') : null)));
        const hits = await s.search([{ vector: Float32Array.from({ length: dims }, () => at), k: 1 }]);
        expect(hits[0][0].id).toBe(`r${at}`);
        // The graph as copied is whole: every row is found from the entry point.
        const probe = ids.slice(0, at).filter((_, i) => i % 7 === 0);
        const found = await s.search(probe.map((id) => ({ vector: Float32Array.from({ length: dims }, () => value.get(id)!), k: 1, ef: 64 })));
        expect(found.map((h) => h[0]?.id)).toEqual(probe);
        await q.close();
        await rm(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );

  it('a copy made beside writes and brought up to date after them is byte for byte what save() writes', async () => {
    const Index = nativeIndexClass('test');
    const rand = mulberry32(21);
    const vecs = (n: number) => Float32Array.from({ length: n * dims }, () => rand());
    const labels = (from: number, n: number) => Uint32Array.from({ length: n }, (_, i) => from + i);
    for (const round of [0, 1, 2]) {
      const ix = new Index('l2', dims, 4000, 8, 64, 7 + round);
      await ix.add(vecs(2000), labels(0, 2000), 2);
      for (let l = 0; l < 2000; l += 50) ix.markDelete(l);
      await ix.reserveImage();
      ix.beginCopy();
      await ix.copyImage();
      // What writes do while the copy runs: new rows, rows updated in place, deleted slots revived, deletes.
      await ix.add(vecs(300), labels(2000, 300), 2);
      await ix.add(vecs(200), labels(100 + round, 200), 2);
      await ix.add(
        vecs(10),
        Uint32Array.from({ length: 10 }, (_, i) => 50 * (i + 1)),
        2,
      );
      for (let l = 1001; l < 1400; l += 37) ix.markDelete(l);
      expect(ix.finishCopy()).toBe(true);
      const image = join(home, `image-${round}.hnsw`);
      const saved = join(home, `saved-${round}.hnsw`);
      await ix.writeImage(image);
      await ix.save(saved);
      expect(Buffer.compare(await readFile(image), await readFile(saved))).toBe(0);
    }
  });
});
