import { createRequire } from 'node:module';
import { join } from 'node:path';
import { providerError } from '../../../errors.ts';
import { packageRoot } from '../../../package-root.ts';

/** nearline's addon over hnswlib (native/): Float32Array in, searches and inserts on the libuv thread pool. */
export interface NativeIndex {
  capacity(): number;
  resize(capacity: number): void;
  /** Inserts, or updates in place a label already present (also a deleted one, which it revives). */
  add(vectors: Float32Array, labels: Uint32Array, threads: number): Promise<void>;
  markDelete(label: number): void;
  /** Copies each label's stored vector into `out`. */
  vectors(labels: Uint32Array, out: Float32Array): void;
  /** Per query `counts[i]` hits at `labels/distances[i*k ..]`, nearest first, among the labels `filter` allows. */
  search(queries: Float32Array, k: number, ef: number, filter?: NativeFilter): Promise<Found>;
  /** `search` on the calling thread, for searches smaller than a hop to the thread pool and back. */
  searchSync(queries: Float32Array, k: number, ef: number, filter?: NativeFilter): Found;
  /** Brute force over the live labels `filter` allows, only those set in `driver` (a bitmap) when given. */
  exact(queries: Float32Array, k: number, filter?: NativeFilter, driver?: Uint32Array): Promise<Found>;
  exactSync(queries: Float32Array, k: number, filter?: NativeFilter, driver?: Uint32Array): Found;
  /** The graph to `path`; an int8 index also saves the slot table of its f32 vectors file to `slots`. */
  save(path: string, slots?: string): Promise<void>;
  /**
   * `save` from a forked child process (f32 indexes): resolves with its pid once the child holds a copy-on-write
   * image of the graph (run it with no write in flight; searches may run); `reap` says when the file is written
   * and fsynced. Rejects where processes cannot fork.
   */
  forkSave(path: string): Promise<number>;
  /** Allocates room for a copy of the graph as large as it is now plus some growth, so `copyImage` takes no page faults. */
  reserveImage(): Promise<void>;
  /**
   * Copies the graph in memory (an int8 index also saves its slot table to `slots`). Run it with no write in
   * flight; searches may run beside it.
   */
  copyImage(slots?: string): Promise<void>;
  /**
   * f32 indexes: from now until `finishCopy`, writes record what they touch (and run one row at a time), so a
   * `copyImage` may run beside them, with no resize in flight. Call it with no write in flight.
   */
  beginCopy(): void;
  /**
   * With no write in flight: brings the copy made since `beginCopy` up to now and stops the recording. False
   * when it could not (then copy again with writes held back).
   */
  finishCopy(): boolean;
  /** Writes the last `copyImage` to `path` in `save`'s format (not fsynced) and frees it; writes may run beside it. */
  writeImage(path: string): Promise<void>;
  /**
   * An int8 index whose f32 file is mostly rows no live label uses rewrites the live ones into `path`
   * (fsynced) and continues there: true. Otherwise nothing happens: false. Nothing may run beside it.
   */
  compactVectors(path: string): boolean;
}

/** What makes an index int8: its codes in the graph, its f32 vectors in `vectors` (with `slots`, a saved slot table). */
export interface Int8Files {
  vectors: string;
  slots?: string;
  /** A search rescores k * rescore candidates by their exact distance. Default 2. */
  rescore?: number;
}

export interface Found {
  labels: Uint32Array;
  distances: Float32Array;
  counts: Uint32Array;
}

/** A compiled filter (see predicate.ts) and excluded labels, as native/src/predicate.h reads them. */
export interface NativeFilter {
  code?: Int32Array;
  consts?: Float64Array;
  tags?: Uint8Array[];
  values?: Float64Array[];
  sets?: Float64Array[];
  bitmaps?: Uint32Array[];
  /** Labels never returned. */
  exclude?: Uint32Array;
}

/** Which distance kernel the addon runs (NEARLINE_SIMD forces one), and every one this CPU supports. */
export interface Kernels {
  active: string | null;
  /** Set when NEARLINE_SIMD names a kernel this build or CPU cannot run; indexes then refuse to open. */
  error?: string;
  supported: string[];
}

interface Addon {
  Index: NativeIndexClass;
  kernels(): Kernels;
  /** Returns the allocator's free pages to the OS (glibc), for measurements of resident memory. */
  releaseMemory(): void;
  /** One kernel's distance (squared L2, or 1 - dot for 'ip') between two vectors, or with `int8` their int8 codes, for tests. */
  distance(kernel: string, metric: 'l2' | 'ip', a: Float32Array, b: Float32Array, int8?: boolean): number;
  /** A forkSave child's exit code (negative: the signal that ended it), or null while it runs; never blocks. */
  reap(pid: number): number | null;
}

export type NativeIndexClass = {
  new (space: 'l2' | 'ip', dims: number, capacity: number, M: number, efConstruction: number, seed: number, int8?: Int8Files): NativeIndex;
  new (space: 'l2' | 'ip', dims: number, path: string, int8?: Int8Files): NativeIndex;
};

let addon: Addon | undefined;

/** Loads the addon once; the one place that knows where the compiled .node file lives. */
export function nativeAddon(provider: string): Addon {
  if (!addon) {
    try {
      addon = createRequire(import.meta.url)(join(packageRoot(), 'native', 'build', 'Release', 'nearline_hnsw.node')) as Addon;
    } catch (e) {
      throw providerError(provider, new Error(`native addon native/ is not built (npm ci builds it; so does \`npm run install\`): ${(e as Error).message}`));
    }
  }
  return addon;
}

export function nativeIndexClass(provider: string): NativeIndexClass {
  return nativeAddon(provider).Index;
}
