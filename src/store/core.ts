import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { nlError } from '../errors.ts';
import { modelFingerprint } from '../providers/embedding/fingerprint.ts';
import { embedWorkersFromEnv } from '../providers/embedding/pool.ts';
import type { EmbeddingModel } from '../providers/embedding/types.ts';
import { createEmbeddingModel, createOnlineStore, createVectorProvider, isPoolable } from '../providers/index.ts';
import type { OnlineStore } from '../providers/online/types.ts';
import type { CollectionSpec, VectorCollection, VectorProvider } from '../providers/vector/types.ts';
import { modelSpec, Registry, type EmbeddingFeatureRecord, type FeatureRecord } from '../registry/registry.ts';
import { openRegistry, registryLocation } from '../registry/open.ts';
import { SqliteRegistry } from '../registry/sqlite.ts';
import { HealthMonitor, thresholdsFromEnv, type DriftThresholds } from './health.ts';
import { Live, type LiveOptions } from './live.ts';
import { cacheBytesFromEnv, cacheModelId, DEFAULT_CACHE_BYTES, EmbeddingCache, withCache } from './embedding-cache.ts';
import { formatRef, refOf } from '../refs.ts';

export interface FeatureStoreOptions {
  /** Home folder: registry file `nearline.db`, in-process indexes under `indexes/`, source logs under `log/`. */
  home: string;
  /** Pushed rows: snapshot cadence, limits, log folder. */
  live?: LiveOptions;
  /** When a variant counts as drifting. Default: `NEARLINE_DRIFT_*` from the environment, else health.ts's defaults. */
  drift?: DriftThresholds;
  /** Registry file instead of `<home>/nearline.db`; `:memory:` keeps nothing and creates no folder. */
  registryFile?: string;
  /**
   * Where the registry lives: a `postgres://` (or `postgresql://`) URL, for many writers and serving nodes, or a
   * SQLite file path. Default: `NEARLINE_REGISTRY` from the environment, else `<home>/nearline.db`.
   */
  registry?: string;
  /**
   * Folder where in-process indexes publish their snapshots, shared by the nodes that serve one registry and
   * one log. Default: `NEARLINE_SNAPSHOTS` from the environment, else each home's own `indexes/`.
   */
  snapshots?: string;
  /**
   * Bound of the embedding cache `<home>/cache/embeddings.db` in bytes; 0 turns it off. Default:
   * `NEARLINE_EMBED_CACHE_MB` from the environment, else 1 GiB. Off with a `:memory:` registry.
   */
  embeddingCacheBytes?: number;
  /**
   * Worker threads that embed with each `use` or `onnx` model, so embedding never blocks serving; 0 embeds
   * on the main thread. Default: `NEARLINE_EMBED_WORKERS` from the environment, else the machine's cores.
   */
  embedWorkers?: number;
}

/**
 * The store's foundation: its registry, live ingestion and health, and the providers, collections and models it
 * opens once and reuses. Queries (queries.ts) and definitions, materialization and model changes
 * (feature-store.ts) are built on it.
 */
export abstract class StoreCore {
  readonly registry: Registry;
  readonly home: string;
  protected readonly vectorProviders = new Map<string, Promise<VectorProvider>>();
  protected readonly onlineStores = new Map<string, Promise<OnlineStore>>();
  protected readonly collections = new Map<string, Promise<VectorCollection>>();
  protected readonly models = new Map<string, Promise<EmbeddingModel>>();
  protected readonly runtimes = new Map<string, string>();
  /** Rows pushed to sources: their logs, and the variants following them in this process. */
  readonly live: Live;

  /** Embedding health of every variant, fed by each path that writes vectors. */
  readonly health: HealthMonitor;

  protected readonly cacheBytes: number;
  protected readonly snapshots: string | undefined;
  protected readonly embedWorkers: number;
  protected cache?: EmbeddingCache;

  protected constructor(opts: FeatureStoreOptions) {
    this.home = path.resolve(opts.home);
    if (opts.registryFile === ':memory:') this.registry = new SqliteRegistry(opts.registryFile);
    else {
      mkdirSync(this.home, { recursive: true });
      this.registry = openRegistry(opts.registryFile ?? registryLocation(this.home, opts.registry));
    }
    const snapshots = opts.snapshots ?? (process.env.NEARLINE_SNAPSHOTS || undefined);
    this.snapshots = snapshots === undefined ? undefined : path.resolve(this.home, snapshots);
    this.embedWorkers = opts.embedWorkers ?? embedWorkersFromEnv();
    this.cacheBytes = opts.registryFile === ':memory:' ? 0 : (opts.embeddingCacheBytes ?? cacheBytesFromEnv() ?? DEFAULT_CACHE_BYTES);
    this.health = new HealthMonitor({ dir: path.join(this.home, 'health'), thresholds: opts.drift ?? thresholdsFromEnv() });
    this.live = new Live(
      this.home,
      {
        registry: this.registry,
        collection: (f) => this.providerCollection(f),
        online: (f) => this.onlineStore(f.provider),
        model: (n, v) => this.model(n, v),
        observe: (f, vectors, ids) => this.health.observe(f, vectors, ids),
      },
      opts.live,
    );
  }

  async close(): Promise<void> {
    await this.live.close();
    const settle = async <T>(map: Map<string, Promise<T>>, close: (x: T) => Promise<void>) => {
      for (const p of map.values()) await p.then(close, () => undefined);
      map.clear();
    };
    this.collections.clear();
    this.health.close();
    await settle(this.vectorProviders, (p) => p.close());
    await settle(this.onlineStores, (s) => s.close());
    await settle(this.models, (m) => m.close());
    this.cache?.close();
    this.cache = undefined;
    await this.registry.close();
  }

  // ---- providers ----

  vectorProvider(name: string): Promise<VectorProvider> {
    return cached(this.vectorProviders, name, async () => {
      const rec = await this.registry.getProvider(name);
      if (!rec) throw nlError('NL_PROVIDER_NOT_FOUND', name);
      const provider = await createVectorProvider(rec.kind, rec.options, { name, home: this.home, ...(this.snapshots ? { snapshots: this.snapshots } : {}) });
      await provider.open();
      return provider;
    });
  }

  onlineStore(name: string): Promise<OnlineStore> {
    return cached(this.onlineStores, name, async () => {
      const rec = await this.registry.getProvider(name);
      if (!rec) throw nlError('NL_PROVIDER_NOT_FOUND', name);
      const store = await createOnlineStore(rec.kind, rec.options, { name, home: this.home });
      await store.open();
      return store;
    });
  }

  /** A variant's collection, current with every row pushed to its source once it is materialized. */
  async collection(feature: FeatureRecord): Promise<VectorCollection> {
    const collection = await this.providerCollection(feature);
    await this.live.follow(feature);
    return collection;
  }

  protected async providerCollection(feature: FeatureRecord): Promise<VectorCollection> {
    if (feature.kind !== 'embedding') throw nlError('NL_UNSUPPORTED', `${refOf(feature)} is a scalar feature: it has no vector collection`);
    const spec = collectionSpec(feature);
    return cached(this.collections, `${feature.provider}/${spec.name}`, async () => (await this.vectorProvider(feature.provider)).collection(spec));
  }

  /**
   * Whether embedding a text query of `featureRef` runs on the JS thread (its model's runtime is not pooled,
   * or the pool is off), so a server can keep such queries from holding up cheap ones. An unknown reference
   * answers true; the query itself then fails with the precise error.
   */
  async textBlocks(featureRef: string): Promise<boolean> {
    if (this.embedWorkers === 0) return true;
    try {
      const model = (await this.servable(featureRef, 'embedding')).text?.model;
      if (!model) return true;
      // A registered model version never changes, so its runtime is read once.
      const key = refOf(model);
      let runtime = this.runtimes.get(key);
      if (runtime === undefined) {
        runtime = (await this.registry.getModel(model.name, model.version))?.runtime;
        if (runtime === undefined) return true;
        this.runtimes.set(key, runtime);
      }
      return !isPoolable(runtime);
    } catch {
      return true;
    }
  }

  /**
   * Vectors by (model, text), shared by every path that embeds with a registered model; opened on first
   * use, undefined when turned off.
   */
  get embeddingCache(): EmbeddingCache | undefined {
    if (!this.cache && this.cacheBytes > 0)
      this.cache = new EmbeddingCache({ file: path.join(this.home, 'cache', 'embeddings.db'), maxBytes: this.cacheBytes });
    return this.cache;
  }

  /**
   * A registered model, loaded once, behind the embedding cache; refuses a model whose files changed since
   * registration.
   */
  model(name: string, version: string): Promise<EmbeddingModel> {
    return cached(this.models, formatRef(name, version), async () => {
      const rec = await this.registry.getModel(name, version);
      if (!rec) throw nlError('NL_MODEL_NOT_FOUND', formatRef(name, version));
      const sha = await modelFingerprint(rec);
      if (sha !== rec.sha256)
        throw nlError(
          'NL_MODEL_CHANGED',
          formatRef(name, version),
          `sha256 ${rec.sha256.slice(0, 12)} registered, ${sha.slice(0, 12)} on disk; register a new version`,
        );
      const spec = modelSpec(rec);
      const model = await createEmbeddingModel(spec, { workers: this.embedWorkers });
      await model.open();
      const cache = this.embeddingCache;
      return cache ? withCache(model, cache, cacheModelId(rec.sha256, spec)) : model;
    });
  }

  // ---- serving ----

  /** Resolves a feature reference to a materialized variant of the wanted kind. */
  async servable(ref: string, kind: 'embedding'): Promise<EmbeddingFeatureRecord>;
  async servable(ref: string, kind?: 'embedding' | 'scalar'): Promise<FeatureRecord>;
  async servable(ref: string, kind?: 'embedding' | 'scalar'): Promise<FeatureRecord> {
    const feature = await this.registry.resolveFeature(ref);
    if (kind && feature.kind !== kind) throw nlError('NL_UNSUPPORTED', `${ref} is a ${feature.kind} feature, not ${kind}`);
    if (feature.status !== 'materialized') throw nlError('NL_NOT_MATERIALIZED', refOf(feature));
    return feature;
  }
}

function cached<T>(map: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = map.get(key);
  if (!p) {
    p = make();
    map.set(key, p);
    p.catch(() => map.delete(key));
  }
  return p;
}

export function collectionSpec(feature: EmbeddingFeatureRecord): CollectionSpec {
  return {
    name: `${feature.name}__${feature.variant}`,
    dims: feature.dims,
    metric: feature.metric,
    index: feature.index,
    metadataFields: feature.metadata,
  };
}
