import { appendFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { isNearlineError, NearlineError, nlError } from '../errors.ts';
import type { EmbeddingModel } from '../providers/embedding/types.ts';
import type { OnlineStore } from '../providers/online/types.ts';
import type { ReadFrom, Source, SourceRow } from '../providers/sources/types.ts';
import type { VectorCollection, VectorRecord } from '../providers/vector/types.ts';
import type { FeatureRecord, Registry } from '../registry/registry.ts';
import { isCountingModel } from '../store/embedding-cache.ts';
import type { HealthMonitor } from '../store/health.ts';
import type { Metadata, OnlineValue, Scalar } from '../types.ts';
import { toVector } from '../vector.ts';
import { createProgress, type ProgressOptions } from './progress.ts';
import { buildText } from './text.ts';
import { refOf } from '../refs.ts';

/** What the job needs from the store: opened providers for one feature variant. */
export interface MaterializeContext {
  registry: Registry;
  collection(feature: FeatureRecord): Promise<VectorCollection>;
  dropData(feature: FeatureRecord): Promise<void>;
  online(feature: FeatureRecord): Promise<OnlineStore>;
  model(name: string, version: string): Promise<EmbeddingModel>;
  source(feature: FeatureRecord): Promise<{ source: Source; kind: string }>;
  /** Applies the rows pushed to the source (its log) over the backfill; returns the log offset now held. */
  catchUp(feature: FeatureRecord, sink: { collection?: VectorCollection; store?: OnlineStore }): Promise<number>;
  /** Embedding health: the vectors written here are the variant's baseline. */
  health?: HealthMonitor;
  /** Where a run lists every invalid row it skipped (JSON Lines: line, reason). */
  invalidReport(feature: FeatureRecord): string;
}

export interface MaterializeOptions {
  /** Continue an interrupted run from its last checkpoint. */
  resume?: boolean;
  /** Skip rows with a missing id, wrong dims or NaN (and report them) instead of failing on the first. */
  skipInvalid?: boolean;
  /**
   * With `skipInvalid`, the most invalid rows a run may skip and still publish: below 1 a fraction of the rows
   * read (0.05 = 5%), from 1 a count of rows. Default 0.01. More fails the run and publishes nothing.
   */
  maxInvalid?: number;
  /** Rows per write batch. Default 1000 for vectors and scalars, 128 for text. */
  batchSize?: number;
  /** Make writes durable and record a checkpoint at least this often, in rows. Default 50,000. */
  checkpointRows?: number;
  /** ... and in seconds. Default 10. */
  checkpointSeconds?: number;
  /** Progress display; `false` for none. */
  progress?: false | Partial<ProgressOptions>;
}

export interface MaterializeResult {
  feature: string;
  variant: string;
  status: 'done' | 'unchanged';
  rows: number;
  skipped: number;
  /** Texts this run took from the embedding cache instead of embedding them (text features; 0 otherwise). */
  cacheHits: number;
  /** Texts this run embedded with the model. */
  embedded: number;
  /** The source line a resumed run continued after. */
  resumedFrom?: number;
  /** The first invalid rows, with their line numbers (at most 10; every one is in `invalidReport`). */
  invalid: Array<{ line: number; reason: string }>;
  /** The file listing every invalid row skipped, when there were any. */
  invalidReport?: string;
  seconds: number;
}

export interface Prepared {
  id: string;
  vector?: Float32Array;
  text?: string;
  metadata?: Metadata;
  value?: OnlineValue;
}

const SHOWN_INVALID = 10;
export const DEFAULT_MAX_INVALID = 0.01;

/** `--max-invalid`: a fraction of the rows read (below 1) or a count (from 1). */
export function checkMaxInvalid(value: number): number {
  if (!Number.isFinite(value) || value < 0 || (value >= 1 && !Number.isInteger(value))) {
    throw nlError('NL_BAD_REQUEST', `max invalid must be a fraction of the rows from 0 to 1 (0.05 = 5%) or a whole number of rows, got ${value}`);
  }
  return value;
}

/**
 * Reads the source, embeds (if the feature has a model), writes to the provider, checkpoints.
 * Idempotent (writes are upserts by id) and resumable: a checkpoint is recorded only after the
 * provider made everything before it durable, so a resumed run re-reads at most one checkpoint's rows.
 */
export async function materialize(ctx: MaterializeContext, feature: FeatureRecord, opts: MaterializeOptions = {}): Promise<MaterializeResult> {
  const started = Date.now();
  const ref = refOf(feature);
  const maxInvalid = checkMaxInvalid(opts.maxInvalid ?? DEFAULT_MAX_INVALID);
  const { registry } = ctx;
  const base: Pick<MaterializeResult, 'feature' | 'variant' | 'invalid' | 'resumedFrom'> = { feature: feature.name, variant: feature.variant, invalid: [] };
  if (feature.status === 'materialized') {
    return { ...base, status: 'unchanged', rows: feature.rows, skipped: 0, cacheHits: 0, embedded: 0, seconds: 0 };
  }
  const state = await registry.getMaterialization(feature.name, feature.variant);
  const resuming = Boolean(opts.resume && state && state.status !== 'done' && state.position > 0);
  if (!resuming) {
    await ctx.dropData(feature);
    await registry.beginMaterialization(feature.name, feature.variant);
    ctx.health?.reset(feature);
  } else {
    await registry.resumeMaterialization(feature.name, feature.variant);
    // Health as of the last checkpoint, which is where the rows are read again from.
    ctx.health?.reload(feature);
  }
  const from: ReadFrom = resuming
    ? { position: state!.position, line: state!.line, ...(state!.cursor === undefined ? {} : { cursor: state!.cursor }) }
    : { position: 0, line: 0 };
  if (resuming) Object.assign(base, { resumedFrom: from.line });
  let rowsRead = resuming ? state!.rowsRead : 0;
  let skipped = resuming ? state!.rowsSkipped : 0;
  const report = new InvalidReport(ctx.invalidReport(feature), resuming);
  const tooMany = (atEnd: boolean) => (maxInvalid >= 1 ? skipped > maxInvalid : atEnd && skipped > Math.floor(maxInvalid * rowsRead));
  const limitText = () =>
    maxInvalid >= 1 ? `${maxInvalid} rows` : `${+(maxInvalid * 100).toFixed(4)}% of the rows read (${Math.floor(maxInvalid * rowsRead)} of ${rowsRead})`;

  const entity = await registry.getEntity(feature.entity);
  if (!entity) throw nlError('NL_ENTITY_NOT_FOUND', feature.entity);
  const { source, kind: sourceKind } = await ctx.source(feature);
  const textual = sourceKind === 'csv';
  const collection = feature.kind === 'embedding' ? await ctx.collection(feature) : undefined;
  const online = feature.kind === 'scalar' ? await ctx.online(feature) : undefined;
  const model = feature.text ? await ctx.model(feature.text.model.name, feature.text.model.version) : undefined;
  const batchSize = opts.batchSize ?? (model ? 128 : 1000);
  const checkpointRows = opts.checkpointRows ?? 50_000;
  const checkpointMs = (opts.checkpointSeconds ?? 10) * 1000;
  const progress =
    opts.progress === false
      ? undefined
      : createProgress({ label: `materialize ${ref}`, unit: model ? 'texts' : 'rows', total: await source.size(), ...opts.progress });

  let batch: Prepared[] = [];
  let batchEnd = from;
  let sinceCheckpoint = 0;
  let lastCheckpoint = Date.now();
  let cacheHits = 0;
  let embedded = 0;

  const writeBatch = async () => {
    if (!batch.length) return;
    if (collection) {
      if (model && feature.kind === 'embedding') {
        const texts = batch.map((r) => r.text!);
        const { vectors, hits } = isCountingModel(model) ? await model.embedCounted(texts) : { vectors: await model.embed(texts), hits: 0 };
        cacheHits += hits;
        embedded += texts.length - hits;
        vectors.forEach((v, i) => {
          if (v.length !== feature.dims) throw nlError('NL_DIMENSION_MISMATCH', feature.dims, `${v.length} from model`);
          batch[i].vector = v;
        });
      }
      await collection.upsert(batch.map((r): VectorRecord => ({ id: r.id, vector: r.vector!, ...(r.metadata ? { metadata: r.metadata } : {}) })));
      ctx.health?.observe(
        feature,
        batch.map((r) => r.vector!),
        batch.map((r) => r.id),
      );
    } else {
      await online!.put(
        ref,
        batch.map((r) => [r.id, r.value ?? null]),
      );
    }
    sinceCheckpoint += batch.length;
    batch = [];
    if (sinceCheckpoint >= checkpointRows || Date.now() - lastCheckpoint >= checkpointMs) await checkpoint();
  };
  const checkpoint = async () => {
    await collection?.flush();
    report.flush();
    await registry.checkpoint(feature.name, feature.variant, { ...batchEnd, rowsRead, rowsSkipped: skipped });
    ctx.health?.flush(feature);
    sinceCheckpoint = 0;
    lastCheckpoint = Date.now();
  };

  function tooManyInvalid(): NearlineError {
    report.flush();
    const first = base.invalid[0];
    return nlError(
      'NL_BAD_SOURCE_ROW',
      `${ref}: ${skipped} of ${rowsRead} rows read are invalid, more than --max-invalid allows (${limitText()}); nothing was published. ` +
        `${first ? `First: line ${first.line}: ${first.reason}. ` : ''}Every invalid row is listed in ${report.path}`,
    );
  }

  try {
    for await (const row of source.read(from)) {
      rowsRead++;
      const prepared = prepare(row, feature, entity.key, textual);
      if ('reason' in prepared) {
        if (!opts.skipInvalid) {
          throw nlError('NL_BAD_SOURCE_ROW', `${ref}: line ${row.line}: ${prepared.reason} (nothing was published; fix the source or pass --skip-invalid)`);
        }
        skipped++;
        report.add(row.line, prepared.reason);
        if (base.invalid.length < SHOWN_INVALID) base.invalid.push({ line: row.line, reason: prepared.reason });
        if (tooMany(false)) throw tooManyInvalid();
      } else {
        batch.push(prepared);
      }
      batchEnd = { position: row.position, line: row.line, ...(row.cursor === undefined ? {} : { cursor: row.cursor }) };
      if (batch.length >= batchSize) await writeBatch();
      progress?.update(rowsRead - skipped, row.position);
    }
    await writeBatch();
    if (tooMany(true)) throw tooManyInvalid();
    // The source's current rows are its file's rows overridden by the rows pushed to it.
    if (opts.progress !== false)
      (opts.progress?.stream ?? process.stderr).write(`materialize ${ref}: backfill done, catching up on the rows pushed to ${feature.source.name}\n`);
    const logOffset = await ctx.catchUp(feature, { collection, store: online });
    await checkpoint();
    const rows = collection ? await collection.count() : await online!.count(ref);
    await registry.finishMaterialization(feature.name, feature.variant, rows, logOffset);
    progress?.done(rows, `done${skipped ? `, ${skipped} invalid rows skipped` : ''}`);
    return {
      ...base,
      status: 'done',
      rows,
      skipped,
      cacheHits,
      embedded,
      ...(report.path ? { invalidReport: report.path } : {}),
      seconds: (Date.now() - started) / 1000,
    };
  } catch (e) {
    report.flush();
    const badRow = isNearlineError(e, 'NL_BAD_SOURCE_ROW') || isNearlineError(e, 'NL_DIMENSION_MISMATCH');
    // Bad data is final for this source variant: drop what was written so nothing half-made remains.
    // Anything else (a provider outage) keeps the checkpoint so that --resume continues.
    if (badRow) await ctx.dropData(feature);
    await registry.failMaterialization(feature.name, feature.variant, (e as Error).message);
    if (badRow) await registry.forgetCheckpoint(feature.name, feature.variant);
    throw e instanceof NearlineError ? e : nlError('NL_INTERNAL', `${ref}: ${(e as Error).message}`);
  }
}

/** Every invalid row of a run, appended to a JSON Lines file in batches: huge sources are counted and listed in full, never held in memory. */
class InvalidReport {
  path: string | undefined;
  private pending: string[] = [];

  constructor(
    private readonly file: string,
    resuming: boolean,
  ) {
    if (resuming && existsSync(file)) this.path = file;
    else rmSync(file, { force: true });
  }

  add(line: number, reason: string): void {
    this.pending.push(JSON.stringify({ line, reason }) + '\n');
    if (this.pending.length >= 1000) this.flush();
  }

  flush(): void {
    if (!this.pending.length) return;
    mkdirSync(path.dirname(this.file), { recursive: true });
    appendFileSync(this.file, this.pending.join(''));
    this.pending = [];
    this.path = this.file;
  }
}

export function prepare(row: SourceRow, feature: FeatureRecord, key: string, textual: boolean): Prepared | { reason: string } {
  if (row.error) return { reason: row.error };
  const rawId = row.values[key];
  if (rawId === undefined || rawId === null || rawId === '') return { reason: `missing id column "${key}"` };
  if (typeof rawId !== 'string' && typeof rawId !== 'number') return { reason: `id column "${key}" must be a string or number` };
  const id = String(rawId);
  if (feature.kind === 'scalar') {
    const value = toScalar(row.values[feature.column], feature.type);
    if (typeof value === 'object' && value !== null) return value;
    return { id, value };
  }
  const out: Prepared = { id };
  if (feature.vector) {
    try {
      out.vector = toVector(row.values[feature.vector.column], feature.dims, `column "${feature.vector.column}"`);
    } catch (e) {
      return { reason: (e as Error).message };
    }
  } else {
    const text = buildText(feature.text!, row.values);
    if (typeof text !== 'string') return text;
    out.text = text;
  }
  if (feature.metadata.length) {
    out.metadata = {};
    for (const field of feature.metadata) out.metadata[field] = toMetadata(row.values[field], textual);
  }
  return out;
}

function toMetadata(v: unknown, textual: boolean): Scalar {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v !== 'string') return JSON.stringify(v);
  if (!textual) return v;
  // CSV has no types: numbers and booleans are recognised so that range filters work on them.
  if (v === '') return null;
  if (v === 'true' || v === 'false') return v === 'true';
  const n = Number(v);
  return Number.isFinite(n) && /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v.trim()) ? n : v;
}

function toScalar(v: unknown, type: string): Scalar | { reason: string } {
  if (v === undefined || v === null || v === '') return null;
  switch (type) {
    case 'float':
    case 'int': {
      const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
      if (!Number.isFinite(n)) return { reason: `${JSON.stringify(v)} is not a finite number` };
      if (type === 'int' && !Number.isInteger(n)) return { reason: `${JSON.stringify(v)} is not an integer` };
      return n;
    }
    case 'bool':
      if (v === true || v === 'true' || v === 1 || v === '1') return true;
      if (v === false || v === 'false' || v === 0 || v === '0') return false;
      return { reason: `${JSON.stringify(v)} is not a boolean` };
    default:
      return typeof v === 'string' ? v : JSON.stringify(v);
  }
}
