import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { NearlineError } from '../errors.ts';

export interface LaneOptions {
  /** Tasks running at once. */
  concurrency: number;
  /** Tasks waiting beyond that; one more is refused with NL_OVERLOADED (503, Retry-After). */
  queue: number;
  /**
   * Let pending I/O run before each task starts. Work that holds the JS thread (a filter evaluated over
   * every row) would otherwise run back to back while requests that already arrived wait behind it.
   */
  yieldBetween?: boolean;
  /**
   * While the lane given as `yieldTo` has work, the share of wall time this lane's tasks may take:
   * a task that ran d ms delays the next by d * (1 - share) / share, at most `maxPauseMs`. Unset: no pacing.
   */
  share?: number;
  /** Longest pause that pacing inserts, ms. Default 100. */
  maxPauseMs?: number;
}

/**
 * Admission control for one class of work: bounded concurrency and a bounded FIFO queue, so that
 * overload turns into fast 503s with Retry-After instead of unbounded latency and memory.
 */
export class Lane {
  readonly name: string;
  private readonly opts: LaneOptions;
  private readonly yieldTo: Lane | undefined;
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private notBefore = 0;
  /** Refused tasks since start, for metrics. */
  rejected = 0;

  constructor(name: string, opts: LaneOptions, yieldTo?: Lane) {
    this.name = name;
    this.opts = opts;
    this.yieldTo = yieldTo;
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
      if (this.opts.yieldBetween) await setImmediate();
      const { share } = this.opts;
      if (share !== undefined && this.yieldTo && this.yieldTo.active + this.yieldTo.queued > 0) {
        const wait = this.notBefore - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const started = performance.now();
      try {
        return await task();
      } finally {
        if (share !== undefined) {
          const ran = performance.now() - started;
          this.notBefore = performance.now() + Math.min((ran * (1 - share)) / share, this.opts.maxPauseMs ?? 100);
        }
      }
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
