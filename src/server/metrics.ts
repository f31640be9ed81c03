import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import client from 'prom-client';

type Labels = Record<string, string>;

/** A value read at scrape time. */
export type GaugeRead = () => Promise<Array<{ labels: Labels; value: number }>> | Array<{ labels: Labels; value: number }>;

/** One sample of a metric family, as prom-client reports it (`getMetricsAsJSON`). */
export interface MetricFamily {
  name: string;
  type: string;
  values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;
}

/**
 * A family whose values its owner keeps (a lane's counters, an index's size) and hands over when scraped.
 * Label names are whatever `read` returns, so callers need not declare them the way prom-client's own
 * metric classes require.
 */
class ReadAtScrape {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'gauge' | 'counter',
    private readonly read: GaugeRead,
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; values: Array<{ labels: Labels; value: number }>; aggregator: 'sum' }> {
    return { name: this.name, help: this.help, type: this.type, values: await this.read(), aggregator: 'sum' };
  }
}

let processRegistry: client.Registry | undefined;

/**
 * Process-wide series (resident memory, CPU seconds, heap, event loop lag, GC pauses), collected once per
 * process whatever number of servers it runs: they describe the process, not one server.
 */
function processMetrics(): client.Registry {
  if (!processRegistry) {
    processRegistry = new client.Registry();
    client.collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 10 });
  }
  return processRegistry;
}

/**
 * The server's Prometheus metrics, through prom-client, beside its default process metrics. Label values
 * come from routes and registered features only, never from raw client input, so cardinality stays bounded.
 */
export class Metrics {
  readonly registry = new client.Registry();
  readonly requests = new client.Histogram({
    name: 'nearline_http_request_duration_seconds',
    help: 'HTTP request latency by route, feature and status',
    labelNames: ['method', 'route', 'feature', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly errors = new client.Counter({
    name: 'nearline_http_errors_total',
    help: 'error responses by NL_* code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  private readonly loopDelay: IntervalHistogram;

  constructor() {
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    this.gauge('nearline_event_loop_delay_p99_seconds', 'event loop delay, 99th percentile since the last scrape', () => {
      const v = this.loopDelay.percentile(99) / 1e9;
      this.loopDelay.reset();
      return [{ labels: {}, value: v }];
    });
  }

  /** A value read at scrape time; `counter` for one that only grows (kept by its owner). Names are unique. */
  gauge(name: string, help: string, read: GaugeRead, type: 'gauge' | 'counter' = 'gauge'): void {
    this.registry.registerMetric(new ReadAtScrape(name, help, type, read) as unknown as client.Metric);
  }

  /** Prometheus text: nearline's series, then the process's. */
  async render(): Promise<string> {
    return `${await this.registry.metrics()}\n${await processMetrics().metrics()}`;
  }

  /** Every family as numbers, for the dashboard's history; the same values /metrics shows. */
  async snapshot(): Promise<MetricFamily[]> {
    const [own, proc] = await Promise.all([this.registry.getMetricsAsJSON(), processMetrics().getMetricsAsJSON()]);
    return [...own, ...proc] as unknown as MetricFamily[];
  }

  readonly contentType = client.register.contentType;

  close(): void {
    this.loopDelay.disable();
  }
}
