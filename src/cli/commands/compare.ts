import { readFileSync } from 'node:fs';
import { nlError } from '../../errors.ts';
import { failedGates, parseGate, type CompareReport } from '../../store/lifecycle.ts';
import type { Command } from './index.ts';
import { withStore } from './open.ts';

/** `--queries FILE` (JSON Lines of query objects) or `--sample N`, shared by compare and gated alias moves. */
export function compareInputs(values: Record<string, unknown>): { queries?: unknown[]; sample?: number; k?: number } {
  const out: { queries?: unknown[]; sample?: number; k?: number } = {};
  if (values.queries !== undefined && values.sample !== undefined) throw nlError('NL_BAD_REQUEST', 'give --queries or --sample, not both');
  if (values.queries !== undefined) {
    const file = values.queries as string;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw nlError('NL_BAD_REQUEST', `--queries ${file}: ${(e as Error).message}`);
    }
    out.queries = text
      .split('\n')
      .map((line, i) => [line, i + 1] as const)
      .filter(([line]) => line.trim())
      .map(([line, n]) => {
        try {
          const q = JSON.parse(line) as { query?: unknown };
          return q && typeof q === 'object' && 'query' in q ? q.query : q;
        } catch (e) {
          throw nlError('NL_BAD_REQUEST', `--queries ${file} line ${n}: ${(e as Error).message}`);
        }
      });
  }
  if (values.sample !== undefined) out.sample = int(values.sample, '--sample');
  if (values.k !== undefined) out.k = int(values.k, '--k');
  return out;
}

function int(v: unknown, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw nlError('NL_BAD_REQUEST', `${name} must be a positive integer`);
  return n;
}

export function formatReport(r: CompareReport): string {
  const lines = [
    `${r.a} vs ${r.b}: ${r.queries} ${r.mode === 'sample' ? 'sampled entities queried by id' : 'queries'}, k=${r.k}`,
    `  overlap@${r.k}          ${r.overlap}   (mean share of ${r.a}'s top ${r.k} also in ${r.b}'s)`,
    `  recall@${r.k}           ${r.recall}   (${r.b}'s index against an exact scan of ${r.b})`,
    `  rank correlation    ${r.rank_correlation ?? 'n/a'}   (Spearman, over the hits both share)`,
  ];
  if (r.norms) lines.push(`  norms ${r.a}: mean ${r.norms.a.mean} std ${r.norms.a.std}; ${r.b}: mean ${r.norms.b.mean} std ${r.norms.b.std}`);
  return lines.join('\n');
}

export const compare: Command = {
  summary: 'compare two variants of a feature: overlap@k, recall@k, rank correlation, norms; optional gate',
  usage: `usage: nearline compare FEATURE@A FEATURE@B [--queries FILE | --sample N] [--k 10] [--json] [--gate EXPR] [--home DIR]
  --sample N     query N entities both variants hold, by id in each (works across models and dims; default 1000)
  --queries FILE JSON Lines of query objects ({"vector": [...]}, {"id": ...}, {"text": ...}), run on both
  --gate EXPR    e.g. overlap>=0.6,recall>=0.95 (metrics: overlap, recall, rank_correlation); exit 1 if one fails`,
  options: { queries: { type: 'string' }, sample: { type: 'string' }, k: { type: 'string' }, json: { type: 'boolean' }, gate: { type: 'string' } },
  async run({ home, values, positionals }) {
    const [a, b] = positionals;
    if (!a || !b || positionals.length !== 2) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const gates = values.gate === undefined ? [] : parseGate(values.gate as string);
    const inputs = compareInputs(values);
    return withStore(home, async (store) => {
      const report = await store.compare(a, b, inputs);
      const failed = failedGates(report, gates);
      if (values.json) process.stdout.write(`${JSON.stringify({ ...report, ...(gates.length ? { gate: { passed: failed.length === 0, failed } } : {}) })}\n`);
      else process.stdout.write(`${formatReport(report)}\n`);
      if (failed.length) {
        process.stderr.write(`error NL_GATE_FAILED: ${failed.join('; ')}\n`);
        return 1;
      }
      return 0;
    });
  },
};
