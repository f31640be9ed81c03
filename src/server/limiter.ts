import { NearlineError } from '../errors.ts';

export interface LaneOptions {
  /** Tasks running at once. */
  concurrency: number;
  /** Tasks waiting beyond that; one more is refused with NL_OVERLOADED (503, Retry-After). */
  queue: number;
  /**
   * Let pending I/O run before each task starts. The in-process index searches on the JS thread, so a
   * heavy task that starts straight after another would keep requests that already arrived waiting behind both.
   */
  yieldBetween?: boolean;
}

/**
 * Admission control for one class of work: bounded concurrency and a bounded FIFO queue, so that
 * overload turns into fast 503s with Retry-After instead of unbounded latency and memory.
 */
export class Lane {
  readonly name: string;
  private readonly opts: LaneOptions;
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** Refused tasks since start, for metrics. */
  rejected = 0;

  constructor(name: string, opts: LaneOptions) {
    this.name = name;
    this.opts = opts;
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.opts.concurrency) {
      if (this.waiting.length >= this.opts.queue) {
        this.rejected++;
        throw new NearlineError('NL_OVERLOADED', [`the ${this.name} queue is full (${this.opts.queue} waiting); retry after a second`]);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      if (this.opts.yieldBetween) await new Promise<void>((resolve) => setImmediate(resolve));
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
