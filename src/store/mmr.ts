import type { Hit, Vector } from '../types.ts';

/**
 * Maximal marginal relevance (Carbonell and Goldstein, 1998): picks k of the candidates one at a time, each
 * maximising `lambda * sim(query, c) - (1 - lambda) * max over picked p of sim(c, p)`. `lambda` 1 is the plain
 * nearest-neighbour order, 0 pure diversity (after the first, most relevant hit). Cosine similarity is used for
 * both terms whatever the metric, so they live on the same scale. The result is in selection order: the first
 * hit is the most relevant, and scores need not decrease down the list. Candidates must carry vectors.
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
