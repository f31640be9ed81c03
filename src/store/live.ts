import path from 'node:path';
import { nlError } from '../errors.ts';
import { logLocation, openLog, type LogLocation } from '../log/open.ts';
import type { Log, LogEntry } from '../log/types.ts';
import { prepare } from '../materialize/job.ts';
import { createSource } from '../providers/index.ts';
import { describeText, textColumns } from '../materialize/text.ts';
import type { EmbeddingModel } from '../providers/embedding/types.ts';
import type { OnlineStore } from '../providers/online/types.ts';
import type { VectorCollection, VectorRecord } from '../providers/vector/types.ts';
import type { EmbeddingFeatureRecord, FeatureRecord, Registry } from '../registry/registry.ts';
import { refOf as ref } from '../refs.ts';
import type { Metadata, OnlineValue, Vector } from '../types.ts';
import { checkIndexable } from '../vector.ts';
import { closest } from './columns.ts';

/*
 * Live data: rows pushed to a source by name. A push is validated against every variant built from the
 * source, its texts embedded with each live variant's model, then appended to the source's log (durable:
 * fsynced, group-committed) and applied to every live variant in log order before it is acknowledged.
 *
 * Log entries are keyed for compaction:
 *   r:<id>                 a source row {r: row, e?: {embedding key: base64 float32}}; `_deleted: true` removes the id
 *   v:<name@variant>:<id>  a vector written to one variant {f, id, v?: base64, m?: metadata, d?: true}
 * Every write is a full overwrite of one (variant, id), so replaying any suffix of the log in order, again or
 * for the first time, ends in the same state: recovery replays each variant from the offset its durable
 * state holds (a snapshot's manifest for hnsw, the registry for stores that are durable per write).
 *
 * Snapshots of in-process indexes are taken in the background, every `snapshotEntries` applied entries or
 * `snapshotSeconds`, never per request; then the log is compacted below the offset every live variant holds.
 */

/** Live-data settings of a store. */
export interface LiveOptions {
  /** Snapshot a variant once this many log entries were applied since its last snapshot. Default 50,000. */
  snapshotEntries?: number;
  /** ... or once its oldest unsnapshotted entry is this many seconds old. Default 30. */
  snapshotSeconds?: number;
  /** Rows (or vector writes) one push may carry. Default 1,000. */
  maxRows?: number;
  /** Largest row, as JSON bytes. Default 256 KiB. */
  maxRowBytes?: number;
  /** Roll to a new log segment past this many bytes. Default 64 MiB. */
  segmentBytes?: number;
  /** File logs live under this folder, one sub-folder per source. Default `<home>/log`. */
  dir?: string;
  /** `file` or a `redis://` URL (a log every node shares). Default: `NEARLINE_LOG`, else `file`. */
  log?: string;
}

/** What the live layer needs from the store. */
export interface LiveContext {
  registry: Registry;
  /** The variant's collection as the provider opened it (not followed: the live layer follows it). */
  collection(feature: FeatureRecord): Promise<VectorCollection>;
  online(feature: FeatureRecord): Promise<OnlineStore>;
  model(name: string, version: string): Promise<EmbeddingModel>;
  /** Vectors a push wrote to a variant, for its embedding health. */
  observe?(feature: FeatureRecord, vectors: Vector[], ids: string[]): void;
}

export interface PushResult {
  source: string;
  accepted: number;
  /** Log offset of the last row: every variant that has applied this offset holds the rows. */
  offset: number;
}

export interface VectorWrite {
  id: string;
  vector: Vector;
  metadata: Metadata;
}

/** What a push checks its rows against: the source's variants as the registry has them. */
interface PushPlan {
  /** Materialized variants: every row is validated against and applied to each. */
  live: FeatureRecord[];
  /** Each variant's entity key column, by variant reference. */
  keyOf: Map<string, string>;
  keys: string[];
  /** Columns a row may carry. */
  known: Set<string>;
}

interface Target {
  feature: FeatureRecord;
  ref: string;
  key: string;
  collection?: VectorCollection;
  store?: OnlineStore;
  /** Highest offset applied, and the highest known durable (snapshot, or registry for per-write-durable stores). */
  applied: number;
  durable: number;
  /** When the oldest applied-but-not-durable entry was applied (ms). */
  pendingSince: number;
  lastSnapshotAt: number;
  lastSnapshotSeconds: number;
}

export interface LiveStats {
  sources: Array<{
    source: string;
    end: number;
    bytes: number;
    segments: number;
    syncs: number;
    appended: number;
    compactions: number;
    writable: boolean;
    followErrors: number;
  }>;
  variants: Array<{
    feature: string;
    variant: string;
    source: string;
    applied: number;
    durable: number;
    lag: number;
    snapshotAgeSeconds: number;
    lastSnapshotSeconds: number;
  }>;
  pushedRows: number;
  /** Texts embedded while applying the log: entries carry their embeddings, so this stays 0 unless a row predates its variant's model. */
  applyEmbeddedTexts: number;
}

const DEFAULTS = { snapshotEntries: 50_000, snapshotSeconds: 30, maxRows: 1000, maxRowBytes: 256 * 1024, segmentBytes: 64 * 1024 * 1024 };
const REPLAY_PAGE = 2000;
/** How long a follower of a shared log waits for new entries per call (it wakes as soon as one arrives). */
const FOLLOW_WAIT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function indexable(v: Vector, metric: string | undefined): boolean {
  try {
    checkIndexable(v, metric, '');
    return true;
  } catch {
    return false;
  }
}

/** The embedding a text variant needs from a row: same model and same text (column, columns or template) means the same vector. */
function embeddingKey(f: FeatureRecord): string | undefined {
  if (!f.text) return undefined;
  return `${ref(f.text.model)}:${f.text.column ?? describeText(f.text)}`;
}

const encodeVector = (v: Vector) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');

function decodeVector(s: string): Vector {
  const buf = Buffer.from(s, 'base64');
  const out = new Float32Array(buf.length / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

async function entityKey(registry: Registry, f: FeatureRecord): Promise<string> {
  const entity = await registry.getEntity(f.entity);
  if (!entity) throw nlError('NL_ENTITY_NOT_FOUND', f.entity);
  return entity.key;
}

/** The columns a variant reads from a source row. */
function columnsOf(f: FeatureRecord): string[] {
  return [f.vector?.column, ...(f.text ? textColumns(f.text) : []), f.kind === 'scalar' ? f.column : undefined, ...f.metadata].filter(
    (c): c is string => typeof c === 'string',
  );
}

/** One source's log and the variants following it in this process. */
class LiveSource {
  readonly targets = new Map<string, Target>();
  private readonly following = new Map<string, Promise<Target>>();
  /** Applies and catch-ups run one at a time, in log order. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Appended entries waiting to be applied: concurrent pushes are applied together, one index write per variant. */
  private pending: Array<{ entries: LogEntry[]; resolve: () => void; reject: (e: unknown) => void }> = [];
  private draining = false;
  /** Texts this source's followers had to embed while applying entries. */
  embeddedTexts = 0;
  /** Failed attempts to follow a shared log (Redis away, an entry that would not apply); retried. */
  followErrors = 0;

  constructor(
    readonly name: string,
    public log: Log,
    private readonly ctx: LiveContext,
  ) {}

  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  async target(feature: FeatureRecord, sink: { collection?: VectorCollection; store?: OnlineStore } = {}): Promise<Target> {
    return {
      feature,
      ref: ref(feature),
      key: await entityKey(this.ctx.registry, feature),
      ...sink,
      applied: 0,
      durable: 0,
      pendingSince: 0,
      lastSnapshotAt: Date.now(),
      lastSnapshotSeconds: 0,
    };
  }

  /** Starts following a materialized variant: loads it and replays the log past what it holds. */
  follow(feature: FeatureRecord): Promise<Target> {
    const key = ref(feature);
    let p = this.following.get(key);
    if (!p) {
      p = this.serial(async () => {
        const t = await this.target(feature);
        if (feature.kind === 'embedding') {
          t.collection = await this.ctx.collection(feature);
          const offsets = t.collection.logOffsets?.();
          t.applied = offsets ? offsets.applied : await this.ctx.registry.getLogOffset(feature.name, feature.variant);
          t.durable = offsets ? offsets.durable : t.applied;
        } else {
          t.store = await this.ctx.online(feature);
          // A shared log's registry offset may be another node's: replay it all (it is compacted; writes are overwrites).
          t.applied = t.durable = this.log.shared ? 0 : await this.ctx.registry.getLogOffset(feature.name, feature.variant);
        }
        await this.replay(t, this.log.end());
        this.targets.set(key, t);
        return t;
      });
      this.following.set(key, p);
      p.catch(() => this.following.delete(key));
    }
    return p;
  }

  /**
   * Applies appended entries to every follower; resolves once they are applied. Entries are enqueued in offset
   * order (appends resolve in that order), and whatever queued while the previous apply ran goes in one batch.
   */
  applyAppended(entries: LogEntry[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ entries, resolve, reject });
      if (!this.draining) this.drain();
    });
  }

  private drain(): void {
    this.draining = true;
    void this.serial(async () => {
      while (this.pending.length) {
        const batch = this.pending.splice(0);
        const entries = batch.flatMap((b) => b.entries).sort((a, b) => a.offset - b.offset);
        // Other nodes' appends can fall between this node's (a shared log): then the log has the whole range.
        const gaps = entries.some((e, i) => i > 0 && e.offset !== entries[i - 1].offset + 1);
        try {
          for (const t of this.targets.values()) {
            if (gaps) {
              await this.replay(t, entries[entries.length - 1].offset);
              continue;
            }
            // A follower that fell behind (a failed apply) replays what it missed from the log first.
            if (t.applied < entries[0].offset - 1) await this.replay(t, entries[0].offset - 1);
            await this.apply(t, entries);
          }
          batch.forEach((b) => b.resolve());
        } catch (e) {
          batch.forEach((b) => b.reject(e));
        }
      }
    }).finally(() => {
      this.draining = false;
      if (this.pending.length) this.drain();
    });
  }

  /** Stops following a variant (it was dropped). */
  unfollow(key: string): void {
    this.targets.delete(key);
    this.following.delete(key);
  }

  isFollowing(key: string): boolean {
    return this.targets.has(key);
  }

  /**
   * Brings every follower up to `until` with one read of the log from the lowest applied offset: a shared
   * log's entries appended by other nodes. Entries a follower already applied are skipped.
   */
  advance(until: number): Promise<void> {
    return this.serial(async () => {
      const targets = [...this.targets.values()].filter((t) => t.applied < until);
      if (!targets.length) return;
      const from = Math.min(...targets.map((t) => t.applied));
      let page: LogEntry[] = [];
      const flush = async () => {
        for (const t of targets) await this.apply(t, page);
        page = [];
      };
      for await (const e of this.log.read(from)) {
        if (e.offset > until) break;
        page.push(e);
        if (page.length >= REPLAY_PAGE) await flush();
      }
      if (page.length) await flush();
      for (const t of targets) t.applied = Math.max(t.applied, until);
    });
  }

  /** The lowest offset a follower has applied (the log's end with none). */
  lowestApplied(): number {
    let low = this.log.end();
    for (const t of this.targets.values()) low = Math.min(low, t.applied);
    return low;
  }

  /** Applies the log's entries past `t.applied` (up to `until`) to one target, a page at a time. */
  async replay(t: Target, until: number): Promise<void> {
    if (t.applied >= until) return;
    let page: LogEntry[] = [];
    for await (const e of this.log.read(t.applied)) {
      if (e.offset > until) break;
      page.push(e);
      if (page.length >= REPLAY_PAGE) {
        await this.apply(t, page);
        page = [];
      }
    }
    if (page.length) await this.apply(t, page);
    // Entries compaction dropped or that name other variants still count as applied.
    t.applied = Math.max(t.applied, until);
  }

  /**
   * Applies entries (in offset order) to one target: the last write per id wins, as replaying one at a time
   * would; texts with no stored embedding for this variant's model are embedded now.
   */
  async apply(t: Target, entries: LogEntry[]): Promise<void> {
    const fresh = entries.filter((e) => e.offset > t.applied);
    if (!fresh.length) return;
    const last = fresh[fresh.length - 1].offset;
    const ops = new Map<string, { vector?: Vector; text?: string; metadata?: Metadata; value?: OnlineValue } | null>();
    const embedKey = embeddingKey(t.feature);
    for (const e of fresh) {
      if (e.key.startsWith('v:')) {
        const d = e.data as { f: string; id: string; v?: string; m?: Metadata; d?: boolean };
        if (d.f !== t.ref) continue;
        ops.delete(d.id);
        ops.set(d.id, d.d ? null : { vector: decodeVector(d.v!), metadata: d.m });
        continue;
      }
      const d = e.data as { r: Record<string, unknown>; e?: Record<string, string> };
      const rawId = d.r[t.key];
      if (rawId === undefined || rawId === null || rawId === '') continue;
      const id = String(rawId);
      ops.delete(id);
      if (d.r._deleted === true) {
        ops.set(id, null);
        continue;
      }
      const p = prepare({ line: e.offset, values: d.r, position: e.offset }, t.feature, t.key, false);
      // A row this variant cannot use (pushed before it existed, without its column) leaves its id absent.
      if ('reason' in p) ops.set(id, null);
      else
        ops.set(id, {
          vector: p.vector ?? (embedKey && d.e?.[embedKey] ? decodeVector(d.e[embedKey]) : undefined),
          text: p.text,
          metadata: p.metadata,
          value: p.value,
        });
    }
    if (t.collection) {
      // Data the index cannot take (a zero vector under cosine) leaves the id absent rather than stop the log.
      for (const [id, o] of ops) if (o?.vector && t.feature.kind === 'embedding' && !indexable(o.vector, t.feature.metric)) ops.set(id, null);
      const missing = [...ops.values()].filter((o): o is { text: string } & NonNullable<typeof o> => o !== null && !o.vector && o.text !== undefined);
      if (missing.length) {
        this.embeddedTexts += missing.length;
        const model = await this.ctx.model(t.feature.text!.model.name, t.feature.text!.model.version);
        const vectors = await model.embed(missing.map((o) => o.text));
        missing.forEach((o, i) => (o.vector = vectors[i]));
      }
      const deletes = [...ops].filter(([, o]) => o === null).map(([id]) => id);
      const upserts: VectorRecord[] = [...ops].filter(([, o]) => o !== null).map(([id, o]) => ({ id, vector: o!.vector!, metadata: o!.metadata ?? {} }));
      // The offset advances with the last write only, so a failure in between leaves it where replay must resume.
      if (deletes.length) await t.collection.delete(deletes, { logOffset: upserts.length ? t.applied : last });
      if (upserts.length || !deletes.length) await t.collection.upsert(upserts, { logOffset: last });
    } else {
      await t.store!.put(
        t.ref,
        [...ops].map(([id, o]) => [id, o === null ? null : (o.value ?? null)]),
      );
    }
    if (t.applied <= t.durable) t.pendingSince = Date.now();
    t.applied = last;
  }
}

/** The live sources of one store: pushes, vector writes, following, background snapshots. */
export class Live {
  private readonly sources = new Map<string, Promise<LiveSource>>();
  private readonly opts: Required<Omit<LiveOptions, 'dir' | 'log'>>;
  private readonly where: LogLocation;
  private timer: NodeJS.Timeout | undefined;
  private snapshotting: Promise<void> | null = null;
  private pushedRows = 0;
  private closed = false;
  /** Each source's push plan and the registry change token it was read under. */
  private readonly plans = new Map<string, { token: unknown; plan: PushPlan }>();
  /** Columns of each source variant's file (its header, or its first rows): fixed, as a source variant is. */
  private readonly fileColumns = new Map<string, Promise<string[]>>();

  constructor(
    home: string,
    private readonly ctx: LiveContext,
    opts: LiveOptions = {},
  ) {
    this.where = logLocation(opts.dir ?? path.join(home, 'log'), opts.log ?? process.env.NEARLINE_LOG);
    this.opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([k, v]) => k !== 'dir' && k !== 'log' && v !== undefined)) } as Required<
      Omit<LiveOptions, 'dir' | 'log'>
    >;
  }

  private source(name: string, writable = false): Promise<LiveSource> {
    let p = this.sources.get(name);
    if (!p) {
      p = openLog(this.where, name, { writable, segmentBytes: this.opts.segmentBytes }).then((log) => {
        const s = new LiveSource(name, log, this.ctx);
        if (log.shared) void this.followShared(s);
        return s;
      });
      this.sources.set(name, p);
      p.catch(() => this.sources.delete(name));
    }
    return p.then(async (s) => {
      if (writable && !s.log.writable) {
        await s.serial(async () => {
          if (s.log.writable) return;
          const log = await openLog(this.where, name, { writable: true, segmentBytes: this.opts.segmentBytes });
          await s.log.close();
          s.log = log;
          // Another process may have appended since this one read the log: catch every follower up.
          for (const t of s.targets.values()) await s.replay(t, log.end());
        });
      }
      if (writable) this.startTimer();
      return s;
    });
  }

  /**
   * Follows a log other nodes append to, for as long as the store is open: waits for entries past what every
   * variant here applied and applies them. A failure (Redis away) is retried after a pause.
   */
  private async followShared(s: LiveSource): Promise<void> {
    while (!this.closed) {
      try {
        const end = await s.log.wait!(s.lowestApplied(), FOLLOW_WAIT_MS);
        if (this.closed) return;
        if (s.lowestApplied() < end) await s.advance(end);
      } catch {
        s.followErrors++;
        await sleep(FOLLOW_WAIT_MS);
      }
    }
  }

  /**
   * How far each followed variant is behind its source's log (entries appended, by any node, not applied
   * here yet), with the log's end read fresh from a shared log.
   */
  async lag(): Promise<Array<{ feature: string; variant: string; source: string; applied: number; end: number; lag: number }>> {
    const out = [];
    for (const p of this.sources.values()) {
      const s = await p.catch(() => undefined);
      if (!s) continue;
      const end = s.log.shared ? await s.log.wait!(Infinity, 0) : s.log.end();
      for (const t of s.targets.values())
        out.push({ feature: t.feature.name, variant: t.feature.variant, source: s.name, applied: t.applied, end, lag: Math.max(0, end - t.applied) });
    }
    return out;
  }

  /** Takes every source's log for appending (a server does, so no other process can append under it). */
  async claim(): Promise<void> {
    for (const name of await this.ctx.registry.listSourceNames()) await this.source(name, true);
  }

  /** Makes a materialized variant current with its source's log before it is read; cheap once following. */
  async follow(feature: FeatureRecord): Promise<void> {
    if (feature.status !== 'materialized') return;
    const s = await this.source(feature.source.name);
    if (!s.isFollowing(ref(feature))) await s.follow(feature);
  }

  /** Forgets a dropped variant: pushes no longer reach it. */
  unfollow(feature: FeatureRecord): void {
    void this.sources.get(feature.source.name)?.then(
      (s) => s.unfollow(ref(feature)),
      () => undefined,
    );
  }

  /**
   * Brings a variant being built up to its source's current rows: applies the whole log (compacted: the latest
   * row per id, deletions included) over what the backfill wrote. Returns the offset its data now holds.
   */
  async catchUp(feature: FeatureRecord, sink: { collection?: VectorCollection; store?: OnlineStore }): Promise<number> {
    const s = await this.source(feature.source.name);
    const t = await s.target(feature, sink);
    await s.replay(t, s.log.end());
    return t.applied;
  }

  /**
   * What a push to `sourceName` checks rows against, read from the registry once and kept while its change token
   * holds (one `data_version` check per push on SQLite instead of a read per variant).
   */
  private async pushPlan(sourceName: string): Promise<PushPlan> {
    const { registry } = this.ctx;
    const token = registry.changeToken();
    const kept = this.plans.get(sourceName);
    if (token !== undefined && kept?.token === token) return kept.plan;
    if (!(await registry.listSourceVariants(sourceName)).length) throw nlError('NL_SOURCE_NOT_FOUND', sourceName);
    const features = await registry.featuresOfSource(sourceName);
    const live = features.filter((f) => f.status === 'materialized');
    // A row of any variant is keyed by its entity's key column.
    const keyOf = new Map(await Promise.all(features.map(async (f) => [ref(f), await entityKey(registry, f)] as const)));
    const keys = [...new Set(keyOf.values())];
    // A row may carry any column of the source (a variant built later may read it), and nothing else.
    const known = new Set([...keys, ...features.flatMap(columnsOf), ...(await this.sourceColumns(sourceName)), '_deleted']);
    const plan = { live, keyOf, keys, known };
    // Read after the token was taken: a change since then moves the token, and the next push reads again.
    if (token !== undefined) this.plans.set(sourceName, { token, plan });
    return plan;
  }

  /** Rows pushed to a source: validated against every variant, durable, applied everywhere, in that order. */
  async push(sourceName: string, rows: unknown[]): Promise<PushResult> {
    const { live, keyOf, keys, known } = await this.pushPlan(sourceName);
    if (!Array.isArray(rows) || rows.length === 0) throw nlError('NL_BAD_REQUEST', 'rows must be a non-empty array');
    if (rows.length > this.opts.maxRows) throw nlError('NL_LIMIT_EXCEEDED', `at most ${this.opts.maxRows} rows per push, got ${rows.length}`);
    const entries: Array<{ key: string; data: { r: Record<string, unknown>; e?: Record<string, string> } }> = [];
    const texts = new Map<string, { feature: EmbeddingFeatureRecord; rows: number[]; texts: string[]; features: FeatureRecord[]; ids: string[] }>();
    const written = new Map<string, { feature: FeatureRecord; vectors: Vector[]; ids: string[] }>();
    const wrote = (f: FeatureRecord, id: string, v: Vector) => {
      const w = written.get(ref(f)) ?? { feature: f, vectors: [], ids: [] };
      w.vectors.push(v);
      w.ids.push(id);
      written.set(ref(f), w);
    };
    rows.forEach((raw, i) => {
      const where = `rows[${i}]`;
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw nlError('NL_BAD_SOURCE_ROW', `${where}: expected an object`);
      const row = raw as Record<string, unknown>;
      if (JSON.stringify(row).length > this.opts.maxRowBytes) throw nlError('NL_LIMIT_EXCEEDED', `${where}: larger than ${this.opts.maxRowBytes} bytes`);
      for (const col of Object.keys(row)) {
        if (!known.has(col)) {
          const names = [...known].filter((c) => c !== '_deleted');
          const guess = closest(col, names);
          throw nlError(
            'NL_BAD_SOURCE_ROW',
            `${where}: column "${col}" is not a column of source ${sourceName}${guess ? ` (did you mean "${guess}"?)` : ''} (have: ${names.join(', ')})`,
          );
        }
      }
      if ('_deleted' in row && typeof row._deleted !== 'boolean') throw nlError('NL_BAD_SOURCE_ROW', `${where}: _deleted must be true or false`);
      let id: string | undefined;
      for (const key of keys) {
        const v = row[key];
        if ((typeof v !== 'string' && typeof v !== 'number') || v === '')
          throw nlError('NL_BAD_SOURCE_ROW', `${where}: key column "${key}" must be a non-empty string or number`);
        if (id !== undefined && id !== String(v)) throw nlError('NL_BAD_SOURCE_ROW', `${where}: the key columns ${keys.join(', ')} disagree`);
        id = String(v);
      }
      if (id === undefined) throw nlError('NL_BAD_SOURCE_ROW', `${where}: source ${sourceName} has no feature, so no key column`);
      if (row._deleted === true) {
        entries.push({ key: `r:${id}`, data: { r: Object.fromEntries(keys.map((k) => [k, row[k]]).concat([['_deleted', true]])) } });
        return;
      }
      for (const f of live) {
        const p = prepare({ line: i, values: row, position: 0 }, f, keyOf.get(ref(f))!, false);
        if ('reason' in p) throw nlError('NL_BAD_SOURCE_ROW', `${where}: ${ref(f)}: ${p.reason}`);
        if (p.vector && f.kind === 'embedding' && !indexable(p.vector, f.metric))
          throw nlError('NL_BAD_SOURCE_ROW', `${where}: ${ref(f)}: column "${f.vector!.column}": a zero vector has no cosine direction`);
        if (p.vector) wrote(f, p.id, p.vector);
        const ek = embeddingKey(f);
        if (ek && p.text !== undefined && f.kind === 'embedding') {
          const group = texts.get(ek) ?? { feature: f, rows: [], texts: [], features: [], ids: [] };
          if (!group.features.includes(f)) group.features.push(f);
          // Variants sharing a model and column share one embedding of the row.
          if (group.rows[group.rows.length - 1] !== entries.length) {
            group.ids.push(p.id);
            group.rows.push(entries.length);
            group.texts.push(p.text);
          }
          texts.set(ek, group);
        }
      }
      entries.push({ key: `r:${id}`, data: { r: row } });
    });
    // Embeddings are part of the entry: replay never re-embeds, and a model failure writes nothing.
    for (const [ek, g] of texts) {
      const model = await this.ctx.model(g.feature.text!.model.name, g.feature.text!.model.version);
      const vectors = await model.embed(g.texts);
      vectors.forEach((v, j) => {
        if (v.length !== g.feature.dims) throw nlError('NL_DIMENSION_MISMATCH', g.feature.dims, `${v.length} from model`);
        checkIndexable(v, g.feature.metric, `rows: ${ref(g.feature)}: the embedding of a text`);
        const data = entries[g.rows[j]].data;
        (data.e ??= {})[ek] = encodeVector(v);
        for (const f of g.features) wrote(f, g.ids[j], v);
      });
    }
    const offset = await this.append(sourceName, entries, live);
    for (const w of written.values()) this.ctx.observe?.(w.feature, w.vectors, w.ids);
    this.pushedRows += rows.length;
    return { source: sourceName, accepted: rows.length, offset };
  }

  private async sourceColumns(name: string): Promise<string[]> {
    const out: string[] = [];
    for (const spec of await this.ctx.registry.listSourceVariants(name)) {
      const key = ref(spec);
      let p = this.fileColumns.get(key);
      if (!p) {
        p = createSource(spec)
          .then((source) => source.columns())
          .then(
            (c) => c ?? [],
            () => [],
          );
        this.fileColumns.set(key, p);
      }
      out.push(...(await p));
    }
    return out;
  }

  /** Vector writes to one variant, through its source's log with the same guarantees as pushes. */
  async writeVectors(feature: FeatureRecord, upserts: VectorWrite[], deletes: string[]): Promise<number> {
    const r = ref(feature);
    const entries = [
      ...upserts.map((u) => ({ key: `v:${r}:${u.id}`, data: { f: r, id: u.id, v: encodeVector(u.vector), m: u.metadata } })),
      ...deletes.map((id) => ({ key: `v:${r}:${id}`, data: { f: r, id, d: true } })),
    ];
    return this.append(feature.source.name, entries, [feature]);
  }

  /** Appends durably, then applies to every live variant in log order; resolves with the last offset. */
  private async append(sourceName: string, entries: Array<{ key: string; data: unknown }>, live: FeatureRecord[]): Promise<number> {
    if (this.closed) throw nlError('NL_OVERLOADED', 'the store is closing');
    const s = await this.source(sourceName, true);
    // Variants published since the last push (by this process or another) are loaded and caught up first.
    for (const f of live) if (!s.isFollowing(ref(f))) await s.follow(f);
    const first = await s.log.append(entries);
    await s.applyAppended(entries.map((e, i) => ({ offset: first + i, key: e.key, data: e.data })));
    return first + entries.length - 1;
  }

  private startTimer(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.snapshotDue().catch(() => undefined), 1000);
    this.timer.unref();
  }

  /** Snapshots the variants that are due, records offsets, compacts the logs below what every variant holds. */
  snapshotDue(force = false): Promise<void> {
    this.snapshotting ??= (async () => {
      try {
        for (const p of this.sources.values()) {
          const s = await p.catch(() => undefined);
          if (!s?.log.writable) continue;
          for (const t of s.targets.values()) {
            if (t.applied <= t.durable) continue;
            const due = force || t.applied - t.durable >= this.opts.snapshotEntries || Date.now() - t.pendingSince >= this.opts.snapshotSeconds * 1000;
            if (!due) continue;
            const started = performance.now();
            if (t.collection?.logOffsets) {
              await t.collection.flush();
              t.durable = t.collection.logOffsets().durable;
            } else {
              await t.store?.flush?.();
              t.durable = t.applied;
            }
            t.lastSnapshotSeconds = (performance.now() - started) / 1000;
            t.lastSnapshotAt = Date.now();
            t.pendingSince = Date.now();
            await this.ctx.registry.setLogOffset(t.feature.name, t.feature.variant, t.durable);
            await this.ctx.registry.setFeatureRows(t.feature.name, t.feature.variant, t.collection ? await t.collection.count() : await t.store!.count(t.ref));
          }
          await s.log.compact(await this.compactableThrough(s));
        }
      } finally {
        this.snapshotting = null;
      }
    })();
    return this.snapshotting;
  }

  /** The lowest offset any materialized variant of the source holds durably: the log below it may be compacted. */
  private async compactableThrough(s: LiveSource): Promise<number> {
    let low = s.log.end();
    for (const f of await this.ctx.registry.featuresOfSource(s.name)) {
      if (f.status !== 'materialized') continue;
      const t = s.targets.get(ref(f));
      low = Math.min(low, t ? t.durable : await this.ctx.registry.getLogOffset(f.name, f.variant));
    }
    return low;
  }

  /** Offset of the last durable entry of a source's log (0: nothing pushed). */
  async logEnd(source: string): Promise<number> {
    return (await this.source(source)).log.end();
  }

  /** Logs and followers of this process, for metrics and `show`. */
  async stats(): Promise<LiveStats> {
    const out: LiveStats = { sources: [], variants: [], pushedRows: this.pushedRows, applyEmbeddedTexts: 0 };
    for (const p of this.sources.values()) {
      const s = await p.catch(() => undefined);
      if (!s) continue;
      out.sources.push({ source: s.name, writable: s.log.writable, followErrors: s.followErrors, ...s.log.stats() });
      out.applyEmbeddedTexts += s.embeddedTexts;
      for (const t of s.targets.values()) {
        out.variants.push({
          feature: t.feature.name,
          variant: t.feature.variant,
          source: s.name,
          applied: t.applied,
          durable: t.durable,
          lag: Math.max(0, s.log.end() - t.applied),
          snapshotAgeSeconds: t.applied > t.durable ? (Date.now() - t.pendingSince) / 1000 : 0,
          lastSnapshotSeconds: t.lastSnapshotSeconds,
        });
      }
    }
    return out;
  }

  /** Snapshots what this process applied (graceful shutdown), then closes the logs. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.snapshotting;
    const writable = [];
    for (const p of this.sources.values()) {
      const s = await p.catch(() => undefined);
      if (s) writable.push(s);
    }
    if (writable.some((s) => s.log.writable)) await this.snapshotDue(true);
    // A follower of a shared log may be applying: let it finish before the logs and indexes close.
    for (const s of writable) await s.serial(async () => undefined);
    for (const s of writable) await s.log.close();
    this.sources.clear();
  }
}
