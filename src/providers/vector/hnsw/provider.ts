import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { nlError, providerError } from '../../../errors.ts';
import type { ProviderContext } from '../../index.ts';
import type { CollectionSpec, VectorProvider } from '../types.ts';
import { HnswCollection, type Settings } from './collection.ts';
import { Columns } from './columns.ts';
import { FORMAT, MANIFEST, exists, removeStale, type Manifest, type RowsFile } from './files.ts';
import { nativeIndexClass } from './native.ts';

/*
 * The in-process `hnsw` vector provider. One collection per folder under `dir` (layout in files.ts).
 *
 * A snapshot writes the index and the rows under a new generation (temp file, fsync, rename), then the
 * manifest the same way, then fsyncs the folder; files no manifest names are removed on open, so a crash
 * at any point leaves the previous snapshot whole.
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
   * How a snapshot writes the graph. `inline`: on a thread of this process while writes wait (searches do
   * not); the wait grows with the index. `fork` (Linux): a child process writes it from a copy-on-write image,
   * so writes wait only for the fork, but every page the server writes meanwhile is copied, which slows
   * searches and inserts under heavy writes (bench/results/write-ab-loaded.md). Default `inline`.
   */
  snapshotWriter?: 'inline' | 'fork';
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

export function createHnswProvider(options: HnswVectorOptions, ctx: ProviderContext): VectorProvider {
  const root = options.dir ?? join(ctx.home, 'indexes');
  const opts: Settings = {
    name: ctx.name,
    initialCapacity: options.initialCapacity ?? 1024,
    exactScanBelow: options.exactScanBelow ?? 2048,
    exactScanSelectivity: options.exactScanSelectivity ?? 0.02,
    filterPlan: options.filterPlan ?? 'auto',
    threads: options.threads ?? availableParallelism(),
    snapshotWriter: options.snapshotWriter ?? 'inline',
  };
  const open = new Map<string, Promise<HnswCollection>>();

  function folder(name: string): string {
    if (!NAME.test(name)) throw nlError('NL_BAD_REQUEST', `collection name ${JSON.stringify(name)} is not file-safe`);
    return join(root, name);
  }

  async function load(spec: CollectionSpec): Promise<HnswCollection> {
    const dir = folder(spec.name);
    const space = spec.metric === 'l2' ? 'l2' : 'ip';
    await mkdir(dir, { recursive: true });
    const manifestPath = join(dir, MANIFEST);
    if (await exists(manifestPath)) {
      const m = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
      if (m.format !== 1 && m.format !== FORMAT) {
        throw nlError('NL_CONFLICT', `collection ${spec.name} has on-disk format ${m.format}; this nearline reads formats 1 to ${FORMAT}`);
      }
      if (m.dims !== spec.dims || m.metric !== spec.metric) {
        throw nlError('NL_CONFLICT', `collection ${spec.name} exists with dims ${m.dims} metric ${m.metric}, asked for dims ${spec.dims} metric ${spec.metric}`);
      }
      await removeStale(dir, m);
      const rows = JSON.parse(await readFile(join(dir, m.rows), 'utf8')) as RowsFile;
      const index = new (nativeIndexClass(ctx.name))(space, m.dims, join(dir, m.index));
      const columns = m.columns
        ? Columns.decode(await readFile(join(dir, m.columns)), index.capacity())
        : Columns.fromRows(rows.metadata ?? [], index.capacity());
      const free: number[] = [];
      rows.ids.forEach((id, label) => (id === null ? free.push(label) : undefined));
      free.reverse();
      return new HnswCollection(spec, dir, opts, index, m, rows.ids, columns, free);
    }
    const M = spec.index.M ?? 16;
    const efConstruction = spec.index.efConstruction ?? 200;
    const index = new (nativeIndexClass(ctx.name))(space, spec.dims, opts.initialCapacity, M, efConstruction, 100);
    const m: Manifest = { format: FORMAT, generation: 0, dims: spec.dims, metric: spec.metric, M, efConstruction, index: '', rows: '' };
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
      if (c.spec.dims !== spec.dims || c.spec.metric !== spec.metric) {
        throw nlError('NL_CONFLICT', `collection ${spec.name} exists with dims ${c.spec.dims} metric ${c.spec.metric}, asked for dims ${spec.dims} metric ${spec.metric}`);
      }
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
