import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isNearlineError, type ErrorCode } from '../../src/errors.ts';
import type { CollectionSpec, IndexParams, VectorCollection, VectorProvider, VectorRecord } from '../../src/providers/vector/types.ts';
import type { Filter, Hit, Metadata, Metric } from '../../src/types.ts';
import { mulberry32 } from '../../scripts/random.ts';

export { mulberry32 };

/** What a backend's test file hands the suite: a fresh, not yet opened provider. */
export interface SuiteProvider {
  provider: VectorProvider;
  cleanup?: () => Promise<void>;
  /**
   * A second provider instance over the same storage, for the close/reopen test.
   * Without it the suite closes and re-opens the first instance.
   */
  reopen?: () => Promise<VectorProvider>;
}

export interface SuiteOptions {
  /** The backend keeps collections across close/open (files, a server). Default true; false skips the persistence test. */
  persistent?: boolean;
  /** Index parameters every collection of the suite gets on top of its own (e.g. a quantization). */
  index?: IndexParams;
}

const vec = (xs: number[]): Float32Array => Float32Array.from(xs);

function randomVector(rand: () => number, dims: number): Float32Array {
  const v = new Float32Array(dims);
  for (let i = 0; i < dims; i++) v[i] = rand() * 2 - 1;
  return v;
}

function l2(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeDefined();
  expect(isNearlineError(caught) ? caught.code : String(caught)).toBe(code);
}

const ids = (hits: Hit[]): string[] => hits.map((h) => h.id);

/**
 * The conformance suite every vector backend passes. Collection names are random, so a backend
 * backed by a shared server can run it repeatedly without cleaning up between runs.
 */
export function vectorProviderSuite(label: string, makeProvider: () => Promise<SuiteProvider>, options: SuiteOptions = {}): void {
  const persistent = options.persistent ?? true;

  describe(`vector provider conformance: ${label}`, () => {
    let made: SuiteProvider;
    let provider: VectorProvider;
    const created: string[] = [];

    beforeEach(async () => {
      made = await makeProvider();
      provider = made.provider;
      await provider.open();
    });

    afterEach(async () => {
      for (const name of created.splice(0)) await provider.dropCollection(name).catch(() => undefined);
      await provider.close().catch(() => undefined);
      await made.cleanup?.();
    });

    let seq = 0;
    function spec(over: Partial<CollectionSpec> = {}): CollectionSpec {
      const name = `t${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}_${seq++}`;
      created.push(over.name ?? name);
      const s: CollectionSpec = { name, dims: 3, metric: 'l2', index: { M: 16, efConstruction: 100, ef: 50 }, metadataFields: [], ...over };
      return { ...s, index: { ...s.index, ...options.index } };
    }

    async function open(over: Partial<CollectionSpec> = {}): Promise<VectorCollection> {
      return provider.collection(spec(over));
    }

    it('declares its capabilities as booleans', () => {
      expect(typeof provider.kind).toBe('string');
      expect(typeof provider.supportsFilter).toBe('boolean');
      expect(typeof provider.supportsDelete).toBe('boolean');
      expect(typeof provider.supportsExamples).toBe('boolean');
      expect(provider.supportsExamples).toBe(typeof provider.searchExamples === 'function');
    });

    it('creates an empty collection, reopens it, and refuses another dims or metric', async () => {
      const s = spec();
      const c = await provider.collection(s);
      expect(await c.count()).toBe(0);
      expect(await c.search([{ vector: vec([1, 2, 3]), k: 5 }])).toEqual([[]]);
      await c.upsert([{ id: 'a', vector: vec([1, 2, 3]) }]);
      const again = await provider.collection(s);
      expect(await again.count()).toBe(1);
      await expectCode(provider.collection({ ...s, dims: 4 }), 'NL_CONFLICT');
      await expectCode(provider.collection({ ...s, metric: 'dot' }), 'NL_CONFLICT');
    });

    it('drops a collection and its rows; dropping a missing one is not an error', async () => {
      const s = spec();
      const c = await provider.collection(s);
      await c.upsert([{ id: 'a', vector: vec([1, 2, 3]) }]);
      await provider.dropCollection(s.name);
      await provider.dropCollection(s.name);
      const fresh = await provider.collection(s);
      expect(await fresh.count()).toBe(0);
      expect(await fresh.get(['a'])).toEqual([null]);
    });

    it('upserts, gets in the order asked with null where absent, replaces, deletes and counts', async () => {
      const c = await open({ metadataFields: ['color'] });
      await c.upsert([
        { id: 'a', vector: vec([1, 0, 0]), metadata: { color: 'red' } },
        { id: 'b', vector: vec([0, 1, 0]), metadata: { color: 'blue' } },
        { id: 'c', vector: vec([0, 0, 1]) },
      ]);
      expect(await c.count()).toBe(3);

      const got = await c.get(['c', 'missing', 'a']);
      expect(got[1]).toBeNull();
      expect(got[0]?.id).toBe('c');
      expect(Array.from(got[0]!.vector)).toEqual([0, 0, 1]);
      expect(got[2]?.id).toBe('a');
      expect(got[2]?.vector).toBeInstanceOf(Float32Array);
      expect(Array.from(got[2]!.vector)).toEqual([1, 0, 0]);
      expect(got[2]?.metadata).toEqual({ color: 'red' });

      await c.upsert([{ id: 'a', vector: vec([5, 5, 5]), metadata: { color: 'green' } }]);
      expect(await c.count()).toBe(3);
      const [a] = await c.get(['a']);
      expect(Array.from(a!.vector)).toEqual([5, 5, 5]);
      expect(a!.metadata).toEqual({ color: 'green' });
      const [near] = await c.search([{ vector: vec([5, 5, 5]), k: 1 }]);
      expect(ids(near)).toEqual(['a']);

      await c.delete(['b', 'never-there']);
      expect(await c.count()).toBe(2);
      expect(await c.get(['b'])).toEqual([null]);
      const [all] = await c.search([{ vector: vec([0, 1, 0]), k: 10 }]);
      expect(ids(all).sort()).toEqual(['a', 'c']);

      await c.upsert([{ id: 'b', vector: vec([0, 2, 0]) }]);
      expect(await c.count()).toBe(3);
      const [back] = await c.search([{ vector: vec([0, 2, 0]), k: 1 }]);
      expect(ids(back)).toEqual(['b']);
      expect((await c.get(['b']))[0]?.metadata ?? {}).toEqual({});
    });

    it('keeps the last record when a batch repeats an id', async () => {
      const c = await open();
      await c.upsert([
        { id: 'x', vector: vec([1, 1, 1]) },
        { id: 'x', vector: vec([2, 2, 2]) },
      ]);
      expect(await c.count()).toBe(1);
      expect(Array.from((await c.get(['x']))[0]!.vector)).toEqual([2, 2, 2]);
    });

    describe('metrics and score conventions (higher is closer)', () => {
      const cases: Array<{ metric: Metric; query: number[]; rows: Record<string, number[]>; expected: Array<[string, number]> }> = [
        {
          metric: 'cosine',
          query: [1, 0, 0],
          rows: { same: [2, 0, 0], diag: [1, 1, 0], ortho: [0, 3, 0], opposite: [-1, 0, 0] },
          expected: [
            ['same', 1],
            ['diag', Math.SQRT1_2],
            ['ortho', 0],
            ['opposite', -1],
          ],
        },
        {
          metric: 'dot',
          query: [1, 2, 3],
          rows: { big: [4, 5, 6], small: [1, 0, 0], neg: [0, -1, -1] },
          expected: [
            ['big', 32],
            ['small', 1],
            ['neg', -5],
          ],
        },
        {
          metric: 'l2',
          query: [0, 0, 0],
          rows: { near: [0, 0, 1], mid: [3, 4, 0], far: [-6, 0, 8] },
          expected: [
            ['near', -1],
            ['mid', -5],
            ['far', -10],
          ],
        },
      ];
      for (const tc of cases) {
        it(`${tc.metric}: exact scores, best first`, async () => {
          const c = await open({ metric: tc.metric });
          await c.upsert(Object.entries(tc.rows).map(([id, v]) => ({ id, vector: vec(v) })));
          const [hits] = await c.search([{ vector: vec(tc.query), k: 10 }]);
          expect(ids(hits)).toEqual(tc.expected.map(([id]) => id));
          tc.expected.forEach(([, score], i) => expect(hits[i].score).toBeCloseTo(score, 5));
        });
      }

      it('cosine: get returns a vector with the direction that was written', async () => {
        const c = await open({ metric: 'cosine' });
        await c.upsert([{ id: 'a', vector: vec([3, 4, 0]) }]);
        const [a] = await c.get(['a']);
        const v = a!.vector;
        const norm = Math.hypot(v[0], v[1], v[2]);
        expect(v[0] / norm).toBeCloseTo(0.6, 5);
        expect(v[1] / norm).toBeCloseTo(0.8, 5);
        expect(v[2]).toBeCloseTo(0, 6);
      });
    });

    it('returns k hits best first, honours exclude, and batch results keep query order', async () => {
      const c = await open();
      const rows: VectorRecord[] = Array.from({ length: 10 }, (_, i) => ({ id: `p${i}`, vector: vec([i, 0, 0]) }));
      await c.upsert(rows);
      const [three, excluded, tooMany, fromEnd] = await c.search([
        { vector: vec([0, 0, 0]), k: 3 },
        { vector: vec([0, 0, 0]), k: 3, exclude: ['p0', 'p2', 'nope'] },
        { vector: vec([0, 0, 0]), k: 50 },
        { vector: vec([9.2, 0, 0]), k: 2 },
      ]);
      expect(ids(three)).toEqual(['p0', 'p1', 'p2']);
      expect(three.map((h) => h.score)).toEqual([-0, -1, -2].map((x) => expect.closeTo(x, 5)));
      expect(ids(excluded)).toEqual(['p1', 'p3', 'p4']);
      expect(ids(tooMany)).toEqual(rows.map((r) => r.id));
      expect(ids(fromEnd)).toEqual(['p9', 'p8']);
      expect(three[0].vector).toBeUndefined();
    });

    it('exact search returns the brute-force answer, without deleted rows, under a filter too', async () => {
      const rand = mulberry32(41);
      const c = await open({ dims: 8, metadataFields: ['g'] });
      const rows: VectorRecord[] = Array.from({ length: 300 }, (_, i) => ({ id: `e${i}`, vector: randomVector(rand, 8), metadata: { g: i % 3 } }));
      await c.upsert(rows);
      const gone = new Set(rows.filter((_, i) => i % 7 === 0).map((r) => r.id));
      await c.delete([...gone]);
      const q = randomVector(rand, 8);
      const truth = (keep: (r: VectorRecord) => boolean) =>
        rows
          .filter((r) => !gone.has(r.id) && keep(r))
          .map((r) => ({ id: r.id, d: l2(r.vector as Float32Array, q) }))
          .sort((x, y) => x.d - y.d)
          .slice(0, 10)
          .map((x) => x.id);
      const [all, filtered] = await c.search([
        { vector: q, k: 10, exact: true },
        { vector: q, k: 10, exact: true, filter: { field: 'g', op: 'eq', value: 1 } },
      ]);
      expect(ids(all)).toEqual(truth(() => true));
      expect(ids(filtered)).toEqual(truth((r) => r.metadata!.g === 1));
    });

    it('interleaved writes and reads: every read sees every write acknowledged before it', async () => {
      const rand = mulberry32(43);
      const c = await open({ dims: 4, metadataFields: ['n'] });
      await c.upsert(Array.from({ length: 50 }, (_, i) => ({ id: `base${i}`, vector: randomVector(rand, 4), metadata: { n: i } })));
      const reads: Array<Promise<unknown>> = [];
      for (let round = 0; round < 20; round++) {
        const v = randomVector(rand, 4);
        const id = `w${round}`;
        // A read issued before the write may or may not see it; one issued after its acknowledgement must.
        reads.push(c.search([{ vector: v, k: 3 }]));
        await c.upsert([{ id, vector: v, metadata: { n: 1000 + round } }]);
        const [[[hit]], [[filtered]]] = await Promise.all([
          c.search([{ vector: v, k: 1 }]),
          c.search([{ vector: v, k: 1, filter: { field: 'n', op: 'gte', value: 1000 + round } }]),
        ]);
        expect(hit.id).toBe(id);
        expect(filtered.id).toBe(id);
        if (round % 4 === 3) {
          await c.delete([`w${round - 1}`]);
          expect(await c.get([`w${round - 1}`])).toEqual([null]);
          reads.push(c.search([{ vector: v, k: 60 }]).then(([hits]) => expect(ids(hits)).not.toContain(`w${round - 1}`)));
        }
      }
      await Promise.all(reads);
      expect(await c.count()).toBe(50 + 20 - 5);
    });

    it('includeVectors returns each hit with its stored vector', async () => {
      const c = await open();
      await c.upsert([
        { id: 'a', vector: vec([1, 2, 3]) },
        { id: 'b', vector: vec([-1, -2, -3]) },
      ]);
      const [hits] = await c.search([{ vector: vec([1, 2, 3]), k: 2, includeVectors: true }]);
      expect(ids(hits)).toEqual(['a', 'b']);
      expect(hits[0].vector).toBeInstanceOf(Float32Array);
      expect(Array.from(hits[0].vector!)).toEqual([1, 2, 3]);
      expect(Array.from(hits[1].vector!)).toEqual([-1, -2, -3]);
    });

    describe('filters', () => {
      const colors = ['red', 'green', 'blue'];
      // Row i: color cycles, size = i, even = i % 2 === 0; every fifth row has no color at all.
      const meta = (i: number): Metadata => (i % 5 === 4 ? { size: i, even: i % 2 === 0 } : { color: colors[i % 3], size: i, even: i % 2 === 0 });
      const N = 30;
      const byHand: Array<[string, Filter, (i: number) => boolean]> = [
        ['eq', { field: 'color', op: 'eq', value: 'red' }, (i) => i % 5 !== 4 && i % 3 === 0],
        ['eq null matches a missing field', { field: 'color', op: 'eq', value: null }, (i) => i % 5 === 4],
        ['eq boolean', { field: 'even', op: 'eq', value: true }, (i) => i % 2 === 0],
        ['ne', { field: 'color', op: 'ne', value: 'red' }, (i) => !(i % 5 !== 4 && i % 3 === 0)],
        ['in', { field: 'color', op: 'in', value: ['green', 'blue'] }, (i) => i % 5 !== 4 && i % 3 !== 0],
        ['nin', { field: 'color', op: 'nin', value: ['green', 'blue'] }, (i) => !(i % 5 !== 4 && i % 3 !== 0)],
        ['gt', { field: 'size', op: 'gt', value: 20 }, (i) => i > 20],
        ['gte', { field: 'size', op: 'gte', value: 20 }, (i) => i >= 20],
        ['lt', { field: 'size', op: 'lt', value: 7 }, (i) => i < 7],
        ['lte', { field: 'size', op: 'lte', value: 7 }, (i) => i <= 7],
        [
          'and',
          {
            and: [
              { field: 'size', op: 'gte', value: 10 },
              { field: 'even', op: 'eq', value: false },
            ],
          },
          (i) => i >= 10 && i % 2 === 1,
        ],
        [
          'or',
          {
            or: [
              { field: 'size', op: 'lt', value: 3 },
              { field: 'color', op: 'eq', value: 'blue' },
            ],
          },
          (i) => i < 3 || (i % 5 !== 4 && i % 3 === 2),
        ],
        ['not', { not: { field: 'size', op: 'lt', value: 25 } }, (i) => i >= 25],
        [
          'nested not(and(or))',
          {
            not: {
              and: [
                {
                  or: [
                    { field: 'color', op: 'eq', value: 'red' },
                    { field: 'color', op: 'eq', value: 'green' },
                  ],
                },
                { field: 'size', op: 'lte', value: 15 },
              ],
            },
          },
          (i) => !(i % 5 !== 4 && i % 3 !== 2 && i <= 15),
        ],
      ];

      for (const [name, filter, keep] of byHand) {
        it(`${name}: returns exactly the matching rows, nearest first`, async () => {
          const c = await open({ metadataFields: ['color', 'size', 'even'] });
          await c.upsert(Array.from({ length: N }, (_, i) => ({ id: `r${i}`, vector: vec([i, 0, 0]), metadata: meta(i) })));
          const expected = Array.from({ length: N }, (_, i) => i).filter(keep);
          expect(expected.length).toBeGreaterThan(0);
          expect(expected.length).toBeLessThan(N);
          const [hits] = await c.search([{ vector: vec([0, 0, 0]), k: N, filter }]);
          expect(ids(hits)).toEqual(expected.map((i) => `r${i}`));
          const [few] = await c.search([{ vector: vec([0, 0, 0]), k: 2, filter }]);
          expect(ids(few)).toEqual(expected.slice(0, 2).map((i) => `r${i}`));
        });
      }

      it('a filtered query returns k hits whenever k matching rows exist, however selective', async () => {
        const dims = 16;
        const rand = mulberry32(7);
        const c = await open({ dims, metadataFields: ['bucket'], index: { M: 8, efConstruction: 64, ef: 10 } });
        const rows: VectorRecord[] = Array.from({ length: 3000 }, (_, i) => ({
          id: `v${i}`,
          vector: randomVector(rand, dims),
          metadata: { bucket: i % 997 === 0 ? 'rare' : i % 10 === 0 ? 'tenth' : 'common' },
        }));
        await c.upsert(rows);
        const rare = rows.filter((r) => r.metadata!.bucket === 'rare');
        const tenth = rows.filter((r) => r.metadata!.bucket === 'tenth');
        expect(rare.length).toBe(4);
        for (let q = 0; q < 5; q++) {
          const query = randomVector(rand, dims);
          const [r, t, none] = await c.search([
            { vector: query, k: 10, filter: { field: 'bucket', op: 'eq', value: 'rare' } },
            { vector: query, k: 25, filter: { field: 'bucket', op: 'eq', value: 'tenth' } },
            { vector: query, k: 3, filter: { field: 'bucket', op: 'eq', value: 'nowhere' } },
          ]);
          const exact = (set: VectorRecord[], k: number): string[] =>
            set
              .map((row) => [row.id, l2(row.vector, query)] as const)
              .sort((a, b) => a[1] - b[1])
              .slice(0, k)
              .map(([id]) => id);
          expect(ids(r)).toEqual(exact(rare, 10));
          expect(t).toHaveLength(25);
          expect(t.every((h) => h.id.startsWith('v') && Number(h.id.slice(1)) % 10 === 0 && Number(h.id.slice(1)) % 997 !== 0)).toBe(true);
          const truth = new Set(exact(tenth, 25));
          expect(t.filter((h) => truth.has(h.id)).length).toBeGreaterThanOrEqual(22);
          expect(none).toEqual([]);
        }
      });

      it('filtered queries under interleaved writes see each write at once and stay exact for rows no write touches', async () => {
        const c = await open({ metadataFields: ['group', 'n'] });
        const keep = (i: number) => ({ id: `keep${i}`, vector: vec([i, 0, 0]), metadata: { group: 'keep', n: i } });
        await c.upsert(Array.from({ length: 40 }, (_, i) => keep(i)));
        const rand = mulberry32(5);
        const churn = (i: number, group: string) => ({ id: `churn${i}`, vector: vec([rand() * 40, rand() * 2, 0]), metadata: { group, n: 100 + i } });
        await c.upsert(Array.from({ length: 40 }, (_, i) => churn(i, i % 2 ? 'odd' : 'even')));
        const model = new Map<string, string>(Array.from({ length: 40 }, (_, i) => [`churn${i}`, i % 2 ? 'odd' : 'even']));

        // Writes and filtered reads in flight together: the rows a filter selects and no write touches come back exactly.
        const reads: Array<Promise<Hit[][]>> = [];
        const writes: Array<Promise<void>> = [];
        for (let round = 0; round < 12; round++) {
          const i = Math.floor(rand() * 40);
          const group = ['odd', 'even', 'gone'][round % 3];
          if (group === 'gone') {
            writes.push(c.delete([`churn${i}`]));
            model.delete(`churn${i}`);
          } else {
            writes.push(c.upsert([churn(i, group)]));
            model.set(`churn${i}`, group);
          }
          reads.push(c.search([{ vector: vec([10.2, 0, 0]), k: 3, filter: { field: 'group', op: 'eq', value: 'keep' } }]));
        }
        await Promise.all(writes);
        for (const [hits] of await Promise.all(reads)) expect(ids(hits)).toEqual(['keep10', 'keep11', 'keep9']);

        // Once written, every change is visible to the next filtered query.
        for (const group of ['odd', 'even']) {
          const expected = [...model]
            .filter(([, g]) => g === group)
            .map(([id]) => id)
            .sort();
          const [hits] = await c.search([{ vector: vec([20, 1, 0]), k: 100, filter: { field: 'group', op: 'eq', value: group } }]);
          expect(ids(hits).sort()).toEqual(expected);
        }
        await c.upsert([{ id: 'keep10', vector: vec([10, 0, 0]), metadata: { group: 'moved', n: 10 } }]);
        const [moved] = await c.search([{ vector: vec([10.2, 0, 0]), k: 3, filter: { field: 'group', op: 'eq', value: 'keep' } }]);
        expect(ids(moved)).toEqual(['keep11', 'keep9', 'keep12']);
        const [ranged] = await c.search([
          {
            vector: vec([10.2, 0, 0]),
            k: 2,
            filter: {
              and: [
                { field: 'group', op: 'ne', value: 'keep' },
                { field: 'n', op: 'lt', value: 100 },
              ],
            },
          },
        ]);
        expect(ids(ranged)).toEqual(['keep10']);
      });

      it('an exclude list of hundreds of ids is honoured and still fills k', async () => {
        const c = await open({ metadataFields: ['even'] });
        await c.upsert(Array.from({ length: 600 }, (_, i) => ({ id: `r${i}`, vector: vec([i, 0, 0]), metadata: { even: i % 2 === 0 } })));
        const exclude = Array.from({ length: 300 }, (_, i) => `r${i}`);
        const [plain, filtered] = await c.search([
          { vector: vec([0, 0, 0]), k: 5, exclude },
          { vector: vec([0, 0, 0]), k: 5, exclude, filter: { field: 'even', op: 'eq', value: false } },
        ]);
        expect(ids(plain)).toEqual(['r300', 'r301', 'r302', 'r303', 'r304']);
        expect(ids(filtered)).toEqual(['r301', 'r303', 'r305', 'r307', 'r309']);
      });

      it('a filter combined with exclude still fills k', async () => {
        const c = await open({ metadataFields: ['even'] });
        await c.upsert(Array.from({ length: 20 }, (_, i) => ({ id: `r${i}`, vector: vec([i, 0, 0]), metadata: { even: i % 2 === 0 } })));
        const [hits] = await c.search([{ vector: vec([0, 0, 0]), k: 3, filter: { field: 'even', op: 'eq', value: true }, exclude: ['r0', 'r4'] }]);
        expect(ids(hits)).toEqual(['r2', 'r6', 'r8']);
      });
    });

    describe('bad input gives a coded error and changes nothing', () => {
      async function seeded(): Promise<VectorCollection> {
        const c = await open({ metadataFields: ['color'] });
        await c.upsert([{ id: 'keep', vector: vec([1, 1, 1]), metadata: { color: 'red' } }]);
        return c;
      }

      it('wrong dims in a batch: NL_DIMENSION_MISMATCH, no record of the batch written', async () => {
        const c = await seeded();
        await expectCode(
          c.upsert([
            { id: 'good', vector: vec([1, 2, 3]) },
            { id: 'keep', vector: vec([9, 9, 9]) },
            { id: 'bad', vector: vec([1, 2]) },
          ]),
          'NL_DIMENSION_MISMATCH',
        );
        expect(await c.count()).toBe(1);
        expect(await c.get(['good', 'bad'])).toEqual([null, null]);
        expect(Array.from((await c.get(['keep']))[0]!.vector)).toEqual([1, 1, 1]);
      });

      it('NaN or Infinity: NL_BAD_VECTOR, nothing written', async () => {
        const c = await seeded();
        await expectCode(
          c.upsert([
            { id: 'good', vector: vec([1, 2, 3]) },
            { id: 'nan', vector: vec([1, NaN, 3]) },
          ]),
          'NL_BAD_VECTOR',
        );
        await expectCode(c.upsert([{ id: 'inf', vector: vec([Infinity, 2, 3]) }]), 'NL_BAD_VECTOR');
        expect(await c.count()).toBe(1);
        expect(await c.get(['good', 'nan', 'inf'])).toEqual([null, null, null]);
      });

      it('a query vector of the wrong length or with NaN is refused', async () => {
        const c = await seeded();
        await expectCode(c.search([{ vector: vec([1, 2, 3, 4]), k: 1 }]), 'NL_DIMENSION_MISMATCH');
        await expectCode(c.search([{ vector: vec([1, NaN, 3]), k: 1 }]), 'NL_BAD_VECTOR');
      });

      it('bad filters: unknown op, unknown field, malformed shape -> NL_BAD_FILTER', async () => {
        const c = await seeded();
        const q = vec([1, 1, 1]);
        const bad: unknown[] = [
          { field: 'color', op: 'like', value: 'r%' },
          { field: 'shape', op: 'eq', value: 'round' },
          { and: [] },
          { field: 'color', op: 'in', value: 'red' },
          'color = red',
        ];
        for (const filter of bad) {
          await expectCode(c.search([{ vector: q, k: 1, filter: filter as Filter }]), 'NL_BAD_FILTER');
        }
        expect(await c.count()).toBe(1);
      });

      it('bad k: not a positive integer -> NL_BAD_REQUEST, the same for every provider', async () => {
        const c = await seeded();
        for (const k of [-1, 1.5, '3', null]) {
          await expectCode(c.search([{ vector: vec([1, 1, 1]), k: k as number }]), 'NL_BAD_REQUEST');
        }
        expect(await c.count()).toBe(1);
      });
    });

    it.skipIf(!persistent)('keeps rows, metadata and deletions across close and reopen', async () => {
      const s = spec({ metadataFields: ['n'], metric: 'cosine', dims: 8 });
      const rand = mulberry32(11);
      const rows: VectorRecord[] = Array.from({ length: 200 }, (_, i) => ({ id: `k${i}`, vector: randomVector(rand, 8), metadata: { n: i } }));
      let c = await provider.collection(s);
      await c.upsert(rows);
      await c.delete(['k3', 'k5']);
      await c.upsert([{ id: 'k7', vector: rows[0].vector, metadata: { n: -7 } }]);
      const query = randomVector(rand, 8);
      const [before] = await c.search([{ vector: query, k: 10, ef: 200 }]);
      await c.flush();
      await provider.close();

      if (made.reopen) provider = await made.reopen();
      await provider.open();
      c = await provider.collection(s);
      expect(await c.count()).toBe(198);
      const got = await c.get(['k3', 'k7', 'k199']);
      expect(got[0]).toBeNull();
      expect(got[1]?.metadata).toEqual({ n: -7 });
      expect(got[2]?.metadata).toEqual({ n: 199 });
      const [after] = await c.search([{ vector: query, k: 10, ef: 200 }]);
      expect(ids(after)).toEqual(ids(before));
      after.forEach((h, i) => expect(h.score).toBeCloseTo(before[i].score, 5));
      const [filtered] = await c.search([{ vector: query, k: 5, filter: { field: 'n', op: 'lt', value: 0 } }]);
      expect(ids(filtered)).toEqual(['k7']);
    });
  });
}
