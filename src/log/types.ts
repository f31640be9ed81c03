/**
 * A source's durable, ordered log of pushed writes. Every entry has an offset (1, 2, 3, ...: 0 means
 * "nothing yet") and a key; compaction keeps the latest entry per key, so the log is the source's live state,
 * never truncated by age. Offsets are stable: compaction drops superseded entries but renumbers nothing.
 */
export interface LogEntry {
  offset: number;
  /** What compaction keeps one of: the latest entry per key survives. */
  key: string;
  /** JSON-serializable payload. */
  data: unknown;
}

export interface LogStats {
  /** Offset of the last durable entry; 0 when empty. */
  end: number;
  /** Bytes on disk over all segments. */
  bytes: number;
  segments: number;
  /** Entries appended by this process. */
  appended: number;
  /** fsyncs that made appends durable: concurrent appends share one. */
  syncs: number;
  /** Compactions run by this process. */
  compactions: number;
}

export interface Log {
  readonly name: string;
  /** True when this process may append (it holds the log's lock). */
  readonly writable: boolean;
  /**
   * True when other processes (other nodes) append to the same log: its followers wait for their entries
   * with `wait` and apply them.
   */
  readonly shared?: boolean;
  /** Resolves with the end offset once it passes `after`, or after `ms` with the end as it is (shared logs). */
  wait?(after: number, ms: number): Promise<number>;
  /**
   * Appends entries in order; resolves with the offset of the first once they are durable (written and
   * fsynced). Appends that arrive while an fsync is in flight share the next one (group commit).
   */
  append(entries: Array<{ key: string; data: unknown }>): Promise<number>;
  /** Entries with offset > `after`, in offset order, up to the end as of the call. */
  read(after: number): AsyncIterable<LogEntry>;
  /** Offset of the last durable entry (0 when empty). */
  end(): number;
  /**
   * Rewrites the sealed segments whose entries are all at or below `upTo` to the latest entry per key.
   * Call with the lowest offset every reader has made durable elsewhere (a snapshot), never higher.
   */
  compact(upTo: number): Promise<{ before: number; after: number } | null>;
  stats(): LogStats;
  close(): Promise<void>;
}
