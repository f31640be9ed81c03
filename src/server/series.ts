import type { Metrics, MetricFamily } from './metrics.ts';

/** The dashboard's charts: each a number per sample, computed from the same families /metrics shows. */
export const SERIES = [
  { key: 'qps', label: 'queries per second', unit: 'q/s', help: 'POST /v1/nearest and /v1/nearest/batch' },
  { key: 'p50', label: 'p50 latency', unit: 'ms', help: 'median of the queries in each interval' },
  { key: 'p99', label: 'p99 latency', unit: 'ms', help: 'from the latency histogram buckets' },
  { key: 'push', label: 'push rate', unit: 'rows/s', help: 'rows pushed and vectors written' },
  { key: 'logLag', label: 'log lag', unit: 'offsets', help: 'largest gap between a source log and a variant following it' },
  { key: 'snapshotAge', label: 'snapshot age', unit: 's', help: 'oldest applied write not yet in a snapshot' },
  { key: 'shadowOverlap', label: 'shadow overlap', unit: '', help: 'overlap@k of shadowed traffic with the alias' },
  { key: 'rss', label: 'resident memory', unit: 'MB', help: 'of this server process' },
  { key: 'loopLag', label: 'event loop lag', unit: 'ms', help: '99th percentile' },
] as const;

export type SeriesKey = (typeof SERIES)[number]['key'];

const QUERY_ROUTES = new Set(['/v1/nearest', '/v1/nearest/batch']);

interface Sample {
  t: number;
  families: Map<string, MetricFamily>;
}

export interface SeriesOptions {
  /** Seconds between samples. Default 5. */
  intervalSeconds?: number;
  /** Samples kept. Default 360 (half an hour at 5 s). */
  keep?: number;
}

/**
 * Samples the server's metrics every few seconds and keeps the derived numbers for the dashboard's charts,
 * so a chart opened now shows the last half hour. A value is null where its family is absent (a feature
 * of nearline this server does not run) or nothing happened in the interval (no query: no latency).
 */
export class SeriesRecorder {
  private readonly intervalMs: number;
  private readonly keep: number;
  private readonly times: number[] = [];
  private readonly values = new Map<SeriesKey, Array<number | null>>(SERIES.map((s) => [s.key, []]));
  private previous: Sample | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly metrics: Metrics,
    opts: SeriesOptions = {},
  ) {
    this.intervalMs = (opts.intervalSeconds ?? 5) * 1000;
    this.keep = opts.keep ?? 360;
  }

  start(): void {
    if (this.timer) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Takes one sample now (the timer calls this; tests may too). */
  async sample(): Promise<void> {
    const families = new Map((await this.metrics.snapshot()).map((f) => [f.name, f]));
    const now: Sample = { t: Date.now() / 1000, families };
    const prev = this.previous;
    this.previous = now;
    if (!prev) return;
    const dt = now.t - prev.t;
    if (dt <= 0) return;
    const derived = derive(prev, now, dt);
    this.times.push(Math.round(now.t * 1000) / 1000);
    for (const s of SERIES) {
      const list = this.values.get(s.key)!;
      list.push(derived[s.key]);
      if (list.length > this.keep) list.shift();
    }
    if (this.times.length > this.keep) this.times.shift();
  }

  /** uPlot's shape: one array of times (seconds) and one array of values per series. */
  read(): {
    intervalSeconds: number;
    times: number[];
    series: Array<{ key: SeriesKey; label: string; unit: string; help: string; values: Array<number | null> }>;
  } {
    return {
      intervalSeconds: this.intervalMs / 1000,
      times: [...this.times],
      series: SERIES.map((s) => ({ key: s.key, label: s.label, unit: s.unit, help: s.help, values: [...this.values.get(s.key)!] })),
    };
  }
}

function derive(prev: Sample, now: Sample, dt: number): Record<SeriesKey, number | null> {
  const latency = queryLatency(prev, now);
  const pushed = rate(prev, now, 'nearline_push_rows_total', dt);
  const rss = total(now, 'process_resident_memory_bytes');
  const loop = total(now, 'nodejs_eventloop_lag_p99_seconds');
  return {
    qps: latency.count / dt,
    p50: latency.count ? quantile(latency.buckets, latency.count, 0.5) * 1000 : null,
    p99: latency.count ? quantile(latency.buckets, latency.count, 0.99) * 1000 : null,
    push: pushed,
    logLag: logLag(now),
    snapshotAge: max(now, 'nearline_snapshot_age_seconds'),
    shadowOverlap: mean(
      now,
      [...now.families.keys()].find((n) => n.startsWith('nearline_shadow_overlap')),
    ),
    rss: rss === null ? null : rss / 1e6,
    loopLag: loop === null ? null : loop * 1000,
  };
}

/** Query count and latency buckets (cumulative, by upper bound) over the interval, for the query routes. */
function queryLatency(prev: Sample, now: Sample): { count: number; buckets: Array<[number, number]> } {
  const cumulative = (s: Sample) => {
    const byLe = new Map<number, number>();
    let count = 0;
    for (const v of s.families.get('nearline_http_request_duration_seconds')?.values ?? []) {
      if (!QUERY_ROUTES.has(String(v.labels.route))) continue;
      if (v.metricName?.endsWith('_bucket')) {
        const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
        byLe.set(le, (byLe.get(le) ?? 0) + v.value);
      } else if (v.metricName?.endsWith('_count')) count += v.value;
    }
    return { byLe, count };
  };
  const a = cumulative(prev);
  const b = cumulative(now);
  const buckets = [...b.byLe.entries()].map(([le, n]): [number, number] => [le, n - (a.byLe.get(le) ?? 0)]).sort((x, y) => x[0] - y[0]);
  return { count: Math.max(0, b.count - a.count), buckets };
}

/** Prometheus' histogram_quantile: linear within the bucket that holds the rank. */
export function quantile(buckets: Array<[number, number]>, count: number, q: number): number {
  const rank = q * count;
  let lower = 0;
  let below = 0;
  for (const [le, n] of buckets) {
    if (n >= rank) {
      if (!Number.isFinite(le)) return lower;
      const inBucket = n - below;
      return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
    }
    lower = le;
    below = n;
  }
  return lower;
}

function total(s: Sample, name: string): number | null {
  const f = s.families.get(name);
  if (!f || !f.values.length) return null;
  return f.values.reduce((acc, v) => acc + v.value, 0);
}

function max(s: Sample, name: string): number | null {
  const f = s.families.get(name);
  if (!f || !f.values.length) return null;
  return Math.max(...f.values.map((v) => v.value));
}

function mean(s: Sample, name: string | undefined): number | null {
  const f = name === undefined ? undefined : s.families.get(name);
  if (!f || !f.values.length) return null;
  return f.values.reduce((acc, v) => acc + v.value, 0) / f.values.length;
}

function rate(prev: Sample, now: Sample, name: string, dt: number): number | null {
  const a = total(prev, name);
  const b = total(now, name);
  return a === null || b === null ? null : Math.max(0, b - a) / dt;
}

/** The largest gap between a source log's end and what a variant following it has applied. */
function logLag(s: Sample): number | null {
  const ends = new Map((s.families.get('nearline_log_end_offset')?.values ?? []).map((v) => [String(v.labels.source), v.value]));
  const applied = s.families.get('nearline_variant_applied_offset')?.values ?? [];
  if (!ends.size || !applied.length) return null;
  let lag = 0;
  for (const v of applied) {
    const end = ends.get(String(v.labels.source));
    if (end !== undefined) lag = Math.max(lag, end - v.value);
  }
  return lag;
}
