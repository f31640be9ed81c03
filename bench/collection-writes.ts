/**
 * Queries beside writes at the collection layer (no HTTP, no log): one hnsw collection of GloVe 100-d (cosine,
 * M=16, efConstruction=200), queries paced on the calling thread (k=10, ef=100, latency from when each was
 * due), and a writer applying upserts of `--batch` rows as the live layer does (closed loop, with a log offset), with
 * one snapshot per window. Windows alternate: queries alone, then queries beside the writer.
 *
 * With several `--tree` checkouts of nearline (each with its addon built), every tree gets its own collection
 * in this one process and the windows rotate through the trees, so a change is compared before/after under
 * the same machine load (the machine may be shared):
 *
 *   npx tsx bench/collection-writes.ts [--tree /path/to/other/checkout] [--tree .] [--rows 20000] [--windows 6] [--batch 16] [--snapshots 0]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { GLOVE_DIMS as DIMS, loadGlove } from './glove.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    tree: { type: 'string', multiple: true },
    rows: { type: 'string', default: '20000' },
    windows: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '3' },
    'query-rate': { type: 'string', default: '100' },
    /** Rows per upsert: the live layer applies concurrent pushes together (16 clients: batches of ~16). */
    batch: { type: 'string', default: '1' },
    /** Snapshots per window beside the writer (0 or 1). */
    snapshots: { type: 'string', default: '1' },
  },
});
const trees = (args.tree ?? [join(HERE, '..')]).map((t) => resolve(t));
const ROWS = Number(args.rows);
const WINDOWS = Number(args.windows);
const SECONDS = Number(args.seconds);
const RATE = Number(args['query-rate']);
const BATCH = Number(args.batch);
const log = (msg: string) => process.stderr.write(`[collection-writes] ${msg}\n`);

type Collection = {
  upsert(r: Array<{ id: string; vector: Float32Array; metadata?: object }>, o?: { logOffset: number }): Promise<void>;
  search(q: Array<{ vector: Float32Array; k: number; ef?: number }>): Promise<unknown>;
  flush(): Promise<void>;
};

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
const median = (xs: number[]) => pct(xs, 0.5);

async function main(): Promise<void> {
  const all = await loadGlove(join(HERE, 'data'), log);
  const total = all.length / DIMS;
  const vec = (i: number) => all.subarray((i % total) * DIMS, ((i % total) + 1) * DIMS);
  const opened: Array<{ tree: string; c: Collection; close: () => Promise<void>; home: string; next: number; offset: number }> = [];
  for (const tree of trees) {
    const { createHnswProvider } = (await import(pathToFileURL(join(tree, 'src/providers/vector/hnsw/provider.ts')).href)) as {
      createHnswProvider: (
        o: object,
        ctx: { name: string; home: string },
      ) => { open(): Promise<void>; collection(s: object): Promise<Collection>; close(): Promise<void> };
    };
    const home = await mkdtemp(join(tmpdir(), 'nearline-collection-writes-'));
    const p = createHnswProvider({}, { name: 'local', home });
    await p.open();
    const c = await p.collection({ name: 'glove', dims: DIMS, metric: 'cosine', index: { M: 16, efConstruction: 200, ef: 100 }, metadataFields: ['cat'] });
    const t0 = performance.now();
    for (let i = 0; i < ROWS; i += 5000) {
      await c.upsert(
        Array.from({ length: Math.min(5000, ROWS - i) }, (_, j) => ({ id: `w${i + j}`, vector: vec(i + j), metadata: { cat: `c${(i + j) % 10}` } })),
        { logOffset: i + 5000 },
      );
    }
    await c.flush();
    log(`${tree}: built ${ROWS} rows in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    opened.push({ tree, c, close: () => p.close(), home, next: 1_000_000, offset: ROWS + 5000 });
  }

  /** Paced queries for `SECONDS`; with `writer`, single-row upserts in a closed loop and one snapshot midway. */
  async function window(t: (typeof opened)[number], writer: boolean) {
    const queryLatency: number[] = [];
    const writeLatency: number[] = [];
    let snapshotMs = 0;
    const end = performance.now() + SECONDS * 1000;
    let running = true;
    const writes = writer
      ? (async () => {
          while (running) {
            const ns = Array.from({ length: BATCH }, () => t.next++);
            const s = performance.now();
            await t.c.upsert(
              ns.map((n) => ({ id: `p${n}`, vector: vec(n), metadata: { cat: `c${n % 10}` } })),
              { logOffset: ++t.offset },
            );
            for (const _ of ns) writeLatency.push(performance.now() - s);
          }
        })()
      : Promise.resolve();
    const snapshot =
      writer && args.snapshots !== '0'
        ? (async () => {
            await new Promise((r) => setTimeout(r, (SECONDS * 1000) / 2));
            const s = performance.now();
            await t.c.flush();
            snapshotMs = performance.now() - s;
          })()
        : Promise.resolve();
    const start = performance.now();
    const inflight: Array<Promise<void>> = [];
    for (let i = 0; ; i++) {
      const due = start + (i * 1000) / RATE;
      if (due >= end) break;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const q = vec(total - 1 - (i % 2000));
      inflight.push(t.c.search([{ vector: q, k: 10, ef: 100 }]).then(() => void queryLatency.push(performance.now() - due)));
    }
    await Promise.all(inflight);
    running = false;
    await writes;
    await snapshot;
    return { queryLatency, writeLatency, snapshotMs };
  }

  const results = new Map(
    opened.map((t) => [
      t.tree,
      {
        alone: [] as number[],
        during: [] as number[],
        writeP50: [] as number[],
        writeP99: [] as number[],
        writeMax: [] as number[],
        writes: [] as number[],
        snapshot: [] as number[],
      },
    ]),
  );
  for (let w = 0; w < WINDOWS; w++) {
    for (const t of opened) {
      const r = results.get(t.tree)!;
      const alone = await window(t, false);
      const during = await window(t, true);
      r.alone.push(pct(alone.queryLatency, 0.99));
      r.during.push(pct(during.queryLatency, 0.99));
      r.writeP50.push(median(during.writeLatency));
      r.writeP99.push(pct(during.writeLatency, 0.99));
      // The longest a write waited: with a snapshot in the window, the time the snapshot held writers back.
      r.writeMax.push(Math.max(...during.writeLatency));
      r.writes.push(during.writeLatency.length / SECONDS);
      r.snapshot.push(during.snapshotMs);
      log(
        `${t.tree} window ${w + 1}: query p99 ${r.alone.at(-1)!.toFixed(1)} -> ${r.during.at(-1)!.toFixed(1)} ms, upsert p99 ${r.writeP99.at(-1)!.toFixed(1)} max ${r.writeMax.at(-1)!.toFixed(1)} ms, ${r.writes.at(-1)!.toFixed(0)} rows/s`,
      );
    }
  }
  const rows = opened.map((t) => {
    const r = results.get(t.tree)!;
    const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
    return `| ${t.tree} | ${median(r.alone).toFixed(1)} (${range(r.alone)}) | ${median(r.during).toFixed(1)} (${range(r.during)}) | ${(median(r.during) / median(r.alone)).toFixed(2)}x | ${median(r.writeP50).toFixed(2)} / ${median(r.writeP99).toFixed(1)} (${range(r.writeP99)}) | ${median(r.writeMax).toFixed(1)} (${range(r.writeMax)}) | ${median(r.writes).toFixed(0)} | ${median(r.snapshot).toFixed(0)} |`;
  });
  process.stdout.write(
    [
      `${ROWS} GloVe rows, ${WINDOWS} windows of ${SECONDS} s per tree, rotating; queries paced at ${RATE}/s; upserts of ${BATCH} row(s); load average at the end ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}. Medians over windows (range).`,
      '',
      '| tree | query p99 alone, ms | query p99 beside writes, ms | ratio | upsert p50 / p99, ms | longest upsert, ms | upserts/s | snapshot, ms |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n'),
  );
  for (const t of opened) {
    await t.close();
    await rm(t.home, { recursive: true, force: true });
  }
}

await main();
