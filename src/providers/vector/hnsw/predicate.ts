import type { Filter, Scalar } from '../../../types.ts';
import { TAG, type Column, type Columns } from './columns.ts';
import type { NativeFilter } from './native.ts';

/*
 * Compiles a validated filter, once per request, into the postfix program native/src/predicate.h evaluates
 * for each label the graph walk meets, and estimates the share of rows it matches from the counts the
 * columns keep (a small sample of the column for number comparisons). Semantics are compileFilter's
 * (src/filter.ts): a missing field equals null, `ne`/`nin` match it, ranges compare same-typed values.
 */

const OP = { const: 0, isNull: 1, eq: 2, cmp: 3, inSet: 4, bitmap: 5, and: 6, or: 7, not: 8 } as const;
const CMP = { gt: 0, gte: 1, lt: 2, lte: 3 } as const;
/** Labels a number comparison's estimate looks at. */
const SAMPLE = 512;

export interface CompiledFilter {
  native: NativeFilter;
  /** Estimated share of live rows that match, 0..1. */
  share: number;
  /** A bitmap every match is in (the rarest frequent value an `and` requires), where an exact scan starts. */
  driver?: { bits: Uint32Array; rows: number };
}

interface Node {
  share: number;
  driver?: { bits: Uint32Array; rows: number };
}

/** Whether a label holds a row; the estimate's sample skips the others. */
export type Live = (label: number) => boolean;

class Builder {
  readonly code: number[] = [];
  readonly consts: number[] = [];
  readonly columns: Column[] = [];
  readonly sets: Float64Array[] = [];
  readonly bitmaps: Uint32Array[] = [];

  constructor(
    private readonly cols: Columns,
    private readonly live: number,
    private readonly labels: number,
    private readonly isLive: Live,
  ) {}

  private emit(op: number, a = 0, b = 0, c = 0): void {
    this.code.push(op, a, b, c);
  }

  private column(c: Column): number {
    const i = this.columns.indexOf(c);
    return i >= 0 ? i : this.columns.push(c) - 1;
  }

  private constant(v: number): number {
    return this.consts.push(v) - 1;
  }

  private always(match: boolean): Node {
    this.emit(OP.const, match ? 1 : 0);
    return { share: match ? 1 : 0 };
  }

  private rows(n: number): number {
    return this.live === 0 ? 0 : Math.min(1, n / this.live);
  }

  /** Share of live labels, among an even sample, on which `test` holds. */
  private sampled(test: (label: number) => boolean): number {
    let seen = 0;
    let hit = 0;
    const step = Math.max(1, Math.floor(this.labels / SAMPLE));
    for (let l = 0; l < this.labels; l += step) {
      if (!this.isLive(l)) continue;
      seen++;
      if (test(l)) hit++;
    }
    return seen === 0 ? 0 : hit / seen;
  }

  node(f: Filter): Node {
    if ('and' in f || 'or' in f) {
      const and = 'and' in f;
      const parts = (and ? f.and : f.or).map((p, i) => {
        const n = this.node(p);
        if (i > 0) this.emit(and ? OP.and : OP.or);
        return n;
      });
      if (!and) return { share: 1 - parts.reduce((s, p) => s * (1 - p.share), 1) };
      const drivers = parts.map((p) => p.driver).filter((d) => d !== undefined);
      const driver = drivers.sort((a, b) => a.rows - b.rows)[0];
      return { share: parts.reduce((s, p) => s * p.share, 1), driver };
    }
    if ('not' in f) {
      const inner = this.node(f.not);
      this.emit(OP.not);
      return { share: 1 - inner.share };
    }
    const c = this.cols.fields.get(f.field);
    switch (f.op) {
      case 'eq':
        return this.eq(c, f.value as Scalar);
      case 'ne': {
        const n = this.eq(c, f.value as Scalar);
        this.emit(OP.not);
        return { share: 1 - n.share };
      }
      case 'in':
        return this.in(c, f.value as Scalar[]);
      case 'nin': {
        const n = this.in(c, f.value as Scalar[]);
        this.emit(OP.not);
        return { share: 1 - n.share };
      }
      default:
        return this.range(c, f.op, f.value as number | string);
    }
  }

  private eq(c: Column | undefined, v: Scalar): Node {
    if (!c) return this.always(v === null);
    if (v === null) {
      this.emit(OP.isNull, this.column(c));
      return { share: this.rows(this.live - c.nonNullRows) };
    }
    if (typeof v === 'number') {
      const col = this.column(c);
      this.emit(OP.eq, col, TAG.number, this.constant(v));
      return { share: this.sampled((l) => c.tags[l] === TAG.number && c.values[l] === v) };
    }
    const code = typeof v === 'string' ? c.code(v) : v ? 1 : 0;
    if (code === undefined) return this.always(false);
    const rows = typeof v === 'string' ? c.stringRows[code] : c.boolRows[code];
    const bits = c.bitmaps.get(typeof v === 'string' ? code : -1 - code);
    if (bits) {
      this.emit(OP.bitmap, this.bitmaps.push(bits) - 1);
      return { share: this.rows(rows), driver: { bits, rows } };
    }
    this.emit(OP.eq, this.column(c), typeof v === 'string' ? TAG.string : TAG.boolean, this.constant(code));
    return { share: this.rows(rows) };
  }

  private in(c: Column | undefined, values: Scalar[]): Node {
    const unique = [...new Set(values)];
    if (!c) return this.always(unique.includes(null));
    const strings = unique.filter((v): v is string => typeof v === 'string');
    const numbers = unique.filter((v): v is number => typeof v === 'number');
    const others = unique.filter((v) => v === null || typeof v === 'boolean');
    const nodes: Node[] = [];
    const or = () => nodes.length > 1 && this.emit(OP.or);
    const codes = strings.map((s) => c.code(s)).filter((x) => x !== undefined);
    if (codes.length === 1) {
      nodes.push(this.eq(c, c.dict[codes[0]]));
    } else if (codes.length > 1) {
      this.emit(OP.inSet, this.column(c), TAG.string, this.sets.push(Float64Array.from(codes).sort()) - 1);
      nodes.push({ share: this.rows(codes.reduce((n, code) => n + c.stringRows[code], 0)) });
    }
    if (numbers.length) {
      const set = Float64Array.from(numbers).sort();
      this.emit(OP.inSet, this.column(c), TAG.number, this.sets.push(set) - 1);
      nodes.push({ share: this.sampled((l) => c.tags[l] === TAG.number && set.includes(c.values[l])) });
      or();
    }
    for (const v of others) {
      nodes.push(this.eq(c, v));
      or();
    }
    if (nodes.length === 0) return this.always(false);
    if (nodes.length === 1) return nodes[0];
    return {
      share: Math.min(
        1,
        nodes.reduce((s, n) => s + n.share, 0),
      ),
    };
  }

  private range(c: Column | undefined, op: 'gt' | 'gte' | 'lt' | 'lte', v: number | string): Node {
    if (!c) return this.always(false);
    const holds = (x: number | string) => (op === 'gt' ? x > v : op === 'gte' ? x >= v : op === 'lt' ? x < v : x <= v);
    if (typeof v === 'number') {
      this.emit(OP.cmp, this.column(c), CMP[op], this.constant(v));
      return { share: this.sampled((l) => c.tags[l] === TAG.number && holds(c.values[l])) };
    }
    // Dictionary codes are not ordered, so a string range becomes the set of codes whose strings pass.
    const codes = c.dict.flatMap((s, code) => (holds(s) && c.stringRows[code] > 0 ? [code] : []));
    if (codes.length === 0) return this.always(false);
    this.emit(OP.inSet, this.column(c), TAG.string, this.sets.push(Float64Array.from(codes)) - 1);
    return { share: this.rows(codes.reduce((n, code) => n + c.stringRows[code], 0)) };
  }
}

/**
 * The native predicate for a query's filter and excluded labels; `live` rows among `labels` slots.
 * Returns undefined when there is neither.
 */
export function compilePredicate(
  filter: Filter | undefined,
  exclude: Uint32Array | undefined,
  cols: Columns,
  live: number,
  labels: number,
  isLive: Live,
): CompiledFilter | undefined {
  if (!filter && !exclude?.length) return undefined;
  const native: NativeFilter = {};
  if (exclude?.length) native.exclude = exclude;
  if (!filter) return { native, share: 1 };
  const b = new Builder(cols, live, labels, isLive);
  const root = b.node(filter);
  Object.assign(native, {
    code: Int32Array.from(b.code),
    consts: Float64Array.from(b.consts),
    tags: b.columns.map((c) => c.tags),
    values: b.columns.map((c) => c.values),
    sets: b.sets,
    bitmaps: b.bitmaps,
  });
  return { native, share: root.share, driver: root.driver };
}
