import { createRequire } from 'node:module';
import { providerError } from '../../../errors.ts';

/** nearline's addon over hnswlib (native/): Float32Array in, searches and inserts on the libuv thread pool. */
export interface NativeIndex {
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

export interface Found {
  labels: Uint32Array;
  distances: Float32Array;
  counts: Uint32Array;
}

export type NativeIndexClass = {
  new (space: 'l2' | 'ip', dims: number, capacity: number, M: number, efConstruction: number, seed: number): NativeIndex;
  new (space: 'l2' | 'ip', dims: number, path: string): NativeIndex;
};

let addon: NativeIndexClass | undefined;

/** Loads the addon once; the one place that knows where the compiled .node file lives. */
export function nativeIndexClass(provider: string): NativeIndexClass {
  if (!addon) {
    try {
      addon = (createRequire(import.meta.url)('../../../../native/build/Release/nearline_hnsw.node') as { Index: NativeIndexClass }).Index;
    } catch (e) {
      throw providerError(provider, new Error(`native addon native/ is not built (npm ci builds it; so does \`npm run install\`): ${(e as Error).message}`));
    }
  }
  return addon;
}
