import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compileFilter } from '../../src/filter.ts';
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';
import { Columns } from '../../src/providers/vector/hnsw/columns.ts';
import type { CollectionSpec, VectorRecord } from '../../src/providers/vector/types.ts';
import type { Filter, Metadata, Scalar } from '../../src/types.ts';
import { mulberry32 } from './vector.suite.ts';

const DIMS = 8;
const FIELDS = ['cat', 'n', 'flag', 'tag'];
// Skewed on purpose: the first categories get bitmaps, the rare ones do not.
const CATS = ['c0', 'c0', 'c0', 'c0', 'c1', 'c1', 'c1', 'c2', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9'];

function meta(rand: () => number): Metadata {
  const m: Metadata = {};
  if (rand() < 0.9) m.cat = CATS[Math.floor(rand() * CATS.length)];
  if (rand() < 0.8) m.n = Math.floor(rand() * 100) / 4;
  if (rand() < 0.7) m.flag = rand() < 0.3;
  if (rand() < 0.5) m.tag = rand() < 0.5 ? null : ['x', 'y', 'z'][Math.floor(rand() * 3)];
  return m;
}

function randomFilter(rand: () => number, depth = 0): Filter {
  const r = rand();
  if (depth < 2 && r < 0.3) {
    const parts = Array.from({ length: 2 + Math.floor(rand() * 2) }, () => randomFilter(rand, depth + 1));
    return rand() < 0.5 ? { and: parts } : { or: parts };
  }
  if (depth < 2 && r < 0.38) return { not: randomFilter(rand, depth + 1) };
  const field = FIELDS[Math.floor(rand() * FIELDS.length)];
  const value = (): Scalar => {
    if (field === 'cat') return rand() < 0.1 ? 'absent-value' : CATS[Math.floor(rand() * CATS.length)];
    if (field === 'n') return Math.floor(rand() * 100) / 4;
    if (field === 'flag') return rand() < 0.5;
    return rand() < 0.3 ? null : ['x', 'y', 'z', 'w'][Math.floor(rand() * 4)];
  };
  const ops = ['eq', 'ne', 'in', 'nin', 'gt', 'gte', 'lt', 'lte'] as const;
  const op = ops[Math.floor(rand() * ops.length)];
  if (op === 'in' || op === 'nin') return { field, op, value: Array.from({ length: 1 + Math.floor(rand() * 4) }, value) };
  if (op === 'eq' || op === 'ne') return { field, op, value: rand() < 0.1 ? null : value() };
  const v = value();
  return { field, op, value: typeof v === 'number' || typeof v === 'string' ? v : 5 };
}

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return s;
}

describe('hnsw filters on columns', () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-filter-'));
  });
  afterEach(() => rm(home, { recursive: true, force: true }));

  const spec = (name: string): CollectionSpec => ({ name, dims: DIMS, metric: 'l2', index: { M: 12, efConstruction: 100, ef: 64 }, metadataFields: FIELDS });

  // Exact scans (the default at this size) must equal compileFilter over a Map model exactly; graph walks
  // (forced by the thresholds) must return only matching rows, k of them whenever k match.
  for (const mode of ['exact scan', 'graph walk'] as const) {
    it(`random filters agree with compileFilter over a model, through random writes and deletes (${mode})`, async () => {
      const opts = { filterPlan: mode === 'exact scan' ? ('exact' as const) : ('graph' as const) };
      const p = createHnswProvider({ ...opts, initialCapacity: 256 }, { name: 'local', home });
      await p.open();
      const c = await p.collection(spec('model'));
      const rand = mulberry32(mode === 'exact scan' ? 3 : 4);
      const model = new Map<string, VectorRecord>();
      const vector = () => Float32Array.from({ length: DIMS }, () => rand());
      for (let round = 0; round < 6; round++) {
        const batch: VectorRecord[] = Array.from({ length: 800 }, () => ({ id: `r${Math.floor(rand() * 3000)}`, vector: vector(), metadata: meta(rand) }));
        await c.upsert(batch);
        for (const r of batch) model.set(r.id, r);
        const gone = Array.from({ length: 150 }, () => `r${Math.floor(rand() * 3000)}`);
        await c.delete(gone);
        for (const id of gone) model.delete(id);
        for (let q = 0; q < 25; q++) {
          const filter = randomFilter(rand);
          const query = vector();
          const k = 1 + Math.floor(rand() * 20);
          const pred = compileFilter(filter);
          const expected = [...model.values()]
            .filter((r) => pred(r.metadata))
            .sort((a, b) => l2(a.vector, query) - l2(b.vector, query))
            .slice(0, k)
            .map((r) => r.id);
          const [hits] = await c.search([{ vector: query, k, filter }]);
          const got = hits.map((h) => h.id);
          const context = `round ${round} filter ${JSON.stringify(filter)}`;
          if (mode === 'exact scan') {
            expect(got, context).toEqual(expected);
          } else {
            expect(got.length, context).toBe(expected.length);
            for (const id of got) expect(pred(model.get(id)!.metadata), `${context}: ${id}`).toBe(true);
            expect(got.filter((id) => expected.includes(id)).length, context).toBeGreaterThanOrEqual(Math.floor(expected.length * 0.8));
          }
        }
      }
      // Metadata reads back as written, from the columns.
      const sample = [...model.keys()].slice(0, 50);
      const got = await c.get(sample);
      got.forEach((r, i) => expect(r?.metadata).toEqual(model.get(sample[i])!.metadata));
      await p.close();
    });
  }

  it('columns persist in a snapshot and read back identically after a reopen', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('persist'));
    const rand = mulberry32(9);
    const rows: VectorRecord[] = Array.from({ length: 500 }, (_, i) => ({
      id: `p${i}`,
      vector: Float32Array.from({ length: DIMS }, () => rand()),
      metadata: meta(rand),
    }));
    await c.upsert(rows);
    await c.delete(['p1', 'p2']);
    await p.close();
    const again = createHnswProvider({}, { name: 'local', home });
    await again.open();
    const c2 = await again.collection(spec('persist'));
    const got = await c2.get(rows.map((r) => r.id));
    got.forEach((r, i) => expect(r?.metadata ?? null).toEqual(i === 1 || i === 2 ? null : rows[i].metadata));
    const filter: Filter = {
      and: [
        { field: 'cat', op: 'eq', value: 'c0' },
        { field: 'n', op: 'gte', value: 10 },
      ],
    };
    const pred = compileFilter(filter);
    const [hits] = await c2.search([{ vector: rows[0].vector, k: 500, filter }]);
    expect(hits.map((h) => h.id).sort()).toEqual(
      rows
        .filter((r, i) => i !== 1 && i !== 2 && pred(r.metadata))
        .map((r) => r.id)
        .sort(),
    );
    await again.close();
  });

  it('loads a collection written in format 1 (metadata in rows JSON) and writes format 2 on the next snapshot', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('old'));
    const rows = Array.from({ length: 20 }, (_, i) => ({
      id: `o${i}`,
      vector: new Float32Array(DIMS).fill(i),
      metadata: { cat: i % 2 ? 'odd' : 'even', n: i },
    }));
    await c.upsert(rows);
    await p.close();
    // Rewrite the snapshot as format 1 wrote it.
    const dir = join(home, 'indexes', 'old');
    const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    const ids = (JSON.parse(await readFile(join(dir, m.rows), 'utf8')) as { ids: string[] }).ids;
    await writeFile(join(dir, m.rows), JSON.stringify({ ids, metadata: ids.map((id) => rows.find((r) => r.id === id)!.metadata) }));
    await rm(join(dir, m.columns));
    delete m.columns;
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...m, format: 1 }));

    const again = createHnswProvider({}, { name: 'local', home });
    await again.open();
    const c2 = await again.collection(spec('old'));
    const [hits] = await c2.search([{ vector: new Float32Array(DIMS).fill(4.2), k: 3, filter: { field: 'cat', op: 'eq', value: 'odd' } }]);
    expect(hits.map((h) => h.id)).toEqual(['o5', 'o3', 'o7']);
    expect((await c2.get(['o6']))[0]?.metadata).toEqual({ cat: 'even', n: 6 });
    await c2.upsert([{ id: 'o20', vector: new Float32Array(DIMS).fill(20), metadata: { cat: 'even', n: 20 } }]);
    await c2.flush();
    const m2 = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    expect(m2.format).toBe(2);
    expect((await readdir(dir)).sort()).toEqual([m2.columns, m2.index, 'manifest.json', m2.rows].sort());
    await again.close();
  });

  it('a format newer than this build is refused with NL_CONFLICT naming it', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    await p.collection(spec('future'));
    await p.close();
    const path = join(home, 'indexes', 'future', 'manifest.json');
    await writeFile(path, JSON.stringify({ ...JSON.parse(await readFile(path, 'utf8')), format: 99 }));
    const again = createHnswProvider({}, { name: 'local', home });
    await again.open();
    await expect(again.collection(spec('future'))).rejects.toMatchObject({ code: 'NL_CONFLICT', message: expect.stringContaining('format 99') });
  });

  it('metadata that is not a flat object of scalars is NL_BAD_REQUEST and writes nothing', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('bad'));
    await c.upsert([{ id: 'ok', vector: new Float32Array(DIMS), metadata: { cat: 'c0' } }]);
    const bad: unknown[] = [{ cat: ['c0'] }, { cat: { nested: 1 } }, { n: Infinity }, 'c0', [1]];
    for (const metadata of bad) {
      await expect(
        c.upsert([
          { id: 'new', vector: new Float32Array(DIMS) },
          { id: 'ok', vector: new Float32Array(DIMS).fill(1), metadata: metadata as Metadata },
        ]),
      ).rejects.toMatchObject({
        code: 'NL_BAD_REQUEST',
      });
    }
    expect(await c.count()).toBe(1);
    expect(await c.get(['ok', 'new'])).toEqual([{ id: 'ok', vector: new Float32Array(DIMS), metadata: { cat: 'c0' } }, null]);
    await p.close();
  });

  it('keeps per-value counts and bitmaps in step with writes, and rebuilds them from a snapshot', () => {
    const cols = new Columns(1024);
    for (let l = 0; l < 1000; l++) cols.set(l, { cat: l % 4 === 0 ? 'common' : `rare${l % 7}`, flag: l % 2 === 0 });
    const cat = cols.fields.get('cat')!;
    const common = cat.code('common')!;
    expect(cat.stringRows[common]).toBe(250);
    expect(cat.bitmaps.has(common)).toBe(false);
    for (let l = 0; l < 40; l++) cols.set(l * 4 + 1, { cat: 'common', flag: true });
    expect(cat.stringRows[common]).toBe(290);
    const bits = cat.bitmaps.get(common)!;
    const members = (b: Uint32Array) => Array.from({ length: 1024 }, (_, l) => l).filter((l) => (b[l >>> 5] >>> (l & 31)) & 1);
    expect(members(bits)).toEqual(Array.from({ length: 1000 }, (_, l) => l).filter((l) => cat.get(l) === 'common'));
    cols.set(0, null);
    expect(cat.stringRows[common]).toBe(289);
    expect(members(cat.bitmaps.get(common)!)).not.toContain(0);
    const back = Columns.decode(cols.encode(1000), 1024);
    const cat2 = back.fields.get('cat')!;
    expect(cat2.stringRows[cat2.code('common')!]).toBe(289);
    expect(members(cat2.bitmaps.get(cat2.code('common')!)!)).toEqual(members(cat.bitmaps.get(common)!));
    for (let l = 0; l < 1000; l++) expect(back.get(l)).toEqual(cols.get(l));
    expect(back.fields.get('flag')!.boolRows).toEqual(cols.fields.get('flag')!.boolRows);
  });

  it('an encoding made a slice at a time and patched with the rows written since equals an encoding made now', async () => {
    const cols = new Columns(4096);
    for (let l = 0; l < 3000; l++) cols.set(l, { cat: `c${l % 5}`, price: l / 3 });
    const shape = cols.shape();
    const early = await cols.encodeSliced(4096, 700);
    const touched = new Set<number>();
    for (const l of [5, 999, 2999, 3000, 3500]) {
      cols.set(l, l === 999 ? null : { cat: 'c2', price: -l });
      touched.add(l);
    }
    expect(cols.patch(early, 4096, shape, touched)).toBe(true);
    expect(early.equals(cols.encode(4096))).toBe(true);
    // A string new to the dictionary changes the header: the patch refuses, and the caller encodes again.
    cols.set(7, { cat: 'brand new', price: 1 });
    expect(cols.patch(early, 4096, shape, [7])).toBe(false);
  });
});
