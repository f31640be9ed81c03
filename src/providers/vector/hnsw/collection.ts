import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { nlError, providerError } from '../../../errors.ts';
import { validateQuery } from '../../../filter.ts';
import type { Filter, Hit, Metadata } from '../../../types.ts';
import type { CollectionSpec, LogOffsets, SearchQuery, VectorCollection, VectorRecord, WriteOptions } from '../types.ts';
import type { Columns } from './columns.ts';
import {
  encodeRows,
  FORMAT,
  fsyncFile,
  MANIFEST,
  readManifest,
  removeStale,
  SLICE_ROWS,
  syncDir,
  writeAtomic,
  writeFileSynced,
  type Manifest,
} from './files.ts';
import { IdIndex } from './id-index.ts';
import { nativeAddon, type Found, type NativeFilter, type NativeIndex } from './native.ts';
import { compilePredicate } from './predicate.ts';
import type { HnswVectorOptions } from './provider.ts';
import { Mutex, RwLock } from './rw-lock.ts';

/*
 * One collection: the native graph, label <-> id, metadata by column (columns.ts).
 *
 * Deleted labels are marked deleted in the graph and reused by the next new ids, which hnswlib updates in
 * place: churn does not grow the index. Cosine collections store unit vectors (inner product on them), so
 * `get` returns the normalized vector. Writes between flushes live in memory only.
 *
 * Writes run one at a time (the `writes` mutex). Inserts and updates run beside searches: the addon's searches
 * read links as writes rewrite them, never waiting on a lock (native/src/addon.cc, ReadLinks and
 * Shared::complete say why that is safe); a revived deleted slot loses its deletion mark only once it holds
 * its new row. A row updated in place may meet a search half written (its distance off for that search, as
 * with hnswlib's own updates), but `get` and returned vectors wait for the update. Deleting and growing the
 * index take the lock exclusively, in slices, so searches run between them.
 *
 * Writes that apply a source log carry its offset: they are durable in the log already, so they only advance
 * the offset the next snapshot records. A snapshot never holds searches back; writers wait while it copies
 * the graph in memory (`snapshotWriter: 'copy'`, then a thread writes the copy while writes go on here), while
 * it writes the graph (`inline`), or, with `fork`, only while the addon forks a child process that writes it
 * from its copy-on-write image and fsyncs it.
 *
 * A search batch is planned in JS and run as few addon calls as possible: queries sharing k, ef and filter,
 * without exclude lists, go together. A filter is compiled once into a predicate the addon evaluates during
 * the graph walk; when the columns' counts say few rows match, an exact scan over those rows (from a value's
 * bitmap when there is one) is cheaper, and exact. Small searches run on the calling thread.
 *
 * An int8 collection (index.quantization) is the same from here: the addon codes vectors for the graph, keeps
 * the f32 ones in the vectors file and rescores with them. A snapshot also saves the file's slot table and
 * fsyncs the file, and first moves the live rows to a new file when dead ones dominate (compactVectors).
 */

/** Resolves when a forkSave child exits 0; polled, so no thread waits on it. */
async function childDone(pid: number): Promise<void> {
  const reap = nativeAddon('hnsw').reap;
  for (let code = reap(pid); ; code = reap(pid)) {
    if (code === 0) return;
    if (code !== null) throw new Error(`the snapshot writer (pid ${pid}) ${code < 0 ? `was killed by signal ${-code}` : `exited with ${code}`}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `shared`: the folder is published to by other nodes too; this collection's token in its file names. */
export type Settings = Required<Omit<HnswVectorOptions, 'dir'>> & { name: string; shared?: string };

/**
 * A search whose graph work (queries x ef) is at most this runs on the calling thread. One query at ef <= 160
 * takes tens to a few hundred microseconds, while the hop to the thread pool and back adds 20-170 us of
 * latency (measured; the more the machine is loaded, the more): for such calls the hop was most of the fixed
 * cost per query. Bigger calls go to the pool, beside the event loop and on every core.
 */
const SYNC_WORK = 160;

/** A copy of `from`, a slice at a time with the event loop free in between (it may grow meanwhile). */
async function copySliced<T>(from: T[]): Promise<T[]> {
  const out: T[] = [];
  for (let at = 0; at < from.length; at += SLICE_ROWS) {
    if (at > 0) await setImmediate();
    const end = Math.min(from.length, at + SLICE_ROWS);
    for (let i = at; i < end; i++) out.push(from[i]);
  }
  return out;
}

/** Rows an upsert inserts per hold of the write lock. */
const WRITE_SLICE = 256;

function checkVector(v: unknown, dims: number, what: string): Float32Array {
  if (!(v instanceof Float32Array)) throw nlError('NL_BAD_VECTOR', `${what}: vector must be a Float32Array`);
  if (v.length !== dims) throw nlError('NL_DIMENSION_MISMATCH', dims, `${v.length} (${what})`);
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw nlError('NL_BAD_VECTOR', `${what}: vector has a non-finite value at ${i}`);
  }
  return v;
}

function checkMetadata(m: unknown, what: string): Metadata | null {
  if (m === undefined || m === null) return null;
  if (typeof m !== 'object' || Array.isArray(m)) throw nlError('NL_BAD_REQUEST', `${what}: metadata must be an object`);
  for (const [k, v] of Object.entries(m)) {
    const ok = v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
    if (!ok) throw nlError('NL_BAD_REQUEST', `${what}: metadata field ${k} must be a string, a finite number, a boolean or null`);
  }
  return m as Metadata;
}

function unit(v: Float32Array, what: string): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  if (s === 0) throw nlError('NL_BAD_VECTOR', `${what}: a zero vector has no cosine direction`);
  const inv = 1 / Math.sqrt(s);
  // A plain loop: TypedArray.prototype.map costs several times the arithmetic at these sizes.
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] * inv;
  return out;
}

interface Prepared {
  vector: Float32Array;
  k: number;
  ef: number;
  filter?: Filter;
  exclude?: string[];
  includeVectors?: boolean;
  includeMetadata?: boolean;
  exact?: boolean;
}

/** One addon call: these queries, this k and ef, this predicate; graph walk or exact scan. */
interface Task {
  /** Query indexes, and their vectors packed in that order. */
  members: number[];
  vectors: Float32Array;
  k: number;
  ef: number;
  native?: NativeFilter;
  exact: boolean;
  /** A bitmap holding every match, where an exact scan starts. */
  driver?: Uint32Array;
  /** Labels an exact scan looks at. */
  scanned?: number;
  /** A graph walk under a predicate that finds fewer than k is redone as an exact scan. */
  fallback: boolean;
  found?: Found;
}

export class HnswCollection implements VectorCollection {
  spec: CollectionSpec;
  private readonly lock = new RwLock();
  /** Serializes writes with the part of a snapshot that reads the graph; searches never wait for it. */
  private readonly writes = new Mutex();
  private readonly snapshots = new Mutex();
  /** A snapshot's copy of the graph, ids and columns running beside writes (settles with its error, if any). */
  private copying: Promise<unknown> | undefined;
  /** Meanwhile, the labels whose id or metadata writes changed. */
  private touched: Set<number> | undefined;
  private readonly labels: IdIndex;
  /** Written to outside any log since the last snapshot. */
  private dirty = false;
  /** The highest log offset applied in memory. */
  private applied: number;
  /** int8: the full-precision vectors file the index writes to (a compaction moves it before a snapshot names it). */
  private vectorsFile: string | undefined;
  /** Labels of new rows a write running beside searches is adding: not readable by `get` until it ends. */
  private readonly adding = new Set<number>();
  /** Labels of rows a write running beside searches is rewriting in place, and that write: `get` waits for it. */
  private readonly updating = new Set<number>();
  private inflight: Promise<unknown> = Promise.resolve();

  constructor(
    spec: CollectionSpec,
    private readonly dir: string,
    private readonly opts: Settings,
    private readonly index: NativeIndex,
    private manifest: Manifest,
    private readonly ids: Array<string | null>,
    private readonly columns: Columns,
    // Deleted labels, reused by later inserts: hnswlib then updates the marked slot in place, so churn never grows the index.
    private readonly free: number[],
  ) {
    this.spec = spec;
    this.applied = manifest.logOffset ?? 0;
    this.vectorsFile = manifest.vectors;
    this.labels = new IdIndex(ids);
    ids.forEach((id, label) => (id === null ? undefined : this.labels.set(id, label)));
    columns.grow(index.capacity());
  }

  private score(distance: number): number {
    return this.spec.metric === 'l2' ? -Math.sqrt(Math.max(distance, 0)) : 1 - distance;
  }

  private prepare(v: unknown, what: string): Float32Array {
    const checked = checkVector(v, this.spec.dims, what);
    return this.spec.metric === 'cosine' ? unit(checked, what) : checked;
  }

  logOffsets(): LogOffsets {
    // A newer snapshot another node published may be ahead of what this replica applied.
    return { applied: this.applied, durable: Math.min(this.manifest.logOffset ?? 0, this.applied) };
  }

  private wrote(opts: WriteOptions | undefined): void {
    if (opts?.logOffset === undefined) this.dirty = true;
    else this.applied = Math.max(this.applied, opts.logOffset);
  }

  async upsert(records: VectorRecord[], opts?: WriteOptions): Promise<void> {
    const last = new Map<string, { vector: Float32Array; metadata: Metadata | null }>();
    for (const r of records) {
      if (typeof r?.id !== 'string' || r.id === '') throw nlError('NL_BAD_REQUEST', 'every record needs a non-empty string id');
      last.set(r.id, { vector: this.prepare(r.vector, `id ${r.id}`), metadata: checkMetadata(r.metadata, `id ${r.id}`) });
    }
    if (last.size === 0) return void this.wrote(opts);
    const rows = [...last];
    await this.writes.run(async () => {
      // A failed add leaves the graph half-written: it counts as dirty even when it came from the log.
      const dirtyBefore = this.dirty;
      // In slices, each under the write lock on its own, so searches run between them: a large batch
      // holds readers back for one slice at a time, not for the whole batch.
      for (let start = 0; start < rows.length; start += WRITE_SLICE) {
        const slice = rows.slice(start, start + WRITE_SLICE);
        // Writes take turns (`writes`), so what the slice needs stays true until it runs. Without a resize,
        // which moves the graph, it runs beside searches.
        const needed = this.needed(slice);
        if (needed <= this.index.capacity()) await this.lock.read(() => this.insert(slice, needed, true));
        else {
          // A snapshot copying the graph beside writes reads the memory a resize moves.
          if (this.copying) await this.copying;
          await this.lock.write(() => this.insert(slice, needed, false));
        }
      }
      if (opts?.logOffset !== undefined) this.dirty = dirtyBefore;
      this.wrote(opts);
    });
  }

  /** Slots the index needs for `rows` beyond those it holds (new ids take deleted slots first). */
  private needed(rows: Array<[string, unknown]>): number {
    const fresh = rows.filter(([id]) => !this.labels.has(id)).length;
    return this.ids.length + Math.max(0, fresh - this.free.length);
  }

  /**
   * `needed`: this.needed(rows). `beside`: searches may run meanwhile (no resize); new labels stay out of `get`
   * until done, and `get` waits for updated ones.
   */
  private async insert(rows: Array<[string, { vector: Float32Array; metadata: Metadata | null }]>, needed: number, beside: boolean): Promise<void> {
    const capacity = this.index.capacity();
    // 1.5x rather than 2x: a resize copies the graph once in a while, but slack slots cost resident memory always.
    if (needed > capacity) {
      this.index.resize(Math.max(needed, Math.ceil(capacity * 1.5)));
      this.columns.grow(this.index.capacity());
    }
    const vectors = new Float32Array(rows.length * this.spec.dims);
    const labels = new Uint32Array(rows.length);
    rows.forEach(([id, row], i) => {
      let label = this.labels.get(id);
      if (label === undefined) {
        label = this.free.pop() ?? this.ids.length;
        this.ids[label] = id;
        this.labels.set(id, label);
        if (beside) this.adding.add(label);
      } else if (beside) this.updating.add(label);
      this.columns.set(label, row.metadata);
      this.touched?.add(label);
      vectors.set(row.vector, i * this.spec.dims);
      labels[i] = label;
    });
    this.dirty = true;
    const added = this.index.add(vectors, labels, this.opts.threads);
    this.inflight = added.catch(() => undefined);
    try {
      await added;
    } catch (e) {
      throw providerError(this.opts.name, e);
    } finally {
      this.adding.clear();
      this.updating.clear();
    }
  }

  /** Whether a write beside searches is rewriting any of `labels` in place (then wait for `inflight` and ask again). */
  private rewriting(labels: number[]): boolean {
    return this.updating.size > 0 && labels.some((l) => this.updating.has(l));
  }

  async delete(ids: string[], opts?: WriteOptions): Promise<void> {
    await this.writes.run(() =>
      this.lock.write(() => {
        this.wrote(opts);
        for (const id of ids) {
          const label = this.labels.get(id);
          if (label === undefined) continue;
          this.index.markDelete(label);
          this.labels.delete(id);
          this.ids[label] = null;
          this.columns.set(label, null);
          this.touched?.add(label);
          this.free.push(label);
        }
      }),
    );
  }

  async get(ids: string[]): Promise<Array<VectorRecord | null>> {
    return this.lock.read(async () => {
      // Checked right before the read, with no await between: no write can start in between.
      while (this.rewriting(ids.flatMap((id) => this.labels.get(id) ?? []))) await this.inflight;
      const found = ids.map((id) => {
        const label = this.labels.get(id);
        return label === undefined || this.adding.has(label) ? undefined : label;
      });
      const vectors = this.vectors(Uint32Array.from(found.filter((l) => l !== undefined)));
      let next = 0;
      return ids.map((id, i) => {
        const label = found[i];
        if (label === undefined) return null;
        return { id, vector: vectors[next++], metadata: this.columns.get(label) };
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
    const prepared: Prepared[] = queries.map((q, i) => {
      const { filter } = validateQuery(q, this.spec.metadataFields, { where: `query ${i}: ` });
      const ef = Math.max(q.ef ?? this.spec.index.ef ?? 100, q.k);
      return {
        vector: this.prepare(q.vector, `query ${i}`),
        k: q.k,
        ef,
        filter,
        exclude: q.exclude,
        includeVectors: q.includeVectors,
        includeMetadata: q.includeMetadata,
        exact: q.exact,
      };
    });
    // Planned and, when small, answered at once without yielding, so no write can come in between.
    // Vectors to return are read once no write is rewriting rows in place (see `get`).
    const vectors = prepared.some((q) => q.includeVectors);
    const now = this.lock.readNow(() => {
      if (vectors && this.updating.size) return undefined;
      const tasks = this.plan(prepared);
      if (!tasks.every((t) => this.small(t))) return undefined;
      for (const t of tasks) t.found = this.runNow(t);
      for (const t of this.fallbacks(tasks)) t.found = this.runNow(t);
      return this.assemble(prepared, tasks);
    });
    if (now) return now;
    return this.lock.read(async () => {
      const tasks = this.plan(prepared);
      await Promise.all(tasks.map(async (t) => (t.found = await this.run(t))));
      await Promise.all(this.fallbacks(tasks).map(async (t) => (t.found = await this.run(t))));
      while (vectors && this.updating.size) await this.inflight;
      return this.assemble(prepared, tasks);
    });
  }

  /** Groups the queries into addon calls and picks a graph walk or an exact scan for each. */
  private plan(prepared: Prepared[]): Task[] {
    const dims = this.spec.dims;
    const q0 = prepared[0];
    if (prepared.length === 1 && !q0.filter && !q0.exclude?.length) {
      // The most common call, planned without grouping.
      return [{ members: [0], vectors: q0.vector, k: q0.k, ef: q0.ef, exact: false, fallback: false }];
    }
    const groups = new Map<string, number[]>();
    prepared.forEach((q, i) => {
      // A query with its own exclude list has its own predicate, so its own call.
      const key = q.exclude?.length ? `#${i}` : `${q.k}/${q.ef}/${q.exact ? 'exact' : ''}/${q.filter ? JSON.stringify(q.filter) : ''}`;
      const group = groups.get(key);
      if (group) group.push(i);
      else groups.set(key, [i]);
    });
    const live = this.labels.size;
    const isLive = (label: number) => this.ids[label] != null;
    return [...groups.values()].map((members) => {
      const q = prepared[members[0]];
      const vectors = new Float32Array(members.length * dims);
      members.forEach((m, j) => vectors.set(prepared[m].vector, j * dims));
      const task: Task = { members, vectors, k: q.k, ef: q.ef, exact: false, fallback: false };
      const compiled = compilePredicate(q.filter, this.excludedLabels(q.exclude), this.columns, live, this.ids.length, isLive);
      if (q.exact)
        return { ...task, native: compiled?.native, exact: true, driver: compiled?.driver?.bits, scanned: compiled?.driver?.rows ?? this.ids.length };
      if (!compiled) return task;
      task.native = compiled.native;
      task.fallback = true;
      if (!q.filter) return task;
      task.driver = compiled.driver?.bits;
      task.scanned = compiled.driver?.rows ?? this.ids.length;
      if (this.scanExactly(compiled.share * live, compiled.share, task.scanned, q.ef)) {
        task.exact = true;
        task.fallback = false;
      }
      return task;
    });
  }

  /**
   * Exact scan or filtered walk. Costs in distance computations: a scan computes one per matching row
   * (plus a cheap check per label it looks at); a walk that accepts a share s of the nodes it meets expands
   * about ef/s nodes, each costing a distance per graph neighbour (2M at the bottom layer).
   */
  private scanExactly(matching: number, share: number, scanned: number, ef: number): boolean {
    if (this.opts.filterPlan !== 'auto') return this.opts.filterPlan === 'exact';
    if (matching <= this.opts.exactScanBelow || share < this.opts.exactScanSelectivity) return true;
    const exact = matching + scanned / 32;
    const walk = (ef * 2 * this.manifest.M) / Math.max(share, 1e-6);
    return exact < walk;
  }

  /** Exact scans for the queries whose filtered walk found fewer than k while more rows may match; appended to `tasks`. */
  private fallbacks(tasks: Task[]): Task[] {
    const out: Task[] = [];
    const dims = this.spec.dims;
    const want = (k: number) => Math.min(k, this.labels.size);
    for (const t of tasks) {
      if (!t.fallback) continue;
      const short = t.members.flatMap((m, j) => (t.found!.counts[j] < want(t.k) ? [j] : []));
      if (short.length === 0) continue;
      const vectors = new Float32Array(short.length * dims);
      short.forEach((j, i) => vectors.set(t.vectors.subarray(j * dims, (j + 1) * dims), i * dims));
      out.push({
        ...t,
        members: short.map((j) => t.members[j]),
        vectors,
        exact: true,
        scanned: t.scanned ?? this.ids.length,
        fallback: false,
        found: undefined,
      });
    }
    tasks.push(...out);
    return out;
  }

  /** Whether a task is cheaper to run here than to send to the thread pool. */
  private small(t: Task): boolean {
    const n = t.members.length;
    return t.exact ? n * (t.scanned ?? 0) <= SYNC_WORK * 64 : n * t.ef <= SYNC_WORK;
  }

  private runNow(t: Task): Found {
    return t.exact ? this.index.exactSync(t.vectors, t.k, t.native, t.driver) : this.index.searchSync(t.vectors, t.k, t.ef, t.native);
  }

  /** A graph task's queries split into one contiguous slice per thread; results concatenated in order. */
  private async run(t: Task): Promise<Found> {
    if (t.exact) return this.index.exact(t.vectors, t.k, t.native, t.driver);
    const n = t.members.length;
    const dims = this.spec.dims;
    const chunks = Math.max(1, Math.min(this.opts.threads, Math.floor(n / 8)));
    if (chunks === 1) return this.index.search(t.vectors, t.k, t.ef, t.native);
    const per = Math.ceil(n / chunks);
    const parts = await Promise.all(
      Array.from({ length: chunks }, (_, c) => this.index.search(t.vectors.subarray(c * per * dims, Math.min(n, (c + 1) * per) * dims), t.k, t.ef, t.native)),
    );
    const found: Found = { labels: new Uint32Array(n * t.k), distances: new Float32Array(n * t.k), counts: new Uint32Array(n) };
    parts.forEach((f, c) => {
      found.labels.set(f.labels, c * per * t.k);
      found.distances.set(f.distances, c * per * t.k);
      found.counts.set(f.counts, c * per);
    });
    return found;
  }

  /** Hits per query in query order; a fallback task, coming later, replaces its queries' graph answers. */
  private assemble(prepared: Prepared[], tasks: Task[]): Hit[][] {
    const source: Array<[Task, number]> = new Array(prepared.length);
    for (const t of tasks) t.members.forEach((m, j) => (source[m] = [t, j]));
    return prepared.map((q, i) => {
      const [t, j] = source[i];
      return this.hits(t.found!, j, t.k, q);
    });
  }

  private excludedLabels(exclude: string[] | undefined): Uint32Array | undefined {
    if (!exclude?.length) return undefined;
    const out: number[] = [];
    for (const id of exclude) {
      const label = this.labels.get(id);
      if (label !== undefined) out.push(label);
    }
    return Uint32Array.from(out);
  }

  /** Hits of query `qi` from a result laid out `k` slots per query. */
  private hits(found: Found, qi: number, k: number, include: { includeVectors?: boolean; includeMetadata?: boolean }): Hit[] {
    const n = found.counts[qi];
    const out: Hit[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const slot = qi * k + i;
      out[i] = { id: this.ids[found.labels[slot]]!, score: this.score(found.distances[slot]) };
      if (include.includeMetadata) out[i].metadata = this.columns.get(found.labels[slot]);
    }
    if (include.includeVectors && n) {
      const vectors = this.vectors(found.labels.slice(qi * k, qi * k + n));
      out.forEach((h, i) => (h.vector = vectors[i]));
    }
    return out;
  }

  /** The manifest another node published to the shared folder, when it holds a higher log offset than `next`. */
  private async newerPublished(next: Manifest): Promise<Manifest | undefined> {
    const current = await readManifest(this.dir);
    return current && (current.logOffset ?? 0) > (next.logOffset ?? 0) ? current : undefined;
  }

  /** Persists every write and the applied log offset. */
  flush(): Promise<void> {
    return this.snapshot();
  }

  /** Persists writes made outside any log; log-applied state is left to whoever owns the log. */
  async flushDirect(): Promise<void> {
    if (this.dirty) await this.snapshot();
  }

  /**
   * int8: the vectors file the next snapshot names. When dead rows (deleted or rewritten labels) make up most of
   * it, the live ones go to a new file first, with searches held back, since they read the file.
   */
  private async compactVectors(tag: string): Promise<string> {
    const fresh = `vectors-${tag}.f32`;
    // A failed snapshot of the same generation may have started `fresh` already: it is the current file then.
    if (fresh === this.vectorsFile) return fresh;
    const moved = await this.lock.write(() => {
      try {
        return this.index.compactVectors(join(this.dir, fresh));
      } catch (e) {
        throw providerError(this.opts.name, e);
      }
    });
    if (moved) this.vectorsFile = fresh;
    return this.vectorsFile!;
  }

  /**
   * Index, ids and columns first under a new generation, then the manifest that names them: the manifest's
   * rename is the commit. Only the in-memory copy holds writers back (searches never wait); writing the files,
   * fsyncs and renames run beside writes.
   */
  snapshot(force = false): Promise<void> {
    return this.snapshots.run(async () => {
      const generation = this.manifest.generation + 1;
      const tag = this.opts.shared === undefined ? `${generation}` : `${generation}-${this.opts.shared}`;
      const next: Manifest = {
        ...this.manifest,
        format: FORMAT,
        generation,
        index: `index-${tag}.hnsw`,
        rows: `rows-${tag}.json`,
        columns: `columns-${tag}.bin`,
      };
      if (this.vectorsFile) next.slots = `slots-${tag}.bin`;
      const files = [next.index, next.rows, next.columns!, ...(next.slots ? [next.slots] : [])];
      const indexTmp = join(this.dir, `${next.index}.tmp`);
      const slotsTmp = next.slots && join(this.dir, `${next.slots}.tmp`);
      const pending = () => this.dirty || force || this.applied > (this.manifest.logOffset ?? 0);
      if (!pending()) return;
      const mode = this.opts.snapshotWriter === 'fork' && slotsTmp ? 'copy' : this.opts.snapshotWriter;
      // Outside the write lock: the memory the copy goes to, so writers wait for the memcpy alone.
      if (mode === 'copy') await this.index.reserveImage();
      // An f32 graph is copied beside writes, which record the nodes they touch meanwhile; writers then wait
      // only while those few nodes are copied again. (int8: the slot table is saved with writes held back.)
      const beside = mode === 'copy' && !slotsTmp;
      // The ids and the columns likewise, a slice at a time, and patched with the labels writes touched.
      let tracking = false;
      let early: { ids: Array<string | null>; rows: number; shape: Array<[string, number]>; columns: Buffer } | undefined;
      if (beside) {
        tracking = await this.writes.run(async () => {
          if (!pending()) return false;
          this.index.beginCopy();
          this.touched = new Set();
          return true;
        });
        if (!tracking) return;
        // A resize moves the graph and the columns' arrays: inserts that need one wait for this (upsert).
        this.copying = (async () => {
          await this.index.copyImage();
          // Rows up to the capacity: no label can pass it before the copy is brought up to date.
          const rows = Math.min(this.index.capacity(), this.columns.rowsCapacity);
          const shape = this.columns.shape();
          const ids = await copySliced(this.ids);
          early = { ids, rows, shape, columns: await this.columns.encodeSliced(rows, SLICE_ROWS) };
        })().then(
          () => undefined,
          (e: unknown) => e ?? new Error('snapshot copy failed'),
        );
        const failed = await this.copying;
        this.copying = undefined;
        if (failed) {
          await this.writes.run(async () => {
            this.index.finishCopy();
            this.touched = undefined;
          });
          throw providerError(this.opts.name, failed);
        }
      }
      let dirty = false;
      const copy = await this.writes.run(async () => {
        if (tracking && !this.index.finishCopy()) tracking = false;
        const touched = this.touched;
        this.touched = undefined;
        if (!pending()) return undefined;
        dirty = this.dirty;
        next.vectors = this.vectorsFile && (await this.compactVectors(tag));
        next.logOffset = this.applied;
        let writer: number | undefined;
        let image = false;
        try {
          // The forked writer saves the graph alone; an int8 index's slot table is saved with a copy (above).
          // No child process (a platform without fork, or none to be had now): written inline instead.
          if (mode === 'fork') writer = await this.index.forkSave(indexTmp).catch(() => undefined);
          if (tracking) image = true;
          else if (mode === 'copy') image = (await this.index.copyImage(slotsTmp), true);
          else if (writer === undefined) await this.index.save(indexTmp, slotsTmp);
        } catch (e) {
          throw providerError(this.opts.name, e);
        }
        // The ids and columns copied beside writes, patched; else copied now (int8, or a field or string came since).
        const patched = tracking && early !== undefined && touched !== undefined && this.columns.patch(early.columns, early.rows, early.shape, touched);
        if (patched) {
          for (let label = early!.ids.length; label < this.ids.length; label++) early!.ids[label] = this.ids[label];
          for (const label of touched!) early!.ids[label] = this.ids[label] ?? null;
        }
        const out = patched
          ? { writer, image, ids: early!.ids, columns: early!.columns }
          : { writer, image, ids: this.ids.slice(), columns: this.columns.encode(this.ids.length) };
        this.dirty = false;
        return out;
      });
      if (!copy) return;
      const written = copy.writer !== undefined ? childDone(copy.writer) : copy.image ? this.index.writeImage(indexTmp) : Promise.resolve();
      try {
        await writeFileSynced(join(this.dir, `${next.rows}.tmp`), await encodeRows(copy.ids));
        await writeFileSynced(join(this.dir, `${next.columns}.tmp`), copy.columns);
        await written;
        for (const f of files) await fsyncFile(join(this.dir, `${f}.tmp`));
        // Rows the slot table names were written before it was saved: in place, never renamed.
        if (next.vectors) await fsyncFile(join(this.dir, next.vectors));
        for (const f of files) await rename(join(this.dir, `${f}.tmp`), join(this.dir, f));
        const newer = this.opts.shared === undefined || dirty ? undefined : await this.newerPublished(next);
        if (newer) {
          // Another node published a snapshot past this one: it stays current, this one goes.
          for (const f of files) await rm(join(this.dir, f), { force: true });
          this.manifest = newer;
          return;
        }
        const tmp = this.opts.shared === undefined ? undefined : join(this.dir, `manifest-${this.opts.shared}.json.tmp`);
        await writeAtomic(join(this.dir, MANIFEST), (t) => writeFileSynced(t, JSON.stringify(next)), tmp);
        await syncDir(this.dir);
      } catch (e) {
        await written.catch(() => undefined);
        this.dirty = true;
        throw providerError(this.opts.name, e);
      }
      this.manifest = next;
      await removeStale(this.dir, (this.opts.shared !== undefined && (await readManifest(this.dir))) || next, this.opts.shared);
    });
  }
}
