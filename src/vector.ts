import { nlError } from './errors.ts';
import type { Vector } from './types.ts';

/**
 * Converts an edge value (JSON array, or a CSV cell holding a JSON array or space/comma separated
 * numbers) into a Float32Array of `dims` finite values. The one place vectors enter nearline.
 */
export function toVector(value: unknown, dims: number, what = 'vector'): Vector {
  let list: unknown = value;
  if (typeof value === 'string') {
    const s = value.trim();
    list = s.startsWith('[') ? safeJson(s) : s.length ? s.split(/[\s,]+/).map(Number) : [];
  }
  if (list instanceof Float32Array) list = Array.from(list);
  if (!Array.isArray(list)) throw nlError('NL_BAD_VECTOR', `${what}: expected an array of ${dims} numbers`);
  if (list.length !== dims) throw nlError('NL_DIMENSION_MISMATCH', dims, `${list.length} (${what})`);
  const out = new Float32Array(dims);
  for (let i = 0; i < dims; i++) {
    const x = list[i];
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw nlError('NL_BAD_VECTOR', `${what}: element ${i} is ${JSON.stringify(x) ?? String(x)}, not a finite number`);
    out[i] = x;
    if (!Number.isFinite(out[i])) throw nlError('NL_BAD_VECTOR', `${what}: element ${i} overflows float32`);
  }
  return out;
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** A vector a metric can index: cosine needs a direction, so an all-zero vector is refused there. */
export function checkIndexable(v: Vector, metric: string | undefined, what: string): void {
  if (metric === 'cosine' && v.every((x) => x === 0)) throw nlError('NL_BAD_VECTOR', `${what}: a zero vector has no cosine direction`);
}
