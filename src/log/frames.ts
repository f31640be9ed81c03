import { open, readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';

/*
 * The file log's frames (file.ts): u32 payload length, u32 crc32(payload), payload (JSON
 * {"o": first offset | [offsets], "e": [[key, data], ...]}), and compaction, which a worker thread runs.
 */

const HEADER = 8;
/** Entries per frame a compaction writes. */
const COMPACT_FRAME_ENTRIES = 512;

export interface Frame {
  offsets: number[];
  entries: Array<[string, unknown]>;
}

export function encodeFrame(offsets: number | number[], entries: Array<[string, unknown]>): Buffer {
  const payload = Buffer.from(JSON.stringify({ o: offsets, e: entries }));
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32(payload), 4);
  payload.copy(out, HEADER);
  return out;
}

/**
 * Frames of a segment's bytes, in order. Stops at the first frame that is incomplete or fails its CRC and
 * reports where the whole frames end, so the caller decides whether that is a torn tail or corruption.
 */
export function* frames(buf: Buffer): Generator<Frame, { end: number; torn: boolean }> {
  let at = 0;
  while (at < buf.length) {
    if (buf.length - at < HEADER) return { end: at, torn: true };
    const len = buf.readUInt32LE(at);
    if (buf.length - at - HEADER < len) return { end: at, torn: true };
    const payload = buf.subarray(at + HEADER, at + HEADER + len);
    if (crc32(payload) !== buf.readUInt32LE(at + 4)) return { end: at, torn: true };
    let parsed: { o: number | number[]; e: Array<[string, unknown]> };
    try {
      parsed = JSON.parse(payload.toString('utf8'));
    } catch {
      return { end: at, torn: true };
    }
    const offsets = Array.isArray(parsed.o) ? parsed.o : parsed.e.map((_, i) => (parsed.o as number) + i);
    yield { offsets, entries: parsed.e };
    at += HEADER + len;
  }
  return { end: at, torn: false };
}

/**
 * Writes the latest entry of every key of `files` (segments, oldest first), in offset order, to `out` and
 * fsyncs it; returns its size. Pure file work: it runs in a worker thread (compactInWorker).
 */
export async function writeCompacted(files: string[], out: string): Promise<number> {
  const latest = new Map<string, { offset: number; data: unknown }>();
  for (const file of files) {
    for (const f of frames(await readFile(file))) f.entries.forEach(([key, data], j) => latest.set(key, { offset: f.offsets[j], data }));
  }
  const kept = [...latest.entries()].sort((a, b) => a[1].offset - b[1].offset);
  const bufs: Buffer[] = [];
  for (let at = 0; at < kept.length; at += COMPACT_FRAME_ENTRIES) {
    const page = kept.slice(at, at + COMPACT_FRAME_ENTRIES);
    bufs.push(
      encodeFrame(
        page.map(([, e]) => e.offset),
        page.map(([key, e]) => [key, e.data]),
      ),
    );
  }
  const data = Buffer.concat(bufs);
  const fh = await open(out, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return data.length;
}

/** `writeCompacted` in a worker thread of its own, started for it (compactions are rare) and ended after. */
export function compactInWorker(files: string[], out: string): Promise<number> {
  const here = import.meta.url;
  // From the TypeScript sources (tests, NEARLINE_FROM_SOURCE) the worker registers tsx first; dist/ runs the .js.
  const entry = new URL(here.endsWith('.ts') ? './compact-worker-source.mjs' : './compact-worker.js', here);
  return new Promise((resolve, reject) => {
    const worker = new Worker(entry, { workerData: { files, out } });
    let settled = false;
    worker.once('message', (m: { bytes?: number; error?: string }) => {
      settled = true;
      if (m.error !== undefined) reject(new Error(`log compaction: ${m.error}`));
      else resolve(m.bytes!);
    });
    worker.once('error', (e) => {
      settled = true;
      reject(e);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`log compaction worker exited with ${code}`));
    });
  });
}
