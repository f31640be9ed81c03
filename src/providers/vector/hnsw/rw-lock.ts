/**
 * Many concurrent readers or one writer. Readers are searches and inserts into new slots (which the addon's
 * searches walk safely beside); writers are what searches must not see half-done: resizes, deletes, in-place
 * updates.
 */
export class RwLock {
  private readers = 0;
  private writers = 0;
  private tail: Promise<void> = Promise.resolve();
  private busy: Promise<void> | null = null;
  private drained: (() => void) | null = null;

  async read<T>(fn: () => Promise<T>): Promise<T> {
    // Re-checked after every wake-up, so a reader never slips in between a queued writer's check and its work.
    while (this.busy) await this.busy;
    this.readers++;
    try {
      return await fn();
    } finally {
      if (--this.readers === 0) {
        const wake = this.drained;
        this.drained = null;
        wake?.();
      }
    }
  }

  /** Runs `fn` at once as a reader when no writer is queued or running; undefined (fn not run) otherwise. */
  readNow<T>(fn: () => T | undefined): T | undefined {
    if (this.busy) return undefined;
    this.readers++;
    try {
      return fn();
    } finally {
      if (--this.readers === 0) {
        const wake = this.drained;
        this.drained = null;
        wake?.();
      }
    }
  }

  write<T>(fn: () => Promise<T> | T): Promise<T> {
    this.writers++;
    const run = this.tail.then(async () => {
      while (this.readers > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      return fn();
    });
    const done = run
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        if (--this.writers === 0) this.busy = null;
      });
    this.tail = done;
    this.busy = done;
    return run;
  }
}

/** Runs tasks one at a time, in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
