import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { mkdir, open as openFile, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { nlError, providerError } from '../../errors.ts';
import { compileFilter, validateFilter } from '../../filter.ts';
import type { Hit, Metadata, Metric } from '../../types.ts';
import type { ProviderContext } from '../index.ts';
import type { CollectionSpec, SearchQuery, VectorCollection, VectorProvider, VectorRecord } from './types.ts';

/** Options of the in-process `hnsw` vector provider. */
export interface HnswVectorOptions {
  /** Folder holding one sub-folder per collection. Default `<home>/indexes`. */
  dir?: string;
  /** Slots allocated when a collection is created. Default 1024. */
  initialCapacity?: number;
  /** A filtered query scans its matching rows exactly when at most this many match. Default 2048. */
  exactScanBelow?: number;
  /** A filtered query scans exactly when fewer than this fraction of rows match. Default 0.02. */
  exactScanSelectivity?: number;
  /** Searches of one batch run on up to this many threads. Default `os.availableParallelism()`. */
  threads?: number;
}

const MANIFEST = 'manifest.json';
const FORMAT = 1;

interface Manifest {
  format: number;
  generation: number;
  dims: number;
  metric: Metric;
  M: number;
  efConstruction: number;
  index: string;
  rows: string;
}

interface RowsFile {
  ids: Array<string | null>;
  metadata: Array<Metadata | null>;
}

/** What the provider needs from an HNSW implementation; labels are dense integers chosen by the provider. */
interface AnnIndex {
  readonly capacity: number;
  resize(capacity: number): void;
  add(vectors: Float32Array[], labels: number[]): void;
  markDelete(label: number): void;
  vector(label: number): Float32Array;
  /** Raw hnswlib distances, nearest first; `allowed` is a bitset over labels. */
  search(query: Float32Array, k: number, ef: number, allowed?: Uint8Array): Promise<Neighbors>;
  save(path: string): void;
}

interface Neighbors {
  labels: ArrayLike<number>;
  distances: ArrayLike<number>;
}

interface HnswlibNode {
  HierarchicalNSW: new (space: 'l2' | 'ip', dims: number) => {
    initIndex(max: number, m: number, efc: number, seed: number): void;
    readIndexSync(path: string): void;
    writeIndexSync(path: string): void;
    resizeIndex(max: number): void;
    addPoint(p: number[], label: number): void;
    markDelete(label: number): void;
    getPoint(label: number): number[];
    getMaxElements(): number;
    setEf(ef: number): void;
    searchKnn(q: number[], k: number, filter?: (label: number) => boolean): { distances: number[]; neighbors: number[] };
  };
}

function hnswlibIndex(space: 'l2' | 'ip', dims: number, init: { path: string } | { capacity: number; M: number; efConstruction: number }): AnnIndex {
  const lib = createRequire(import.meta.url)('hnswlib-node') as HnswlibNode;
  const h = new lib.HierarchicalNSW(space, dims);
  if ('path' in init) h.readIndexSync(init.path);
  else h.initIndex(init.capacity, init.M, init.efConstruction, 100);
  return {
    get capacity() {
      return h.getMaxElements();
    },
    resize: (n) => h.resizeIndex(n),
    add: (vs, labels) => vs.forEach((v, i) => h.addPoint(Array.from(v), labels[i])),
    markDelete: (label) => h.markDelete(label),
    vector: (label) => Float32Array.from(h.getPoint(label)),
    search: async (q, k, ef, allowed) => {
      h.setEf(ef);
      const r = h.searchKnn(Array.from(q), k, allowed ? (label) => allowed[label] === 1 : undefined);
      return { labels: r.neighbors, distances: r.distances };
    },
    save: (path) => h.writeIndexSync(path),
  };
}

/** Writes `data` (or lets `write` produce the file) to `path` so that a crash leaves either the old file or the new one. */
async function writeAtomic(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp`;
  await write(tmp);
  const fh = await openFile(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

async function writeFileSynced(path: string, data: string): Promise<void> {
  const fh = await openFile(path, 'w');
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await openFile(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Many concurrent searches or one write: hnswlib tolerates concurrent reads but not a resize under them. */
class RwLock {
  private readers = 0;
  private writers = 0;
  private tail: Promise<void> = Promise.resolve();
  private busy: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  async read<T>(fn: () => Promise<T>): Promise<T> {
    // Re-checked after every wake-up, so a reader never slips in between a queued writer's check and its work.
    while (this.busy) await this.busy;
    this.readers++;
    try {
      return await fn();
    } finally {
      if (--this.readers === 0) {
        const wake = this.drained;
        this.drained = null;
        wake?.();
      }
    }
  }

  write<T>(fn: () => Promise<T> | T): Promise<T> {
    this.writers++;
    const run = this.tail.then(async () => {
      while (this.readers > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      return fn();
    });
    const done = run.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      if (--this.writers === 0) this.busy = null;
    });
    this.tail = done;
    this.busy = done;
    return run;
  }
}

function checkVector(v: unknown, dims: number, what: string): Float32Array {
  if (!(v instanceof Float32Array)) throw nlError('NL_BAD_VECTOR', `${what}: vector must be a Float32Array`);
  if (v.length !== dims) throw nlError('NL_DIMENSION_MISMATCH', dims, `${v.length} (${what})`);
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw nlError('NL_BAD_VECTOR', `${what}: vector has a non-finite value at ${i}`);
  }
  return v;
}

function unit(v: Float32Array, what: string): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  if (s === 0) throw nlError('NL_BAD_VECTOR', `${what}: a zero vector has no cosine direction`);
  const inv = 1 / Math.sqrt(s);
  return v.map((x) => x * inv);
}

class HnswCollection implements VectorCollection {
  spec: CollectionSpec;
  private readonly lock = new RwLock();
  private readonly labels = new Map<string, number>();
  private dirty = false;

  constructor(
    spec: CollectionSpec,
    private readonly dir: string,
    private readonly opts: Required<Omit<HnswVectorOptions, 'dir'>>,
    private index: AnnIndex,
    private manifest: Manifest,
    private readonly ids: Array<string | null>,
    private readonly meta: Array<Metadata | null>,
    // Deleted labels, reused by later inserts: hnswlib then updates the marked slot in place, so churn never grows the index.
    private readonly free: number[],
  ) {
    this.spec = spec;
    ids.forEach((id, label) => (id === null ? undefined : this.labels.set(id, label)));
  }

  private get space(): 'l2' | 'ip' {
    return this.spec.metric === 'l2' ? 'l2' : 'ip';
  }

  private score(distance: number): number {
    return this.spec.metric === 'l2' ? -Math.sqrt(Math.max(distance, 0)) : 1 - distance;
  }

  private prepare(v: unknown, what: string): Float32Array {
    const checked = checkVector(v, this.spec.dims, what);
    return this.spec.metric === 'cosine' ? unit(checked, what) : checked;
  }

  async upsert(records: VectorRecord[]): Promise<void> {
    const last = new Map<string, { vector: Float32Array; metadata: Metadata | null }>();
    for (const r of records) {
      if (typeof r?.id !== 'string' || r.id === '') throw nlError('NL_BAD_REQUEST', 'every record needs a non-empty string id');
      last.set(r.id, { vector: this.prepare(r.vector, `id ${r.id}`), metadata: r.metadata ?? null });
    }
    if (last.size === 0) return;
    await this.lock.write(() => {
      const fresh = [...last.keys()].filter((id) => !this.labels.has(id)).length;
      const needed = this.ids.length + Math.max(0, fresh - this.free.length);
      if (needed > this.index.capacity) this.index.resize(Math.max(needed, this.index.capacity * 2));
      const vectors: Float32Array[] = [];
      const labels: number[] = [];
      for (const [id, row] of last) {
        let label = this.labels.get(id);
        if (label === undefined) {
          label = this.free.pop() ?? this.ids.length;
          this.labels.set(id, label);
          this.ids[label] = id;
        }
        this.meta[label] = row.metadata;
        vectors.push(row.vector);
        labels.push(label);
      }
      try {
        this.index.add(vectors, labels);
      } catch (e) {
        throw providerError('hnsw', e);
      }
      this.dirty = true;
    });
  }

  async delete(ids: string[]): Promise<void> {
    await this.lock.write(() => {
      for (const id of ids) {
        const label = this.labels.get(id);
        if (label === undefined) continue;
        this.index.markDelete(label);
        this.labels.delete(id);
        this.ids[label] = null;
        this.meta[label] = null;
        this.free.push(label);
        this.dirty = true;
      }
    });
  }

  async get(ids: string[]): Promise<Array<VectorRecord | null>> {
    return this.lock.read(async () =>
      ids.map((id) => {
        const label = this.labels.get(id);
        if (label === undefined) return null;
        return { id, vector: this.index.vector(label), metadata: this.meta[label] ?? {} };
      }),
    );
  }

  async count(): Promise<number> {
    return this.labels.size;
  }

  async search(queries: SearchQuery[]): Promise<Hit[][]> {
    const prepared = queries.map((q, i) => {
      if (!Number.isInteger(q.k) || q.k < 1) throw nlError('NL_BAD_REQUEST', `query ${i}: k must be a positive integer`);
      const filter = q.filter === undefined ? undefined : validateFilter(q.filter, this.spec.metadataFields);
      return { ...q, vector: this.prepare(q.vector, `query ${i}`), filter };
    });
    return this.lock.read(() => {
      const matches = new Map<string, number[]>();
      return Promise.all(
        prepared.map((q) => {
          let matching: number[] | undefined;
          if (q.filter) {
            const key = JSON.stringify(q.filter);
            matching = matches.get(key);
            if (!matching) {
              const pred = compileFilter(q.filter);
              matching = [];
              for (let label = 0; label < this.ids.length; label++) {
                if (this.ids[label] !== null && pred(this.meta[label] ?? undefined)) matching.push(label);
              }
              matches.set(key, matching);
            }
          }
          return this.searchOne(q, matching);
        }),
      );
    });
  }

  private async searchOne(q: SearchQuery, matching: number[] | undefined): Promise<Hit[]> {
    const live = this.labels.size;
    const excluded = new Set<number>();
    for (const id of q.exclude ?? []) {
      const label = this.labels.get(id);
      if (label !== undefined) excluded.add(label);
    }
    const pool = (matching?.length ?? live) - (matching ? matching.filter((l) => excluded.has(l)).length : excluded.size);
    const k = Math.min(q.k, pool);
    if (k <= 0) return [];
    const ef = Math.max(q.ef ?? this.spec.index.ef ?? 100, k);

    let found: Neighbors;
    if (!matching) {
      found = await this.index.search(q.vector, k + excluded.size, ef + excluded.size);
    } else {
      const allowed = matching.filter((l) => !excluded.has(l));
      if (allowed.length <= this.opts.exactScanBelow || allowed.length < live * this.opts.exactScanSelectivity) {
        return this.exact(q, allowed, k);
      }
      const bits = new Uint8Array(this.index.capacity);
      for (const l of allowed) bits[l] = 1;
      // A graph walk under a filter can strand itself among rejected nodes; widen, then give up on the graph.
      let wide = Math.max(ef, Math.ceil(k / (allowed.length / live)));
      for (let attempt = 0; ; attempt++) {
        found = await this.index.search(q.vector, k, wide, bits);
        if (found.labels.length >= k) break;
        if (attempt === 3) return this.exact(q, allowed, k);
        wide *= 4;
      }
      excluded.clear();
    }
    return this.hits(found, excluded, k, q.includeVectors);
  }

  private exact(q: SearchQuery, labels: number[], k: number): Hit[] {
    const dist = this.space === 'l2' ? l2sq : ipDistance;
    const scored = labels.map((label) => [label, dist(q.vector, this.index.vector(label))] as const);
    scored.sort((a, b) => a[1] - b[1]);
    const top = scored.slice(0, k);
    return this.hits({ labels: top.map((s) => s[0]), distances: top.map((s) => s[1]) }, new Set(), k, q.includeVectors);
  }

  private hits(found: Neighbors, excluded: Set<number>, k: number, includeVectors?: boolean): Hit[] {
    const out: Hit[] = [];
    for (let i = 0; i < found.labels.length && out.length < k; i++) {
      const label = found.labels[i];
      if (excluded.has(label)) continue;
      const hit: Hit = { id: this.ids[label]!, score: this.score(found.distances[i]) };
      if (includeVectors) hit.vector = this.index.vector(label);
      out.push(hit);
    }
    return out;
  }

  flush(): Promise<void> {
    return this.lock.write(() => this.snapshot());
  }

  /** Index and rows first under a new generation, then the manifest that names them: the manifest's rename is the commit. */
  async snapshot(force = false): Promise<void> {
    if (!this.dirty && !force) return;
    const generation = this.manifest.generation + 1;
    const next: Manifest = { ...this.manifest, generation, index: `index-${generation}.hnsw`, rows: `rows-${generation}.json` };
    try {
      await writeAtomic(join(this.dir, next.index), async (tmp) => this.index.save(tmp));
      const rows: RowsFile = { ids: this.ids, metadata: this.meta };
      await writeAtomic(join(this.dir, next.rows), (tmp) => writeFileSynced(tmp, JSON.stringify(rows)));
      await writeAtomic(join(this.dir, MANIFEST), (tmp) => writeFileSynced(tmp, JSON.stringify(next)));
      await syncDir(this.dir);
    } catch (e) {
      throw providerError('hnsw', e);
    }
    this.manifest = next;
    this.dirty = false;
    await removeStale(this.dir, next);
  }
}

function l2sq(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s;
}

function ipDistance(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return 1 - s;
}

/** Deletes files no manifest names: older generations and temp files of an interrupted snapshot. */
async function removeStale(dir: string, manifest: Manifest): Promise<void> {
  const keep = new Set([MANIFEST, manifest.index, manifest.rows]);
  for (const f of await readdir(dir)) if (!keep.has(f)) await rm(join(dir, f), { force: true });
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

export function createHnswProvider(options: HnswVectorOptions, ctx: ProviderContext): VectorProvider {
  const root = options.dir ?? join(ctx.home, 'indexes');
  const opts = {
    initialCapacity: options.initialCapacity ?? 1024,
    exactScanBelow: options.exactScanBelow ?? 2048,
    exactScanSelectivity: options.exactScanSelectivity ?? 0.02,
    threads: options.threads ?? availableParallelism(),
  };
  const open = new Map<string, Promise<HnswCollection>>();

  function folder(name: string): string {
    if (!NAME.test(name)) throw nlError('NL_BAD_REQUEST', `collection name ${JSON.stringify(name)} is not file-safe`);
    return join(root, name);
  }

  async function load(spec: CollectionSpec): Promise<HnswCollection> {
    const dir = folder(spec.name);
    const space = spec.metric === 'l2' ? 'l2' : 'ip';
    await mkdir(dir, { recursive: true });
    const manifestPath = join(dir, MANIFEST);
    if (await exists(manifestPath)) {
      const m = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
      if (m.format !== FORMAT) throw nlError('NL_CONFLICT', `collection ${spec.name} has on-disk format ${m.format}, expected ${FORMAT}`);
      if (m.dims !== spec.dims || m.metric !== spec.metric) {
        throw nlError('NL_CONFLICT', `collection ${spec.name} exists with dims ${m.dims} metric ${m.metric}, asked for dims ${spec.dims} metric ${spec.metric}`);
      }
      await removeStale(dir, m);
      const rows = JSON.parse(await readFile(join(dir, m.rows), 'utf8')) as RowsFile;
      const index = hnswlibIndex(space, m.dims, { path: join(dir, m.index) });
      const free: number[] = [];
      rows.ids.forEach((id, label) => (id === null ? free.push(label) : undefined));
      free.reverse();
      return new HnswCollection(spec, dir, opts, index, m, rows.ids, rows.metadata, free);
    }
    const M = spec.index.M ?? 16;
    const efConstruction = spec.index.efConstruction ?? 200;
    const index = hnswlibIndex(space, spec.dims, { capacity: opts.initialCapacity, M, efConstruction });
    const m: Manifest = { format: FORMAT, generation: 0, dims: spec.dims, metric: spec.metric, M, efConstruction, index: '', rows: '' };
    const c = new HnswCollection(spec, dir, opts, index, m, [], [], []);
    await c.snapshot(true);
    return c;
  }

  return {
    kind: 'hnsw',
    name: ctx.name,
    supportsFilter: true,
    supportsDelete: true,
    supportsExamples: false,

    async open() {
      await mkdir(root, { recursive: true });
    },

    async close() {
      const all = [...open.values()];
      open.clear();
      for (const p of all) {
        const c = await p.catch(() => null);
        await c?.flush();
      }
    },

    async collection(spec) {
      let p = open.get(spec.name);
      if (!p) {
        p = load(spec);
        open.set(spec.name, p);
        p.catch(() => open.delete(spec.name));
      }
      const c = await p;
      if (c.spec.dims !== spec.dims || c.spec.metric !== spec.metric) {
        throw nlError('NL_CONFLICT', `collection ${spec.name} exists with dims ${c.spec.dims} metric ${c.spec.metric}, asked for dims ${spec.dims} metric ${spec.metric}`);
      }
      c.spec = spec;
      return c;
    },

    async dropCollection(name) {
      const dir = folder(name);
      const p = open.get(name);
      open.delete(name);
      await p?.catch(() => null);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

