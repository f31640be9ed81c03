import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Rows written since the last checkpoint that ask for the next one (SQLite's own default is 1,000 WAL pages). */
const CHECKPOINT_ROWS = 2000;
/** Or this long since the last one, with anything written. */
const CHECKPOINT_MS = 1000;

// The worker's whole program: its own connection to the file, one PASSIVE checkpoint per message.
const PROGRAM = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 5000');
parentPort.on('message', (id) => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ id });
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});
`;

/**
 * Checkpoints a WAL database from a worker thread of its own, so the thread that writes never stalls on one.
 * Left to SQLite, the commit that takes the WAL past 1,000 pages copies them into the database and fsyncs it
 * before it returns: tens of milliseconds on the event loop, every second or so under a steady push load.
 * The writing connection turns its automatic checkpoints off (`wal_autocheckpoint = 0`) and calls `wrote()`
 * after each commit; a checkpoint runs beside it once enough rows (or time) have gone by, and `flush()` runs
 * one and waits for it. A PASSIVE checkpoint never blocks the writer: frames appended meanwhile wait for the
 * next one.
 */
export class Checkpointer {
  private worker: Worker | undefined;
  private next = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private rows = 0;
  private last = Date.now();
  private inflight: Promise<void> | undefined;

  private closed = false;

  /** `lost`: the worker ended on its own (not by `close`); the caller takes SQLite's own checkpoints back. */
  constructor(
    private readonly path: string,
    private readonly lost: () => void,
  ) {}

  /** Starts the worker; false when none can be had here (the caller keeps SQLite's own checkpoints then). */
  start(): boolean {
    try {
      const module = createRequire(import.meta.url).resolve('better-sqlite3');
      const worker = new Worker(PROGRAM, { eval: true, workerData: { module, path: this.path } });
      worker.unref();
      worker.on('message', (m: { id: number; error?: string }) => {
        const w = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (m.error === undefined) w?.resolve();
        else w?.reject(new Error(m.error));
      });
      const fail = (e: Error) => {
        for (const w of this.waiting.values()) w.reject(e);
        this.waiting.clear();
        if (!this.worker) return;
        this.worker = undefined;
        if (!this.closed) this.lost();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`checkpoint worker exited with ${code}`)));
      this.worker = worker;
      return true;
    } catch {
      return false;
    }
  }

  /** `n` rows were committed: starts a checkpoint in the background when one is due. */
  wrote(n: number): void {
    this.rows += n;
    if (this.inflight || (this.rows < CHECKPOINT_ROWS && Date.now() - this.last < CHECKPOINT_MS)) return;
    void this.checkpoint().catch(() => undefined);
  }

  /** Runs a checkpoint (after the one in flight) and resolves once every commit so far is in the database file. */
  async checkpoint(): Promise<void> {
    if (this.inflight) await this.inflight.catch(() => undefined);
    const worker = this.worker;
    if (!worker) throw new Error('the checkpoint worker is not running');
    this.rows = 0;
    this.last = Date.now();
    const id = this.next++;
    this.inflight = new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage(id);
    }).finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Whether checkpoints run in the worker (false once it ended). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inflight?.catch(() => undefined);
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }
}
