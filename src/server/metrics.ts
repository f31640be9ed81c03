import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function num(x: number): string {
  return Number.isFinite(x) ? String(x) : x > 0 ? '+Inf' : x < 0 ? '-Inf' : 'NaN';
}

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels, by = 1): void {
    const key = labelText(labels);
    const cur = this.values.get(key);
    if (cur) cur.value += by;
    else this.values.set(key, { labels, value: by });
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${num(value)}`);
    return lines.join('\n');
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.series.values()) {
      this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: num(le) })} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      lines.push(`${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`);
      lines.push(`${this.name}_count${labelText(s.labels)} ${s.count}`);
    }
    return lines.join('\n');
  }
}

/** A value read when scraped. */
interface Gauge {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  read(): Promise<Array<{ labels: Labels; value: number }>> | Array<{ labels: Labels; value: number }>;
}

/**
 * The server's Prometheus metrics. Hand-written rather than prom-client: four metric families and a
 * text format are all the server needs. Label values come from routes and registered features only,
 * never from raw client input, so cardinality stays bounded.
 */
export class Metrics {
  readonly requests = new Histogram(
    'nearline_http_request_duration_seconds',
    'HTTP request latency by route, feature and status',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
  );
  readonly errors = new Counter('nearline_http_errors_total', 'error responses by NL_* code');
  private readonly gauges: Gauge[] = [];
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

  /** A value read at scrape time; `counter` for one that only grows (kept by its owner). */
  gauge(name: string, help: string, read: Gauge['read'], type: Gauge['type'] = 'gauge'): void {
    this.gauges.push({ name, help, read, type });
  }

  async render(): Promise<string> {
    const parts = [this.requests.render(), this.errors.render()];
    for (const g of this.gauges) {
      const lines = [`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} ${g.type}`];
      for (const { labels, value } of await g.read()) lines.push(`${g.name}${labelText(labels)} ${num(value)}`);
      parts.push(lines.join('\n'));
    }
    return `${parts.join('\n')}\n`;
  }

  close(): void {
    this.loopDelay.disable();
  }
}
