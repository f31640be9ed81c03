import { nlError } from './errors.ts';
import type { Filter, FilterOp, Metadata, Scalar } from './types.ts';

const OPS: ReadonlySet<string> = new Set<FilterOp>(['eq', 'ne', 'in', 'nin', 'gt', 'gte', 'lt', 'lte']);
const MAX_DEPTH = 16;

function isScalar(v: unknown): v is Scalar {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/**
 * Checks a filter's shape against the fields a feature declares as metadata; throws NL_BAD_FILTER.
 * Every provider validates through this before translating, so all reject the same inputs.
 */
export function validateFilter(filter: unknown, fields: readonly string[], depth = 0): Filter {
  if (depth > MAX_DEPTH) throw nlError('NL_BAD_FILTER', `nested deeper than ${MAX_DEPTH}`);
  if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) {
    throw nlError('NL_BAD_FILTER', 'expected an object {field, op, value}, {and}, {or} or {not}');
  }
  const f = filter as Record<string, unknown>;
  const keys = Object.keys(f);
  if ('and' in f || 'or' in f) {
    const key = 'and' in f ? 'and' : 'or';
    if (keys.length !== 1) throw nlError('NL_BAD_FILTER', `{${key}} takes no other keys`);
    const list = f[key];
    if (!Array.isArray(list) || list.length === 0) throw nlError('NL_BAD_FILTER', `${key} needs a non-empty array`);
    return { [key]: list.map((x) => validateFilter(x, fields, depth + 1)) } as Filter;
  }
  if ('not' in f) {
    if (keys.length !== 1) throw nlError('NL_BAD_FILTER', '{not} takes no other keys');
    return { not: validateFilter(f.not, fields, depth + 1) };
  }
  const { field, op, value } = f;
  if (keys.some((k) => k !== 'field' && k !== 'op' && k !== 'value')) {
    throw nlError('NL_BAD_FILTER', `unknown key in condition: ${keys.join(', ')}`);
  }
  if (typeof field !== 'string' || !fields.includes(field)) {
    throw nlError('NL_BAD_FILTER', `field ${JSON.stringify(field)} is not a metadata field (have: ${fields.join(', ') || 'none'})`);
  }
  if (typeof op !== 'string' || !OPS.has(op)) throw nlError('NL_BAD_FILTER', `unknown op ${JSON.stringify(op)}`);
  if (op === 'in' || op === 'nin') {
    if (!Array.isArray(value) || !value.every(isScalar)) throw nlError('NL_BAD_FILTER', `${op} needs an array of scalars`);
  } else if (op === 'eq' || op === 'ne') {
    if (!isScalar(value)) throw nlError('NL_BAD_FILTER', `${op} needs a scalar value`);
  } else if (typeof value !== 'number' || !Number.isFinite(value)) {
    if (typeof value !== 'string') throw nlError('NL_BAD_FILTER', `${op} needs a number or string`);
  }
  return { field, op: op as FilterOp, value: value as Scalar | Scalar[] };
}

/**
 * Checks a query's `k` and its filter: the one place the store and every vector provider validate both, so all
 * reject the same queries. `k` is a positive integer (NL_BAD_REQUEST), or with `maxK` an integer from 1 to
 * `maxK` (NL_LIMIT_EXCEEDED, as the store limits it); the filter is checked against the metadata fields (NL_BAD_FILTER).
 * `where` prefixes the k message, as in `query 3: `.
 */
export function validateQuery(
  q: { k: unknown; filter?: unknown },
  fields: readonly string[],
  opts: { maxK?: number; where?: string } = {},
): { k: number; filter: Filter | undefined } {
  const { maxK, where = '' } = opts;
  const k = q.k;
  if (maxK === undefined) {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw nlError('NL_BAD_REQUEST', `${where}k must be a positive integer`);
  } else if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > maxK) {
    throw nlError('NL_LIMIT_EXCEEDED', `${where}k must be an integer from 1 to ${maxK}`);
  }
  return { k, filter: q.filter === undefined ? undefined : validateFilter(q.filter, fields) };
}

/** Compiles a validated filter into a predicate over a row's metadata (for in-process backends). */
export function compileFilter(filter: Filter): (meta: Metadata | undefined) => boolean {
  if ('and' in filter) {
    const parts = filter.and.map(compileFilter);
    return (m) => parts.every((p) => p(m));
  }
  if ('or' in filter) {
    const parts = filter.or.map(compileFilter);
    return (m) => parts.some((p) => p(m));
  }
  if ('not' in filter) {
    const inner = compileFilter(filter.not);
    return (m) => !inner(m);
  }
  const { field, op, value } = filter;
  switch (op) {
    case 'eq':
      return (m) => (m?.[field] ?? null) === value;
    case 'ne':
      return (m) => (m?.[field] ?? null) !== value;
    case 'in': {
      const set = new Set(value as Scalar[]);
      return (m) => set.has(m?.[field] ?? null);
    }
    case 'nin': {
      const set = new Set(value as Scalar[]);
      return (m) => !set.has(m?.[field] ?? null);
    }
    default: {
      const cmp = CMP[op];
      return (m) => {
        const v = m?.[field];
        return v !== null && v !== undefined && typeof v === typeof value && cmp(v as number | string, value as number | string);
      };
    }
  }
}

const CMP: Record<'gt' | 'gte' | 'lt' | 'lte', (a: number | string, b: number | string) => boolean> = {
  gt: (a, b) => a > b,
  gte: (a, b) => a >= b,
  lt: (a, b) => a < b,
  lte: (a, b) => a <= b,
};
