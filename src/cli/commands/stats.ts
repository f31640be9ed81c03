import { nlError } from '../../errors.ts';
import type { HealthReport, VariantComparison } from '../../store/health.ts';
import type { Command } from './index.ts';
import { toJson, withStore } from './open.ts';
import { formatRef } from '../../refs.ts';

export const stats: Command = {
  summary: "a variant's embedding health: norms, zero and duplicate vectors, drift of recent writes",
  usage: `usage: nearline stats FEATURE[@VARIANT] [--against FEATURE@OTHER] [--json] [--home DIR]
  The baseline is what materialization wrote; recent is a sliding window of the writes since. A variant is
  drifting when recent writes move the centroid by more than NEARLINE_DRIFT_CENTROID (cosine distance,
  default 0.05) or the mean norm by more than NEARLINE_DRIFT_NORM (relative, default 0.1), once there are
  NEARLINE_DRIFT_MIN_SAMPLES of them (default 100). Exits 3 when the variant is drifting.`,
  options: { against: { type: 'string' }, json: { type: 'boolean' } },
  async run({ home, values, positionals }) {
    const [ref] = positionals;
    if (!ref || positionals.length > 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    return withStore(home, async (store) => {
      const embedding = async (r: string) => {
        const f = await store.registry.resolveFeature(r);
        if (f.kind !== 'embedding') throw nlError('NL_UNSUPPORTED', `${r} is a ${f.kind} feature; stats are about embeddings`);
        return f;
      };
      const f = await embedding(ref);
      const report = store.health.report(f);
      const comparison = values.against === undefined ? undefined : store.health.compare(f, await embedding(values.against as string));
      if (values.json) process.stdout.write(toJson({ ...report, ...(comparison ? { comparison } : {}) }, 2) + '\n');
      else process.stdout.write(text(report, comparison));
      return report.drifting ? 3 : 0;
    });
  },
};

const fmt = (x: number, digits = 4) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;

function text(r: HealthReport, c?: VariantComparison): string {
  const t = r.thresholds;
  const lines = [
    `${formatRef(r.feature, r.variant)}  ${r.dims} dims  status ${r.status}${r.drifting ? '  (DRIFTING)' : ''}`,
    '',
    `            vectors      norm mean    norm std     zero    duplicates`,
    `baseline    ${String(r.baseline.count).padEnd(12)} ${fmt(r.baseline.normMean).padEnd(12)} ${fmt(r.baseline.normStd).padEnd(12)} ${String(r.baseline.zero).padEnd(7)} ${r.baseline.duplicates}`,
    `recent      ${String(r.recent.count).padEnd(12)} ${fmt(r.recent.normMean).padEnd(12)} ${fmt(r.recent.normStd).padEnd(12)} ${String(r.recent.zero).padEnd(7)} ${r.recent.duplicates}`,
    '',
    r.drift
      ? `drift of recent writes: centroid cosine distance ${fmt(r.drift.centroidDistance)} (threshold ${t.centroidDistance}), norm shift ${pct(r.drift.normShift)} (threshold ±${t.normShift * 100}%)${r.recent.count < t.minSamples ? `; judged from ${t.minSamples} writes on, ${r.recent.count} so far` : ''}`
      : 'drift of recent writes: none written since materialization',
    `centroid (first dims): [${r.baseline.centroid
      .slice(0, 8)
      .map((x) => fmt(x, 3))
      .join(', ')}${r.dims > 8 ? ', …' : ''}]`,
  ];
  if (!r.duplicatesTracked) lines.push('duplicates: no longer counted (too many vectors to keep hashes for)');
  if (c) {
    lines.push(
      '',
      `${c.a} vs ${c.b}: centroid cosine distance ${c.centroidDistance === null ? 'n/a (different dims)' : fmt(c.centroidDistance)}, norm shift ${pct(c.normShift)}`,
    );
    lines.push(`  ${c.a}: ${c.a_stats.count} vectors, norm ${fmt(c.a_stats.normMean)} ± ${fmt(c.a_stats.normStd)}`);
    lines.push(`  ${c.b}: ${c.b_stats.count} vectors, norm ${fmt(c.b_stats.normMean)} ± ${fmt(c.b_stats.normStd)}`);
  }
  return lines.join('\n') + '\n';
}
