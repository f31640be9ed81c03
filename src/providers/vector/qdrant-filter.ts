import type { Schemas } from '@qdrant/js-client-rest';
import { nlError } from '../../errors.ts';
import type { Filter, Scalar } from '../../types.ts';

type QFilter = Schemas['Filter'];
type QCondition = Schemas['Condition'];

/**
 * Translates a validated nearline filter into Qdrant's. Semantics follow `compileFilter`: a missing or
 * null field equals null, `ne`/`nin` match it, and ranges compare numbers only (Qdrant has no string
 * ranges, so those are rejected rather than silently matching nothing).
 */
export function toQdrantFilter(filter: Filter): QFilter {
  const c = condition(filter);
  return 'must' in c || 'should' in c || 'must_not' in c ? (c as QFilter) : { must: [c] };
}

function condition(f: Filter): QCondition {
  if ('and' in f) return { must: f.and.map(condition) };
  if ('or' in f) return { should: f.or.map(condition) };
  if ('not' in f) return { must_not: [condition(f.not)] };
  const { field: key, op, value } = f;
  switch (op) {
    case 'eq':
      return equals(key, value as Scalar);
    case 'ne':
      return { must_not: [equals(key, value as Scalar)] };
    case 'in':
      return anyOf(key, value as Scalar[]);
    case 'nin':
      return { must_not: [anyOf(key, value as Scalar[])] };
    default:
      if (typeof value !== 'number') {
        throw nlError('NL_BAD_FILTER', `qdrant compares only numbers with ${op}, got ${key} ${op} ${JSON.stringify(value)}`);
      }
      return { key, range: { [op]: value } };
  }
}

function equals(key: string, v: Scalar): QCondition {
  // Qdrant's is_empty holds for a missing key, null and [], which is exactly nearline's "equals null".
  if (v === null) return { is_empty: { key } };
  // match.value takes strings, booleans and int64 only; other numbers become a closed range.
  if (typeof v === 'number' && !Number.isSafeInteger(v)) return { key, range: { gte: v, lte: v } };
  return { key, match: { value: v } };
}

function anyOf(key: string, values: Scalar[]): QCondition {
  const unique = [...new Set(values)];
  const strings = unique.filter((v): v is string => typeof v === 'string');
  const ints = unique.filter((v): v is number => typeof v === 'number' && Number.isSafeInteger(v));
  const parts: QCondition[] = [];
  if (strings.length) parts.push({ key, match: strings.length === 1 ? { value: strings[0] } : { any: strings } });
  if (ints.length) parts.push({ key, match: ints.length === 1 ? { value: ints[0] } : { any: ints } });
  for (const v of unique) {
    if (v === null || typeof v === 'boolean' || (typeof v === 'number' && !Number.isSafeInteger(v))) parts.push(equals(key, v));
  }
  // `in []` matches nothing: "empty and not empty" is false for every point, in conditions Qdrant always accepts.
  if (parts.length === 0) return { must: [{ is_empty: { key } }, { must_not: [{ is_empty: { key } }] }] };
  return parts.length === 1 ? parts[0] : { should: parts };
}
