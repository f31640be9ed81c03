import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Definitions } from '../config.ts';
import { NearlineError, nlError } from '../errors.ts';
import { validateQuery } from '../filter.ts';
import { materialize, type MaterializeOptions, type MaterializeResult } from '../materialize/job.ts';
import { modelFingerprint, probeModel } from '../providers/embedding/fingerprint.ts';
import { createSource, importPlugin, isBuiltinKind } from '../providers/index.ts';
import type { VectorProvider } from '../providers/vector/types.ts';
import { osActor, Registry, type Actor, type AliasRecord, type FeatureRecord, type ModelProbe, type PlanItem } from '../registry/registry.ts';
import type { Hit } from '../types.ts';
import { processAlive } from '../log/file.ts';
import { checkColumns } from './columns.ts';
import { failedGates, normStats, parseGate, summarize, type CompareReport } from './lifecycle.ts';
import { collectionSpec, type FeatureStoreOptions } from './core.ts';
import { LIMITS, QueryStore, type NearestRequest, type Query } from './queries.ts';
import { formatRef, refOf, parseFullRef } from '../refs.ts';

export type { FeatureStoreOptions } from './core.ts';
export { collectionSpec } from './core.ts';
export { LIMITS, type NearestRequest, type NearestResult, type Query } from './queries.ts';

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

/**
 * Opens nearline in `home` without the HTTP server: `apply`, `materialize`, `nearest`, `online`, `embed`,
 * `writeVectors`, then `close()`. Providers and model runtimes load on first use.
 */
export function openStore(opts: FeatureStoreOptions): FeatureStore {
  return FeatureStore.open(opts);
}

/** How long a build lease lasts without renewal; its holder renews it every third of that. */
const LEASE_MS = 30_000;

/**
 * Orchestration over the registry and providers: apply, materialize, nearest, online, embed.
 * Providers, collections and models are opened once and reused. No HTTP, no CLI here.
 *
 * Built in layers, one file each: core.ts (registry, live ingestion, health, providers, collections, models),
 * queries.ts (nearest, MMR, shadow traffic, online joins, embed, vector writes), and this file (definitions,
 * aliases, materialization, compare, rollback, shadow, drop).
 */
export class FeatureStore extends QueryStore {
  private constructor(opts: FeatureStoreOptions) {
    super(opts);
  }

  static open(opts: FeatureStoreOptions): FeatureStore {
    return new FeatureStore(opts);
  }

  // ---- definitions ----

  /**
   * Plans definitions against the registry and, unless `dryRun` or anything is refused, writes them
   * in one transaction. Models are loaded to learn their dims and fingerprint, and the columns features
   * reference are checked against their sources, before anything is written.
   */
  async apply(defs: Definitions, opts: ApplyOptions = {}): Promise<{ plan: PlanItem[]; applied: boolean }> {
    // Plugins named by module path load before planning: the plan asks each provider kind for its role.
    const kinds = [
      ...defs.providers.map((p) => p.kind),
      ...(await this.registry.listProviders()).map((p) => p.kind),
      ...defs.models.map((m) => m.runtime),
      ...defs.sources.map((s) => s.kind),
    ];
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
    const changed = new Set(
      plan.filter((p) => (p.kind === 'feature' || p.kind === 'source') && (p.action === 'create' || p.action === 'update')).map((p) => p.name),
    );
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
      if (previous === undefined)
        throw nlError('NL_CONFLICT', `alias ${formatRef(feature, name)} does not exist yet: there is nothing to compare ${variant} with`);
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
        throw new NearlineError(
          'NL_PROVIDER_ERROR',
          [providerName, `${formatRef(feature, name)} moved in the registry, but its alias ${aliasName} did not follow (${why})${retry}`],
          { cause: e },
        );
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

  // ---- model changes: compare, gated alias moves, rollback, shadow, drop ----

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
      if (!Array.isArray(opts.queries) || !opts.queries.length || opts.queries.length > 10_000)
        throw nlError('NL_BAD_REQUEST', 'queries must be a list of 1 to 10,000 query objects');
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
      const [ra, rb, eb] = await Promise.all([
        this.nearestMany(base.a, page),
        this.nearestMany(base.b, page),
        this.nearestMany(
          base.b,
          page.map((q) => ({ ...q, exact: true })),
        ),
      ]);
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
    if (aliases.length)
      throw nlError('NL_CONFLICT', `${ref} is served by alias ${aliases.map((a) => formatRef(name, a.name)).join(', ')}; move the alias first`);
    const shadows = (await this.registry.listShadows(name)).filter((s) => s.variant === variant);
    if (shadows.length)
      throw nlError(
        'NL_CONFLICT',
        `${ref} receives shadow traffic of ${shadows.map((s) => formatRef(name, s.alias)).join(', ')}; stop it with fraction 0 first`,
      );
    if (feature.status === 'materializing') throw nlError('NL_CONFLICT', `${ref} is being materialized`);
    await this.dropData(feature);
    this.live.unfollow(feature);
    await this.registry.markDropped(name, variant, opts.actor ?? osActor());
    return (await this.registry.getFeature(name, variant))!;
  }
}

/** Text features without `dims` take their model's, as probed (or registered). */
async function withModelDims(defs: Definitions, probes: Map<string, ModelProbe>, registry: Registry): Promise<Definitions> {
  const features = await Promise.all(
    defs.features.map(async (f) => {
      if (!f.text || f.dims !== undefined) return f;
      const mref = refOf(f.text.model);
      const dims = probes.get(mref)?.dims ?? (await registry.getModel(f.text.model.name, f.text.model.version))?.dims;
      return dims === undefined ? f : { ...f, dims };
    }),
  );
  return { ...defs, features };
}
