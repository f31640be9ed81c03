/** One source row with the 1-based line (or row) number it came from, for error messages. */
export interface SourceRow {
  line: number;
  values: Record<string, unknown>;
  /** Resume position after this row; opaque to callers (byte offset for files). */
  position: number;
}

export interface SourceSpec {
  name: string;
  variant: string;
  kind: string;
  /** Absolute path for file sources. */
  path?: string;
  /** Table for database sources. */
  table?: string;
  /** Connection string / file for database sources. */
  url?: string;
  /** CSV delimiter. Default `,`. */
  delimiter?: string;
}

/** A dataset read as a stream, resumable from a position a previous read reported. */
export interface Source {
  read(from?: { position: number; line: number }): AsyncIterable<SourceRow>;
}
