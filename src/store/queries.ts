import { nlError } from '../errors.ts';
import { validateQuery } from '../filter.ts';
import type { VectorCollection, VectorProvider } from '../providers/vector/types.ts';
import { type EmbeddingFeatureRecord, type FeatureRecord, type ShadowRecord } from '../registry/registry.ts';
import type { Hit, OnlineValue, Vector } from '../types.ts';
import { checkIndexable, toVector } from '../vector.ts';
import { type PushResult } from './live.ts';
import { overlapAt, ShadowTally } from './lifecycle.ts';
import { mmr } from './mmr.ts';
import { StoreCore } from './core.ts';
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

/** Bounds that keep one request from monopolising the process; the HTTP layer adds its own. */
export const LIMITS = { maxK: 1000, maxEf: 4096, overfetchForDiversity: 4 };

/** Serving: nearest neighbours (with filters, MMR and shadow traffic), online joins, embedding and vector writes. */
export abstract class QueryStore extends StoreCore {
  async close(): Promise<void> {
    if (this.shadowTimer) clearTimeout(this.shadowTimer);
    await this.flushShadows();
    await super.close();
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

  // ---- shadow traffic ----

  protected readonly shadowTally = new ShadowTally();
  protected shadowTimer: NodeJS.Timeout | undefined;

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
      void this.nearestMany(
        formatRef(feature.name, shadow.variant),
        picked.map(([r]) => ({ ...r, include: undefined, diversity: r.diversity })),
      )
        .then((res) =>
          res.forEach((r, i) =>
            this.shadowTally.add(
              feature.name,
              alias,
              shadow.variant,
              overlapAt(picked[i][1].hits, r.hits, Math.min(picked[i][0].k ?? 10, Math.max(picked[i][1].hits.length, r.hits.length))),
            ),
          ),
        )
        .catch(() => picked.forEach(() => this.shadowTally.add(feature.name, alias, shadow.variant, null)));
      this.shadowTimer ??= setTimeout(() => {
        this.shadowTimer = undefined;
        void this.flushShadows().catch(() => undefined);
      }, 2000).unref();
    });
  }

  protected shadowCache: { at: number; list: ShadowRecord[] } | undefined;

  private async shadowOf(feature: string, alias: string) {
    if (!this.shadowCache || Date.now() - this.shadowCache.at > 1000) this.shadowCache = { at: Date.now(), list: await this.registry.listShadows() };
    return this.shadowCache.list.find((s) => s.feature === feature && s.alias === alias);
  }

  /** Writes what mirrored queries measured to the registry, where `show` and other processes read it. */
  async flushShadows(): Promise<void> {
    for (const t of this.shadowTally.take()) await this.registry.addShadowResults(t.feature, t.alias, t.variant, t.queries, t.overlapSum, t.errors);
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
      vector = exampleVector(
        pos.map((p) => p.vector),
        neg.map((n) => n.vector),
      );
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
    const { rows, variants } = await this.onlineWithVariants(
      hits.map((h) => h.id),
      refs,
    );
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
          const got = await store.get(
            ids,
            scalar.map((x) => refOf(x.feature)),
          );
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
        if (value !== null && !['string', 'number', 'boolean'].includes(typeof value))
          throw nlError('NL_BAD_REQUEST', `upserts[${i}].metadata.${key} must be a scalar`);
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
