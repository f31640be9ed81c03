import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { mkdir, open as openFile, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { nlError, providerError } from '../../errors.ts';
import { compileFilter, validateFilter } from '../../filter.ts';
import type { Filter, Hit, Metadata, Metric } from '../../types.ts';
import type { ProviderContext } from '../index.ts';
import type { CollectionSpec, SearchQuery, VectorCollection, VectorProvider, VectorRecord } from './types.ts';

/*
 * The in-process `hnsw` vector provider. One collection per folder under `dir`:
 *
 *   manifest.json        names the current generation; its rename is the commit point of a snapshot
 *   index-<gen>.hnsw     hnswlib's own index format (labels are dense integers)
 *   rows-<gen>.json      label -> string id and metadata (null where deleted)
 *
 * A snapshot writes the index and the rows under a new generation (temp file, fsync, rename), then the
 * manifest the same way, then fsyncs the folder; files no manifest names are removed on open, so a crash
 * at any point leaves the previous snapshot whole. Writes between flushes live in memory only.
 *
 * Deleted labels are marked deleted in the graph and reused by the next new ids, which hnswlib updates in
 * place: churn does not grow the index. Cosine collections store unit vectors (inner product on them), so
 * `get` returns the normalized vector.
 */

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
  /** Threads one call may use: a search batch is split across them, an insert batch runs on them. Default `os.availableParallelism()`. */
  threads?: number;
}

type Settings = Required<Omit<HnswVectorOptions, 'dir'>> & { name: string };

const MANIFEST = 'manifest.json';
/** Distinct filters whose matching labels a collection keeps between writes. */
const MATCH_CACHE_SIZE = 32;
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

/** nearline's addon over hnswlib (native/): Float32Array in, searches and inserts on the libuv thread pool. */
interface NativeIndex {
  capacity(): number;
  resize(capacity: number): void;
  /** Inserts, or updates in place a label already present (also a deleted one, which it revives). */
  add(vectors: Float32Array, labels: Uint32Array, threads: number): Promise<void>;
  markDelete(label: number): void;
  /** Copies each label's stored vector into `out`. */
  vectors(labels: Uint32Array, out: Float32Array): void;
  /** Per query `counts[i]` hits at `labels/distances[i*k ..]`, nearest first; `allow` is one byte per label. */
  search(queries: Float32Array, k: number, ef: number, allow?: Uint8Array): Promise<Found>;
  /** Brute force over `candidates`. */
  exact(queries: Float32Array, k: number, candidates: Uint32Array): Promise<Found>;
  save(path: string): Promise<void>;
}

interface Found {
  labels: Uint32Array;
  distances: Float32Array;
  counts: Uint32Array;
}

type NativeIndexClass = {
  new (space: 'l2' | 'ip', dims: number, capacity: number, M: number, efConstruction: number, seed: number): NativeIndex;
  new (space: 'l2' | 'ip', dims: number, path: string): NativeIndex;
};

let addon: NativeIndexClass | undefined;

function nativeIndexClass(provider: string): NativeIndexClass {
  if (!addon) {
    try {
      addon = (createRequire(import.meta.url)('../../../native/build/Release/nearline_hnsw.node') as { Index: NativeIndexClass }).Index;
    } catch (e) {
      throw providerError(provider, new Error(`native addon native/ is not built (npm ci builds it; so does \`npm run install\`): ${(e as Error).message}`));
    }
  }
  return addon;
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

/**
 * String id -> label by open addressing over an Int32Array, keyed through `ids` (label -> id), which the
 * collection keeps anyway: a JS Map would add about 60 bytes per row next to a 560-byte graph node.
 */
class IdIndex {
  private table = new Int32Array(16).fill(-1);
  size = 0;

  constructor(private readonly ids: Array<string | null>) {}

  private slot(id: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    return (h >>> 0) & (this.table.length - 1);
  }

  private find(id: string): number {
    const mask = this.table.length - 1;
    for (let i = this.slot(id); ; i = (i + 1) & mask) {
      const label = this.table[i];
      if (label < 0 || this.ids[label] === id) return i;
    }
  }

  get(id: string): number | undefined {
    const label = this.table[this.find(id)];
    return label < 0 ? undefined : label;
  }

  has(id: string): boolean {
    return this.table[this.find(id)] >= 0;
  }

  /** Call once `ids[label] === id`. */
  set(id: string, label: number): void {
    if ((this.size + 1) * 2 > this.table.length) this.grow();
    this.table[this.find(id)] = label;
    this.size++;
  }

  /** Call while `ids[label]` still holds the id. Backward-shift deletion keeps probe runs unbroken without tombstones. */
  delete(id: string): void {
    const mask = this.table.length - 1;
    let hole = this.find(id);
    if (this.table[hole] < 0) return;
    for (let j = (hole + 1) & mask; this.table[j] >= 0; j = (j + 1) & mask) {
      const home = this.slot(this.ids[this.table[j]]!);
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!between) {
        this.table[hole] = this.table[j];
        hole = j;
      }
    }
    this.table[hole] = -1;
    this.size--;
  }

  private grow(): void {
    const old = this.table;
    this.table = new Int32Array(old.length * 2).fill(-1);
    for (const label of old) if (label >= 0) this.table[this.find(this.ids[label]!)] = label;
  }
}

class HnswCollection implements VectorCollection {
  spec: CollectionSpec;
  private readonly lock = new RwLock();
  private readonly labels: IdIndex;
  private dirty = false;
  /** Filter -> matching labels, least recently used first; emptied by every write. */
  private readonly matchCache = new Map<string, number[]>();

  constructor(
    spec: CollectionSpec,
    private readonly dir: string,
    private readonly opts: Settings,
    private readonly index: NativeIndex,
    private manifest: Manifest,
    private readonly ids: Array<string | null>,
    private readonly meta: Array<Metadata | null>,
    // Deleted labels, reused by later inserts: hnswlib then updates the marked slot in place, so churn never grows the index.
    private readonly free: number[],
  ) {
    this.spec = spec;
    this.labels = new IdIndex(ids);
    ids.forEach((id, label) => (id === null ? undefined : this.labels.set(id, label)));
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
    await this.lock.write(async () => {
      const fresh = [...last.keys()].filter((id) => !this.labels.has(id)).length;
      const needed = this.ids.length + Math.max(0, fresh - this.free.length);
      const capacity = this.index.capacity();
      // 1.5x rather than 2x: a resize copies the graph once in a while, but slack slots cost resident memory always.
      if (needed > capacity) this.index.resize(Math.max(needed, Math.ceil(capacity * 1.5)));
      const vectors = new Float32Array(last.size * this.spec.dims);
      const labels = new Uint32Array(last.size);
      let i = 0;
      for (const [id, row] of last) {
        let label = this.labels.get(id);
        if (label === undefined) {
          label = this.free.pop() ?? this.ids.length;
          this.ids[label] = id;
          this.labels.set(id, label);
        }
        this.meta[label] = row.metadata;
        vectors.set(row.vector, i * this.spec.dims);
        labels[i++] = label;
      }
      this.dirty = true;
      this.matchCache.clear();
      try {
        await this.index.add(vectors, labels, this.opts.threads);
      } catch (e) {
        throw providerError(this.opts.name, e);
      }
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
        this.matchCache.clear();
      }
    });
  }

  async get(ids: string[]): Promise<Array<VectorRecord | null>> {
    return this.lock.read(async () => {
      const found = ids.map((id) => this.labels.get(id));
      const vectors = this.vectors(Uint32Array.from(found.filter((l) => l !== undefined)));
      let next = 0;
      return ids.map((id, i) => {
        const label = found[i];
        if (label === undefined) return null;
        return { id, vector: vectors[next++], metadata: this.meta[label] ?? {} };
      });
    });
  }

  private vectors(labels: Uint32Array): Float32Array[] {
    const dims = this.spec.dims;
    const out = new Float32Array(labels.length * dims);
    this.index.vectors(labels, out);
    return Array.from(labels, (_, i) => out.subarray(i * dims, (i + 1) * dims));
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
    return this.lock.read(async () => {
      const out: Hit[][] = new Array(prepared.length);
      const plain = new Map<string, number[]>();
      const pending: Array<Promise<void>> = [];
      prepared.forEach((q, i) => {
        const excluded = this.excludedLabels(q.exclude);
        if (!q.filter) {
          // Unfiltered queries asking the same k and ef go to the addon together, split across threads.
          const key = `${q.k + excluded.size}/${this.ef(q) + excluded.size}`;
          const group = plain.get(key);
          if (group) group.push(i);
          else plain.set(key, [i]);
          return;
        }
        const matching = this.matching(q.filter);
        const allowed = excluded.size ? matching.filter((l) => !excluded.has(l)) : matching;
        pending.push(this.searchFiltered(q, allowed).then((hits) => void (out[i] = hits)));
      });
      for (const members of plain.values()) {
        const first = prepared[members[0]];
        const extra = this.excludedLabels(first.exclude).size;
        const stride = first.k + extra;
        const search = this.searchMany(
          members.map((i) => prepared[i].vector),
          stride,
          this.ef(first) + extra,
        );
        pending.push(
          search.then((found) =>
            members.forEach((qi, j) => {
              const q = prepared[qi];
              out[qi] = this.hits(found, j, stride, this.excludedLabels(q.exclude), q.k, q.includeVectors);
            }),
          ),
        );
      }
      await Promise.all(pending);
      return out;
    });
  }

  /**
   * Labels whose metadata passes the filter. Evaluating a filter walks every row in JS, so the answer is
   * kept until the next write: serving traffic repeats a handful of filters (a language, a category).
   */
  private matching(filter: Filter): number[] {
    const key = JSON.stringify(filter);
    let labels = this.matchCache.get(key);
    if (labels) {
      this.matchCache.delete(key);
    } else {
      const pred = compileFilter(filter);
      labels = [];
      for (let label = 0; label < this.ids.length; label++) {
        if (this.ids[label] !== null && pred(this.meta[label] ?? undefined)) labels.push(label);
      }
      if (this.matchCache.size >= MATCH_CACHE_SIZE) this.matchCache.delete(this.matchCache.keys().next().value!);
    }
    this.matchCache.set(key, labels);
    return labels;
  }

  private ef(q: SearchQuery): number {
    return Math.max(q.ef ?? this.spec.index.ef ?? 100, q.k);
  }

  private excludedLabels(exclude: string[] | undefined): Set<number> {
    const out = new Set<number>();
    for (const id of exclude ?? []) {
      const label = this.labels.get(id);
      if (label !== undefined) out.add(label);
    }
    return out;
  }

  /** One addon call per thread, each over a contiguous slice of the queries; results concatenated in order. */
  private async searchMany(vectors: Float32Array[], k: number, ef: number): Promise<Found> {
    const dims = this.spec.dims;
    const chunks = Math.max(1, Math.min(this.opts.threads, Math.floor(vectors.length / 8)));
    const per = Math.ceil(vectors.length / chunks);
    const parts = await Promise.all(
      Array.from({ length: chunks }, (_, c) => {
        const slice = vectors.slice(c * per, (c + 1) * per);
        const packed = new Float32Array(slice.length * dims);
        slice.forEach((v, j) => packed.set(v, j * dims));
        return this.index.search(packed, k, ef);
      }),
    );
    if (parts.length === 1) return parts[0];
    const total = (pick: (f: Found) => { length: number }) => parts.reduce((n, f) => n + pick(f).length, 0);
    const found: Found = {
      labels: new Uint32Array(total((f) => f.labels)),
      distances: new Float32Array(total((f) => f.distances)),
      counts: new Uint32Array(total((f) => f.counts)),
    };
    let slots = 0;
    let queries = 0;
    for (const f of parts) {
      found.labels.set(f.labels, slots);
      found.distances.set(f.distances, slots);
      found.counts.set(f.counts, queries);
      slots += f.labels.length;
      queries += f.counts.length;
    }
    return found;
  }

  private async searchFiltered(q: SearchQuery, allowed: number[]): Promise<Hit[]> {
    const k = Math.min(q.k, allowed.length);
    if (k === 0) return [];
    const none = new Set<number>();
    const live = this.labels.size;
    const exact = async () => this.hits(await this.index.exact(q.vector, k, Uint32Array.from(allowed)), 0, k, none, k, q.includeVectors);
    if (allowed.length <= this.opts.exactScanBelow || allowed.length < live * this.opts.exactScanSelectivity) return exact();
    const bits = new Uint8Array(this.index.capacity());
    for (const l of allowed) bits[l] = 1;
    // A graph walk under a filter can strand itself among rejected nodes; widen, then give up on the graph.
    let ef = Math.max(this.ef(q), Math.ceil(k / (allowed.length / live)));
    for (let attempt = 0; attempt < 3; attempt++, ef *= 4) {
      const found = await this.index.search(q.vector, k, ef, bits);
      if (found.counts[0] >= k) return this.hits(found, 0, k, none, k, q.includeVectors);
    }
    return exact();
  }

  /** Hits of query `qi` from a result laid out `stride` slots per query, minus `excluded`, at most `k`. */
  private hits(found: Found, qi: number, stride: number, excluded: Set<number>, k: number, includeVectors?: boolean): Hit[] {
    const out: Hit[] = [];
    const labels: number[] = [];
    const end = qi * stride + found.counts[qi];
    for (let i = qi * stride; i < end && out.length < k; i++) {
      const label = found.labels[i];
      if (excluded.has(label)) continue;
      out.push({ id: this.ids[label]!, score: this.score(found.distances[i]) });
      labels.push(label);
    }
    if (includeVectors && out.length) {
      const vectors = this.vectors(Uint32Array.from(labels));
      out.forEach((h, i) => (h.vector = vectors[i]));
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
      await writeAtomic(join(this.dir, next.index), (tmp) => this.index.save(tmp));
      const rows: RowsFile = { ids: this.ids, metadata: this.meta };
      await writeAtomic(join(this.dir, next.rows), (tmp) => writeFileSynced(tmp, JSON.stringify(rows)));
      await writeAtomic(join(this.dir, MANIFEST), (tmp) => writeFileSynced(tmp, JSON.stringify(next)));
      await syncDir(this.dir);
    } catch (e) {
      throw providerError(this.opts.name, e);
    }
    this.manifest = next;
    this.dirty = false;
    await removeStale(this.dir, next);
  }
}

/** Deletes files no manifest names: older generations and temp files of an interrupted snapshot. */
async function removeStale(dir: string, manifest: Manifest): Promise<void> {
  const keep = new Set([MANIFEST, manifest.index, manifest.rows]);
  for (const f of await readdir(dir)) if (!keep.has(f)) await rm(join(dir, f), { force: true });
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

export function createHnswProvider(options: HnswVectorOptions, ctx: ProviderContext): VectorProvider {
  const root = options.dir ?? join(ctx.home, 'indexes');
  const opts: Settings = {
    name: ctx.name,
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
      const index = new (nativeIndexClass(ctx.name))(space, m.dims, join(dir, m.index));
      const free: number[] = [];
      rows.ids.forEach((id, label) => (id === null ? free.push(label) : undefined));
      free.reverse();
      return new HnswCollection(spec, dir, opts, index, m, rows.ids, rows.metadata, free);
    }
    const M = spec.index.M ?? 16;
    const efConstruction = spec.index.efConstruction ?? 200;
    const index = new (nativeIndexClass(ctx.name))(space, spec.dims, opts.initialCapacity, M, efConstruction, 100);
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
        p = load(spec).catch((e: unknown) => {
          throw providerError(ctx.name, e);
        });
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

