/**
 * Online reads of 100 ids x 3 features (two scalars + one 100-d vector, 100k ids loaded): nearline's redis
 * and sqlite stores against raw pipelined ioredis on the same Redis layout, all in one run, interleaved in
 * rounds so a noisy machine slows every contender alike. Starts its own redis-server.
 *
 *   npm run bench:online [-- --ids 100000 --rounds 15 --calls 400]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createRedisOnlineStore } from '../src/providers/online/redis.ts';
import { createSqliteOnlineStore } from '../src/providers/online/sqlite.ts';
import type { OnlineStore } from '../src/providers/online/types.ts';
import type { OnlineValue } from '../src/types.ts';
import { startRedisServer } from '../test/helpers/redis-server.ts';

const { values: args } = parseArgs({
  options: {
    ids: { type: 'string', default: '100000' },
    rounds: { type: 'string', default: '15' },
    calls: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: '16' },
  },
});
const N_IDS = Number(args.ids);
const ROUNDS = Number(args.rounds);
const CALLS = Number(args.calls);
const CONCURRENCY = Number(args.concurrency);
const BATCH = 100;
const DIMS = 100;
const FEATURES = ['bench_score@v1', 'bench_label@v1', 'bench_vec@v1'];

type Read = (ids: string[]) => Promise<unknown>;

interface Contender {
  name: string;
  read: Read;
  latencies: number[];
  /** Median latency of each round's one-in-flight phase, ms. */
  roundP50: number[];
  /** Wall time of each round's one-in-flight phase, ms. */
  serialMs: number[];
  /** Wall time of each round's concurrent phase, ms. */
  concurrentMs: number[];
}

async function main(): Promise<void> {
  const server = await startRedisServer();
  const home = mkdtempSync(join(tmpdir(), 'nearline-bench-online-'));
  const ctx = { name: 'bench', home };
  const redisStore = createRedisOnlineStore({ url: server.url }, ctx);
  const sqliteStore = createSqliteOnlineStore({}, ctx);
  const raw = new Redis(server.url);
  try {
    await Promise.all([redisStore.open(), sqliteStore.open()]);
    const ids = Array.from({ length: N_IDS }, (_, i) => `user:${i}`);
    process.stdout.write(`loading ${N_IDS} ids x ${FEATURES.length} features into redis and sqlite... `);
    let t = performance.now();
    await load(redisStore, ids);
    const redisLoad = performance.now() - t;
    t = performance.now();
    await load(sqliteStore, ids);
    const sqliteLoad = performance.now() - t;
    console.log(`redis ${(redisLoad / 1000).toFixed(1)} s, sqlite ${(sqliteLoad / 1000).toFixed(1)} s`);

    // The same layout the store uses: one hash per feature key, one pipeline of HMGETs per call.
    const keys = FEATURES.map((f) => `nl:{${f}}`);
    const rawRead: Read = async (batch) => {
      const pipe = raw.pipeline();
      for (const key of keys) pipe.hmgetBuffer(key, ...batch);
      return pipe.exec();
    };
    await sanityCheck(redisStore, sqliteStore, rawRead, ids);

    const contenders: Contender[] = [
      { name: 'raw ioredis pipeline', read: rawRead, latencies: [], roundP50: [], serialMs: [], concurrentMs: [] },
      { name: 'nearline redis', read: (b) => redisStore.get(b, FEATURES), latencies: [], roundP50: [], serialMs: [], concurrentMs: [] },
      { name: 'nearline sqlite', read: (b) => sqliteStore.get(b, FEATURES), latencies: [], roundP50: [], serialMs: [], concurrentMs: [] },
    ];
    const batches = Array.from({ length: CALLS }, () => sample(ids, BATCH));
    for (const c of contenders) for (const b of batches.slice(0, 50)) await c.read(b); // warm-up

    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order so no contender always runs right after a noisy neighbour's burst.
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]);
      for (const c of order) {
        const start = performance.now();
        const round: number[] = [];
        for (const b of batches) {
          const s = performance.now();
          await c.read(b);
          round.push(performance.now() - s);
        }
        c.serialMs.push(performance.now() - start);
        c.latencies.push(...round);
        c.roundP50.push(median(round));
      }
      for (const c of order) c.concurrentMs.push(await concurrent(c.read, batches, CONCURRENCY));
      process.stdout.write(`round ${round + 1}/${ROUNDS}\r`);
    }

    const report = render(contenders, { redisLoad, sqliteLoad, redisVersion: redisVersion() });
    console.log(`\n${report}`);
    const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'online.md');
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, report);
    console.log(`written to ${out}`);
  } finally {
    raw.disconnect();
    await redisStore.close();
    await sqliteStore.close();
    await server.stop();
    rmSync(home, { recursive: true, force: true });
  }
}

async function load(store: OnlineStore, ids: string[]): Promise<void> {
  for (let start = 0; start < ids.length; start += 10_000) {
    const chunk = ids.slice(start, start + 10_000);
    await store.put(
      FEATURES[0],
      chunk.map((id, k) => [id, (start + k) * 0.25]),
    );
    await store.put(
      FEATURES[1],
      chunk.map((id, k) => [id, `segment-${(start + k) % 97}`]),
    );
    await store.put(
      FEATURES[2],
      chunk.map((id, k) => [id, vectorFor(start + k)]),
    );
  }
}

function vectorFor(i: number): Float32Array {
  const v = new Float32Array(DIMS);
  for (let d = 0; d < DIMS; d++) v[d] = Math.sin(i * 0.001 + d);
  return v;
}

/** A benchmark of wrong answers is worthless: all three must see the same data. */
async function sanityCheck(redis: OnlineStore, sqlite: OnlineStore, rawRead: Read, ids: string[]): Promise<void> {
  const batch = sample(ids, BATCH);
  const [a, b] = await Promise.all([redis.get(batch, FEATURES), sqlite.get(batch, FEATURES)]);
  const rawRows = (await rawRead(batch)) as Array<[Error | null, Array<Buffer | null>]>;
  const bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const same = (x: OnlineValue, y: OnlineValue) => (x instanceof Float32Array && y instanceof Float32Array ? bytes(x).equals(bytes(y)) : Object.is(x, y));
  batch.forEach((id, i) => {
    const want: OnlineValue[] = [Number(id.slice(5)) * 0.25, `segment-${Number(id.slice(5)) % 97}`, vectorFor(Number(id.slice(5)))];
    for (let j = 0; j < FEATURES.length; j++) {
      if (!same(a[i][j], want[j]) || !same(b[i][j], want[j]) || rawRows[j][1][i] === null) {
        throw new Error(`stores disagree on ${id} ${FEATURES[j]}`);
      }
    }
  });
}

async function concurrent(read: Read, batches: string[][], concurrency: number): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < batches.length) await read(batches[next++]);
    }),
  );
  return performance.now() - start;
}

function sample(ids: string[], n: number): string[] {
  return Array.from({ length: n }, () => ids[Math.floor(Math.random() * ids.length)]);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(xs: number[]): number {
  return quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
}

/** Median over rounds of raw time / contender time in the same round: noise that hits a whole round cancels out. */
function ratio(raw: number[], c: number[]): number {
  return median(raw.map((r, i) => r / c[i]));
}

function render(contenders: Contender[], info: { redisLoad: number; sqliteLoad: number; redisVersion: string }): string {
  const raw = contenders[0];
  const rows = contenders.map((c) => {
    const sorted = [...c.latencies].sort((a, b) => a - b);
    return [
      c.name,
      `${(quantile(sorted, 0.5) * 1000).toFixed(0)} µs`,
      `${ratio(raw.roundP50, c.roundP50).toFixed(2)}x`,
      `${(quantile(sorted, 0.99) * 1000).toFixed(0)} µs`,
      `${Math.round((CALLS * 1000) / median(c.serialMs))}`,
      `${ratio(raw.serialMs, c.serialMs).toFixed(2)}x`,
      `${Math.round((CALLS * 1000) / median(c.concurrentMs))}`,
      `${ratio(raw.concurrentMs, c.concurrentMs).toFixed(2)}x`,
    ];
  });
  const header = [
    'reader',
    'p50',
    'p50 vs raw',
    'p99',
    'reads/s (1 in flight)',
    'vs raw (1 in flight)',
    `reads/s (${CONCURRENCY} in flight)`,
    `vs raw (${CONCURRENCY} in flight)`,
  ];
  const table = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
  const redisRatio = ratio(raw.serialMs, contenders[1].serialMs);
  const redisP50Ratio = ratio(raw.roundP50, contenders[1].roundP50);
  return `# Online store reads

One read = ${BATCH} random ids x ${FEATURES.length} features (a float, a string, a ${DIMS}-d float32 vector) from
${N_IDS.toLocaleString('en-US')} loaded ids, decoded to JS values (the raw baseline returns undecoded Buffers).
${ROUNDS} interleaved rounds x ${CALLS} reads per contender and phase. p50/p99 pool the one-in-flight latencies of
all rounds; reads/s use the median round; "vs raw" is the median over rounds of raw ioredis / contender within
the same round, of total time (reads/s columns) or of median latency (p50 column): higher is better, 1.00x = parity.
On a busy machine the p50 ratio is the steadier one: stalls from other processes land in the totals.

${table}

Target: nearline redis >= 0.8x raw pipelined ioredis: **${redisRatio.toFixed(2)}x reads/s (1 in flight), ${redisP50Ratio.toFixed(2)}x p50,
${Math.min(redisRatio, redisP50Ratio) >= 0.8 ? 'met' : 'NOT met'}**.

Load of ${N_IDS.toLocaleString('en-US')} ids x ${FEATURES.length} features in puts of 10k rows: redis ${(info.redisLoad / 1000).toFixed(1)} s,
sqlite ${(info.sqliteLoad / 1000).toFixed(1)} s (file in a temp dir, WAL).

Machine: ${cpus().length} x ${cpus()[0]?.model ?? 'unknown cpu'}, Node ${process.version}, ${info.redisVersion} on loopback
(same host, so Redis and the benchmark share the cores); shared and noisy, compare ratios rather than absolutes.
Run ${new Date().toISOString()} with \`npm run bench:online -- --ids ${N_IDS} --rounds ${ROUNDS} --calls ${CALLS} --concurrency ${CONCURRENCY}\`.
`;
}

function redisVersion(): string {
  try {
    return execFileSync(process.env.REDIS_SERVER_BIN ?? 'redis-server', ['--version'])
      .toString()
      .split(' ')
      .slice(0, 3)
      .join(' ');
  } catch {
    return 'redis-server';
  }
}

await main();
