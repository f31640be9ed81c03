/** One source row with the 1-based line (or row) number it came from, for error messages. */
export interface SourceRow {
  line: number;
  values: Record<string, unknown>;
  /** Resume position after this row; opaque to callers (byte offset for files, rows read for a query). */
  position: number;
  /** Where to resume after this row when a number cannot say it (the last key of a keyset page); opaque. */
  cursor?: string;
  /** Set when the row could not be parsed; `values` is then empty. */
  error?: string;
}

/**
 * A source as defined: its name, variant and kind, and the kind's own options (checked against its plugin's
 * schema when definitions are applied; a `path` is absolute by then).
 */
export interface SourceSpec {
  name: string;
  variant: string;
  kind: string;
  /** Absolute path of the file (csv, jsonl, or the SQLite database). */
  path?: string;
  /** Table of a sqlite or postgres source. */
  table?: string;
  [option: string]: unknown;
}

/** Where a read resumes: what the last row read reported. */
export interface ReadFrom {
  position: number;
  line: number;
  cursor?: string;
}

/** A dataset read as a stream, resumable from a position a previous read reported. */
export interface Source {
  /** Total size in the unit of `position` (bytes for files), for progress and ETA; undefined if unknown. */
  size(): Promise<number | undefined>;
  read(from?: ReadFrom): AsyncIterable<SourceRow>;
  /**
   * The column names definitions may reference, read cheaply (a CSV header, the keys of the first JSON Lines rows,
   * a table's columns), so that a typo fails `apply` rather than a materialization; undefined when the source holds
   * no rows to learn them from.
   */
  columns(): Promise<string[] | undefined>;
}
