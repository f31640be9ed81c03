import type { Filter, Hit, Metadata, Metric, Vector } from '../../types.ts';

/** HNSW-style index parameters; backends use what applies to them. */
export interface IndexParams {
  /** Graph degree. Default 16. */
  M?: number;
  /** Build-time candidate list size. Default 200. */
  efConstruction?: number;
  /** Default query-time candidate list size. Default 100. */
  ef?: number;
  /**
   * `int8`: the graph holds scalar-quantized vectors and the full-precision ones stay on disk, read to
   * rescore the best candidates and to return vectors. Default `none`.
   */
  quantization?: Quantization;
}

export type Quantization = 'none' | 'int8';
export const QUANTIZATIONS: readonly Quantization[] = ['none', 'int8'];

/** What a collection holds: one per feature variant. */
export interface CollectionSpec {
  /** Unique, filesystem- and URL-safe collection name, e.g. `word_vec__v1`. */
  name: string;
  dims: number;
  metric: Metric;
  index: IndexParams;
  /** Metadata fields that filters may use. */
  metadataFields: string[];
}

export interface VectorRecord {
  id: string;
  vector: Vector;
  metadata?: Metadata;
}

export interface SearchQuery {
  vector: Vector;
  k: number;
  /** Query-time candidate list size; defaults to the collection's `index.ef`. */
  ef?: number;
  filter?: Filter;
  /** Ids never returned (e.g. the query entity itself). */
  exclude?: string[];
  /** Return each hit's vector. */
  includeVectors?: boolean;
  /** Scan every row instead of searching the index: the ground truth that recall is measured against. */
  exact?: boolean;
  /** Return each hit's metadata (as Qdrant's with_payload). */
  includeMetadata?: boolean;
}

/** Recommend-style query: closer to `positive`, away from `negative` (ids or vectors). */
export interface ExampleQuery extends Omit<SearchQuery, 'vector'> {
  positive: Array<string | Vector>;
  negative?: Array<string | Vector>;
}

/** A write that applies a source's log (see src/log/): durable there already. */
export interface WriteOptions {
  /** The log offset this write brings the collection to. */
  logOffset?: number;
}

/** How far a collection has applied its source's log: in memory, and in its durable state. */
export interface LogOffsets {
  applied: number;
  durable: number;
}

/** One collection (feature variant) inside a vector provider. Batch methods are the primary API. */
export interface VectorCollection {
  readonly spec: CollectionSpec;
  /** Insert or replace by id. Validates every record (dims, finite values) before writing any. */
  upsert(records: VectorRecord[], opts?: WriteOptions): Promise<void>;
  /** Remove ids; unknown ids are ignored. */
  delete(ids: string[], opts?: WriteOptions): Promise<void>;
  /** Vectors and metadata by id, `null` where absent, in the order asked. */
  get(ids: string[]): Promise<Array<VectorRecord | null>>;
  /** Batch search; results in query order, best first, scores higher-is-closer. */
  search(queries: SearchQuery[]): Promise<Hit[][]>;
  count(): Promise<number>;
  /** Make everything written so far durable (atomic snapshot for file-backed backends), with the applied log offset. */
  flush(): Promise<void>;
  /**
   * Backends whose durable state is a snapshot (hnsw) keep the log offset in it. Absent: every write is durable
   * when it returns (Qdrant waits for it), and the store records the offset beside the variant in the registry.
   */
  logOffsets?(): LogOffsets;
}

export interface VectorProvider {
  readonly kind: string;
  readonly name: string;
  readonly supportsFilter: boolean;
  readonly supportsDelete: boolean;
  /** Native recommend (positive/negative examples); else the store averages example vectors. */
  readonly supportsExamples: boolean;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Opens the collection, creating it empty if absent. Throws NL_CONFLICT if it exists with another dims/metric. */
  collection(spec: CollectionSpec): Promise<VectorCollection>;
  /** Removes a collection and its files; missing is not an error. */
  dropCollection(name: string): Promise<void>;
  /** Recommend query; only when `supportsExamples`. */
  searchExamples?(collection: string, queries: ExampleQuery[]): Promise<Hit[][]>;
  /**
   * The backend has its own collection aliases, which the store moves with nearline's aliases so that
   * readers of the backend itself see a cutover at the same moment. Absent means false.
   */
  readonly supportsAliases?: boolean;
  /** Points backend alias `alias` at `collection` in one atomic step; only when `supportsAliases`. */
  setAlias?(alias: string, collection: string): Promise<void>;
  /** Removes backend alias `alias`; missing is not an error. Only when `supportsAliases`. */
  deleteAlias?(alias: string): Promise<void>;
}
