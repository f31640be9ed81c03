import { open as openFile, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import type { Metadata, Metric } from '../../../types.ts';
import type { Quantization } from '../types.ts';

/*
 * On-disk layout of one collection folder:
 *
 *   manifest.json        names the current generation; its rename is the commit point of a snapshot
 *   index-<gen>.hnsw     hnswlib's own index format (labels are dense integers)
 *   rows-<gen>.json      label -> string id (null where deleted)
 *   columns-<gen>.bin    metadata by column (columns.ts)
 *
 * and for an int8 collection (the graph then holds int8 codes):
 *
 *   vectors-<gen>.f32    the full-precision vectors, one row per write, appended (under an flock, so every
 *                        process reading the collection may append); <gen> is the generation that started
 *                        the file (a compaction starts a new one), later snapshots share it. Rows no slot
 *                        table names (written after the last snapshot) are dead until a compaction.
 *   slots-<gen>.bin      label -> row in the vectors file (native/src/full_vectors.h)
 *
 * In a folder several nodes publish to (NEARLINE_SNAPSHOTS), generation files also carry the publisher's
 * token (index-<gen>-<token>.hnsw), temp files too, and a manifest is only replaced by one holding a log
 * offset at least as high: the newest snapshot wins, and no node removes a file another may still be writing
 * or reading (files of other publishers go only once unnamed for `SHARED_GRACE_MS`).
 *
 * Format 1 kept the metadata as a JSON array in rows-<gen>.json and had no columns file; it still loads,
 * and the next snapshot writes format 2.
 */

export const MANIFEST = 'manifest.json';
export const FORMAT = 2;

export interface Manifest {
  format: number;
  generation: number;
  dims: number;
  metric: Metric;
  M: number;
  efConstruction: number;
  index: string;
  rows: string;
  /** Format 2 on. */
  columns?: string;
  /** The source log offset this snapshot contains (0: none); a reopen replays the log after it. */
  logOffset?: number;
  /** Absent: none. */
  quantization?: Quantization;
  /** int8: the vectors file and the slot table. */
  vectors?: string;
  slots?: string;
}

export interface RowsFile {
  ids: Array<string | null>;
  /** Format 1 only. */
  metadata?: Array<Metadata | null>;
}

/** Rows a snapshot encodes or copies per turn of the event loop: about a millisecond each. */
export const SLICE_ROWS = 16_384;

/**
 * The rows file's text, `{"ids":[...]}` as JSON.stringify writes it, built a slice of ids at a time with the
 * event loop free in between: a snapshot of a large collection would otherwise hold it for tens of milliseconds.
 */
export async function encodeRows(ids: Array<string | null>): Promise<string> {
  const parts: string[] = [];
  for (let at = 0; at < ids.length; at += SLICE_ROWS) {
    if (at > 0) await setImmediate();
    parts.push(JSON.stringify(ids.slice(at, at + SLICE_ROWS)).slice(1, -1));
  }
  return `{"ids":[${parts.join(',')}]}`;
}

/** Files of other publishers to a shared folder, unnamed by its manifest, are removed once this old. */
export const SHARED_GRACE_MS = 10 * 60_000;

/** Writes `data` (or lets `write` produce the file) to `path` so that a crash leaves either the old file or the new one. */
export async function writeAtomic(path: string, write: (tmp: string) => Promise<void>, tmp = `${path}.tmp`): Promise<void> {
  await write(tmp);
  await fsyncFile(tmp);
  await rename(tmp, path);
}

export async function fsyncFile(path: string): Promise<void> {
  const fh = await openFile(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function writeFileSynced(path: string, data: string | Uint8Array): Promise<void> {
  const fh = await openFile(path, 'w');
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
}

export async function syncDir(dir: string): Promise<void> {
  const fh = await openFile(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export async function readManifest(dir: string): Promise<Manifest | undefined> {
  return readFile(join(dir, MANIFEST), 'utf8').then(
    (s) => JSON.parse(s) as Manifest,
    (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)),
  );
}

/**
 * Deletes files no manifest names: older generations and temp files of an interrupted snapshot. In a shared
 * folder (`shared`: this publisher's token) only this publisher's own files go at once, others' once stale.
 */
export async function removeStale(dir: string, manifest: Manifest, shared?: string): Promise<void> {
  const keep = new Set([MANIFEST, manifest.index, manifest.rows, manifest.columns, manifest.vectors, manifest.slots]);
  for (const f of await readdir(dir)) {
    if (keep.has(f)) continue;
    if (shared !== undefined && !f.includes(`-${shared}.`)) {
      const age = await stat(join(dir, f)).then(
        (st) => Date.now() - st.mtimeMs,
        () => 0,
      );
      if (age < SHARED_GRACE_MS) continue;
    }
    await rm(join(dir, f), { force: true });
  }
}
