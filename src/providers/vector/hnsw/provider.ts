import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { nlError, providerError } from '../../../errors.ts';
import type { ProviderContext } from '../../index.ts';
import type { Metric } from '../../../types.ts';
import type { CollectionSpec, Quantization, VectorProvider } from '../types.ts';
import { HnswCollection, type Settings } from './collection.ts';
import { Columns } from './columns.ts';
import { FORMAT, readManifest, removeStale, type Manifest, type RowsFile } from './files.ts';
import { nativeIndexClass } from './native.ts';

/*
 * The in-process `hnsw` vector provider. One collection per folder under `dir` (layout in files.ts).
 *
 * A snapshot writes the index and the rows under a new generation (temp file, fsync, rename), then the
 * manifest the same way, then fsyncs the folder; files no manifest names are removed on open, so a crash
 * at any point leaves the previous snapshot whole.
 *
 * With a snapshot folder shared by several nodes (`NEARLINE_SNAPSHOTS`, given as `ctx.snapshots`), every node
 * keeps its own in-process copy, loads the newest snapshot published there and publishes its own (files.ts).
 */

/** Options of the in-process `hnsw` vector provider. */
export interface HnswVectorOptions {
  /** Folder holding one sub-folder per collection. Default `<home>/indexes`. */
  dir?: string;
  /** Slots allocated when a collection is created. Default 1024. */
  initialCapacity?: number;
  /** A filtered query scans its matching rows exactly when at most this many match. Default 2048. */
  exactScanBelow?: number;
  /** A filtered query scans exactly when fewer than this fraction of rows match. Default 0.02. */
  exactScanSelectivity?: number;
  /**
   * How filtered queries run: `auto` scans exactly below the two thresholds above, or when the counts make an
   * exact scan cheaper than a filtered graph walk; `graph` always walks (with an exact scan if the walk comes
   * back short); `exact` always scans. Default `auto`.
   */
  filterPlan?: 'auto' | 'graph' | 'exact';
  /** Threads one call may use: a search batch is split across them, an insert batch runs on them. Default `os.availableParallelism()`. */
  threads?: number;
  /**
   * int8 collections: a search walks the graph for k * rescore candidates and orders them by their exact
   * distance (read from the full-precision vectors on disk). Default 2.
   */
  rescore?: number;
  /**
   * How a snapshot writes the graph; searches never wait for it. `copy`: writes wait while the graph is
   * copied in memory (one memcpy into a buffer allocated beforehand, ~10 ms per 100 MB), then a thread writes
   * the copy beside them; it holds a second copy of the graph while it writes. `inline`: writes wait while a
   * thread writes the graph to the file (the wait grows with the index, hundreds of ms at 200k x 100-d).
   * `fork` (Linux, f32): a child process writes it from a copy-on-write image, so writes wait only for the
   * fork, but every page the server writes meanwhile is copied, which slows searches and inserts under heavy
   * writes (bench/results/write-ab-loaded.md). Default `copy`.
   */
  snapshotWriter?: 'copy' | 'inline' | 'fork';
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** An existing collection is opened only as what it is: same dims, metric and quantization. */
function checkShape(spec: CollectionSpec, dims: number, metric: Metric, quantization: Quantization | undefined): void {
  const has = `dims ${dims} metric ${metric} quantization ${quantization ?? 'none'}`;
  const asked = `dims ${spec.dims} metric ${spec.metric} quantization ${spec.index.quantization ?? 'none'}`;
  if (has !== asked) throw nlError('NL_CONFLICT', `collection ${spec.name} exists with ${has}, asked for ${asked}`);
}

export function createHnswProvider(options: HnswVectorOptions, ctx: ProviderContext): VectorProvider {
  const root = options.dir ?? ctx.snapshots ?? join(ctx.home, 'indexes');
  // Names this process's files in a shared folder, so no two publishers write the same file.
  const shared = ctx.snapshots === undefined ? undefined : randomBytes(4).toString('hex');
  const opts: Settings = {
    name: ctx.name,
    initialCapacity: options.initialCapacity ?? 1024,
    exactScanBelow: options.exactScanBelow ?? 2048,
    exactScanSelectivity: options.exactScanSelectivity ?? 0.02,
    filterPlan: options.filterPlan ?? 'auto',
    threads: options.threads ?? availableParallelism(),
    rescore: options.rescore ?? 2,
    ...(shared !== undefined ? { shared } : {}),
    snapshotWriter: options.snapshotWriter ?? 'copy',
  };
  const open = new Map<string, Promise<HnswCollection>>();

  function folder(name: string): string {
    if (!NAME.test(name)) throw nlError('NL_BAD_REQUEST', `collection name ${JSON.stringify(name)} is not file-safe`);
    return join(root, name);
  }

  /** A collection from the snapshot `m` names; a format or shape it cannot serve is refused. */
  async function loadSnapshot(spec: CollectionSpec, dir: string, m: Manifest): Promise<HnswCollection> {
    if (m.format !== 1 && m.format !== FORMAT) {
      throw nlError('NL_CONFLICT', `collection ${spec.name} has on-disk format ${m.format}; this nearline reads formats 1 to ${FORMAT}`);
    }
    checkShape(spec, m.dims, m.metric, m.quantization);
    await removeStale(dir, m, shared);
    const rows = JSON.parse(await readFile(join(dir, m.rows), 'utf8')) as RowsFile;
    const int8 = m.quantization === 'int8' ? { vectors: join(dir, m.vectors!), slots: join(dir, m.slots!), rescore: opts.rescore } : undefined;
    const index = new (nativeIndexClass(ctx.name))(spec.metric === 'l2' ? 'l2' : 'ip', m.dims, join(dir, m.index), int8);
    const columns = m.columns
      ? Columns.decode(await readFile(join(dir, m.columns)), index.capacity())
      : Columns.fromRows(rows.metadata ?? [], index.capacity());
    const free: number[] = [];
    rows.ids.forEach((id, label) => (id === null ? free.push(label) : undefined));
    free.reverse();
    return new HnswCollection(spec, dir, opts, index, m, rows.ids, columns, free);
  }

  async function load(spec: CollectionSpec): Promise<HnswCollection> {
    const dir = folder(spec.name);
    await mkdir(dir, { recursive: true });
    for (let attempt = 0; ; attempt++) {
      const m = await readManifest(dir);
      if (!m) break;
      try {
        return await loadSnapshot(spec, dir, m);
      } catch (e) {
        // Another node may have published a newer snapshot and removed this one's files meanwhile: read again.
        const now = shared === undefined || attempt >= 5 ? undefined : await readManifest(dir);
        if (!now || now.index === m.index) throw e;
      }
    }
    const M = spec.index.M ?? 16;
    const efConstruction = spec.index.efConstruction ?? 200;
    const m: Manifest = { format: FORMAT, generation: 0, dims: spec.dims, metric: spec.metric, M, efConstruction, index: '', rows: '' };
    if (spec.index.quantization === 'int8') Object.assign(m, { quantization: 'int8', vectors: 'vectors-1.f32' });
    const int8 = m.vectors ? { vectors: join(dir, m.vectors), rescore: opts.rescore } : undefined;
    const index = new (nativeIndexClass(ctx.name))(spec.metric === 'l2' ? 'l2' : 'ip', spec.dims, opts.initialCapacity, M, efConstruction, 100, int8);
    const c = new HnswCollection(spec, dir, opts, index, m, [], new Columns(index.capacity()), []);
    await c.snapshot(true);
    return c;
  }

  return {
    kind: 'hnsw',
    name: ctx.name,
    supportsFilter: true,
    supportsDelete: true,
    supportsExamples: false,

    async open() {
      await mkdir(root, { recursive: true });
    },

    async close() {
      const all = [...open.values()];
      open.clear();
      for (const p of all) {
        const c = await p.catch(() => null);
        await c?.flushDirect();
      }
    },

    async collection(spec) {
      let p = open.get(spec.name);
      if (!p) {
        p = load(spec).catch((e: unknown) => {
          throw providerError(ctx.name, e);
        });
        open.set(spec.name, p);
        p.catch(() => open.delete(spec.name));
      }
      const c = await p;
      checkShape(spec, c.spec.dims, c.spec.metric, c.spec.index.quantization);
      c.spec = spec;
      return c;
    },

    async dropCollection(name) {
      const dir = folder(name);
      const p = open.get(name);
      open.delete(name);
      await p?.catch(() => null);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
