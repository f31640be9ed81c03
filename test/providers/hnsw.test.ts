import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CollectionSpec } from '../../src/providers/vector/types.ts';
import { encodeRows } from '../../src/providers/vector/hnsw/files.ts';
import { createHnswProvider } from '../../src/providers/vector/hnsw/provider.ts';
import { mulberry32, vectorProviderSuite } from './vector.suite.ts';

vectorProviderSuite('hnsw', async () => {
  const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
  return {
    provider: createHnswProvider({}, { name: 'local', home }),
    reopen: async () => createHnswProvider({}, { name: 'local', home }),
    cleanup: () => rm(home, { recursive: true, force: true }),
  };
});

// Forces filtered queries through the graph walk and its widening, which the defaults route to an exact scan at this size.
vectorProviderSuite('hnsw, filtered queries through the graph', async () => {
  const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
  const options = { filterPlan: 'graph' as const };
  return {
    provider: createHnswProvider(options, { name: 'local', home }),
    reopen: async () => createHnswProvider(options, { name: 'local', home }),
    cleanup: () => rm(home, { recursive: true, force: true }),
  };
});

// int8 codes in the graph, full-precision vectors on disk: the same contract, to the same exactness where it has one.
vectorProviderSuite(
  'hnsw, int8',
  async () => {
    const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
    return {
      provider: createHnswProvider({}, { name: 'local', home }),
      reopen: async () => createHnswProvider({}, { name: 'local', home }),
      cleanup: () => rm(home, { recursive: true, force: true }),
    };
  },
  { index: { quantization: 'int8' } },
);

describe('hnsw files', () => {
  let home: string;
  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
  });
  afterEach(() => rm(home, { recursive: true, force: true }));

  const spec = (name: string, dims = 4): CollectionSpec => ({ name, dims, metric: 'l2', index: { M: 8, efConstruction: 50, ef: 50 }, metadataFields: ['n'] });
  const row = (id: string, x: number, dims = 4) => ({ id, vector: new Float32Array(dims).fill(x), metadata: { n: x } });

  it('a repeated filter sees every write at once', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('cache'));
    await c.upsert(Array.from({ length: 50 }, (_, i) => row(`c${i}`, i)));
    const query = { vector: new Float32Array(4).fill(10), k: 3, filter: { field: 'n', op: 'gte' as const, value: 40 } };
    const ids = async () => (await c.search([query]))[0].map((h) => h.id);
    expect(await ids()).toEqual(['c40', 'c41', 'c42']);
    expect(await ids()).toEqual(['c40', 'c41', 'c42']);
    await c.upsert([{ id: 'c5', vector: new Float32Array(4).fill(5), metadata: { n: 99 } }]);
    expect(await ids()).toEqual(['c5', 'c40', 'c41']);
    await c.delete(['c40']);
    expect(await ids()).toEqual(['c5', 'c41', 'c42']);
    await p.close();
  });

  it('grows the index from a small initial capacity as rows arrive', async () => {
    const p = createHnswProvider({ initialCapacity: 4 }, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('grow'));
    for (let start = 0; start < 1000; start += 7) {
      await c.upsert(Array.from({ length: Math.min(7, 1000 - start) }, (_, j) => row(`g${start + j}`, start + j)));
    }
    expect(await c.count()).toBe(1000);
    const got = await c.get(['g0', 'g500', 'g999']);
    expect(got.map((r) => r?.vector[0])).toEqual([0, 500, 999]);
    const hits = await c.search([0, 123, 999].map((x) => ({ vector: new Float32Array(4).fill(x), k: 1 })));
    expect(hits.map((h) => h[0].id)).toEqual(['g0', 'g123', 'g999']);
    await p.close();
  });

  it('reuses deleted labels, so churn does not grow the snapshot', async () => {
    const p = createHnswProvider({ initialCapacity: 512 }, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('churn'));
    await c.upsert(Array.from({ length: 500 }, (_, i) => row(`a${i}`, i)));
    await c.flush();
    const manifest = async () => JSON.parse(await readFile(join(home, 'indexes', 'churn', 'manifest.json'), 'utf8')) as { index: string; generation: number };
    const before = await stat(join(home, 'indexes', 'churn', (await manifest()).index));
    await c.delete(Array.from({ length: 250 }, (_, i) => `a${i}`));
    await c.upsert(Array.from({ length: 250 }, (_, i) => row(`b${i}`, 1000 + i)));
    await c.flush();
    const m = await manifest();
    const after = await stat(join(home, 'indexes', 'churn', m.index));
    expect(after.size).toBe(before.size);
    expect(await c.count()).toBe(500);
    const [hits] = await c.search([{ vector: new Float32Array(4).fill(1100.2), k: 3 }]);
    expect(hits.map((h) => h.id)).toEqual(['b100', 'b101', 'b99']);
    expect(await readdir(join(home, 'indexes', 'churn'))).toEqual(
      [`columns-${m.generation}.bin`, `index-${m.generation}.hnsw`, 'manifest.json', `rows-${m.generation}.json`].sort(),
    );
    await p.close();
  });

  it('ignores and removes leftovers of an interrupted snapshot: temp files, a newer generation without its manifest', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('crash'));
    await c.upsert([row('a', 1), row('b', 2)]);
    await p.close();
    const dir = join(home, 'indexes', 'crash');
    const { generation } = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { generation: number };
    await writeFile(join(dir, `index-${generation + 1}.hnsw`), 'half an index');
    await writeFile(join(dir, `index-${generation + 1}.hnsw.tmp`), 'garbage');
    await writeFile(join(dir, `rows-${generation + 1}.json.tmp`), '{"ids":[');
    await writeFile(join(dir, `columns-${generation + 1}.bin`), 'NLCOLS1');
    await writeFile(join(dir, 'manifest.json.tmp'), '{"format":1,"gener');

    const again = createHnswProvider({}, { name: 'local', home });
    await again.open();
    const c2 = await again.collection(spec('crash'));
    expect(await c2.count()).toBe(2);
    expect((await c2.get(['b']))[0]?.metadata).toEqual({ n: 2 });
    expect((await readdir(dir)).sort()).toEqual([`columns-${generation}.bin`, `index-${generation}.hnsw`, 'manifest.json', `rows-${generation}.json`]);
    await again.close();
  });

  it('a damaged index file is a coded provider error, not a crash', async () => {
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection(spec('damaged'));
    await c.upsert([row('a', 1), row('b', 2)]);
    await p.close();
    const dir = join(home, 'indexes', 'damaged');
    const { index } = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { index: string };
    const bytes = await readFile(join(dir, index));
    await writeFile(join(dir, index), bytes.subarray(0, bytes.length >> 1));
    const again = createHnswProvider({}, { name: 'local', home });
    await again.open();
    await expect(again.collection(spec('damaged'))).rejects.toMatchObject({ code: 'NL_PROVIDER_ERROR' });
  });

  for (const quantization of ['none', 'int8'] as const)
    it(`a writer killed at any moment leaves the last flushed snapshot readable (quantization ${quantization})`, async () => {
      const fixture = fileURLToPath(new URL('./hnsw-writer.fixture.ts', import.meta.url));
      for (let round = 0; round < 4; round++) {
        const name = `killed${round}`;
        const child = spawn(process.execPath, ['--import', 'tsx', fixture, home, name, quantization], { stdio: ['ignore', 'pipe', 'inherit'] });
        let flushed = 0;
        child.stdout.on('data', (b: Buffer) => (flushed = Math.max(flushed, ...b.toString().trim().split('\n').map(Number))));
        const target = 2 + round;
        await new Promise<void>((resolve, reject) => {
          child.on('exit', () => reject(new Error('writer exited on its own')));
          const poll = setInterval(() => {
            if (flushed >= target) {
              clearInterval(poll);
              // Lands at a different point of the snapshot each round.
              setTimeout(() => {
                child.removeAllListeners('exit');
                child.on('exit', () => resolve());
                child.kill('SIGKILL');
              }, round * 7);
            }
          }, 1);
        });
        const p = createHnswProvider({}, { name: 'local', home });
        await p.open();
        const c = await p.collection({ name, dims: 32, metric: 'l2', index: { quantization }, metadataFields: ['gen'] });
        const n = (await c.count()) - 20_000;
        expect(n).toBeGreaterThanOrEqual(flushed);
        expect(n).toBeLessThanOrEqual(flushed + 1);
        const rows = await c.get(Array.from({ length: n }, (_, i) => `r${i + 1}`));
        rows.forEach((r, i) => {
          expect(r?.metadata).toEqual({ gen: i + 1 });
          expect(r?.vector[31]).toBe(i + 1);
        });
        const [hits] = await c.search([{ vector: new Float32Array(32).fill(n), k: 1 }]);
        expect(hits[0].id).toBe(`r${n}`);
        await p.close();
      }
    }, 120_000);
});

describe('hnsw and the event loop', () => {
  it('searches off the JS thread: timers keep firing while a large batch runs', async () => {
    const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
    const p = createHnswProvider({ threads: 1 }, { name: 'local', home });
    await p.open();
    const dims = 64;
    const c = await p.collection({ name: 'loop', dims, metric: 'l2', index: { M: 8, efConstruction: 40 }, metadataFields: [] });
    const rand = mulberry32(3);
    const rows = Array.from({ length: 3000 }, (_, i) => ({ id: `x${i}`, vector: Float32Array.from({ length: dims }, () => rand()) }));
    await c.upsert(rows);
    const queries = rows.slice(0, 2000).map((r) => ({ vector: r.vector, k: 10, ef: 400 }));
    let ticks = 0;
    let done = false;
    const tick = (): void => {
      ticks++;
      if (!done) setImmediate(tick);
    };
    setImmediate(tick);
    const started = performance.now();
    const results = await c.search(queries);
    const ms = performance.now() - started;
    done = true;
    expect(results.every((hits) => hits.length === 10)).toBe(true);
    expect(results.filter((hits, i) => hits[0].id === `x${i}`).length).toBeGreaterThan(1900);
    // A search running on the JS thread would let the loop turn once or twice in all that time.
    expect(ms).toBeGreaterThan(20);
    expect(ticks).toBeGreaterThan(20);
    await p.close();
    await rm(home, { recursive: true, force: true });
  });
});

describe('hnsw id bookkeeping', () => {
  it('matches a plain Map model through random upserts and deletes, and after a reopen', async () => {
    const home = await mkdtemp(join(tmpdir(), 'nearline-hnsw-'));
    const s: CollectionSpec = { name: 'churn', dims: 2, metric: 'l2', index: { M: 8, efConstruction: 20 }, metadataFields: [] };
    let p = createHnswProvider({ initialCapacity: 8 }, { name: 'local', home });
    await p.open();
    let c = await p.collection(s);
    const rand = mulberry32(5);
    const model = new Map<string, number>();
    const id = () => `id-${Math.floor(rand() * 3000)}`;
    for (let round = 0; round < 30; round++) {
      const ups = Array.from({ length: 200 }, () => ({ id: id(), vector: Float32Array.of(round, rand()) }));
      await c.upsert(ups);
      for (const u of ups) model.set(u.id, u.vector[1]);
      const dels = Array.from({ length: 150 }, id);
      await c.delete(dels);
      for (const d of dels) model.delete(d);
      if (round === 15) {
        await p.close();
        p = createHnswProvider({ initialCapacity: 8 }, { name: 'local', home });
        await p.open();
        c = await p.collection(s);
      }
    }
    expect(await c.count()).toBe(model.size);
    const all = Array.from({ length: 3000 }, (_, i) => `id-${i}`);
    const got = await c.get(all);
    expect(got.map((r) => (r ? r.vector[1] : null))).toEqual(all.map((i) => model.get(i) ?? null));
    await p.close();
    await rm(home, { recursive: true, force: true });
  });
});

describe('hnsw rows file', () => {
  it('encodeRows writes what JSON.stringify writes, a slice of ids at a time', async () => {
    for (const n of [0, 1, 16_384, 40_001]) {
      const ids = Array.from({ length: n }, (_, i) => (i % 7 === 3 ? null : `id "${i}" \u00e9\n`));
      expect(await encodeRows(ids)).toBe(JSON.stringify({ ids }));
    }
  });
});
