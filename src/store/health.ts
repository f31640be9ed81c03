import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { nlError } from '../errors.ts';
import type { FeatureRecord } from '../registry/registry.ts';
import { refOf } from '../refs.ts';

/**
 * Embedding health: what the vectors a variant was built from look like (its baseline), what the vectors
 * written since look like (a sliding window of recent writes), and how far apart the two are.
 *
 * Everything is a running sum (count, Σ‖v‖, Σ‖v‖², Σv per dimension), so a write costs O(dims) per vector
 * and two windows merge by adding. Drift is measured on the centroid (cosine distance between the recent
 * and baseline centroids) and on the norm (relative shift of the mean norm): a new model version, a broken
 * preprocessing step or a shifted population moves one or both long before anyone notices in rankings.
 */

export interface DriftThresholds {
  /** Cosine distance between the recent and baseline centroids above which a variant is drifting. Default 0.05. */
  centroidDistance: number;
  /** Relative change of the mean norm (|recent − baseline| / baseline) above which it is drifting. Default 0.1. */
  normShift: number;
  /** Recent writes needed before drift is judged at all. Default 100. */
  minSamples: number;
}

export const DEFAULT_THRESHOLDS: DriftThresholds = { centroidDistance: 0.05, normShift: 0.1, minSamples: 100 };

/** Thresholds from `NEARLINE_DRIFT_CENTROID`, `NEARLINE_DRIFT_NORM`, `NEARLINE_DRIFT_MIN_SAMPLES`; refuses nonsense. */
export function thresholdsFromEnv(env: NodeJS.ProcessEnv = process.env): DriftThresholds {
  const read = (name: string, fallback: number, integer = false) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n)))
      throw nlError('NL_BAD_REQUEST', `${name} must be a non-negative ${integer ? 'integer' : 'number'}, got ${JSON.stringify(raw)}`);
    return n;
  };
  return {
    centroidDistance: read('NEARLINE_DRIFT_CENTROID', DEFAULT_THRESHOLDS.centroidDistance),
    normShift: read('NEARLINE_DRIFT_NORM', DEFAULT_THRESHOLDS.normShift),
    minSamples: read('NEARLINE_DRIFT_MIN_SAMPLES', DEFAULT_THRESHOLDS.minSamples, true),
  };
}

/** Running sums over a set of vectors. */
export class VectorStats {
  count = 0;
  normSum = 0;
  normSqSum = 0;
  zero = 0;
  duplicates = 0;
  readonly sum: Float64Array;

  constructor(readonly dims: number) {
    this.sum = new Float64Array(dims);
  }

  add(v: ArrayLike<number>): number {
    let sq = 0;
    for (let i = 0; i < this.dims; i++) {
      const x = v[i];
      sq += x * x;
      this.sum[i] += x;
    }
    const norm = Math.sqrt(sq);
    this.count++;
    this.normSum += norm;
    this.normSqSum += sq;
    if (norm === 0) this.zero++;
    return norm;
  }

  merge(o: VectorStats): this {
    this.count += o.count;
    this.normSum += o.normSum;
    this.normSqSum += o.normSqSum;
    this.zero += o.zero;
    this.duplicates += o.duplicates;
    for (let i = 0; i < this.dims; i++) this.sum[i] += o.sum[i];
    return this;
  }

  get normMean(): number {
    return this.count ? this.normSum / this.count : 0;
  }

  /** Standard deviation of the norms. */
  get normStd(): number {
    if (!this.count) return 0;
    const m = this.normMean;
    return Math.sqrt(Math.max(0, this.normSqSum / this.count - m * m));
  }

  /** The per-dimension mean. */
  centroid(): Float64Array {
    const c = new Float64Array(this.dims);
    if (this.count) for (let i = 0; i < this.dims; i++) c[i] = this.sum[i] / this.count;
    return c;
  }

  toJSON(): StatsJson {
    return { count: this.count, normSum: this.normSum, normSqSum: this.normSqSum, zero: this.zero, duplicates: this.duplicates, sum: Array.from(this.sum) };
  }

  static fromJSON(dims: number, j: StatsJson): VectorStats {
    const s = new VectorStats(dims);
    Object.assign(s, { count: j.count, normSum: j.normSum, normSqSum: j.normSqSum, zero: j.zero, duplicates: j.duplicates });
    s.sum.set(j.sum.slice(0, dims));
    return s;
  }
}

interface StatsJson {
  count: number;
  normSum: number;
  normSqSum: number;
  zero: number;
  duplicates: number;
  sum: number[];
}

/** 1 − cos(a, b); 1 when either is the zero vector (no direction to agree with). */
export function cosineDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  if (na === 0 || nb === 0) return 1;
  return Math.min(2, Math.max(0, 1 - dot / Math.sqrt(na * nb)));
}

export interface Drift {
  /** Cosine distance between the two centroids: 0 same direction, 1 orthogonal, 2 opposite. */
  centroidDistance: number;
  /** (mean norm of `recent` − mean norm of `baseline`) / mean norm of `baseline`; 0 when the baseline has no norm. */
  normShift: number;
}

/** How far `recent` moved from `baseline`. */
export function drift(baseline: VectorStats, recent: VectorStats): Drift {
  const b = baseline.normMean;
  return {
    centroidDistance: cosineDistance(recent.centroid(), baseline.centroid()),
    normShift: b > 0 ? (recent.normMean - b) / b : 0,
  };
}

export function isDrifting(d: Drift, recentCount: number, t: DriftThresholds): boolean {
  return recentCount >= t.minSamples && (d.centroidDistance > t.centroidDistance || Math.abs(d.normShift) > t.normShift);
}

/** 52 bits of FNV-1a over a vector's float32 bytes: equal vectors, equal hashes; exact in a double. */
export function vectorHash(v: Float32Array): number {
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ bytes.length;
  for (let i = 0; i < bytes.length; i++) {
    h1 = Math.imul(h1 ^ bytes[i], 0x01000193);
    h2 = Math.imul(h2 ^ bytes[i], 0x5bd1e995);
  }
  return (h1 >>> 0) * 0x100000 + ((h2 >>> 12) & 0xfffff);
}

export interface StatsSummary {
  count: number;
  normMean: number;
  normStd: number;
  zero: number;
  duplicates: number;
}

export interface HealthReport {
  feature: string;
  variant: string;
  dims: number;
  /** `drifting` when a threshold is crossed; `ok`; `warming` while there are fewer recent writes than `minSamples`; `empty` before any vector. */
  status: 'ok' | 'drifting' | 'warming' | 'empty';
  drifting: boolean;
  baseline: StatsSummary & { centroid: number[] };
  /** The sliding window of writes after materialization. */
  recent: StatsSummary;
  drift: Drift | null;
  thresholds: DriftThresholds;
  /** Whether duplicates are still counted: hashes are kept for up to `maxHashes` vectors per variant. */
  duplicatesTracked: boolean;
  updatedAt: string | null;
}

export interface VariantComparison {
  a: string;
  b: string;
  centroidDistance: number | null;
  normShift: number;
  a_stats: StatsSummary;
  b_stats: StatsSummary;
}

export interface HealthOptions {
  /** Folder for the per-variant files (`<name>__<variant>.json` and `.hashes`). */
  dir: string;
  thresholds?: DriftThresholds;
  /** Vectors in the recent-writes window. Default 10,000 (in 4 buckets: it slides a quarter at a time). */
  window?: number;
  /** Ids kept per variant as a uniform sample (for the dashboard's map). Default 2,000. */
  sampleSize?: number;
  /** Vector hashes kept per variant for duplicate counts. Default 2,000,000 (about 80 MB at most). */
  maxHashes?: number;
}

const BUCKETS = 4;

interface VariantState {
  dims: number;
  baseline: VectorStats;
  /** Oldest first; the last one is being filled. */
  recent: VectorStats[];
  hashes: Set<number>;
  hashesTracked: boolean;
  /** Hashes not yet appended to the file. */
  newHashes: number[];
  sample: string[];
  sampleSet: Set<string>;
  /** Ids offered to the sample so far (reservoir sampling). */
  seen: number;
  updatedAt: string | null;
  dirty: boolean;
  /** The JSON file's mtime when read or last written, to notice another process's writes. */
  mtime: number;
}

/**
 * Keeps each variant's health, updated by every path that writes vectors: materialization (the baseline),
 * then online writes and pushes (the recent window). Persisted beside the registry under `dir`: the stats
 * as JSON written atomically at materialization checkpoints and at most once a second after writes, and
 * the duplicate hashes as an append-only file. Statistics, not data: they are not fsynced.
 */
export class HealthMonitor {
  readonly thresholds: DriftThresholds;
  private readonly dir: string;
  private readonly window: number;
  private readonly sampleSize: number;
  private readonly maxHashes: number;
  private readonly states = new Map<string, VariantState>();
  private timer: NodeJS.Timeout | undefined;
  private random = Math.random;

  constructor(opts: HealthOptions) {
    this.dir = opts.dir;
    this.thresholds = opts.thresholds ?? DEFAULT_THRESHOLDS;
    this.window = opts.window ?? 10_000;
    this.sampleSize = opts.sampleSize ?? 2_000;
    this.maxHashes = opts.maxHashes ?? 2_000_000;
  }

  private file(feature: FeatureRecord, ext: 'json' | 'hashes'): string {
    return path.join(this.dir, `${feature.name}__${feature.variant}.${ext}`);
  }

  /** A materialization starts from zero: forget the variant's health. */
  reset(feature: FeatureRecord): void {
    const state = this.fresh(feature);
    this.states.set(key(feature), state);
    mkdirSync(this.dir, { recursive: true });
    if (existsSync(this.file(feature, 'hashes'))) truncateSync(this.file(feature, 'hashes'));
    this.write(feature, state);
  }

  /** Drops what this process holds for a variant, so the next use reads the file (a resumed materialization). */
  reload(feature: FeatureRecord): void {
    this.states.delete(key(feature));
  }

  /**
   * Records vectors written to a variant: into its baseline while it is being materialized, into the
   * recent window once it is. `ids`, when given (same order), feed the variant's sample of ids.
   */
  observe(feature: FeatureRecord, vectors: Float32Array[], ids?: string[]): void {
    if (!vectors.length || feature.kind !== 'embedding') return;
    const state = this.state(feature);
    const live = feature.status === 'materialized';
    for (let i = 0; i < vectors.length; i++) {
      const v = vectors[i];
      if (v.length !== state.dims) continue;
      let target = state.baseline;
      if (live) {
        target = state.recent[state.recent.length - 1];
        if (!target || target.count >= Math.ceil(this.window / BUCKETS)) {
          target = new VectorStats(state.dims);
          state.recent.push(target);
          if (state.recent.length > BUCKETS) state.recent.shift();
        }
      }
      target.add(v);
      if (state.hashesTracked) {
        const h = vectorHash(v);
        if (state.hashes.has(h)) target.duplicates++;
        else if (state.hashes.size >= this.maxHashes) state.hashesTracked = false;
        else {
          state.hashes.add(h);
          state.newHashes.push(h);
        }
      }
      if (ids) this.offer(state, ids[i]);
    }
    state.updatedAt = new Date().toISOString();
    state.dirty = true;
    if (live) this.schedule();
  }

  /** Writes a variant's health now (materialization calls this at each checkpoint). */
  flush(feature: FeatureRecord): void {
    const state = this.states.get(key(feature));
    if (state?.dirty) this.write(feature, state);
  }

  /** Writes everything pending; call before exit. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const [k, state] of this.states) {
      if (!state.dirty) continue;
      const [name, variant] = k.split('\u0000');
      this.write({ name, variant } as FeatureRecord, state);
    }
  }

  report(feature: FeatureRecord): HealthReport {
    const state = this.state(feature);
    const recent = this.recentOf(state);
    const hasRecent = recent.count > 0 && state.baseline.count > 0;
    const d = hasRecent ? drift(state.baseline, recent) : null;
    const drifting = d !== null && isDrifting(d, recent.count, this.thresholds);
    const status = drifting ? 'drifting' : state.baseline.count + recent.count === 0 ? 'empty' : recent.count < this.thresholds.minSamples ? 'warming' : 'ok';
    return {
      feature: feature.name,
      variant: feature.variant,
      dims: state.dims,
      status,
      drifting,
      baseline: { ...summary(state.baseline), centroid: Array.from(state.baseline.centroid()) },
      recent: summary(recent),
      drift: d,
      thresholds: this.thresholds,
      duplicatesTracked: state.hashesTracked,
      updatedAt: state.updatedAt,
    };
  }

  /** Two variants' vectors side by side: all they hold (baseline and recent writes together). */
  compare(a: FeatureRecord, b: FeatureRecord): VariantComparison {
    const whole = (f: FeatureRecord) => {
      const s = this.state(f);
      return new VectorStats(s.dims).merge(s.baseline).merge(this.recentOf(s));
    };
    const sa = whole(a);
    const sb = whole(b);
    const d = drift(sa, sb);
    return {
      a: refOf(a),
      b: refOf(b),
      // Centroids of different dimensionality live in different spaces: no distance between them.
      centroidDistance: sa.dims === sb.dims ? d.centroidDistance : null,
      normShift: d.normShift,
      a_stats: summary(sa),
      b_stats: summary(sb),
    };
  }

  /** Up to `sampleSize` ids written to the variant, drawn uniformly (some may have been deleted since). */
  sample(feature: FeatureRecord): string[] {
    return [...this.state(feature).sample];
  }

  private recentOf(state: VariantState): VectorStats {
    const r = new VectorStats(state.dims);
    for (const b of state.recent) r.merge(b);
    return r;
  }

  private offer(state: VariantState, id: string): void {
    if (state.sampleSet.has(id)) return;
    state.seen++;
    if (state.sample.length < this.sampleSize) {
      state.sample.push(id);
      state.sampleSet.add(id);
      return;
    }
    const j = Math.floor(this.random() * state.seen);
    if (j < this.sampleSize) {
      state.sampleSet.delete(state.sample[j]);
      state.sample[j] = id;
      state.sampleSet.add(id);
    }
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.close();
    }, 1000);
    this.timer.unref();
  }

  private fresh(feature: FeatureRecord): VariantState {
    const dims = feature.kind === 'embedding' ? feature.dims : 0;
    return {
      dims,
      baseline: new VectorStats(dims),
      recent: [],
      hashes: new Set(),
      hashesTracked: true,
      newHashes: [],
      sample: [],
      sampleSet: new Set(),
      seen: 0,
      updatedAt: null,
      dirty: false,
      mtime: 0,
    };
  }

  /** The variant's state: in memory, re-read when another process wrote its file and nothing here is pending. */
  private state(feature: FeatureRecord): VariantState {
    const k = key(feature);
    let state = this.states.get(k);
    // Observations not yet written win over the file, so a push stats nothing while they are pending.
    if (state?.dirty) return state;
    const file = this.file(feature, 'json');
    let mtime = 0;
    try {
      mtime = statSync(file).mtimeMs;
    } catch {
      // No file yet: nothing was observed, or it was observed here only.
    }
    if (state && mtime === state.mtime) return state;
    state = mtime ? this.read(feature, mtime) : this.fresh(feature);
    this.states.set(k, state);
    return state;
  }

  private read(feature: FeatureRecord, mtime: number): VariantState {
    const state = this.fresh(feature);
    try {
      const j = JSON.parse(readFileSync(this.file(feature, 'json'), 'utf8')) as PersistedHealth;
      if (j.dims === state.dims) {
        state.baseline = VectorStats.fromJSON(j.dims, j.baseline);
        state.recent = j.recent.map((r) => VectorStats.fromJSON(j.dims, r));
        state.sample = j.sample.slice(0, this.sampleSize);
        state.sampleSet = new Set(state.sample);
        state.seen = j.seen;
        state.hashesTracked = j.hashesTracked;
        state.updatedAt = j.updatedAt;
      }
      if (state.hashesTracked && existsSync(this.file(feature, 'hashes'))) {
        const buf = readFileSync(this.file(feature, 'hashes'));
        const hashes = new Float64Array(buf.buffer, buf.byteOffset, Math.floor(buf.byteLength / 8));
        for (const h of hashes) state.hashes.add(h);
      }
    } catch {
      // A damaged stats file is not worth failing a request for: health starts again from here.
    }
    state.mtime = mtime;
    return state;
  }

  private write(feature: Pick<FeatureRecord, 'name' | 'variant'>, state: VariantState): void {
    const f = feature as FeatureRecord;
    mkdirSync(this.dir, { recursive: true });
    if (state.newHashes.length) {
      appendFileSync(this.file(f, 'hashes'), new Uint8Array(Float64Array.from(state.newHashes).buffer));
      state.newHashes = [];
    }
    const j: PersistedHealth = {
      version: 1,
      dims: state.dims,
      baseline: state.baseline.toJSON(),
      recent: state.recent.map((r) => r.toJSON()),
      sample: state.sample,
      seen: state.seen,
      hashesTracked: state.hashesTracked,
      updatedAt: state.updatedAt,
    };
    const file = this.file(f, 'json');
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(j));
    renameSync(tmp, file);
    state.dirty = false;
    state.mtime = statSync(file).mtimeMs;
  }
}

interface PersistedHealth {
  version: 1;
  dims: number;
  baseline: StatsJson;
  recent: StatsJson[];
  sample: string[];
  seen: number;
  hashesTracked: boolean;
  updatedAt: string | null;
}

function key(feature: Pick<FeatureRecord, 'name' | 'variant'>): string {
  return `${feature.name}\u0000${feature.variant}`;
}

function summary(s: VectorStats): StatsSummary {
  return { count: s.count, normMean: s.normMean, normStd: s.normStd, zero: s.zero, duplicates: s.duplicates };
}
