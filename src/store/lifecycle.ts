import { nlError } from '../errors.ts';
import type { Hit, Vector } from '../types.ts';

/*
 * Model changes: comparing two variants of a feature, gates over the comparison, and the overlap measure that
 * shadow traffic reports. The store runs the queries; this file holds the arithmetic.
 */

export interface NormStats {
  mean: number;
  std: number;
  min: number;
  max: number;
}

export interface CompareReport {
  a: string;
  b: string;
  k: number;
  /** `sample`: entities queried by id in both variants; `queries`: the given query objects. */
  mode: 'sample' | 'queries';
  queries: number;
  /** Mean |top-k(A) ∩ top-k(B)| / k. */
  overlap: number;
  /** Mean recall@k of B's index answers against an exact scan of B. */
  recall: number;
  /** Mean Spearman correlation of the ranks the shared hits have in A and in B (queries with two or more shared). */
  rank_correlation: number | null;
  /** L2 norms of the sampled entities' stored vectors (sample mode). */
  norms: { a: NormStats; b: NormStats } | null;
}

export const GATE_METRICS = ['overlap', 'recall', 'rank_correlation'] as const;
type GateMetric = (typeof GATE_METRICS)[number];

export interface Gate {
  metric: GateMetric;
  op: '>=' | '<=' | '>' | '<';
  value: number;
}

/** `overlap>=0.6,recall>=0.95` -> gates; a malformed expression is NL_BAD_REQUEST. */
export function parseGate(expr: string): Gate[] {
  const parts = expr
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (!parts.length) throw nlError('NL_BAD_REQUEST', `gate ${JSON.stringify(expr)} is empty; write e.g. overlap>=0.6,recall>=0.95`);
  return parts.map((part) => {
    const m = /^([a-z_]+)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)$/.exec(part);
    if (!m) throw nlError('NL_BAD_REQUEST', `gate condition ${JSON.stringify(part)}: expected METRIC>=NUMBER with METRIC one of ${GATE_METRICS.join(', ')}`);
    const metric = m[1] === 'spearman' ? 'rank_correlation' : m[1];
    if (!(GATE_METRICS as readonly string[]).includes(metric))
      throw nlError('NL_BAD_REQUEST', `gate condition ${JSON.stringify(part)}: unknown metric ${m[1]} (have: ${GATE_METRICS.join(', ')})`);
    return { metric: metric as GateMetric, op: m[2] as Gate['op'], value: Number(m[3]) };
  });
}

/** The conditions a report fails, as readable strings; empty when every one holds. */
export function failedGates(report: CompareReport, gates: Gate[]): string[] {
  return gates.flatMap((g) => {
    const v = report[g.metric];
    const holds = v !== null && (g.op === '>=' ? v >= g.value : g.op === '<=' ? v <= g.value : g.op === '>' ? v > g.value : v < g.value);
    return holds ? [] : [`${g.metric} ${v === null ? 'n/a' : round(v)} is not ${g.op} ${g.value}`];
  });
}

/** Share of the first list's top k found in the second's top k. */
export function overlapAt(a: Hit[], b: Hit[], k: number): number {
  if (k === 0) return 1;
  const inB = new Set(b.slice(0, k).map((h) => h.id));
  return a.slice(0, k).filter((h) => inB.has(h.id)).length / k;
}

/** Spearman's rho over the ids both lists hold, by their ranks in each; null with fewer than two shared. */
export function rankCorrelation(a: Hit[], b: Hit[]): number | null {
  const rankB = new Map(b.map((h, i) => [h.id, i]));
  const shared = a.map((h, i) => [i, rankB.get(h.id)] as const).filter((p): p is readonly [number, number] => p[1] !== undefined);
  const n = shared.length;
  if (n < 2) return null;
  // Re-rank within the shared set so both sides are permutations of 0..n-1.
  const order = (xs: number[]) => {
    const sorted = [...xs].sort((x, y) => x - y);
    return xs.map((x) => sorted.indexOf(x));
  };
  const ra = order(shared.map((p) => p[0]));
  const rb = order(shared.map((p) => p[1]));
  const d2 = ra.reduce((s, r, i) => s + (r - rb[i]) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

export function normStats(vectors: Vector[]): NormStats {
  const norms = vectors.map((v) => Math.hypot(...v));
  const mean = norms.reduce((s, x) => s + x, 0) / Math.max(1, norms.length);
  const std = Math.sqrt(norms.reduce((s, x) => s + (x - mean) ** 2, 0) / Math.max(1, norms.length));
  return { mean: round(mean), std: round(std), min: round(Math.min(...norms)), max: round(Math.max(...norms)) };
}

/** Summarizes per-query answers of A, B and an exact scan of B. */
export function summarize(
  base: Pick<CompareReport, 'a' | 'b' | 'k' | 'mode'>,
  answers: Array<{ a: Hit[]; b: Hit[]; exactB: Hit[] }>,
  norms: CompareReport['norms'],
): CompareReport {
  const n = answers.length;
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  const overlap = mean(answers.map((q) => overlapAt(q.a, q.b, Math.min(base.k, Math.max(q.a.length, q.b.length)))));
  const recall = mean(answers.map((q) => (q.exactB.length ? overlapAt(q.exactB, q.b, Math.min(base.k, q.exactB.length)) : 1)));
  const rhos = answers.map((q) => rankCorrelation(q.a, q.b)).filter((r): r is number => r !== null);
  return { ...base, queries: n, overlap: round(overlap), recall: round(recall), rank_correlation: rhos.length ? round(mean(rhos)) : null, norms };
}

/** Running overlap of mirrored (shadow) queries per feature alias, flushed to the registry by the store. */
export class ShadowTally {
  private readonly pending = new Map<string, { feature: string; alias: string; variant: string; queries: number; overlapSum: number; errors: number }>();
  /** Since this process started, for /metrics. */
  readonly totals = new Map<string, { feature: string; alias: string; variant: string; queries: number; overlapSum: number; errors: number }>();

  add(feature: string, alias: string, variant: string, overlap: number | null): void {
    for (const map of [this.pending, this.totals]) {
      const key = `${feature}\0${alias}\0${variant}`;
      const t = map.get(key) ?? { feature, alias, variant, queries: 0, overlapSum: 0, errors: 0 };
      if (overlap === null) t.errors++;
      else {
        t.queries++;
        t.overlapSum += overlap;
      }
      map.set(key, t);
    }
  }

  /** What accumulated since the last take. */
  take(): Array<{ feature: string; alias: string; variant: string; queries: number; overlapSum: number; errors: number }> {
    const out = [...this.pending.values()];
    this.pending.clear();
    return out;
  }
}

const round = (x: number) => Math.round(x * 1e4) / 1e4;
