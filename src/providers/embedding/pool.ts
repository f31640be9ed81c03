import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { NearlineError, nlError, providerError, type ErrorCode } from '../../errors.ts';
import type { Vector } from '../../types.ts';
import { checkTexts, modelLabel } from './common.ts';
import type { EmbeddingModel, ModelSpec } from './types.ts';

/** Most texts one worker gets in one message: concurrent small calls are merged up to this. */
const WORKER_BATCH = 64;

/**
 * `NEARLINE_EMBED_WORKERS`: threads that embed with runtimes that support workers (0 embeds on the main
 * thread). Default: the machine's cores.
 */
export function embedWorkersFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.NEARLINE_EMBED_WORKERS;
  if (raw === undefined || raw === '') return availableParallelism();
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 256)
    throw nlError('NL_BAD_REQUEST', `NEARLINE_EMBED_WORKERS must be a whole number of threads from 0 to 256, got ${JSON.stringify(raw)}`);
  return n;
}

/** What the worker reports: `ready` once its model is open, then one `done` per batch. */
export type WorkerMessage =
  { type: 'ready'; dims: number } | { type: 'done'; id: number; dims: number; data: Float32Array } | { type: 'failed'; id: number; error: SerializedError };

export interface SerializedError {
  code?: ErrorCode;
  message: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof NearlineError) return { code: e.code, message: e.message };
  return { message: e instanceof Error ? e.message : String(e) };
}

function reviveError(spec: ModelSpec, error: SerializedError): Error {
  if (!error.code) return providerError(modelLabel(spec), new Error(error.message));
  const e = new NearlineError(error.code);
  // The worker already formatted the message from the code's template.
  e.message = error.message;
  return e;
}

/**
 * The worker's entry: compiled JavaScript beside this file in dist/, or TypeScript run through tsx when
 * nearline runs from its sources (tests, the repository's CLI).
 */
function workerEntry(): URL {
  const here = import.meta.url;
  return new URL(here.endsWith('.ts') ? './worker-source.mjs' : './worker.js', here);
}

interface Job {
  texts: string[];
  resolve(vectors: Vector[]): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  /** Jobs sent in the message in flight, in the order their texts were concatenated. */
  busy?: { id: number; jobs: Job[] };
}

/**
 * A model run by `size` worker threads, each with its own copy, so embedding never blocks the event loop
 * and uses every core. Calls are split across idle workers, concurrent calls are merged into one batch
 * per worker, and each call's vectors come back in its texts' order. A worker that dies fails the calls it
 * held and is replaced.
 */
class PooledModel implements EmbeddingModel {
  readonly runtime: string;
  dims = 0;
  private slots: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly spec: ModelSpec,
    private readonly size: number,
  ) {
    this.runtime = spec.runtime;
  }

  async open(): Promise<void> {
    if (this.slots.length) return;
    this.closed = false;
    const started = Array.from({ length: this.size }, () => this.spawn());
    const results = await Promise.allSettled(started.map((s) => s.ready));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // Closed first, so the exits that follow do not spawn replacements.
      this.closed = true;
      this.slots = [];
      await Promise.all(started.map((s) => s.slot.worker.terminate()));
      throw failed.reason;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    const error = providerError(modelLabel(this.spec), new Error('model closed'));
    for (const job of this.queue.splice(0)) job.reject(error);
    for (const s of slots) for (const job of s.busy?.jobs ?? []) job.reject(error);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  async embed(texts: string[]): Promise<Vector[]> {
    checkTexts(texts);
    if (!this.slots.length) throw providerError(modelLabel(this.spec), new Error('model is not open'));
    if (!texts.length) return [];
    // One share per worker, so a large call keeps every core busy.
    const share = Math.min(WORKER_BATCH, Math.ceil(texts.length / this.slots.length));
    const parts: Array<Promise<Vector[]>> = [];
    for (let start = 0; start < texts.length; start += share) {
      const chunk = texts.slice(start, start + share);
      parts.push(new Promise<Vector[]>((resolve, reject) => this.queue.push({ texts: chunk, resolve, reject })));
    }
    this.pump();
    return (await Promise.all(parts)).flat();
  }

  private spawn(): { slot: Slot; ready: Promise<void> } {
    const worker = new Worker(workerEntry(), { workerData: { spec: this.spec } });
    const slot: Slot = { worker, ready: false };
    this.slots.push(slot);
    const ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (msg: WorkerMessage) => {
        if (msg.type === 'ready') {
          this.dims = msg.dims;
          slot.ready = true;
          resolve();
          this.pump();
        } else if (msg.type === 'failed' && msg.id === -1) reject(reviveError(this.spec, msg.error));
        else this.settle(slot, msg);
      });
      worker.on('error', (e) => this.lost(slot, e, reject));
      worker.on('exit', (code) => this.lost(slot, new Error(`embedding worker exited with code ${code}`), reject));
    });
    return { slot, ready };
  }

  /** A worker died: its calls fail with the cause, and a new worker takes its place. */
  private lost(slot: Slot, cause: Error, rejectOpen: (e: Error) => void): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const error = providerError(modelLabel(this.spec), cause);
    rejectOpen(error);
    for (const job of slot.busy?.jobs ?? []) job.reject(error);
    slot.busy = undefined;
    void slot.worker.terminate();
    if (this.closed || !slot.ready) return;
    this.spawn().ready.catch((e: Error) => {
      for (const job of this.queue.splice(0)) job.reject(e);
    });
  }

  private settle(slot: Slot, msg: WorkerMessage): void {
    const busy = slot.busy;
    if (!busy || msg.type === 'ready' || msg.id !== busy.id) return;
    slot.busy = undefined;
    if (msg.type === 'failed') {
      const error = reviveError(this.spec, msg.error);
      for (const job of busy.jobs) job.reject(error);
    } else {
      let row = 0;
      for (const job of busy.jobs) {
        const vectors: Vector[] = [];
        for (let j = 0; j < job.texts.length; j++, row++) vectors.push(msg.data.slice(row * msg.dims, (row + 1) * msg.dims));
        job.resolve(vectors);
      }
    }
    this.pump();
  }

  /** Hands queued calls to idle workers, several small calls to one worker at a time. */
  private pump(): void {
    for (const slot of this.slots) {
      if (!this.queue.length) return;
      if (!slot.ready || slot.busy) continue;
      const jobs = [this.queue.shift()!];
      let count = jobs[0].texts.length;
      while (this.queue.length && count + this.queue[0].texts.length <= WORKER_BATCH) {
        count += this.queue[0].texts.length;
        jobs.push(this.queue.shift()!);
      }
      const id = this.nextId++;
      slot.busy = { id, jobs };
      slot.worker.postMessage({ id, texts: jobs.flatMap((j) => j.texts) });
    }
  }
}

/** `spec`'s runtime in `size` worker threads (see PooledModel). */
export function createPooledModel(spec: ModelSpec, size: number): EmbeddingModel {
  if (!Number.isInteger(size) || size < 1) throw nlError('NL_BAD_REQUEST', `an embedding pool needs at least one worker, got ${size}`);
  return new PooledModel(spec, size);
}
