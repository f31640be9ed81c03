/** Rows to records and back: the JSON a definition is stored as, compared canonically. */
import type { FeatureDef, ModelDef } from '../config.ts';
import type { FeatureRecord, ModelRecord, Row } from './records.ts';

export const now = () => new Date().toISOString();

/** Canonical JSON (sorted keys) so that equal definitions compare equal whatever their key order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
}

export function toModel(r: Row): ModelRecord {
  return { ...JSON.parse(r.spec), dims: r.dims, sha256: r.sha256, createdAt: r.created_at };
}

/** Records of rows a cached read shares (frozen): the same row gives the same (frozen) record, parsed once. */
const records = new WeakMap<Row, FeatureRecord>();

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

export function toFeature(r: Row): FeatureRecord {
  const shared = Object.isFrozen(r);
  const hit = shared ? records.get(r) : undefined;
  if (hit) return hit;
  const out: FeatureRecord = {
    ...JSON.parse(r.spec),
    status: r.dropped_at ? 'dropped' : r.status,
    rows: r.dropped_at ? 0 : r.rows,
    createdAt: r.created_at,
    materializedAt: r.materialized_at,
  };
  if (shared) records.set(r, deepFreeze(out));
  return out;
}

export function featureSpec(f: FeatureRecord): FeatureDef {
  const { status: _s, rows: _r, createdAt: _c, materializedAt: _m, ...spec } = f;
  return spec;
}

/** A registered model without what registration learned (dims, sha256): the runtime's spec. */
export function modelSpec(m: ModelRecord): ModelDef {
  const { dims: _d, sha256: _s, createdAt: _c, ...spec } = m;
  return spec;
}
