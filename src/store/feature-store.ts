import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Definitions } from '../config.ts';
import { NearlineError, nlError } from '../errors.ts';
import { validateQuery } from '../filter.ts';
import { materialize, type MaterializeOptions, type MaterializeResult } from '../materialize/job.ts';
import { modelFingerprint, probeModel } from '../providers/embedding/fingerprint.ts';
import { embedWorkersFromEnv } from '../providers/embedding/pool.ts';
import type { EmbeddingModel } from '../providers/embedding/types.ts';
import { createEmbeddingModel, createOnlineStore, createSource, createVectorProvider, importPlugin, isBuiltinKind, isPoolable } from '../providers/index.ts';
import type { OnlineStore } from '../providers/online/types.ts';
import type { CollectionSpec, VectorCollection, VectorProvider } from '../providers/vector/types.ts';
import { modelSpec, osActor, Registry, type Actor, type AliasRecord, type EmbeddingFeatureRecord, type FeatureRecord, type ModelProbe, type PlanItem, type ShadowRecord } from '../registry/registry.ts';
import { openRegistry, registryLocation } from '../registry/open.ts';
import { SqliteRegistry } from '../registry/sqlite.ts';
import type { Hit, OnlineValue, Vector } from '../types.ts';
import { checkIndexable, toVector } from '../vector.ts';
import { HealthMonitor, thresholdsFromEnv, type DriftThresholds } from './health.ts';
import { processAlive } from '../log/file.ts';
import { Live, type LiveOptions, type PushResult } from './live.ts';
import { checkColumns } from './columns.ts';
import { failedGates, normStats, overlapAt, parseGate, ShadowTally, summarize, type CompareReport } from './lifecycle.ts';
import { cacheBytesFromEnv, cacheModelId, DEFAULT_CACHE_BYTES, EmbeddingCache, withCache } from './embedding-cache.ts';
import { mmr } from './mmr.ts';
import { formatRef, refOf, parseRef, parseFullRef } from '../refs.ts';

export type Query = { vector: unknown } | { id: string } | { text: string } | { positive: unknown[]; negative?: unknown[] };

export interface NearestRequest {
  feature: string;
  k?: number;
  query: Query;
  filter?: unknown;
  exclude?: string[];
  ef?: number;
  /** `vectors`: each hit's vector; `metadata`: its metadata fields; `features`: scalar or vector features joined by id. */
  include?: { vectors?: boolean; metadata?: boolean; features?: string[] };
  /**
   * Re-rank with maximal marginal relevance: `lambda` 1 is pure relevance, 0 pure diversity; `candidates` is the
   * pool MMR picks k from (default 4·k, at most LIMITS.maxK). Hits then come in MMR's selection order.
   */
  diversity?: { lambda: number; candidates?: number };
  /** Scan every row instead of searching the index (the ground truth `compare` measures recall against). */
  exact?: boolean;
}

export interface NearestResult {
  feature: string;
  variant: string;
  hits: Hit[];
  took_ms: number;
  /** Every feature reference of the request (the searched one and the joined ones) -> the `name@variant` that answered it. */
  variants: Record<string, string>;
}

export interface ApplyOptions {
  /** Plan only; write nothing. */
  dryRun?: boolean;
  /** Let aliases name variants that are not materialized or hold no rows. */
  force?: boolean;
  /** Who applies, for the audit trail (default: the OS user). */
  actor?: Actor;
  /**
   * Asked with the plan when an item of it changes what running callers get (an alias move, a bare name that
   * becomes ambiguous: items with a `warning`), after planning and before writing; `false` writes nothing.
   */
  confirm?: (plan: PlanItem[]) => Promise<boolean>;
}

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
 * Opens nearline in `home` without the HTTP server: `apply`, `materialize`, `nearest`, `online`, `embed`,
 * `writeVectors`, then `close()`. Providers and model runtimes load on first use.
 */
export function openStore(opts: FeatureStoreOptions): FeatureStore {
  return FeatureStore.open(opts);
}

/** Bounds that keep one request from monopolising the process; the HTTP layer adds its own. */
/** How long a build lease lasts without renewal; its holder renews it every third of that. */
const LEASE_MS = 30_000;

export const LIMITS = { maxK: 1000, maxEf: 4096, overfetchForDiversity: 4 };

/**
 * Orchestration over the registry and providers: apply, materialize, nearest, online, embed.
 * Providers, collections and models are opened once and reused. No HTTP, no CLI here.
 */
export class FeatureStore {
  readonly registry: Registry;
  readonly home: string;
  private readonly vectorProviders = new Map<string, Promise<VectorProvider>>();
  private readonly onlineStores = new Map<string, Promise<OnlineStore>>();
  private readonly collections = new Map<string, Promise<VectorCollection>>();
  private readonly models = new Map<string, Promise<EmbeddingModel>>();
  private readonly runtimes = new Map<string, string>();
  /** Rows pushed to sources: their logs, and the variants following them in this process. */
  readonly live: Live;

  /** Embedding health of every variant, fed by each path that writes vectors. */
  readonly health: HealthMonitor;

  private readonly cacheBytes: number;
  private readonly snapshots: string | undefined;
  private readonly embedWorkers: number;
  private cache?: EmbeddingCache;

  private constructor(opts: FeatureStoreOptions) {
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

  static open(opts: FeatureStoreOptions): FeatureStore {
    return new FeatureStore(opts);
  }

  async close(): Promise<void> {
    if (this.shadowTimer) clearTimeout(this.shadowTimer);
    await this.flushShadows();
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

  // ---- definitions ----

  /**
   * Plans definitions against the registry and, unless `dryRun` or anything is refused, writes them
   * in one transaction. Models are loaded to learn their dims and fingerprint, and the columns features
   * reference are checked against their sources, before anything is written.
   */
  async apply(defs: Definitions, opts: ApplyOptions = {}): Promise<{ plan: PlanItem[]; applied: boolean }> {
    // Plugins named by module path load before planning: the plan asks each provider kind for its role.
    const kinds = [...defs.providers.map((p) => p.kind), ...(await this.registry.listProviders()).map((p) => p.kind), ...defs.models.map((m) => m.runtime), ...defs.sources.map((s) => s.kind)];
    for (const kind of new Set(kinds)) if (!isBuiltinKind(kind)) await importPlugin(kind);
    const probes = new Map<string, ModelProbe>();
    for (const m of defs.models) {
      const ref = refOf(m);
      const sha256 = await modelFingerprint(m);
      const known = await this.registry.getModel(m.name, m.version);
      const dims = known && known.sha256 === sha256 ? known.dims : (await probeModel(m)).dims;
      probes.set(ref, { dims, sha256 });
    }
    defs = await withModelDims(defs, probes, this.registry);
    const plan = await this.registry.plan(defs, probes, { force: opts.force });
    // Columns are checked for new and changed features, and for features over a new or changed source.
    const changed = new Set(plan.filter((p) => (p.kind === 'feature' || p.kind === 'source') && (p.action === 'create' || p.action === 'update')).map((p) => p.name));
    const check = defs.features.filter((f) => changed.has(refOf(f)) || changed.has(refOf(f.source)));
    await checkColumns(check, defs, this.registry);
    const refused = plan.some((p) => p.action === 'refused');
    if (refused || opts.dryRun) return { plan, applied: false };
    if (plan.some((p) => p.warning) && opts.confirm && !(await opts.confirm(plan))) return { plan, applied: false };
    const moved = await Promise.all(
      defs.aliases
        .filter((a) => plan.some((p) => p.kind === 'alias' && p.name === formatRef(a.feature, a.name) && p.action !== 'unchanged'))
        .map(async (a) => ({ ...a, previous: (await this.registry.getAlias(a.feature, a.name))?.variant })),
    );
    await this.registry.commit(defs, plan, probes, opts.actor, { force: opts.force });
    for (const a of moved) await this.mirrorAlias(a.feature, a.name, a.previous);
    return { plan, applied: true };
  }

  // ---- aliases ----

  /**
   * Moves alias `name` of `feature` to `variant` in the registry (atomic for nearline's readers), then
   * the vector provider's own alias, so readers of the backend itself follow the same cutover.
   * Setting an alias to the variant it already names retries a provider move that failed before.
   * `actor` is who asked, for the audit trail (default: the OS user).
   */
  async setAlias(
    feature: string,
    name: string,
    variant: string,
    opts: { force?: boolean; actor?: Actor; gate?: string; sample?: number; queries?: unknown[]; k?: number } = {},
  ): Promise<{ alias: AliasRecord; previous?: string; report?: CompareReport }> {
    const previous = (await this.registry.getAlias(feature, name))?.variant;
    let report: CompareReport | undefined;
    if (opts.gate !== undefined) {
      const gates = parseGate(opts.gate);
      if (previous === undefined) throw nlError('NL_CONFLICT', `alias ${formatRef(feature, name)} does not exist yet: there is nothing to compare ${variant} with`);
      if (previous !== variant) {
        report = await this.compare(formatRef(feature, previous), formatRef(feature, variant), { k: opts.k, sample: opts.sample, queries: opts.queries });
        const failed = failedGates(report, gates);
        if (failed.length) throw Object.assign(nlError('NL_GATE_FAILED', `${formatRef(feature, name)} -> ${variant}`, failed.join('; ')), { report });
      }
    }
    const alias = await this.registry.setAlias(feature, name, variant, opts);
    await this.mirrorAlias(feature, name, previous);
    return { alias, ...(previous !== undefined ? { previous } : {}), ...(report ? { report } : {}) };
  }

  /** The name a nearline alias has inside a vector provider, beside the `feature__variant` collections. */
  static providerAliasName(feature: string, name: string): string {
    return `${feature}__${name}`;
  }

  /**
   * Makes the provider alias follow what nearline serves under `feature@name`: it names the variant's
   * collection once that variant is materialized. While the alias names an unmaterialized variant the
   * provider alias is removed, as nearline refuses to serve it and a backend reader must not see it half-written.
   */
  private async mirrorAlias(feature: string, name: string, previous?: string): Promise<void> {
    const current = await this.registry.getAlias(feature, name);
    const live = async (variant: string | undefined) => {
      const f = variant === undefined ? undefined : await this.registry.getFeature(feature, variant);
      return f?.kind === 'embedding' && f.status === 'materialized' ? f : undefined;
    };
    const target = await live(current?.variant);
    // Only a variant that was servable can have a provider alias naming it, so nothing else is touched.
    const before = await live(previous);
    const aliasName = FeatureStore.providerAliasName(feature, name);
    const move = async (providerName: string, fn: (p: VectorProvider) => Promise<void>) => {
      try {
        const provider = await this.vectorProvider(providerName);
        if (provider.supportsAliases) await fn(provider);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        const retry = current ? `; run \`nearline alias set ${feature} ${name} ${current.variant}\` to retry` : '';
        throw new NearlineError('NL_PROVIDER_ERROR', [providerName, `${formatRef(feature, name)} moved in the registry, but its alias ${aliasName} did not follow (${why})${retry}`], { cause: e });
      }
    };
    if (before && before.provider !== target?.provider) await move(before.provider, (p) => p.deleteAlias!(aliasName));
    if (target) await move(target.provider, (p) => p.setAlias!(aliasName, collectionSpec(target).name));
  }

  /** After a variant is published, the aliases already naming it reach the provider too. */
  private async mirrorAliasesOf(feature: FeatureRecord): Promise<void> {
    for (const a of await this.registry.listAliases(feature.name)) {
      if (a.variant === feature.variant) await this.mirrorAlias(feature.name, a.name);
    }
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

  private async providerCollection(feature: FeatureRecord): Promise<VectorCollection> {
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
    if (!this.cache && this.cacheBytes > 0) this.cache = new EmbeddingCache({ file: path.join(this.home, 'cache', 'embeddings.db'), maxBytes: this.cacheBytes });
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
      if (sha !== rec.sha256) throw nlError('NL_MODEL_CHANGED', formatRef(name, version), `sha256 ${rec.sha256.slice(0, 12)} registered, ${sha.slice(0, 12)} on disk; register a new version`);
      const spec = modelSpec(rec);
      const model = await createEmbeddingModel(spec, { workers: this.embedWorkers });
      await model.open();
      const cache = this.embeddingCache;
      return cache ? withCache(model, cache, cacheModelId(rec.sha256, spec)) : model;
    });
  }

  // ---- materialization ----

  /**
   * Builds a variant. One builder at a time: the run holds a lease in the registry, renewed while it runs; a
   * second run (another process or node) is refused with NL_LEASE_HELD naming the holder. A killed holder's
   * lease lapses after `LEASE_MS`, or at once for a process of this host that no longer exists.
   */
  async materialize(ref: string, opts: MaterializeOptions = {}): Promise<MaterializeResult> {
    const feature = await this.registry.resolveFeature(ref);
    const holder = { id: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`, host: hostname(), pid: process.pid };
    const take = () => this.registry.acquireLease(feature.name, feature.variant, holder, LEASE_MS, processAlive);
    const first = await take();
    if (!first.ok) throw nlError('NL_LEASE_HELD', refOf(feature), `${first.holder} (lease until ${new Date(first.expiresAt).toISOString()})`);
    const renew = setInterval(() => void take().catch(() => undefined), LEASE_MS / 3);
    renew.unref();
    try {
      return await this.build(feature, opts);
    } finally {
      clearInterval(renew);
      await this.registry.releaseLease(feature.name, feature.variant, holder.id);
    }
  }

  private async build(feature: FeatureRecord, opts: MaterializeOptions): Promise<MaterializeResult> {
    const result = await materialize(
      {
        registry: this.registry,
        collection: (f) => this.providerCollection(f),
        online: (f) => this.onlineStore(f.provider),
        model: (n, v) => this.model(n, v),
        dropData: (f) => this.dropData(f),
        catchUp: (f, sink) => this.live.catchUp(f, sink),
        health: this.health,
        invalidReport: (f) => path.join(this.home, 'reports', `${refOf(f)}.invalid.jsonl`),
        source: async (f) => {
          const spec = await this.registry.getSource(f.source.name, f.source.variant);
          if (!spec) throw nlError('NL_SOURCE_NOT_FOUND', refOf(f.source));
          return { source: await createSource(spec), kind: spec.kind };
        },
      },
      feature,
      opts,
    );
    if (feature.kind === 'embedding') await this.mirrorAliasesOf(feature);
    return result;
  }

  private async dropData(feature: FeatureRecord): Promise<void> {
    if (feature.kind === 'embedding') {
      const spec = collectionSpec(feature);
      this.collections.delete(`${feature.provider}/${spec.name}`);
      await (await this.vectorProvider(feature.provider)).dropCollection(spec.name);
    } else {
      await (await this.onlineStore(feature.provider)).deleteFeature(refOf(feature));
    }
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

  async nearest(req: NearestRequest): Promise<NearestResult> {
    return (await this.nearestMany(req.feature, [req]))[0];
  }

  /** Many queries against one feature: vector queries go to the provider as one batch. */
  async nearestMany(featureRef: string, reqs: Array<Omit<NearestRequest, 'feature'>>): Promise<NearestResult[]> {
    const feature = await this.servable(featureRef, 'embedding');
    // took_ms is the query's time: a model's first load (a server loads them before it is ready) is not part of it.
    if (feature.text && reqs.some((r) => r.query && typeof r.query === 'object' && 'text' in r.query)) {
      await this.model(feature.text.model.name, feature.text.model.version);
    }
    const t0 = performance.now();
    const collection = await this.collection(feature);
    const provider = await this.vectorProvider(feature.provider);
    const plans = await Promise.all(reqs.map((r) => this.planQuery(feature, collection, provider, r)));
    const searchable = plans.filter((p) => !p.examples);
    const found = searchable.length ? await collection.search(searchable.map((p) => p.search)) : [];
    const results: Hit[][] = [];
    let next = 0;
    for (const p of plans) {
      if (p.examples) {
        const [hits] = await provider.searchExamples!(collection.spec.name, [{ ...p.search, ...p.examples }]);
        results.push(hits);
      } else results.push(found[next++]);
    }
    const out: NearestResult[] = [];
    for (let i = 0; i < plans.length; i++) {
      const req = reqs[i];
      let hits = results[i];
      if (req.diversity) hits = mmr(plans[i].search.vector, hits, plans[i].k, req.diversity.lambda);
      if (!req.include?.vectors) for (const h of hits) delete h.vector;
      const variants = { [featureRef]: refOf(feature) };
      if (req.include?.features?.length) Object.assign(variants, await this.joinFeatures(hits, req.include.features));
      out.push({ feature: feature.name, variant: feature.variant, hits, took_ms: 0, variants });
    }
    const took = Math.round((performance.now() - t0) * 1000) / 1000;
    for (const r of out) r.took_ms = took;
    await this.mirror(featureRef, feature, reqs, out);
    return out;
  }

  // ---- model changes: compare, gated alias moves, rollback, shadow traffic, drop ----

  private readonly shadowTally = new ShadowTally();
  private shadowTimer: NodeJS.Timeout | undefined;

  /** Mirrored queries measured by this process: per feature alias and candidate variant, for /metrics. */
  shadowStats(): Array<{ feature: string; alias: string; variant: string; queries: number; overlap: number | null; errors: number }> {
    return [...this.shadowTally.totals.values()].map((t) => ({ ...t, overlap: t.queries ? t.overlapSum / t.queries : null }));
  }

  /**
   * Shadow traffic: when `ref` reached the variant through an alias that shadows a candidate, a share of its
   * queries runs again on the candidate after the answer has gone, and their overlap@k is tallied.
   */
  private async mirror(ref: string, feature: FeatureRecord, reqs: Array<Omit<NearestRequest, 'feature'>>, out: NearestResult[]): Promise<void> {
    const alias = parseRef(ref).tag ?? 'prod';
    const shadow = await this.shadowOf(feature.name, alias);
    if (!shadow || shadow.variant === feature.variant) return;
    const picked = reqs.map((r, i) => [r, out[i]] as const).filter(() => Math.random() < shadow.fraction);
    if (!picked.length) return;
    setImmediate(() => {
      void this.nearestMany(formatRef(feature.name, shadow.variant), picked.map(([r]) => ({ ...r, include: undefined, diversity: r.diversity })))
        .then((res) => res.forEach((r, i) => this.shadowTally.add(feature.name, alias, shadow.variant, overlapAt(picked[i][1].hits, r.hits, Math.min(picked[i][0].k ?? 10, Math.max(picked[i][1].hits.length, r.hits.length))))))
        .catch(() => picked.forEach(() => this.shadowTally.add(feature.name, alias, shadow.variant, null)));
      this.shadowTimer ??= setTimeout(() => {
        this.shadowTimer = undefined;
        void this.flushShadows().catch(() => undefined);
      }, 2000).unref();
    });
  }

  private shadowCache: { at: number; list: ShadowRecord[] } | undefined;

  private async shadowOf(feature: string, alias: string) {
    if (!this.shadowCache || Date.now() - this.shadowCache.at > 1000) this.shadowCache = { at: Date.now(), list: await this.registry.listShadows() };
    return this.shadowCache.list.find((s) => s.feature === feature && s.alias === alias);
  }

  /** Writes what mirrored queries measured to the registry, where `show` and other processes read it. */
  async flushShadows(): Promise<void> {
    for (const t of this.shadowTally.take()) await this.registry.addShadowResults(t.feature, t.alias, t.variant, t.queries, t.overlapSum, t.errors);
  }

  /**
   * Compares two variants of a feature: the same queries on both (by default `sample` entities queried by id,
   * which works across dims and models), overlap@k, B's recall@k against an exact scan of B, rank correlation,
   * and the norms of the sampled entities' vectors.
   */
  async compare(refA: string, refB: string, opts: { k?: number; sample?: number; queries?: unknown[]; seed?: number } = {}): Promise<CompareReport> {
    const a = await this.servable(refA, 'embedding');
    const b = await this.servable(refB, 'embedding');
    const { k } = validateQuery({ k: opts.k ?? 10 }, [], { maxK: LIMITS.maxK });
    const base = { a: refOf(a), b: refOf(b), k };
    let queries: Array<Omit<NearestRequest, 'feature'>>;
    let norms: CompareReport['norms'] = null;
    if (opts.queries) {
      if (!Array.isArray(opts.queries) || !opts.queries.length || opts.queries.length > 10_000) throw nlError('NL_BAD_REQUEST', 'queries must be a list of 1 to 10,000 query objects');
      queries = opts.queries.map((q) => ({ k, query: q as Query }));
    } else {
      const want = opts.sample ?? 1000;
      if (!Number.isInteger(want) || want < 1 || want > 100_000) throw nlError('NL_BAD_REQUEST', 'sample must be an integer from 1 to 100,000');
      const ids = await this.sampleShared(a, b, want, opts.seed ?? 1);
      if (!ids.length) throw nlError('NL_BAD_REQUEST', `${base.a} and ${base.b} share no sampled entity to compare on; pass queries instead`);
      const [va, vb] = await Promise.all([(await this.collection(a)).get(ids), (await this.collection(b)).get(ids)]);
      norms = { a: normStats(va.map((r) => r!.vector)), b: normStats(vb.map((r) => r!.vector)) };
      queries = ids.map((id) => ({ k, query: { id } }));
    }
    const answers: Array<{ a: Hit[]; b: Hit[]; exactB: Hit[] }> = [];
    for (let at = 0; at < queries.length; at += 256) {
      const page = queries.slice(at, at + 256);
      const [ra, rb, eb] = await Promise.all([this.nearestMany(base.a, page), this.nearestMany(base.b, page), this.nearestMany(base.b, page.map((q) => ({ ...q, exact: true })))]);
      page.forEach((_, i) => answers.push({ a: ra[i].hits, b: rb[i].hits, exactB: eb[i].hits }));
    }
    return summarize({ ...base, mode: opts.queries ? 'queries' : 'sample' }, answers, norms);
  }

  /** Up to `n` entity ids held by both variants, drawn from the ids embedding health samples as it sees writes. */
  private async sampleShared(a: FeatureRecord, b: FeatureRecord, n: number, seed: number): Promise<string[]> {
    const pool = [...new Set([...this.health.sample(a), ...this.health.sample(b)])].sort();
    let s = seed >>> 0 || 1;
    for (let i = pool.length - 1; i > 0; i--) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const j = s % (i + 1);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    const out: string[] = [];
    const [ca, cb] = [await this.collection(a), await this.collection(b)];
    for (let at = 0; at < pool.length && out.length < n; at += 1000) {
      const page = pool.slice(at, at + 1000);
      const [ga, gb] = await Promise.all([ca.get(page), cb.get(page)]);
      page.forEach((id, i) => (ga[i] && gb[i] && out.length < n ? out.push(id) : undefined));
    }
    return out;
  }

  /** Points an alias back at the variant it named before its last move. */
  async rollbackAlias(feature: string, name: string, opts: { actor?: Actor } = {}): Promise<{ alias: AliasRecord; previous: string }> {
    const current = await this.registry.getAlias(feature, name);
    if (!current) throw nlError('NL_NOT_FOUND', `alias ${formatRef(feature, name)} does not exist`);
    const back = await this.registry.previousAliasVariant(feature, name);
    if (!back) throw nlError('NL_CONFLICT', `alias ${formatRef(feature, name)} has no earlier variant to roll back to`);
    const { alias } = await this.setAlias(feature, name, back, opts);
    return { alias, previous: current.variant };
  }

  /** Mirrors `fraction` of alias `name`'s nearest queries to `variant`; fraction 0 stops it. */
  async shadowAlias(feature: string, name: string, variant: string, fraction: number): Promise<void> {
    if (!(fraction >= 0 && fraction <= 1)) throw nlError('NL_BAD_REQUEST', '--fraction must be a number from 0 to 1');
    if (!(await this.registry.getAlias(feature, name))) throw nlError('NL_NOT_FOUND', `alias ${formatRef(feature, name)} does not exist`);
    if (fraction === 0) {
      await this.registry.deleteShadow(feature, name);
      return;
    }
    const target = await this.servable(formatRef(feature, variant), 'embedding');
    if (target.variant !== variant) throw nlError('NL_BAD_REQUEST', `${formatRef(feature, variant)} is an alias; shadow a variant`);
    await this.registry.setShadow(feature, name, variant, fraction);
    this.shadowCache = undefined;
  }

  /**
   * Removes a variant's index and online rows, keeping its registry record and lineage as `dropped`. Refused
   * while an alias points at it or shadows traffic to it.
   */
  async drop(ref: string, opts: { actor?: Actor } = {}): Promise<FeatureRecord> {
    const { name, tag: variant } = parseFullRef(ref) ?? {};
    if (!name || !variant) throw nlError('NL_BAD_REQUEST', `drop names one variant: FEATURE@VARIANT, got ${JSON.stringify(ref)}`);
    const feature = await this.registry.getFeature(name, variant);
    if (!feature) throw nlError('NL_FEATURE_NOT_FOUND', ref);
    if (feature.status === 'dropped') return feature;
    const aliases = (await this.registry.listAliases(name)).filter((a) => a.variant === variant);
    if (aliases.length) throw nlError('NL_CONFLICT', `${ref} is served by alias ${aliases.map((a) => formatRef(name, a.name)).join(', ')}; move the alias first`);
    const shadows = (await this.registry.listShadows(name)).filter((s) => s.variant === variant);
    if (shadows.length) throw nlError('NL_CONFLICT', `${ref} receives shadow traffic of ${shadows.map((s) => formatRef(name, s.alias)).join(', ')}; stop it with fraction 0 first`);
    if (feature.status === 'materializing') throw nlError('NL_CONFLICT', `${ref} is being materialized`);
    await this.dropData(feature);
    this.live.unfollow(feature);
    await this.registry.markDropped(name, variant, opts.actor ?? osActor());
    return (await this.registry.getFeature(name, variant))!;
  }

  private async planQuery(feature: EmbeddingFeatureRecord, collection: VectorCollection, provider: VectorProvider, req: Omit<NearestRequest, 'feature'>) {
    const { k, filter } = validateQuery({ k: req.k ?? 10, filter: req.filter }, feature.metadata, { maxK: LIMITS.maxK });
    if (req.ef !== undefined && (!Number.isInteger(req.ef) || req.ef < 1 || req.ef > LIMITS.maxEf)) {
      throw nlError('NL_LIMIT_EXCEEDED', `ef must be an integer from 1 to ${LIMITS.maxEf}`);
    }
    if (req.diversity !== undefined) {
      const l = req.diversity?.lambda;
      if (typeof l !== 'number' || !(l >= 0 && l <= 1)) throw nlError('NL_BAD_REQUEST', 'diversity.lambda must be a number from 0 to 1');
      const c = req.diversity.candidates;
      if (c !== undefined && (!Number.isInteger(c) || c < k || c > LIMITS.maxK)) {
        throw nlError('NL_LIMIT_EXCEEDED', `diversity.candidates must be an integer from k (${k}) to ${LIMITS.maxK}`);
      }
    }
    const exclude = new Set(req.exclude ?? []);
    const q = req.query as Record<string, unknown>;
    if (!q || typeof q !== 'object') throw nlError('NL_BAD_REQUEST', 'query must be one of {vector}, {id}, {text}, {positive, negative}');
    const keys = Object.keys(q);
    let vector: Vector;
    let examples: { positive: Array<string | Vector>; negative: Array<string | Vector> } | undefined;
    if (keys.length === 1 && 'vector' in q) vector = toVector(q.vector, feature.dims, 'query.vector');
    else if (keys.length === 1 && 'id' in q) {
      if (typeof q.id !== 'string' || !q.id) throw nlError('NL_BAD_REQUEST', 'query.id must be a non-empty string');
      const [rec] = await collection.get([q.id]);
      if (!rec) throw nlError('NL_ID_NOT_FOUND', q.id, refOf(feature));
      vector = rec.vector;
      exclude.add(q.id);
    } else if (keys.length === 1 && 'text' in q) {
      if (!feature.text) throw nlError('NL_UNSUPPORTED', `${refOf(feature)} has no model; query it by vector or id`);
      if (typeof q.text !== 'string' || !q.text.trim()) throw nlError('NL_BAD_TEXT', 'query.text must be a non-empty string');
      const model = await this.model(feature.text.model.name, feature.text.model.version);
      [vector] = await model.embed([q.text]);
    } else if ('positive' in q && keys.every((key) => key === 'positive' || key === 'negative')) {
      const parse = async (list: unknown, what: string) => {
        if (list === undefined && what === 'negative') return [];
        if (!Array.isArray(list) || (what === 'positive' && list.length === 0) || list.length > 100) {
          throw nlError('NL_BAD_REQUEST', `query.${what} must be an array of 1 to 100 ids or vectors`);
        }
        return Promise.all(
          list.map(async (x, i): Promise<{ key: string | Vector; vector: Vector }> => {
            if (typeof x === 'string') {
              const [rec] = await collection.get([x]);
              if (!rec) throw nlError('NL_ID_NOT_FOUND', x, refOf(feature));
              exclude.add(x);
              return { key: x, vector: rec.vector };
            }
            const v = toVector(x, feature.dims, `query.${what}[${i}]`);
            return { key: v, vector: v };
          }),
        );
      };
      const pos = await parse(q.positive, 'positive');
      const neg = await parse(q.negative, 'negative');
      vector = exampleVector(pos.map((p) => p.vector), neg.map((n) => n.vector));
      if (provider.supportsExamples && provider.searchExamples) examples = { positive: pos.map((p) => p.key), negative: neg.map((n) => n.key) };
    } else throw nlError('NL_BAD_REQUEST', 'query must be exactly one of {vector}, {id}, {text}, {positive, negative?}');
    if (filter && !provider.supportsFilter) throw nlError('NL_UNSUPPORTED', `provider ${provider.name} cannot filter`);
    const fetchK = req.diversity ? (req.diversity.candidates ?? Math.min(k * LIMITS.overfetchForDiversity, LIMITS.maxK)) : k;
    return {
      k,
      examples,
      search: {
        vector,
        k: fetchK,
        ...(req.ef !== undefined ? { ef: Math.max(req.ef, fetchK) } : {}),
        ...(filter ? { filter } : {}),
        ...(exclude.size ? { exclude: [...exclude] } : {}),
        includeVectors: Boolean(req.include?.vectors || req.diversity),
        ...(req.exact ? { exact: true } : {}),
        ...(req.include?.metadata ? { includeMetadata: true } : {}),
      },
    };
  }

  /** Joins scalar and vector features of the hits (stage 2's feature pull, in the same call); returns the variants used. */
  private async joinFeatures(hits: Hit[], refs: string[]): Promise<Record<string, string>> {
    const { rows, variants } = await this.onlineWithVariants(hits.map((h) => h.id), refs);
    hits.forEach((h, i) => (h.features = rows[i].features));
    return variants;
  }

  /** Many ids x many features (scalar or embedding), grouped into one call per provider. */
  async online(ids: string[], refs: string[]): Promise<Array<{ id: string; features: Record<string, OnlineValue> }>> {
    return (await this.onlineWithVariants(ids, refs)).rows;
  }

  /** `online`, and which `name@variant` answered each feature reference. */
  async onlineWithVariants(
    ids: string[],
    refs: string[],
  ): Promise<{ rows: Array<{ id: string; features: Record<string, OnlineValue> }>; variants: Record<string, string> }> {
    const rows = ids.map((id) => ({ id, features: {} as Record<string, OnlineValue> }));
    const variants: Record<string, string> = {};
    const byProvider = new Map<string, Array<{ ref: string; feature: FeatureRecord }>>();
    for (const ref of refs) {
      const feature = await this.servable(ref);
      variants[ref] = refOf(feature);
      const list = byProvider.get(feature.provider) ?? [];
      list.push({ ref, feature });
      byProvider.set(feature.provider, list);
    }
    await Promise.all(
      [...byProvider.values()].map(async (list) => {
        const scalar = list.filter((x) => x.feature.kind === 'scalar');
        for (const x of scalar) await this.live.follow(x.feature);
        if (scalar.length) {
          const store = await this.onlineStore(scalar[0].feature.provider);
          const got = await store.get(ids, scalar.map((x) => refOf(x.feature)));
          got.forEach((row, i) => scalar.forEach((x, j) => (rows[i].features[x.ref] = row[j])));
        }
        for (const x of list.filter((y) => y.feature.kind === 'embedding')) {
          const got = await (await this.collection(x.feature)).get(ids);
          got.forEach((rec, i) => (rows[i].features[x.ref] = rec ? rec.vector : null));
        }
      }),
    );
    return { rows, variants };
  }

  async embed(modelRef: string, texts: unknown[]): Promise<{ model: string; dims: number; vectors: Vector[] }> {
    const { name, tag: version } = parseFullRef(modelRef) ?? {};
    if (!name || !version) throw nlError('NL_BAD_REQUEST', `model must be name@version, got ${JSON.stringify(modelRef)}`);
    texts.forEach((t, i) => {
      if (typeof t !== 'string' || !t.trim()) throw nlError('NL_BAD_TEXT', `texts[${i}] must be a non-empty string`);
    });
    const model = await this.model(name, version);
    return { model: modelRef, dims: model.dims, vectors: await model.embed(texts as string[]) };
  }

  /**
   * Online upserts and deletes on an embedding feature. Everything is validated (and texts embedded)
   * before the first write, so a bad item changes nothing.
   */
  async writeVectors(
    featureRef: string,
    upserts: Array<{ id: string; vector?: unknown; text?: unknown; metadata?: Record<string, unknown> }>,
    deletes: string[] = [],
  ): Promise<{ feature: string; variant: string; upserted: number; deleted: number; offset: number }> {
    const feature = await this.servable(featureRef, 'embedding');
    const records = upserts.map((u, i) => {
      if (typeof u.id !== 'string' || !u.id) throw nlError('NL_BAD_REQUEST', `upserts[${i}].id must be a non-empty string`);
      if ((u.vector === undefined) === (u.text === undefined)) throw nlError('NL_BAD_REQUEST', `upserts[${i}] needs exactly one of vector or text`);
      const metadata = u.metadata ?? {};
      for (const [key, value] of Object.entries(metadata)) {
        if (!feature.metadata.includes(key)) throw nlError('NL_BAD_REQUEST', `upserts[${i}].metadata.${key} is not a metadata field of ${feature.name}`);
        if (value !== null && !['string', 'number', 'boolean'].includes(typeof value)) throw nlError('NL_BAD_REQUEST', `upserts[${i}].metadata.${key} must be a scalar`);
        if (typeof value === 'number' && !Number.isFinite(value)) throw nlError('NL_BAD_REQUEST', `upserts[${i}].metadata.${key} must be finite`);
      }
      if (u.text !== undefined && (typeof u.text !== 'string' || !u.text.trim())) throw nlError('NL_BAD_TEXT', `upserts[${i}].text must be a non-empty string`);
      if (u.text !== undefined && !feature.text) throw nlError('NL_UNSUPPORTED', `${refOf(feature)} has no model; send vectors`);
      return {
        id: u.id,
        vector: u.vector === undefined ? undefined : toVector(u.vector, feature.dims, `upserts[${i}].vector`),
        text: u.text as string | undefined,
        metadata: Object.fromEntries(feature.metadata.map((f) => [f, (metadata[f] ?? null) as string | number | boolean | null])),
      };
    });
    deletes.forEach((d, i) => {
      if (typeof d !== 'string' || !d) throw nlError('NL_BAD_REQUEST', `deletes[${i}] must be a non-empty string`);
    });
    const needText = records.filter((r) => r.vector === undefined);
    if (needText.length) {
      const model = await this.model(feature.text!.model.name, feature.text!.model.version);
      const vectors = await model.embed(needText.map((r) => r.text!));
      needText.forEach((r, i) => (r.vector = vectors[i]));
    }
    records.forEach((r, i) => checkIndexable(r.vector!, feature.metric, `upserts[${i}].vector`));
    const offset = await this.live.writeVectors(
      feature,
      records.map((r) => ({ id: r.id, vector: r.vector!, metadata: r.metadata })),
      deletes,
    );
    this.health.observe(
      feature,
      records.map((r) => r.vector!),
      records.map((r) => r.id),
    );
    return { feature: feature.name, variant: feature.variant, upserted: records.length, deleted: deletes.length, offset };
  }

  /**
   * Rows pushed to a source by name: every variant built from any variant of it updates from the same rows.
   * Resolves once they are durable in the source's log and applied to every materialized variant here.
   */
  push(source: string, rows: unknown[]): Promise<PushResult> {
    return this.live.push(source, rows);
  }

  /** Size of every materialized embedding feature's index, for metrics. */
  async indexSizes(): Promise<Array<{ feature: string; variant: string; rows: number }>> {
    return (await this.registry.listFeatures())
      .filter((f) => f.kind === 'embedding' && f.status === 'materialized')
      .map((f) => ({ feature: f.name, variant: f.variant, rows: f.rows }));
  }
}

/** Text features without `dims` take their model's, as probed (or registered). */
async function withModelDims(defs: Definitions, probes: Map<string, ModelProbe>, registry: Registry): Promise<Definitions> {
  const features = await Promise.all(defs.features.map(async (f) => {
    if (!f.text || f.dims !== undefined) return f;
    const mref = refOf(f.text.model);
    const dims = probes.get(mref)?.dims ?? (await registry.getModel(f.text.model.name, f.text.model.version))?.dims;
    return dims === undefined ? f : { ...f, dims };
  }));
  return { ...defs, features };
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

/** Qdrant's average-vector recommend strategy: avg(positive) + (avg(positive) - avg(negative)). */
function exampleVector(positive: Vector[], negative: Vector[]): Vector {
  const dims = positive[0].length;
  const avg = (list: Vector[]) => {
    const out = new Float32Array(dims);
    for (const v of list) for (let i = 0; i < dims; i++) out[i] += v[i] / list.length;
    return out;
  };
  const p = avg(positive);
  if (!negative.length) return p;
  const n = avg(negative);
  for (let i = 0; i < dims; i++) p[i] = 2 * p[i] - n[i];
  return p;
}
