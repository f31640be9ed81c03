import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { nlError } from '../errors.ts';
import { checkTexts } from '../providers/embedding/common.ts';
import type { EmbeddingModel, ModelSpec } from '../providers/embedding/types.ts';
import type { Vector } from '../types.ts';

/** Default bound of the cache file's entries: 1 GiB, about 500,000 vectors of 512 dims. */
export const DEFAULT_CACHE_BYTES = 1024 ** 3;

/** What an entry costs besides its vector: key, model id, dims and LRU stamp, with SQLite's page overhead. */
const ENTRY_OVERHEAD = 96;

export interface EmbeddingCacheOptions {
  /** The SQLite file; created with its folder. */
  file: string;
  /** Most bytes of entries kept; the least recently used go first. Default DEFAULT_CACHE_BYTES. */
  maxBytes?: number;
}

/**
 * `NEARLINE_EMBED_CACHE_MB`: the cache bound in MiB, 0 for no cache. Undefined when unset, so the
 * store's default applies.
 */
export function cacheBytesFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.NEARLINE_EMBED_CACHE_MB;
  if (raw === undefined || raw === '') return undefined;
  const mb = Number(raw);
  if (!Number.isFinite(mb) || mb < 0)
    throw nlError('NL_BAD_REQUEST', `NEARLINE_EMBED_CACHE_MB must be a number of MiB from 0 (no cache), got ${JSON.stringify(raw)}`);
  return Math.floor(mb * 1024 * 1024);
}

/**
 * Vectors by (model, text) in one SQLite file, so re-materializing, resuming or building a new variant
 * with the same model never embeds a text twice. The key is sha256(model id + "\0" + text); each entry
 * keeps its model id and dims, and one that does not match what is asked (a hash collision, a torn or
 * foreign write) is a miss, never served. Bounded in bytes, evicting the least recently used entries.
 * Several processes may share the file (WAL).
 */
export class EmbeddingCache {
  readonly file: string;
  readonly maxBytes: number;
  private readonly db: Database.Database;
  private readonly select: Database.Statement;
  private readonly insert: Database.Statement;
  private readonly touch: Database.Statement;
  /** Bytes written since the total was last read: the total is summed again only when this could pass the bound. */
  private bytes: number;
  private clock: number;

  constructor(opts: EmbeddingCacheOptions) {
    this.file = opts.file;
    this.maxBytes = opts.maxBytes ?? DEFAULT_CACHE_BYTES;
    mkdirSync(path.dirname(this.file), { recursive: true });
    this.db = new Database(this.file);
    this.db.pragma('journal_mode = WAL');
    // A lost tail after a crash only costs re-embedding it.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`CREATE TABLE IF NOT EXISTS entries (
      key BLOB PRIMARY KEY,
      model TEXT NOT NULL,
      dims INTEGER NOT NULL,
      vector BLOB NOT NULL,
      used INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS entries_used ON entries(used);`);
    this.select = this.db.prepare('SELECT key, model, dims, vector FROM entries WHERE key IN (SELECT unhex(value) FROM json_each(?))');
    this.insert = this.db.prepare('INSERT OR REPLACE INTO entries (key, model, dims, vector, used) VALUES (?, ?, ?, ?, ?)');
    this.touch = this.db.prepare('UPDATE entries SET used = ? WHERE key = ?');
    this.bytes = this.totalBytes();
    this.clock = Math.max(Date.now(), (this.db.prepare('SELECT max(used) AS m FROM entries').get() as { m: number | null }).m ?? 0);
  }

  /** Bytes held by entries, as the bound counts them. */
  totalBytes(): number {
    const row = this.db.prepare(`SELECT coalesce(sum(length(vector)), 0) + count(*) * ${ENTRY_OVERHEAD} AS b FROM entries`).get() as { b: number };
    return row.b;
  }

  count(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM entries').get() as { n: number }).n;
  }

  /** The cached vector of each text under `model`, or undefined; entries of other dims are ignored. Marks hits as used. */
  get(model: string, dims: number, texts: readonly string[]): Array<Vector | undefined> {
    const keys = texts.map((t) => entryKey(model, t));
    const found = new Map<string, { model: string; dims: number; vector: Buffer }>();
    // json_each keeps one statement for any batch size; keys travel as hex.
    for (const row of this.select.all(JSON.stringify(keys.map((k) => k.toString('hex')))) as Array<{
      key: Buffer;
      model: string;
      dims: number;
      vector: Buffer;
    }>) {
      found.set(row.key.toString('hex'), row);
    }
    const used = this.tick();
    const hits: Buffer[] = [];
    const out = keys.map((k) => {
      const row = found.get(k.toString('hex'));
      if (!row || row.model !== model || row.dims !== dims || row.vector.length !== dims * 4) return undefined;
      hits.push(k);
      // Copied out of SQLite's buffer, which is not 4-byte aligned.
      return new Float32Array(new Uint8Array(row.vector).buffer);
    });
    if (hits.length) this.db.transaction(() => hits.forEach((k) => this.touch.run(used, k)))();
    return out;
  }

  /** Stores vectors of texts under `model` in one transaction, then evicts down to the bound. */
  put(model: string, texts: readonly string[], vectors: readonly Vector[]): void {
    if (!texts.length) return;
    const used = this.tick();
    this.db.transaction(() => {
      texts.forEach((t, i) => {
        const v = vectors[i];
        this.insert.run(entryKey(model, t), model, v.length, Buffer.from(v.buffer, v.byteOffset, v.byteLength), used);
        this.bytes += v.byteLength + ENTRY_OVERHEAD;
      });
    })();
    if (this.bytes > this.maxBytes) this.evict();
  }

  /** Deletes the least recently used entries until the total is at most 90% of the bound. */
  private evict(): void {
    this.db.transaction(() => {
      let total = this.totalBytes();
      const target = Math.floor(this.maxBytes * 0.9);
      while (total > target) {
        const avg = total / Math.max(1, this.count());
        const n = Math.max(1, Math.ceil((total - target) / avg));
        this.db.prepare('DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY used LIMIT ?)').run(n);
        total = this.totalBytes();
        if (total === 0) break;
      }
      this.bytes = total;
    })();
  }

  /** A stamp that only grows within this process, so a batch's entries are all newer than the last one's. */
  private tick(): number {
    this.clock = Math.max(this.clock + 1, Date.now());
    return this.clock;
  }

  close(): void {
    this.db.close();
  }
}

function entryKey(model: string, text: string): Buffer {
  return createHash('sha256').update(model).update('\0').update(text).digest();
}

/**
 * What a cached vector depends on besides the text: the model files' sha256 and the settings that change
 * a vector (runtime, pooling, normalization, max tokens). Two versions over the same files with different
 * settings must not share entries.
 */
export function cacheModelId(sha256: string, spec: Pick<ModelSpec, 'runtime' | 'pooling' | 'normalize' | 'maxTokens'>): string {
  return createHash('sha256')
    .update(JSON.stringify([sha256, spec.runtime, spec.pooling, spec.normalize, spec.maxTokens]))
    .digest('hex');
}

/** A model that also says how many of the vectors it returned came from the cache. */
export interface CountingModel extends EmbeddingModel {
  embedCounted(texts: string[]): Promise<{ vectors: Vector[]; hits: number }>;
}

export function isCountingModel(model: EmbeddingModel): model is CountingModel {
  return typeof (model as Partial<CountingModel>).embedCounted === 'function';
}

/** `model` behind `cache`: only the texts missing from it are embedded, then stored. Repeated texts in one call are embedded once. */
export function withCache(model: EmbeddingModel, cache: EmbeddingCache, modelId: string): CountingModel {
  const embedCounted = async (texts: string[]): Promise<{ vectors: Vector[]; hits: number }> => {
    checkTexts(texts);
    const cached = cache.get(modelId, model.dims, texts);
    const missing = [...new Set(texts.filter((_, i) => !cached[i]))];
    if (!missing.length) return { vectors: cached as Vector[], hits: texts.length };
    // The model checks the texts (NL_BAD_TEXT) before anything is stored.
    const fresh = await model.embed(missing);
    cache.put(modelId, missing, fresh);
    const byText = new Map(missing.map((t, i) => [t, fresh[i]]));
    const given = new Set<string>();
    let hits = 0;
    const vectors = texts.map((t, i) => {
      if (cached[i]) {
        hits++;
        return cached[i]!;
      }
      // A text repeated in the call gets its own copy: callers may normalize vectors in place.
      const v = byText.get(t)!;
      if (given.has(t)) return v.slice();
      given.add(t);
      return v;
    });
    return { vectors, hits };
  };
  return {
    runtime: model.runtime,
    get dims() {
      return model.dims;
    },
    open: () => model.open(),
    close: () => model.close(),
    embed: async (texts) => (await embedCounted(texts)).vectors,
    embedCounted,
  };
}
