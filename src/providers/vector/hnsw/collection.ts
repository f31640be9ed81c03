import { join } from 'node:path';
import { nlError, providerError } from '../../../errors.ts';
import { compileFilter, validateFilter } from '../../../filter.ts';
import type { Filter, Hit, Metadata } from '../../../types.ts';
import type { CollectionSpec, SearchQuery, VectorCollection, VectorRecord } from '../types.ts';
import { MANIFEST, removeStale, syncDir, writeAtomic, writeFileSynced, type Manifest, type RowsFile } from './files.ts';
import { IdIndex } from './id-index.ts';
import type { Found, NativeIndex } from './native.ts';
import type { HnswVectorOptions } from './provider.ts';
import { RwLock } from './rw-lock.ts';

/*
 * One collection: the native graph, label <-> id, metadata per label.
 *
 * Deleted labels are marked deleted in the graph and reused by the next new ids, which hnswlib updates in
 * place: churn does not grow the index. Cosine collections store unit vectors (inner product on them), so
 * `get` returns the normalized vector. Writes between flushes live in memory only.
 */

export type Settings = Required<Omit<HnswVectorOptions, 'dir'>> & { name: string };

/** Distinct filters whose matching labels a collection keeps between writes. */
const MATCH_CACHE_SIZE = 32;

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

export class HnswCollection implements VectorCollection {
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
