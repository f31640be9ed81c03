import type { Hit, Vector } from '../types.ts';

/**
 * Maximal marginal relevance: picks k of the candidates, trading relevance to the query
 * (weight `lambda`) against similarity to what is already picked (weight 1 - lambda).
 * Candidates must carry vectors; cosine similarity is used between candidates whatever the metric,
 * so both terms live on the same scale.
 */
export function mmr(query: Vector, candidates: Hit[], k: number, lambda: number): Hit[] {
  const pool = candidates.filter((h) => h.vector);
  const relevance = pool.map((h) => cosine(query, h.vector!));
  const picked: number[] = [];
  const maxSim = new Float64Array(pool.length).fill(-Infinity);
  const used = new Uint8Array(pool.length);
  while (picked.length < Math.min(k, pool.length)) {
    let best = -1;
    let bestScore = -Infinity;
    for (let i = 0; i < pool.length; i++) {
      if (used[i]) continue;
      const redundancy = picked.length ? maxSim[i] : 0;
      const score = lambda * relevance[i] - (1 - lambda) * redundancy;
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    used[best] = 1;
    picked.push(best);
    for (let i = 0; i < pool.length; i++) {
      if (!used[i]) maxSim[i] = Math.max(maxSim[i], cosine(pool[best].vector!, pool[i].vector!));
    }
  }
  return picked.map((i) => pool[i]);
}

function cosine(a: Vector, b: Vector): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}
