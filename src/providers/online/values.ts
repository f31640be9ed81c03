import { nlError } from '../../errors.ts';
import type { OnlineValue } from '../../types.ts';

/** A row of a put after validation; the last value given for an id wins. */
export interface ValidatedPut {
  /** id -> value to write. */
  sets: Map<string, Exclude<OnlineValue, null>>;
  /** ids whose value is removed. */
  deletes: Set<string>;
}

export function checkFeatureKey(feature: unknown): asserts feature is string {
  if (typeof feature !== 'string' || feature.length === 0) {
    throw nlError('NL_BAD_REQUEST', `feature key must be a non-empty string, got ${describe(feature)}`);
  }
}

export function checkGetArgs(ids: unknown, features: unknown): void {
  if (!Array.isArray(ids)) throw nlError('NL_BAD_REQUEST', 'ids must be an array of strings');
  if (!Array.isArray(features)) throw nlError('NL_BAD_REQUEST', 'features must be an array of strings');
  for (const id of ids) checkId(id);
  for (const feature of features) checkFeatureKey(feature);
}

/**
 * Checks every row before anything is written, so bad input never leaves a partial write.
 * Rows are folded in order, so `[a, 1], [a, null]` deletes `a` like sequential writes would.
 */
export function validatePut(feature: unknown, rows: unknown): ValidatedPut {
  checkFeatureKey(feature);
  if (!Array.isArray(rows)) throw nlError('NL_BAD_REQUEST', `rows of ${feature} must be an array of [id, value]`);
  const sets = new Map<string, Exclude<OnlineValue, null>>();
  const deletes = new Set<string>();
  for (let i = 0; i < rows.length; i++) {
    const row: unknown = rows[i];
    if (!Array.isArray(row) || row.length !== 2) {
      throw nlError('NL_BAD_REQUEST', `row ${i} of ${feature} must be [id, value]`);
    }
    const [id, value] = row as [unknown, unknown];
    checkId(id);
    if (value === null) {
      sets.delete(id);
      deletes.add(id);
      continue;
    }
    checkValue(feature, i, id, value);
    deletes.delete(id);
    sets.set(id, value);
  }
  return { sets, deletes };
}

function checkId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length === 0) {
    throw nlError('NL_BAD_REQUEST', `id must be a non-empty string, got ${describe(id)}`);
  }
}

function checkValue(feature: string, row: number, id: string, value: unknown): asserts value is Exclude<OnlineValue, null> {
  const where = `${feature} row ${row} (id ${JSON.stringify(id)})`;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw nlError('NL_BAD_REQUEST', `${where}: ${value} is not a finite number`);
      return;
    case 'object':
      if (value instanceof Float32Array) {
        if (value.length === 0) throw nlError('NL_BAD_VECTOR', `${where}: vector is empty`);
        for (let j = 0; j < value.length; j++) {
          if (!Number.isFinite(value[j])) throw nlError('NL_BAD_VECTOR', `${where}: vector[${j}] is ${value[j]}`);
        }
        return;
      }
  }
  // Plain arrays are rejected on purpose: vectors are converted to Float32Array once, at the edges.
  throw nlError('NL_BAD_REQUEST', `${where}: unsupported value ${describe(value)} (expected string, finite number, boolean, Float32Array or null)`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return typeof value;
}
