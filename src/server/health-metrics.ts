import type { HealthReport } from '../store/health.ts';
import type { FeatureStore } from '../store/feature-store.ts';
import type { Metrics } from './metrics.ts';

/**
 * Embedding health in /metrics, per materialized embedding variant. One scrape reads each variant's
 * report once, however many families use it.
 */
export function registerHealthGauges(metrics: Metrics, store: FeatureStore): void {
  let cache: { at: number; reports: HealthReport[] } = { at: -Infinity, reports: [] };
  const reports = async () => {
    const t = performance.now();
    if (t - cache.at > 250) {
      const variants = (await store.registry.listFeatures()).filter((f) => f.kind === 'embedding' && f.status === 'materialized');
      cache = { at: t, reports: variants.map((f) => store.health.report(f)) };
    }
    return cache.reports;
  };
  const labels = (r: HealthReport) => ({ feature: r.feature, variant: r.variant });
  const perWindow = (value: (s: HealthReport['recent']) => number) => async () =>
    (await reports()).flatMap((r) => [
      { labels: { ...labels(r), window: 'baseline' }, value: value(r.baseline) },
      { labels: { ...labels(r), window: 'recent' }, value: value(r.recent) },
    ]);
  const perVariant = (value: (r: HealthReport) => number | null) => async () =>
    (await reports()).flatMap((r) => {
      const v = value(r);
      return v === null ? [] : [{ labels: labels(r), value: v }];
    });

  metrics.gauge(
    'nearline_embedding_vectors',
    'vectors observed: window="baseline" at materialization, "recent" the sliding window of writes since',
    perWindow((s) => s.count),
  );
  metrics.gauge(
    'nearline_embedding_norm_mean',
    'mean L2 norm of the vectors written, per window',
    perWindow((s) => s.normMean),
  );
  metrics.gauge(
    'nearline_embedding_norm_stddev',
    'standard deviation of the L2 norms, per window',
    perWindow((s) => s.normStd),
  );
  metrics.gauge(
    'nearline_embedding_zero_vectors',
    'all-zero vectors written, per window',
    perWindow((s) => s.zero),
  );
  metrics.gauge(
    'nearline_embedding_duplicate_vectors',
    'vectors written that equal one written before, per window',
    perWindow((s) => s.duplicates),
  );
  metrics.gauge(
    'nearline_embedding_drift_centroid_distance',
    'cosine distance between the centroid of recent writes and the baseline centroid (absent before any write)',
    perVariant((r) => r.drift?.centroidDistance ?? null),
  );
  metrics.gauge(
    'nearline_embedding_drift_norm_shift',
    'relative shift of the mean norm of recent writes from the baseline (absent before any write)',
    perVariant((r) => r.drift?.normShift ?? null),
  );
  metrics.gauge(
    'nearline_embedding_drifting',
    '1 when recent writes crossed a drift threshold (NEARLINE_DRIFT_*)',
    perVariant((r) => (r.drifting ? 1 : 0)),
  );
}
