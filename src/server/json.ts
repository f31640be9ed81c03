import type { Hit, OnlineValue } from '../types.ts';

/** The one place vectors leave as JSON: Float32Array -> number[]. */
export function featuresJson(features: Record<string, OnlineValue>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(features)) out[k] = v instanceof Float32Array ? Array.from(v) : v;
  return out;
}

export function hitsJson(hits: Hit[]): unknown[] {
  return hits.map((h) => ({
    id: h.id,
    score: h.score,
    ...(h.vector ? { vector: Array.from(h.vector) } : {}),
    ...(h.metadata ? { metadata: h.metadata } : {}),
    ...(h.features ? { features: featuresJson(h.features) } : {}),
  }));
}
