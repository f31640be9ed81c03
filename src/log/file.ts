import { constants, mkdirSync } from 'node:fs';
import { open, readdir, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { nlError, NearlineError } from '../errors.ts';
import { compactInWorker, encodeFrame, frames } from './frames.ts';
import type { Log, LogEntry, LogStats } from './types.ts';

/**
 * The active segment is opened with O_DSYNC where the platform has it: a write returns once its data is on
 * disk, so an append costs one trip to the thread pool instead of a write and then an fdatasync.
 */
const DSYNC: number | undefined = constants.O_DSYNC;
const APPEND = constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | (DSYNC ?? 0);

/*
 * The embedded log: one folder per source, segments named by the first offset they may hold.
 *
 *   LOCK                      the pid of the process that appends; others only read
 *   0000000000000001.log      frames: u32 payload length, u32 crc32(payload), payload (JSON)
 *   0000000000081234.log      the active segment: appends go here until it passes `segmentBytes`
 *
 * A frame is one append (or a page of a compaction): {"o": first offset | [offsets], "e": [[key, data], ...]}.
 * An append is acknowledged once its frame is on disk (O_DSYNC, or fdatasync); appends that arrive during a write
 * are written together and share the next one. A crash can leave a torn frame only at the end of the active
 * segment: opening for append cuts the file back to its last whole frame. A bad frame anywhere else is
 * corruption and is reported, never skipped.
 */

export interface FileLogOptions {
  /** Roll to a new segment once the active one passes this many bytes. Default 64 MiB. */
  segmentBytes?: number;
  /** Take the log's lock and append; otherwise open read-only. */
  writable?: boolean;
}

const SUFFIX = '.log';
const LOCK = 'LOCK';

interface Segment {
  base: number;
  /** Offset of its last entry; base - 1 while empty. */
  last: number;
  bytes: number;
  /** Written by a compaction: holds at most one entry per key. */
  compacted: boolean;
}

type Pending = { entries: Array<{ key: string; data: unknown }>; resolve: (first: number) => void; reject: (e: unknown) => void };

const segmentName = (base: number) => `${String(base).padStart(16, '0')}${SUFFIX}`;

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Whether a process of this host still exists (a lock or lease it left behind is not stale). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Folders this process appends to: a second writer in the same process would interleave frames. */
const writers = new Set<string>();

async function lock(dir: string, name: string): Promise<void> {
  const path = join(dir, LOCK);
  if (writers.has(dir)) throw nlError('NL_LOG_LOCKED', name, `this process (pid ${process.pid})`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.sync();
      await fh.close();
      writers.add(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) throw nlError('NL_LOG_LOCKED', name, `process ${pid}`);
      // The holder died (kill -9 leaves its lock behind), or the lock is our own from an earlier life of this pid.
      await rm(path, { force: true });
    }
  }
  throw nlError('NL_LOG_LOCKED', name, 'another process that keeps taking it');
}

export async function openFileLog(dir: string, name: string, opts: FileLogOptions = {}): Promise<Log> {
  const root = resolve(dir);
  const writable = opts.writable ?? false;
  const segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
  if (writable) {
    mkdirSync(root, { recursive: true });
    await lock(root, name);
  }

  const listNames = async () =>
    (await readdir(root).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? [] : Promise.reject(e)))).filter((f) => /^\d{16}\.log$/.test(f)).sort();

  // Scan every segment once: the end offset, each segment's range, and a torn tail to cut.
  const segments: Segment[] = [];
  const names = await listNames();
  for (let i = 0; i < names.length; i++) {
    const path = join(root, names[i]);
    const buf = await readFile(path);
    const seg: Segment = { base: Number(names[i].slice(0, 16)), last: Number(names[i].slice(0, 16)) - 1, bytes: 0, compacted: false };
    const it = frames(buf);
    let r = it.next();
    for (; !r.done; r = it.next()) seg.last = r.value.offsets[r.value.offsets.length - 1] ?? seg.last;
    const { end, torn } = r.value;
    const isLast = i === names.length - 1;
    if (torn && !isLast) throw nlError('NL_LOG_CORRUPT', name, `${names[i]} has a bad frame at byte ${end} before the active segment`);
    if (torn && writable) {
      const fh = await open(path, 'r+');
      await fh.truncate(end);
      await fh.sync();
      await fh.close();
    }
    seg.bytes = end;
    segments.push(seg);
  }

  let endOffset = segments.length ? segments[segments.length - 1].last : 0;
  if (endOffset < 0) endOffset = 0;
  let active: FileHandle | undefined;
  let closed = false;
  let broken: Error | undefined;
  let queue: Pending[] = [];
  let flushing: Promise<void> | null = null;
  const kick = () => {
    flushing ??= flush().finally(() => {
      flushing = null;
      if (queue.length) kick();
    });
  };
  let compacting = false;
  const stats = { appended: 0, syncs: 0, compactions: 0 };

  async function openActive(): Promise<FileHandle> {
    if (active) return active;
    if (!segments.length) {
      segments.push({ base: endOffset + 1, last: endOffset, bytes: 0, compacted: false });
      active = await open(join(root, segmentName(endOffset + 1)), APPEND);
      await syncDir(root);
    } else {
      active = await open(join(root, segmentName(segments[segments.length - 1].base)), APPEND);
    }
    return active;
  }

  async function roll(): Promise<void> {
    await active?.close();
    active = undefined;
    segments.push({ base: endOffset + 1, last: endOffset, bytes: 0, compacted: false });
    active = await open(join(root, segmentName(endOffset + 1)), APPEND);
    await syncDir(root);
  }

  async function flush(): Promise<void> {
    while (queue.length) {
      const batch = queue;
      queue = [];
      try {
        if (broken) throw broken;
        let fh = await openActive();
        if (segments[segments.length - 1].bytes >= segmentBytes) {
          await roll();
          fh = active!;
        }
        let next = endOffset + 1;
        const firsts: number[] = [];
        const bufs = batch.map((p) => {
          firsts.push(next);
          const buf = encodeFrame(
            next,
            p.entries.map((e) => [e.key, e.data]),
          );
          next += p.entries.length;
          return buf;
        });
        const seg = segments[segments.length - 1];
        const data = Buffer.concat(bufs);
        try {
          await fh.write(data, 0, data.length, seg.bytes);
          if (DSYNC === undefined) await fh.datasync();
        } catch (e) {
          // Cut back whatever part was written, so the next frame starts where the reader expects one.
          await fh
            .truncate(seg.bytes)
            .catch((te: Error) => (broken = new NearlineError('NL_LOG_CORRUPT', [name, `cannot cut a failed append: ${te.message}`])));
          throw e;
        }
        seg.bytes += data.length;
        seg.last = next - 1;
        endOffset = next - 1;
        stats.syncs++;
        batch.forEach((p, i) => {
          stats.appended += p.entries.length;
          p.resolve(firsts[i]);
        });
      } catch (e) {
        for (const p of batch) p.reject(e instanceof NearlineError ? e : nlError('NL_INTERNAL', `log ${name}: append failed: ${(e as Error).message}`));
      }
    }
  }

  async function* read(after: number): AsyncGenerator<LogEntry> {
    const limit = writable ? endOffset : Infinity;
    let cursor = after;
    let list = await listNames();
    const startIndex = (l: string[]) => {
      let idx = 0;
      for (let i = 0; i < l.length; i++) if (Number(l[i].slice(0, 16)) <= cursor + 1) idx = i;
      return idx;
    };
    let i = startIndex(list);
    while (i < list.length && cursor < limit) {
      let buf: Buffer;
      try {
        buf = await readFile(join(root, list[i]));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        // A compaction replaced it: the compacted segment holds every entry still needed past the cursor.
        list = await listNames();
        i = startIndex(list);
        continue;
      }
      const it = frames(buf);
      let r = it.next();
      for (; !r.done; r = it.next()) {
        const { offsets, entries } = r.value;
        for (let j = 0; j < entries.length; j++) {
          const offset = offsets[j];
          if (offset <= cursor) continue;
          if (offset > limit) return;
          cursor = offset;
          yield { offset, key: entries[j][0], data: entries[j][1] };
        }
      }
      if (r.value.torn && i < list.length - 1) throw nlError('NL_LOG_CORRUPT', name, `${list[i]} has a bad frame at byte ${r.value.end}`);
      i++;
    }
  }

  async function compact(upTo: number): Promise<{ before: number; after: number } | null> {
    if (!writable) throw nlError('NL_LOG_LOCKED', name, 'this process opened it read-only');
    if (compacting) return null;
    // Sealed segments only: the active one is still being appended to.
    let n = 0;
    while (n < segments.length - 1 && segments[n].last <= upTo) n++;
    const run = segments.slice(0, n);
    if (!run.length || (run.length === 1 && run[0].compacted)) return null;
    compacting = true;
    try {
      const target = join(root, segmentName(run[0].base));
      const tmp = `${target}.compact`;
      // Decoding and encoding 64 MiB of frames is about a second of JS and its garbage: a worker thread does
      // it (and writes and fsyncs the file), so pushes and queries on this thread never wait for it.
      const bytes = await compactInWorker(
        run.map((seg) => join(root, segmentName(seg.base))),
        tmp,
      );
      // The rename is the commit: readers holding the old file keep reading it; the superseded ones go after.
      await rename(tmp, target);
      for (const seg of run.slice(1)) await rm(join(root, segmentName(seg.base)), { force: true });
      await syncDir(root);
      const before = run.reduce((s, x) => s + x.bytes, 0);
      segments.splice(0, run.length, { base: run[0].base, last: run[run.length - 1].last, bytes, compacted: true });
      stats.compactions++;
      return { before, after: bytes };
    } finally {
      compacting = false;
    }
  }

  return {
    name,
    writable,
    append(entries) {
      if (!writable) return Promise.reject(nlError('NL_LOG_LOCKED', name, 'this process opened it read-only'));
      if (closed) return Promise.reject(nlError('NL_OVERLOADED', `log ${name} is closed`));
      if (!entries.length) return Promise.resolve(endOffset + 1);
      return new Promise<number>((resolvePending, reject) => {
        queue.push({ entries, resolve: resolvePending, reject });
        kick();
      });
    },
    read,
    end: () => endOffset,
    compact,
    stats: (): LogStats => ({
      end: endOffset,
      bytes: segments.reduce((s, x) => s + x.bytes, 0),
      segments: segments.length,
      ...stats,
    }),
    async close() {
      if (closed) return;
      closed = true;
      while (flushing) await flushing;
      await active?.close();
      active = undefined;
      if (writable) {
        writers.delete(root);
        await rm(join(root, LOCK), { force: true });
      }
    },
  };
}
