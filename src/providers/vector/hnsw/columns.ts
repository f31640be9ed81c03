import { setImmediate } from 'node:timers/promises';
import type { Metadata, Scalar } from '../../../types.ts';

/*
 * Metadata kept by column, one slot per label, so that filters run inside the addon over typed arrays:
 * per field a tag byte (absent, null, string, number, boolean) and a float64 value (the number, the string's
 * dictionary code, or 0/1). Writes update slots in place. Each field keeps its row count per string and
 * boolean value, and a bitmap of the labels holding each frequent one: the planner's counts, and where an
 * exact scan for a selective `eq`/`in` starts.
 */

/** Column tags, as native/src/predicate.h reads them. */
export const TAG = { absent: 0, null: 1, string: 2, number: 3, boolean: 4 } as const;

/** A value gets a bitmap once at least this many rows hold it... */
const BITMAP_MIN_ROWS = 256;
/** ...and at least 1/BITMAP_SHARE of the slots; it loses it below half that. */
const BITMAP_SHARE = 128;

export class Column {
  tags: Uint8Array;
  values: Float64Array;
  readonly dict: string[] = [];
  private readonly codes = new Map<string, number>();
  /** Rows per string code. */
  readonly stringRows: number[] = [];
  /** Rows holding false, true. */
  readonly boolRows = [0, 0];
  /** Rows holding a number. */
  numberRows = 0;
  /** Bitmap (32 labels a word) per frequent value: key `code` for a string, -1 false, -2 true. */
  readonly bitmaps = new Map<number, Uint32Array>();

  constructor(capacity: number) {
    this.tags = new Uint8Array(capacity);
    this.values = new Float64Array(capacity);
  }

  code(s: string): number | undefined {
    return this.codes.get(s);
  }

  /** Rows holding a value other than null. */
  get nonNullRows(): number {
    let n = this.numberRows + this.boolRows[0] + this.boolRows[1];
    for (const c of this.stringRows) n += c;
    return n;
  }

  grow(capacity: number): void {
    if (capacity <= this.tags.length) return;
    const tags = new Uint8Array(capacity);
    tags.set(this.tags);
    const values = new Float64Array(capacity);
    values.set(this.values);
    this.tags = tags;
    this.values = values;
    for (const [key, bits] of this.bitmaps) {
      const grown = new Uint32Array(Math.ceil(capacity / 32));
      grown.set(bits);
      this.bitmaps.set(key, grown);
    }
  }

  set(label: number, v: Scalar | undefined): void {
    this.count(label, -1);
    if (v === undefined) {
      this.tags[label] = TAG.absent;
      this.values[label] = 0;
    } else if (v === null) {
      this.tags[label] = TAG.null;
      this.values[label] = 0;
    } else if (typeof v === 'string') {
      let code = this.codes.get(v);
      if (code === undefined) {
        code = this.dict.length;
        this.dict.push(v);
        this.codes.set(v, code);
        this.stringRows.push(0);
      }
      this.tags[label] = TAG.string;
      this.values[label] = code;
    } else if (typeof v === 'number') {
      this.tags[label] = TAG.number;
      this.values[label] = v;
    } else {
      this.tags[label] = TAG.boolean;
      this.values[label] = v ? 1 : 0;
    }
    this.count(label, 1);
  }

  get(label: number): Scalar | undefined {
    const v = this.values[label];
    switch (this.tags[label]) {
      case TAG.null:
        return null;
      case TAG.string:
        return this.dict[v];
      case TAG.number:
        return v;
      case TAG.boolean:
        return v === 1;
      default:
        return undefined;
    }
  }

  /** Adds `delta` to the counts of the value at `label`, and keeps its bitmap in step. */
  private count(label: number, delta: 1 | -1): void {
    const tag = this.tags[label];
    let key: number;
    let rows: number;
    if (tag === TAG.string) {
      key = this.values[label];
      rows = this.stringRows[key] += delta;
    } else if (tag === TAG.boolean) {
      key = -1 - this.values[label];
      rows = this.boolRows[this.values[label]] += delta;
    } else {
      if (tag === TAG.number) this.numberRows += delta;
      return;
    }
    const bits = this.bitmaps.get(key);
    if (bits) {
      if (delta > 0) bits[label >>> 5] |= 1 << (label & 31);
      else bits[label >>> 5] &= ~(1 << (label & 31));
      if (rows * BITMAP_SHARE * 2 < this.tags.length) this.bitmaps.delete(key);
    } else if (delta > 0 && rows >= BITMAP_MIN_ROWS && rows * BITMAP_SHARE >= this.tags.length) {
      this.bitmaps.set(key, this.scan(tag, this.values[label]));
    }
  }

  private scan(tag: number, value: number): Uint32Array {
    const bits = new Uint32Array(Math.ceil(this.tags.length / 32));
    for (let l = 0; l < this.tags.length; l++) if (this.tags[l] === tag && this.values[l] === value) bits[l >>> 5] |= 1 << (l & 31);
    return bits;
  }
}

const MAGIC = 'NLCOLS1\n';

/** Rows [from, to) of `columns` into `out`, an encoding of `rows` rows whose header is written. */
function encodeRows(out: Buffer, columns: Column[], rows: number, from: number, to: number): void {
  const align = (n: number) => Math.ceil(n / 8) * 8;
  const per = align(rows) + rows * 8;
  let at = align(MAGIC.length + 4 + out.readUInt32LE(MAGIC.length));
  for (const c of columns) {
    out.set(c.tags.subarray(from, to), at + from);
    out.set(new Uint8Array(c.values.buffer, from * 8, (to - from) * 8), at + align(rows) + from * 8);
    at += per;
  }
}

export class Columns {
  readonly fields = new Map<string, Column>();

  constructor(private capacity: number) {}

  grow(capacity: number): void {
    if (capacity <= this.capacity) return;
    this.capacity = capacity;
    for (const c of this.fields.values()) c.grow(capacity);
  }

  /** Writes `label`'s metadata; null (a deleted row) clears every field. */
  set(label: number, meta: Metadata | null): void {
    for (const [name, c] of this.fields) if (!meta || !(name in meta)) c.set(label, undefined);
    if (!meta) return;
    for (const name of Object.keys(meta)) {
      let c = this.fields.get(name);
      if (!c) {
        c = new Column(this.capacity);
        this.fields.set(name, c);
      }
      c.set(label, meta[name]);
    }
  }

  get(label: number): Metadata {
    const out: Metadata = {};
    for (const [name, c] of this.fields) {
      const v = c.get(label);
      if (v !== undefined) out[name] = v;
    }
    return out;
  }

  static fromRows(metadata: Array<Metadata | null>, capacity: number): Columns {
    const cols = new Columns(Math.max(capacity, metadata.length));
    metadata.forEach((m, label) => m && cols.set(label, m));
    return cols;
  }

  /**
   * The snapshot form of the first `rows` slots: magic, a JSON header (field names and dictionaries), then per
   * field the tags and the values, each 8-byte aligned. Counts and bitmaps are rebuilt on load.
   */
  encode(rows: number): Buffer {
    const { out, columns } = this.encodeHeader(rows);
    encodeRows(out, columns, rows, 0, rows);
    return out;
  }

  /**
   * `encode(rows)` a slice of rows at a time, the event loop free in between; writes landing meanwhile go in
   * with `patch`. With `shape()` taken at the start.
   */
  async encodeSliced(rows: number, slice: number): Promise<Buffer> {
    const { out, columns } = this.encodeHeader(rows);
    for (let from = 0; from < rows; from += slice) {
      if (from > 0) await setImmediate();
      encodeRows(out, columns, rows, from, Math.min(rows, from + slice));
    }
    return out;
  }

  get rowsCapacity(): number {
    return this.capacity;
  }

  /** The file's header written into a buffer of its whole size, and the columns it names, in order. */
  private encodeHeader(rows: number): { out: Buffer; columns: Column[] } {
    const fields = [...this.fields].map(([name, c]) => ({ name, dict: c.dict }));
    const header = Buffer.from(JSON.stringify({ rows, fields }));
    const align = (n: number) => Math.ceil(n / 8) * 8;
    const start = align(MAGIC.length + 4 + header.length);
    const per = align(rows) + rows * 8;
    const out = Buffer.alloc(start + per * fields.length);
    out.write(MAGIC, 0, 'latin1');
    out.writeUInt32LE(header.length, MAGIC.length);
    header.copy(out, MAGIC.length + 4);
    return { out, columns: [...this.fields.values()] };
  }

  /** What `patch` needs to know of an `encode(rows)`: the fields it wrote and their dictionaries' sizes then. */
  shape(): Array<[name: string, dictSize: number]> {
    return [...this.fields].map(([name, c]) => [name, c.dict.length]);
  }

  /**
   * Rewrites `labels` (all below `rows`) in `buf`, an `encode(rows)` made when the columns had `shape`, to what
   * they hold now. False when a field or a dictionary entry came since (the header would change): encode again.
   */
  patch(buf: Buffer, rows: number, shape: Array<[string, number]>, labels: Iterable<number>): boolean {
    const now = this.shape();
    if (now.length !== shape.length || now.some(([name, size], i) => name !== shape[i][0] || size !== shape[i][1])) return false;
    const align = (n: number) => Math.ceil(n / 8) * 8;
    const start = align(MAGIC.length + 4 + buf.readUInt32LE(MAGIC.length));
    const per = align(rows) + rows * 8;
    const columns = [...this.fields.values()];
    for (const label of labels) {
      if (label >= rows) return false;
      columns.forEach((c, i) => {
        const at = start + per * i;
        buf[at + label] = c.tags[label];
        buf.writeDoubleLE(c.values[label], at + align(rows) + label * 8);
      });
    }
    return true;
  }

  static decode(buf: Buffer, capacity: number): Columns {
    if (buf.toString('latin1', 0, MAGIC.length) !== MAGIC) throw new Error('columns file: bad magic');
    const headerLength = buf.readUInt32LE(MAGIC.length);
    const { rows, fields } = JSON.parse(buf.toString('utf8', MAGIC.length + 4, MAGIC.length + 4 + headerLength)) as {
      rows: number;
      fields: Array<{ name: string; dict: string[] }>;
    };
    const align = (n: number) => Math.ceil(n / 8) * 8;
    const start = align(MAGIC.length + 4 + headerLength);
    const per = align(rows) + rows * 8;
    if (buf.length < start + per * fields.length) throw new Error('columns file: truncated');
    const cols = new Columns(Math.max(capacity, rows));
    fields.forEach(({ name, dict }, i) => {
      const at = start + per * i;
      const tags = buf.subarray(at, at + rows);
      // Copied out, since the buffer's offset need not be 8-byte aligned.
      const values = new Float64Array(Uint8Array.from(buf.subarray(at + align(rows), at + per)).buffer);
      const c = new Column(cols.capacity);
      cols.fields.set(name, c);
      for (let l = 0; l < rows; l++) {
        const tag = tags[l];
        if (tag === TAG.absent) continue;
        if (tag === TAG.string) {
          const s = dict[values[l]];
          if (s === undefined) throw new Error(`columns file: field ${name} has an unknown string code`);
          c.set(l, s);
        } else if (tag === TAG.number) c.set(l, values[l]);
        else if (tag === TAG.boolean) c.set(l, values[l] === 1);
        else if (tag === TAG.null) c.set(l, null);
        else throw new Error(`columns file: field ${name} has unknown tag ${tag}`);
      }
    });
    return cols;
  }
}
