/** One source row with the 1-based line (or row) number it came from, for error messages. */
export interface SourceRow {
  line: number;
  values: Record<string, unknown>;
  /** Resume position after this row; opaque to callers (byte offset for files). */
  position: number;
  /** Set when the row could not be parsed; `values` is then empty. */
  error?: string;
}

export interface SourceSpec {
  name: string;
  variant: string;
  kind: string;
  /** Absolute path of the file (csv, jsonl, or the SQLite database). */
  path?: string;
  /** Table of a sqlite source. */
  table?: string;
  /** CSV delimiter. Default `,`. */
  delimiter?: string;
}

/** A dataset read as a stream, resumable from a position a previous read reported. */
export interface Source {
  /** Total size in the unit of `position` (bytes for files), for progress and ETA; undefined if unknown. */
  size(): Promise<number | undefined>;
  read(from?: { position: number; line: number }): AsyncIterable<SourceRow>;
  /**
   * The column names definitions may reference, read cheaply (a CSV header, the keys of the first JSON Lines rows,
   * a table's columns), so that a typo fails `apply` rather than a materialization; undefined when the source holds
   * no rows to learn them from.
   */
  columns(): Promise<string[] | undefined>;
}
