/** Vectors are Float32Array end to end; JSON arrays are converted once, at the edges. */
export type Vector = Float32Array;

export type Metric = 'cosine' | 'dot' | 'l2';

/** A scalar metadata or feature value. */
export type Scalar = string | number | boolean | null;

/** Metadata columns stored beside a vector, usable in filters. */
export type Metadata = Record<string, Scalar>;

/** `name`, `name@variant` or `name@alias`, parsed. `variant` is unresolved: it may name an alias. */
export interface FeatureRef {
  name: string;
  variant?: string;
}

/** One nearest-neighbour result. `score` is higher-is-closer: cosine similarity, dot product, or -L2 distance. */
export interface Hit {
  id: string;
  score: number;
  vector?: Vector;
  /** The hit's metadata fields, when asked for (`include.metadata`). */
  metadata?: Metadata;
  features?: Record<string, OnlineValue>;
}

export type FilterOp = 'eq' | 'ne' | 'in' | 'nin' | 'gt' | 'gte' | 'lt' | 'lte';

/** Backend-neutral metadata filter; each provider translates it or rejects it, never ignores it. */
export type Filter = { field: string; op: FilterOp; value: Scalar | Scalar[] } | { and: Filter[] } | { or: Filter[] } | { not: Filter };

/** A value in the online store: a scalar, a vector, or null when absent. */
export type OnlineValue = string | number | boolean | Vector | null;
