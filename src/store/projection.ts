/**
 * Principal component analysis to two dimensions, for the dashboard's map of a variant. Power iteration
 * on the centred sample (X^T X v without forming the d x d covariance), then deflation for the second
 * component: O(iterations · n · d), a few milliseconds for 2,000 vectors of 512 dims.
 */
export interface Projection {
  /** One [x, y] per input vector, in order. */
  points: Array<[number, number]>;
  /** Share of the sample's variance each component explains. */
  explained: [number, number];
}

export function pca2(vectors: ArrayLike<number>[], iterations = 100): Projection {
  const n = vectors.length;
  if (n === 0) return { points: [], explained: [0, 0] };
  const d = vectors[0].length;
  const mean = new Float64Array(d);
  for (const v of vectors) for (let j = 0; j < d; j++) mean[j] += v[j] / n;
  const x = vectors.map((v) => Float64Array.from({ length: d }, (_, j) => v[j] - mean[j]));
  let totalVariance = 0;
  for (const row of x) for (let j = 0; j < d; j++) totalVariance += row[j] * row[j];

  const components: Float64Array[] = [];
  const variances: number[] = [];
  for (let c = 0; c < 2; c++) {
    // A fixed start, not random: the same sample always gives the same map.
    let v = Float64Array.from({ length: d }, (_, j) => 1 + ((j * 7919 + c * 104729) % 13) / 13);
    orthogonalize(v, components);
    normalize(v);
    let eigen = 0;
    for (let it = 0; it < iterations; it++) {
      const next = new Float64Array(d);
      for (const row of x) {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += row[j] * v[j];
        for (let j = 0; j < d; j++) next[j] += dot * row[j];
      }
      orthogonalize(next, components);
      const norm = normalize(next);
      const converged = Math.abs(norm - eigen) <= 1e-9 * Math.max(1, norm);
      eigen = norm;
      v = next;
      if (converged || norm === 0) break;
    }
    components.push(v);
    variances.push(eigen);
  }
  const points = x.map((row): [number, number] => {
    let a = 0;
    let b = 0;
    for (let j = 0; j < d; j++) {
      a += row[j] * components[0][j];
      b += row[j] * components[1][j];
    }
    return [a, b];
  });
  const share = (v: number) => (totalVariance > 0 ? v / totalVariance : 0);
  return { points, explained: [share(variances[0]), share(variances[1])] };
}

function orthogonalize(v: Float64Array, basis: Float64Array[]): void {
  for (const b of basis) {
    let dot = 0;
    for (let j = 0; j < v.length; j++) dot += v[j] * b[j];
    for (let j = 0; j < v.length; j++) v[j] -= dot * b[j];
  }
}

function normalize(v: Float64Array): number {
  let s = 0;
  for (let j = 0; j < v.length; j++) s += v[j] * v[j];
  const norm = Math.sqrt(s);
  if (norm > 0) for (let j = 0; j < v.length; j++) v[j] /= norm;
  return norm;
}
