import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import type { AliasDef, Definitions, EmbeddingFeatureDef, EntityDef, FeatureDef, ModelDef, ProviderDef, ScalarFeatureDef, SourceDef } from '../config.ts';
import { nlError, type ErrorCode } from '../errors.ts';
import { providerRole } from '../providers/index.ts';
import { formatRef, refOf, parseRef } from '../refs.ts';

export type FeatureStatus = 'registered' | 'materializing' | 'materialized' | 'failed' | 'dropped';

interface Registered {
  status: FeatureStatus;
  rows: number;
  createdAt: string;
  materializedAt: string | null;
}

/** A registered feature variant, narrowed by `kind` like its definition; a registered embedding always has `dims`. */
export type FeatureRecord = EmbeddingFeatureRecord | ScalarFeatureRecord;
export type EmbeddingFeatureRecord = EmbeddingFeatureDef & Registered & { dims: number };
export type ScalarFeatureRecord = ScalarFeatureDef & Registered;

export interface ModelRecord extends ModelDef {
  dims: number;
  sha256: string;
  createdAt: string;
}

export interface ProviderRecord extends ProviderDef {
  createdAt: string;
}

export interface AliasRecord extends AliasDef {
  updatedAt: string;
}

export interface MaterializationState {
  status: 'running' | 'done' | 'failed';
  position: number;
  line: number;
  /** A keyset source's resume point (its last key), when its position alone cannot say where to continue. */
  cursor?: string;
  rowsRead: number;
  rowsSkipped: number;
  startedAt: string;
  updatedAt: string;
  finishedAt: string | null;
  error: string | null;
}

export type PlanAction = 'create' | 'update' | 'unchanged' | 'refused';

export interface PlanItem {
  action: PlanAction;
  kind: 'provider' | 'entity' | 'source' | 'model' | 'feature' | 'alias';
  name: string;
  reason?: string;
  code?: ErrorCode;
  /** Set when applying the item changes what running callers get: shown, and confirmed before it is written. */
  warning?: string;
}

/** What apply learns about a model by loading it: written to the registry with the model. */
export interface ModelProbe {
  dims: number;
  sha256: string;
}

export interface ShadowRecord {
  feature: string;
  alias: string;
  variant: string;
  fraction: number;
  /** Mirrored queries measured, and their mean overlap@k with the alias's own answer (null before the first). */
  queries: number;
  overlap: number | null;
  errors: number;
  since: string;
  updatedAt: string;
}

export interface ApiKeyRecord {
  id: string;
  scope: 'serve' | 'write' | 'admin';
  features: string[] | null;
  createdAt: string;
}

/** A key as `nearline keys list` shows it: never its secret or hash. */
export interface ApiKeyInfo extends ApiKeyRecord {
  createdBy: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
}

/**
 * Who changed the registry: `key:<id>` for a call with an API key, `anonymous` for one to a server that
 * has no key yet, `user:<name>` for the CLI (the OS user).
 */
export type Actor = string;

/** The OS user running this process, as an actor. */
export function osActor(): Actor {
  try {
    return `user:${os.userInfo().username}`;
  } catch {
    // No passwd entry (some containers): the environment or the uid still says who.
    return `user:${process.env.USER ?? process.env.LOGNAME ?? `uid ${process.getuid?.() ?? '?'}`}`;
  }
}

/** The actor for a request that carries `key`, or none while the server is open. */
export function keyActor(key: { id: string } | null | undefined): Actor {
  return key ? `key:${key.id}` : 'anonymous';
}

/** One change to the registry, kept forever: when, by whom, what. */
export interface RegistryEvent {
  id: number;
  at: string;
  actor: Actor;
  /** `create`, `update`, `alias.set`, `materialized`, `materialize.failed`, `key.create`, `key.revoke`, ... */
  action: string;
  /** What changed: `provider`, `entity`, `source`, `model`, `feature`, `alias`, `key`. */
  kind: string;
  /** `name@variant`, `feature@alias`, a key id. */
  name: string;
  /** The feature name the change concerns, when it concerns one. */
  feature: string | null;
  detail: Record<string, unknown> | null;
}

export type NewRegistryEvent = Omit<RegistryEvent, 'id' | 'at' | 'feature' | 'detail'> & { feature?: string | null; detail?: Record<string, unknown> | null };

const now = () => new Date().toISOString();

/** Canonical JSON (sorted keys) so that equal definitions compare equal whatever their key order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
}

/** Runs SQL against one registry backend: `?` placeholders, rows as plain objects. */
export interface Sql {
  all<T = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  get<T = Row>(sql: string, params?: readonly unknown[]): Promise<T | undefined>;
  /** Resolves to the number of rows changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
}

/**
 * The registry: providers, entities, sources, models, features (name@variant), aliases, materialization state
 * and API keys. Every method is asynchronous; `SqliteRegistry` (one file, the default) and `PostgresRegistry`
 * (many writers and serving nodes) implement the storage, this class everything the registry decides.
 * Open one with `openRegistry` (src/registry/open.ts).
 */
export abstract class Registry {
  /** `sqlite` or `postgres`. */
  abstract readonly backend: 'sqlite' | 'postgres';
  /** Where the registry lives: a file path, or a PostgreSQL URL without its password. */
  abstract readonly location: string;

  /** Statements outside a transaction. */
  protected abstract readonly sql: Sql;

  /**
   * Runs `fn` in one transaction, serialized with every other registry transaction of every process: all of
   * it lands or nothing does, and what it reads stays true until it commits.
   */
  protected abstract transaction<T>(fn: (q: Sql) => Promise<T>): Promise<T>;

  /** Tells other processes that features or aliases changed, inside the transaction `q` when there is one. */
  protected abstract announce(q: Sql): Promise<void>;

  abstract close(): Promise<void>;

  /**
   * Feature references already resolved, while the backend can say when they go stale (PostgreSQL's
   * LISTEN/NOTIFY): serving resolves a reference on every request, and this spares it a round trip.
   */
  private readonly resolved = new Map<string, FeatureRecord>();
  private generation = 0;
  protected cacheResolved = false;

  /** Forgets every resolved reference: a feature or alias changed here or in another process. */
  protected invalidate(): void {
    this.generation++;
    this.resolved.clear();
  }

  /** Marks a change to features or aliases: stale here at once, and in other processes when it commits. */
  private async changed(q: Sql): Promise<void> {
    this.invalidate();
    await this.announce(q);
  }

  /** Runs a write transaction that changes features or aliases. */
  private async change<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
    try {
      return await this.transaction(async (q) => {
        const out = await fn(q);
        await this.changed(q);
        return out;
      });
    } finally {
      // A read that started before the commit must not cache what it saw.
      this.invalidate();
    }
  }

  /** The versions of the migrations applied, in order. */
  async migrations(): Promise<number[]> {
    return (await this.sql.all<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).map((r) => Number(r.version));
  }

  // ---- reads ----

  async getProvider(name: string, q: Sql = this.sql): Promise<ProviderRecord | undefined> {
    const r = await q.get('SELECT * FROM providers WHERE name = ?', [name]);
    return r && { name: r.name, kind: r.kind, options: JSON.parse(r.options), createdAt: r.created_at };
  }

  async listProviders(q: Sql = this.sql): Promise<ProviderRecord[]> {
    const rows = await q.all('SELECT * FROM providers ORDER BY name');
    return rows.map((r) => ({ name: r.name, kind: r.kind, options: JSON.parse(r.options), createdAt: r.created_at }));
  }

  async getEntity(name: string, q: Sql = this.sql): Promise<EntityDef | undefined> {
    const r = await q.get<EntityDef>('SELECT name, key FROM entities WHERE name = ?', [name]);
    return r && { name: r.name, key: r.key };
  }

  async getSource(name: string, variant: string, q: Sql = this.sql): Promise<SourceDef | undefined> {
    const r = await q.get('SELECT spec FROM sources WHERE name = ? AND variant = ?', [name, variant]);
    return r && JSON.parse(r.spec);
  }

  async getModel(name: string, version: string, q: Sql = this.sql): Promise<ModelRecord | undefined> {
    const r = await q.get('SELECT * FROM models WHERE name = ? AND version = ?', [name, version]);
    return r && toModel(r);
  }

  async listModels(name?: string): Promise<ModelRecord[]> {
    const rows = await this.sql.all(`SELECT * FROM models ${name ? 'WHERE name = ?' : ''} ORDER BY name, created_at`, name ? [name] : []);
    return rows.map(toModel);
  }

  async getFeature(name: string, variant: string, q: Sql = this.sql): Promise<FeatureRecord | undefined> {
    const r = await q.get('SELECT * FROM features WHERE name = ? AND variant = ?', [name, variant]);
    return r && toFeature(r);
  }

  async listFeatures(name?: string, q: Sql = this.sql): Promise<FeatureRecord[]> {
    const rows = await q.all(`SELECT * FROM features ${name ? 'WHERE name = ?' : ''} ORDER BY name, created_at, rowid`, name ? [name] : []);
    return rows.map(toFeature);
  }

  async getAlias(feature: string, name: string, q: Sql = this.sql): Promise<AliasRecord | undefined> {
    const r = await q.get('SELECT * FROM aliases WHERE feature = ? AND name = ?', [feature, name]);
    return r && { feature: r.feature, name: r.name, variant: r.variant, updatedAt: r.updated_at };
  }

  async listAliases(feature?: string): Promise<AliasRecord[]> {
    const rows = await this.sql.all(`SELECT * FROM aliases ${feature ? 'WHERE feature = ?' : ''} ORDER BY feature, name`, feature ? [feature] : []);
    return rows.map((r) => ({ feature: r.feature, name: r.name, variant: r.variant, updatedAt: r.updated_at }));
  }

  /**
   * `name` -> alias `prod` if set, else the only variant (several and no `prod`: NL_AMBIGUOUS_FEATURE, never a
   * guess that changes when a variant is added); `name@x` -> alias x if one exists, else variant x.
   */
  async resolveFeature(ref: string): Promise<FeatureRecord> {
    if (!this.cacheResolved) return this.resolveNow(ref);
    const hit = this.resolved.get(ref);
    if (hit) return hit;
    const generation = this.generation;
    const feature = await this.resolveNow(ref);
    if (generation === this.generation) {
      // Bounded: references are few in practice, but a caller could name many that exist.
      if (this.resolved.size >= 10_000) this.resolved.clear();
      this.resolved.set(ref, feature);
    }
    return feature;
  }

  private async resolveNow(ref: string): Promise<FeatureRecord> {
    const { name, tag } = parseRef(ref);
    if (tag === undefined) {
      const prod = await this.getAlias(name, 'prod');
      if (prod) return (await this.getFeature(name, prod.variant))!;
      // Two rows tell "only one" from "several"; the full list is read only for the error. A dropped variant serves nothing.
      const first = await this.sql.all('SELECT * FROM features WHERE name = ? AND dropped_at IS NULL ORDER BY created_at, rowid LIMIT 2', [name]);
      if (!first.length) {
        const dropped = await this.sql.get('SELECT * FROM features WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1', [name]);
        if (dropped) return toFeature(dropped);
        throw nlError('NL_FEATURE_NOT_FOUND', ref);
      }
      if (first.length > 1) {
        const variants = (await this.listFeatures(name)).filter((v) => v.status !== 'dropped');
        const list = variants.map((v) => `${formatRef(name, v.variant)} (${v.status})`).join(', ');
        throw nlError('NL_AMBIGUOUS_FEATURE', name, `it has ${variants.length} variants and no alias prod: ${list}; name one, or run \`nearline alias set ${name} prod VARIANT\``);
      }
      return toFeature(first[0]);
    }
    const alias = await this.getAlias(name, tag);
    const feature = await this.getFeature(name, alias ? alias.variant : tag);
    if (!feature) throw nlError('NL_FEATURE_NOT_FOUND', ref);
    return feature;
  }

  /** Every feature variant built from any variant of source `name`: what a row pushed to it updates. */
  async featuresOfSource(name: string): Promise<FeatureRecord[]> {
    return (await this.sql.all('SELECT * FROM features WHERE source_name = ? ORDER BY name, created_at, rowid', [name])).map(toFeature);
  }

  /** Source variants by name. */
  async listSourceVariants(name: string): Promise<SourceDef[]> {
    return (await this.sql.all('SELECT spec FROM sources WHERE name = ? ORDER BY created_at, rowid', [name])).map((r) => JSON.parse(r.spec));
  }

  /** Names of every source. */
  async listSourceNames(): Promise<string[]> {
    return (await this.sql.all<{ name: string }>('SELECT DISTINCT name FROM sources ORDER BY name')).map((r) => r.name);
  }

  /** The log offset a variant has made durable (0: none recorded). */
  async getLogOffset(feature: string, variant: string): Promise<number> {
    const r = await this.sql.get<{ offset: number }>('SELECT "offset" FROM log_offsets WHERE feature = ? AND variant = ?', [feature, variant]);
    return r ? Number(r.offset) : 0;
  }

  async setLogOffset(feature: string, variant: string, offset: number, q: Sql = this.sql): Promise<void> {
    await q.run(
      'INSERT INTO log_offsets VALUES (?, ?, ?, ?) ON CONFLICT(feature, variant) DO UPDATE SET "offset" = excluded."offset", updated_at = excluded.updated_at',
      [feature, variant, offset, now()],
    );
  }

  /** Features that use a model, source or provider: lineage read backwards. */
  async dependents(kind: 'model' | 'source' | 'provider' | 'entity', name: string, variant?: string, q: Sql = this.sql): Promise<FeatureRecord[]> {
    const where = {
      model: 'model_name = ? AND model_version = ?',
      source: 'source_name = ? AND source_variant = ?',
      provider: 'provider = ?',
      entity: 'entity = ?',
    }[kind];
    const args = variant === undefined ? [name] : [name, variant];
    return (await q.all(`SELECT * FROM features WHERE ${where} ORDER BY name, variant`, args)).map(toFeature);
  }

  // ---- apply ----

  /**
   * Compares definitions with the registry. Pure: writes nothing. A definition that would change
   * a materialized variant, a registered model, or anything in use is `refused`.
   */
  async plan(defs: Definitions, probes: Map<string, ModelProbe>, opts: { force?: boolean } = {}, q: Sql = this.sql): Promise<PlanItem[]> {
    const items: PlanItem[] = [];
    const push = (kind: PlanItem['kind'], name: string, action: PlanAction, reason?: string, code?: ErrorCode) =>
      items.push({ kind, name, action, ...(reason ? { reason } : {}), ...(code ? { code } : {}) });
    const providerKinds = new Map((await this.listProviders(q)).map((p) => [p.name, p.kind]));

    for (const p of defs.providers) {
      const old = await this.getProvider(p.name, q);
      if (!providerRole(p.kind)) throw nlError('NL_BAD_DEFINITION', `provider ${p.name}: unknown kind ${p.kind}`);
      providerKinds.set(p.name, p.kind);
      if (!old) push('provider', p.name, 'create');
      else if (old.kind === p.kind && canonical(old.options) === canonical(p.options)) push('provider', p.name, 'unchanged');
      else if (old.kind !== p.kind && (await this.dependents('provider', p.name, undefined, q)).length) {
        push('provider', p.name, 'refused', `kind ${old.kind} -> ${p.kind} while features use it; define a new provider`, 'NL_CONFLICT');
      } else push('provider', p.name, 'update');
    }
    for (const e of defs.entities) {
      const old = await this.getEntity(e.name, q);
      if (!old) push('entity', e.name, 'create');
      else if (old.key === e.key) push('entity', e.name, 'unchanged');
      else if ((await this.dependents('entity', e.name, undefined, q)).length) push('entity', e.name, 'refused', `key ${old.key} -> ${e.key} while features use it`, 'NL_CONFLICT');
      else push('entity', e.name, 'update');
    }
    for (const s of defs.sources) {
      const ref = refOf(s);
      const old = await this.getSource(s.name, s.variant, q);
      if (!old) push('source', ref, 'create');
      else if (canonical(old) === canonical(s)) push('source', ref, 'unchanged');
      else {
        const used = (await this.dependents('source', s.name, s.variant, q)).filter((f) => f.status === 'materialized' || f.status === 'materializing');
        if (used.length) push('source', ref, 'refused', `materialized by ${used.map((f) => refOf(f)).join(', ')}; a changed source is a new source variant`, 'NL_VARIANT_IMMUTABLE');
        else push('source', ref, 'update');
      }
    }
    for (const m of defs.models) {
      const ref = refOf(m);
      const old = await this.getModel(m.name, m.version, q);
      const probe = probes.get(ref);
      if (!old) push('model', ref, 'create');
      else if (canonical(modelSpec(old)) !== canonical(m)) push('model', ref, 'refused', 'a registered model version is immutable; register a new version', 'NL_VARIANT_IMMUTABLE');
      else if (probe && probe.sha256 !== old.sha256) {
        push('model', ref, 'refused', `its files changed on disk (sha256 ${old.sha256.slice(0, 12)} -> ${probe.sha256.slice(0, 12)}); a new model means a new version`, 'NL_MODEL_CHANGED');
      } else push('model', ref, 'unchanged');
    }
    const sources = new Set([...defs.sources.map((s) => refOf(s))]);
    const entities = new Set(defs.entities.map((e) => e.name));
    const modelDims = new Map(defs.models.map((m) => [refOf(m), probes.get(refOf(m))?.dims]));
    for (const f of defs.features) {
      const ref = refOf(f);
      const where = `feature ${ref}`;
      const src = refOf(f.source);
      if (!sources.has(src) && !(await this.getSource(f.source.name, f.source.variant, q))) throw nlError('NL_BAD_DEFINITION', `${where}: source ${src} is not defined`);
      if (!entities.has(f.entity) && !(await this.getEntity(f.entity, q))) throw nlError('NL_BAD_DEFINITION', `${where}: entity ${f.entity} is not defined`);
      const pkind = providerKinds.get(f.provider);
      if (!pkind) throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} is not defined`);
      if (f.kind === 'embedding' && providerRole(pkind) !== 'vector') throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} (${pkind}) is not a vector provider`);
      if (f.kind === 'scalar' && providerRole(pkind) !== 'online') throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} (${pkind}) is not an online store`);
      if (f.text) {
        const mref = refOf(f.text.model);
        const dims = modelDims.has(mref) ? modelDims.get(mref) : (await this.getModel(f.text.model.name, f.text.model.version, q))?.dims;
        if (dims === undefined && !modelDims.has(mref)) throw nlError('NL_BAD_DEFINITION', `${where}: model ${mref} is not defined`);
        if (dims !== undefined && dims !== f.dims) {
          throw nlError('NL_DIMENSION_MISMATCH', `${f.dims} dims for ${where}`, `${dims} from model ${mref}`);
        }
      }
      const old = await this.getFeature(f.name, f.variant, q);
      // `name@x` resolves to alias x first, and a provider may hold an alias `name__x` beside the collections,
      // where a collection of that name would be the aliased variant's.
      if (!old && (await this.getAlias(f.name, f.variant, q))) push('feature', ref, 'refused', `${ref} is an alias; name the variant differently`, 'NL_CONFLICT');
      else if (!old) push('feature', ref, 'create');
      else if (canonical(featureSpec(old)) === canonical(f)) push('feature', ref, 'unchanged');
      else if (old.status === 'materialized') push('feature', ref, 'refused', 'it is materialized; define a new variant instead', 'NL_VARIANT_IMMUTABLE');
      else if (old.status === 'materializing') {
        push('feature', ref, 'refused', `a materialization of it is running or was interrupted; let it finish (or \`materialize ${ref}\` again), or define a new variant`, 'NL_VARIANT_IMMUTABLE');
      }
      // Registered or failed: it never published anything, so its definition may still change.
      else push('feature', ref, 'update', old.status === 'failed' ? 'redefines a variant whose materialization failed' : undefined);
    }
    const features = new Set(defs.features.map((f) => refOf(f)));
    for (const a of defs.aliases) {
      const ref = formatRef(a.feature, a.name);
      if (!features.has(formatRef(a.feature, a.variant)) && !(await this.getFeature(a.feature, a.variant, q))) {
        throw nlError('NL_BAD_DEFINITION', `alias ${ref}: feature ${formatRef(a.feature, a.variant)} is not defined`);
      }
      const old = await this.getAlias(a.feature, a.name, q);
      const unsafe = old?.variant === a.variant || opts.force ? undefined : await this.aliasTargetProblem(a.feature, a.variant, q);
      if (unsafe) push('alias', ref, 'refused', `-> ${a.variant}: ${unsafe}`, 'NL_ALIAS_REFUSED');
      else if (!old) push('alias', ref, 'create');
      else if (old.variant === a.variant) push('alias', ref, 'unchanged');
      else {
        push('alias', ref, 'update', `${old.variant} -> ${a.variant}`);
        const bare = a.name === 'prod' ? ` and to bare ${a.feature}` : '';
        items[items.length - 1].warning = `alias ${ref} moves ${old.variant} -> ${a.variant}: every call to ${ref}${bare} switches variant`;
      }
    }
    await this.warnAmbiguous(defs, items, q);
    return items;
  }

  /**
   * A bare name resolves to the only variant while there is no alias prod: a second variant makes it refused
   * (NL_AMBIGUOUS_FEATURE) for the callers it serves now, so the item creating that variant carries a warning.
   */
  private async warnAmbiguous(defs: Definitions, items: PlanItem[], q: Sql): Promise<void> {
    const names = new Set(defs.features.map((f) => f.name));
    for (const name of names) {
      if ((await this.getAlias(name, 'prod', q)) || defs.aliases.some((a) => a.feature === name && a.name === 'prod')) continue;
      const existing = await this.listFeatures(name, q);
      if (existing.length !== 1 || existing[0].status !== 'materialized') continue;
      const added = items.find((p) => p.kind === 'feature' && p.action === 'create' && p.name.startsWith(`${name}@`));
      if (!added) continue;
      const only = formatRef(name, existing[0].variant);
      added.warning =
        `bare ${name} answers from ${only} now; with ${added.name} beside it and no alias prod, it is refused (NL_AMBIGUOUS_FEATURE). ` +
        `Add the alias { feature: ${name}, name: prod, variant: ${existing[0].variant} } to keep callers on ${only}, or have them name a variant`;
    }
  }

  /**
   * Writes a plan that has no refusals, in one transaction: all of it or nothing. Applies from several processes
   * are serialized: the plan is made again under the registry's lock, and an apply that committed in between and
   * changed what this plan said (an item no longer `unchanged` and no longer what was planned) refuses this one
   * with NL_CONFLICT rather than writing over it.
   */
  async commit(defs: Definitions, plan: PlanItem[], probes: Map<string, ModelProbe>, actor: Actor = osActor(), opts: { force?: boolean } = {}): Promise<void> {
    throwRefused(plan);
    await this.change(async (q) => {
      const now_ = await this.plan(defs, probes, opts, q);
      throwRefused(now_);
      const planned = new Map(plan.map((p) => [`${p.kind}:${p.name}`, p.action]));
      const moved = now_.find((p) => p.action !== 'unchanged' && planned.get(`${p.kind}:${p.name}`) !== p.action);
      if (moved) {
        throw nlError('NL_CONFLICT', `${moved.kind} ${moved.name} changed in the registry since this plan was made (another apply?); plan again and re-run apply`);
      }
      await this.write(q, defs, now_, probes, actor);
    });
  }

  private async write(q: Sql, defs: Definitions, plan: PlanItem[], probes: Map<string, ModelProbe>, actor: Actor): Promise<void> {
    const todo = new Set(plan.filter((p) => p.action === 'create' || p.action === 'update').map((p) => `${p.kind}:${p.name}`));
    const t = now();
    for (const p of defs.providers) {
      if (!todo.has(`provider:${p.name}`)) continue;
      await q.run('INSERT INTO providers VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, options = excluded.options', [p.name, p.kind, JSON.stringify(p.options), t]);
    }
    for (const e of defs.entities) {
      if (!todo.has(`entity:${e.name}`)) continue;
      await q.run('INSERT INTO entities VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET key = excluded.key', [e.name, e.key, t]);
    }
    for (const s of defs.sources) {
      if (!todo.has(`source:${refOf(s)}`)) continue;
      await q.run('INSERT INTO sources VALUES (?, ?, ?, ?, ?) ON CONFLICT(name, variant) DO UPDATE SET kind = excluded.kind, spec = excluded.spec', [s.name, s.variant, s.kind, JSON.stringify(s), t]);
    }
    for (const m of defs.models) {
      const ref = refOf(m);
      if (!todo.has(`model:${ref}`)) continue;
      const probe = probes.get(ref);
      if (!probe) throw nlError('NL_INTERNAL', `model ${ref} was not probed`);
      await q.run('INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)', [m.name, m.version, m.runtime, JSON.stringify(m), probe.dims, probe.sha256, t]);
    }
    for (const f of defs.features) {
      if (!todo.has(`feature:${refOf(f)}`)) continue;
      await q.run(
        `INSERT INTO features (name, variant, kind, entity, source_name, source_variant, provider, model_name, model_version, spec, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(name, variant) DO UPDATE SET kind = excluded.kind, entity = excluded.entity,
           source_name = excluded.source_name, source_variant = excluded.source_variant, provider = excluded.provider,
           model_name = excluded.model_name, model_version = excluded.model_version, spec = excluded.spec,
           status = 'registered', rows = 0, materialized_at = NULL`,
        [f.name, f.variant, f.kind, f.entity, f.source.name, f.source.variant, f.provider, f.text?.model.name ?? null, f.text?.model.version ?? null, JSON.stringify(f), t],
      );
      // A redefined variant starts over: a checkpoint of its old definition must not be resumed.
      await q.run('DELETE FROM materializations WHERE feature = ? AND variant = ?', [f.name, f.variant]);
    }
    for (const p of plan) {
      if (p.action !== 'create' && p.action !== 'update') continue;
      if (p.kind === 'alias') continue; // recorded as alias.set, with the variants
      const feature = p.kind === 'feature' ? parseRef(p.name).name : null;
      await this.recordEvent({ actor, action: p.action, kind: p.kind, name: p.name, feature, ...(p.reason ? { detail: { reason: p.reason } } : {}) }, undefined, q);
    }
    for (const a of defs.aliases) {
      if (todo.has(`alias:${formatRef(a.feature, a.name)}`)) await this.setAliasInTx(q, a.feature, a.name, a.variant, actor);
    }
  }

  // ---- aliases ----

  /**
   * Atomic alias switch; the previous variant stays servable and is recorded for rollback, with who moved it
   * (`actor`, default the OS user). Refuses a variant that could not answer (see `aliasTargetProblem`) unless `force`.
   */
  async setAlias(feature: string, name: string, variant: string, opts: { force?: boolean; actor?: Actor } = {}): Promise<AliasRecord> {
    await this.change(async (q) => {
      const problem = opts.force || (await this.getAlias(feature, name, q))?.variant === variant ? undefined : await this.aliasTargetProblem(feature, variant, q);
      if (problem) throw nlError('NL_ALIAS_REFUSED', formatRef(feature, name), variant, `${problem}`);
      await this.setAliasInTx(q, feature, name, variant, opts.actor ?? osActor());
    });
    return (await this.getAlias(feature, name))!;
  }

  /**
   * Why an alias must not name `feature@variant` now: callers of the alias would get NL_NOT_MATERIALIZED
   * (an outage) or silently empty answers. While no variant of the feature is materialized nothing is served
   * through its aliases, so defining an alias together with the first variants is allowed.
   */
  async aliasTargetProblem(feature: string, variant: string, q: Sql = this.sql): Promise<string | undefined> {
    const variants = await this.listFeatures(feature, q);
    if (!variants.some((f) => f.status === 'materialized')) return undefined;
    const target = variants.find((f) => f.variant === variant);
    const force = 'pass --force to point the alias anyway';
    if (!target) return `${formatRef(feature, variant)} is not registered yet and ${feature} has materialized variants; apply it, materialize it, then move the alias (or ${force})`;
    if (target.status !== 'materialized') {
      return `${formatRef(feature, variant)} is ${target.status}, not materialized, so every call through the alias would fail; materialize it first (or ${force})`;
    }
    if (target.rows === 0) return `${formatRef(feature, variant)} holds 0 rows, so every call through the alias would return no hits (or ${force})`;
    return undefined;
  }

  private async setAliasInTx(q: Sql, feature: string, name: string, variant: string, actor: Actor): Promise<void> {
    if (!(await this.getFeature(feature, variant, q))) throw nlError('NL_FEATURE_NOT_FOUND', formatRef(feature, variant));
    if (await this.getFeature(feature, name, q)) throw nlError('NL_CONFLICT', `alias ${name} would hide variant ${formatRef(feature, name)}`);
    const previous = (await this.getAlias(feature, name, q))?.variant ?? null;
    const t = now();
    await q.run('INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT(feature, name) DO UPDATE SET variant = excluded.variant, updated_at = excluded.updated_at', [feature, name, variant, t]);
    await q.run('INSERT INTO alias_history (feature, name, variant, previous, at, actor) VALUES (?, ?, ?, ?, ?, ?)', [feature, name, variant, previous, t, actor]);
    await this.recordEvent({ actor, action: 'alias.set', kind: 'alias', name: formatRef(feature, name), feature, detail: { variant, previous } }, t, q);
  }

  /** Every move of alias `name` of `feature`, oldest first; `actor` is null for moves made before it was recorded. */
  async aliasHistory(feature: string, name: string): Promise<Array<{ variant: string; previous: string | null; at: string; actor: Actor | null }>> {
    return this.sql.all('SELECT variant, previous, at, actor FROM alias_history WHERE feature = ? AND name = ? ORDER BY rowid', [feature, name]);
  }

  // ---- audit trail ----

  /** Records a change; pass the transaction `q` that makes the change, so both land or neither. */
  async recordEvent(e: NewRegistryEvent, at: string = now(), q: Sql = this.sql): Promise<void> {
    await q.run('INSERT INTO registry_events (at, actor, action, kind, name, feature, detail) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      at,
      e.actor,
      e.action,
      e.kind,
      e.name,
      e.feature ?? null,
      e.detail ? JSON.stringify(e.detail) : null,
    ]);
  }

  /** Changes, newest first: all of them, or those about one feature; `before` pages back by event id. */
  async listEvents(opts: { feature?: string; limit?: number; before?: number } = {}): Promise<RegistryEvent[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.feature !== undefined) {
      where.push('feature = ?');
      args.push(opts.feature);
    }
    if (opts.before !== undefined) {
      where.push('id < ?');
      args.push(opts.before);
    }
    const sql = `SELECT * FROM registry_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (await this.sql.all(sql, [...args, opts.limit ?? 100])).map((r) => ({
      id: Number(r.id),
      at: r.at,
      actor: r.actor,
      action: r.action,
      kind: r.kind,
      name: r.name,
      feature: r.feature,
      detail: r.detail ? JSON.parse(r.detail) : null,
    }));
  }

  // ---- materialization state ----

  async getMaterialization(feature: string, variant: string): Promise<MaterializationState | undefined> {
    const r = await this.sql.get('SELECT * FROM materializations WHERE feature = ? AND variant = ?', [feature, variant]);
    return (
      r && {
        status: r.status,
        position: r.position,
        line: r.line,
        ...(r.cursor === null || r.cursor === undefined ? {} : { cursor: r.cursor }),
        rowsRead: r.rows_read,
        rowsSkipped: r.rows_skipped,
        startedAt: r.started_at,
        updatedAt: r.updated_at,
        finishedAt: r.finished_at,
        error: r.error,
      }
    );
  }

  /** Starts (or restarts from zero) a materialization run. */
  async beginMaterialization(feature: string, variant: string): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await q.run(
        `INSERT INTO materializations (feature, variant, status, started_at, updated_at) VALUES (?, ?, 'running', ?, ?)
         ON CONFLICT(feature, variant) DO UPDATE SET status = 'running', position = 0, line = 0, cursor = NULL, rows_read = 0, rows_skipped = 0,
           started_at = excluded.started_at, updated_at = excluded.updated_at, finished_at = NULL, error = NULL`,
        [feature, variant, t, t],
      );
      await q.run("UPDATE features SET status = 'materializing', rows = 0 WHERE name = ? AND variant = ?", [feature, variant]);
      await q.run('DELETE FROM log_offsets WHERE feature = ? AND variant = ?', [feature, variant]);
    });
  }

  /** Marks an interrupted run as running again; its checkpoint stays where it was. */
  async resumeMaterialization(feature: string, variant: string): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await q.run("UPDATE materializations SET status = 'running', finished_at = NULL, error = NULL, updated_at = ? WHERE feature = ? AND variant = ?", [t, feature, variant]);
      await q.run("UPDATE features SET status = 'materializing' WHERE name = ? AND variant = ?", [feature, variant]);
    });
  }

  /** Drops a run's checkpoint, so the next run starts from the first row. */
  async forgetCheckpoint(feature: string, variant: string): Promise<void> {
    await this.sql.run('DELETE FROM materializations WHERE feature = ? AND variant = ?', [feature, variant]);
  }

  /** Records how far a run got; called only after the providers made that much durable. */
  async checkpoint(feature: string, variant: string, at: { position: number; line: number; cursor?: string; rowsRead: number; rowsSkipped: number }): Promise<void> {
    await this.sql.run("UPDATE materializations SET status = 'running', position = ?, line = ?, cursor = ?, rows_read = ?, rows_skipped = ?, updated_at = ? WHERE feature = ? AND variant = ?", [
      at.position,
      at.line,
      at.cursor ?? null,
      at.rowsRead,
      at.rowsSkipped,
      now(),
      feature,
      variant,
    ]);
  }

  /** Publishes the variant with the log offset its data contains: from here on it is servable and follows pushes. */
  async finishMaterialization(feature: string, variant: string, rows: number, logOffset = 0): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await this.setLogOffset(feature, variant, logOffset, q);
      await q.run("UPDATE materializations SET status = 'done', finished_at = ?, updated_at = ? WHERE feature = ? AND variant = ?", [t, t, feature, variant]);
      await q.run("UPDATE features SET status = 'materialized', rows = ?, materialized_at = ? WHERE name = ? AND variant = ?", [rows, t, feature, variant]);
      await this.recordEvent({ actor: osActor(), action: 'materialized', kind: 'feature', name: formatRef(feature, variant), feature, detail: { rows } }, t, q);
    });
  }

  async failMaterialization(feature: string, variant: string, error: string): Promise<void> {
    const t = now();
    await this.change(async (q) => {
      await q.run("UPDATE materializations SET status = 'failed', error = ?, updated_at = ? WHERE feature = ? AND variant = ?", [error, t, feature, variant]);
      await q.run("UPDATE features SET status = 'failed' WHERE name = ? AND variant = ?", [feature, variant]);
      await this.recordEvent({ actor: osActor(), action: 'materialize.failed', kind: 'feature', name: formatRef(feature, variant), feature, detail: { error } }, t, q);
    });
  }

  /** Keeps a materialized variant's row count current after online upserts and deletes. */
  async setFeatureRows(feature: string, variant: string, rows: number): Promise<void> {
    await this.sql.run('UPDATE features SET rows = ? WHERE name = ? AND variant = ?', [rows, feature, variant]);
    this.invalidate();
    await this.announce(this.sql);
  }

  // ---- API keys ----

  /** Creates a key; the secret is returned once and only its hash is stored. */
  async createKey(scope: ApiKeyRecord['scope'], features: string[] | null, actor: Actor = osActor()): Promise<{ key: string; record: ApiKeyRecord }> {
    const id = randomBytes(6).toString('hex');
    const key = `nl_${id}_${randomBytes(24).toString('base64url')}`;
    const t = now();
    await this.transaction(async (q) => {
      await q.run('INSERT INTO api_keys (id, hash, scope, features, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)', [
        id,
        hashKey(key),
        scope,
        features ? JSON.stringify(features) : null,
        t,
        actor,
      ]);
      await this.recordEvent({ actor, action: 'key.create', kind: 'key', name: id, detail: { scope, features } }, t, q);
    });
    return { key, record: { id, scope, features, createdAt: t } };
  }

  /** A key that may be used: revoked keys are not found. */
  async findKey(key: string): Promise<ApiKeyRecord | undefined> {
    const r = await this.sql.get('SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL', [hashKey(key)]);
    return r && { id: r.id, scope: r.scope, features: r.features ? JSON.parse(r.features) : null, createdAt: r.created_at };
  }

  /** Every key ever created, revoked ones included, oldest first. */
  async listKeys(): Promise<ApiKeyInfo[]> {
    return (await this.sql.all('SELECT * FROM api_keys ORDER BY created_at, rowid')).map((r) => ({
      id: r.id,
      scope: r.scope,
      features: r.features ? JSON.parse(r.features) : null,
      createdAt: r.created_at,
      createdBy: r.created_by,
      revokedAt: r.revoked_at,
      revokedBy: r.revoked_by,
    }));
  }

  /** Revokes key `id`: servers refuse it once their key cache expires (one second by default). */
  async revokeKey(id: string, actor: Actor = osActor()): Promise<ApiKeyInfo> {
    await this.transaction(async (q) => {
      const r = await q.get('SELECT revoked_at, revoked_by FROM api_keys WHERE id = ?', [id]);
      if (!r) throw nlError('NL_NOT_FOUND', `API key ${id} not found; \`nearline keys list\` shows the ids`);
      if (r.revoked_at) throw nlError('NL_CONFLICT', `API key ${id} was already revoked at ${r.revoked_at} by ${r.revoked_by}`);
      const t = now();
      await q.run('UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?', [t, actor, id]);
      await this.recordEvent({ actor, action: 'key.revoke', kind: 'key', name: id }, t, q);
    });
    return (await this.listKeys()).find((k) => k.id === id)!;
  }

  /**
   * Keys ever created, revoked ones included: a server with keys stays closed when they are all revoked,
   * rather than opening to everyone.
   */
  async countKeys(): Promise<number> {
    return Number((await this.sql.get<{ n: number }>('SELECT count(*) AS n FROM api_keys'))!.n);
  }

  // ---- lifecycle: drop, shadows, leases ----

  /** Marks a variant dropped (its data is removed by the store) and records who did; the record and its lineage stay. */
  async markDropped(feature: string, variant: string, actor: Actor = osActor()): Promise<void> {
    await this.change(async (q) => {
      await q.run('UPDATE features SET dropped_at = ? WHERE name = ? AND variant = ?', [now(), feature, variant]);
      await q.run('DELETE FROM log_offsets WHERE feature = ? AND variant = ?', [feature, variant]);
      await this.recordEvent({ actor, action: 'drop', kind: 'feature', name: formatRef(feature, variant), feature }, undefined, q);
    });
  }

  /** The variant an alias named before its current one: what a rollback moves it back to. */
  async previousAliasVariant(feature: string, name: string): Promise<string | undefined> {
    const row = await this.sql.get<{ variant: string; previous: string | null }>(
      'SELECT variant, previous FROM alias_history WHERE feature = ? AND name = ? ORDER BY rowid DESC LIMIT 1',
      [feature, name],
    );
    return row?.previous ?? undefined;
  }

  async setShadow(feature: string, alias: string, variant: string, fraction: number): Promise<void> {
    const t = now();
    await this.sql.run(
      `INSERT INTO shadows (feature, alias, variant, fraction, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(feature, alias) DO UPDATE SET variant = excluded.variant, fraction = excluded.fraction, queries = 0, overlap_sum = 0, errors = 0,
         created_at = CASE WHEN shadows.variant = excluded.variant THEN shadows.created_at ELSE excluded.created_at END, updated_at = excluded.updated_at`,
      [feature, alias, variant, fraction, t, t],
    );
  }

  async deleteShadow(feature: string, alias: string): Promise<boolean> {
    return (await this.sql.run('DELETE FROM shadows WHERE feature = ? AND alias = ?', [feature, alias])) > 0;
  }

  async listShadows(feature?: string): Promise<ShadowRecord[]> {
    const rows =
      feature === undefined ? await this.sql.all('SELECT * FROM shadows ORDER BY feature, alias') : await this.sql.all('SELECT * FROM shadows WHERE feature = ? ORDER BY alias', [feature]);
    return rows.map((r) => ({
      feature: r.feature,
      alias: r.alias,
      variant: r.variant,
      fraction: r.fraction,
      queries: r.queries,
      overlap: r.queries ? r.overlap_sum / r.queries : null,
      errors: r.errors,
      since: r.created_at,
      updatedAt: r.updated_at,
    }));
  }

  /** Adds what a server measured on mirrored queries since its last report. */
  async addShadowResults(feature: string, alias: string, variant: string, queries: number, overlapSum: number, errors: number): Promise<void> {
    await this.sql.run('UPDATE shadows SET queries = queries + ?, overlap_sum = overlap_sum + ?, errors = errors + ?, updated_at = ? WHERE feature = ? AND alias = ? AND variant = ?', [
      queries,
      overlapSum,
      errors,
      now(),
      feature,
      alias,
      variant,
    ]);
  }

  /**
   * Takes (or renews) the build lease of a variant for `ttlMs`. Refused while another holder's lease runs,
   * unless that holder is a process of this host that no longer exists (killed: its lease is taken over at once).
   */
  async acquireLease(
    feature: string,
    variant: string,
    holder: { id: string; host: string; pid: number },
    ttlMs: number,
    alive: (pid: number) => boolean,
  ): Promise<{ ok: true } | { ok: false; holder: string; expiresAt: number }> {
    return this.transaction(async (q) => {
      const cur = await q.get('SELECT * FROM leases WHERE feature = ? AND variant = ?', [feature, variant]);
      const t = Date.now();
      if (cur && cur.holder !== holder.id && cur.expires_at > t && !(cur.host === holder.host && !alive(cur.pid))) {
        return { ok: false as const, holder: cur.holder, expiresAt: cur.expires_at };
      }
      await q.run(
        'INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(feature, variant) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at',
        [feature, variant, holder.id, holder.host, holder.pid, t + ttlMs],
      );
      return { ok: true as const };
    });
  }

  async releaseLease(feature: string, variant: string, holder: string): Promise<void> {
    await this.sql.run('DELETE FROM leases WHERE feature = ? AND variant = ? AND holder = ?', [feature, variant, holder]);
  }
}

/** A plan with a refused item is never written: the first refusal, as the error apply gives. */
function throwRefused(plan: PlanItem[]): void {
  const first = plan.find((p) => p.action === 'refused');
  if (!first) return;
  if (first.code === 'NL_ALIAS_REFUSED' || first.code === 'NL_CONFLICT') throw nlError('NL_CONFLICT', `${first.kind} ${first.name}: ${first.reason}`);
  throw nlError(first.code === 'NL_MODEL_CHANGED' ? 'NL_MODEL_CHANGED' : 'NL_VARIANT_IMMUTABLE', first.name, first.reason ?? 'refused');
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Row = Record<string, any>;

function toModel(r: Row): ModelRecord {
  return { ...JSON.parse(r.spec), dims: r.dims, sha256: r.sha256, createdAt: r.created_at };
}

function toFeature(r: Row): FeatureRecord {
  return { ...JSON.parse(r.spec), status: r.dropped_at ? 'dropped' : r.status, rows: r.dropped_at ? 0 : r.rows, createdAt: r.created_at, materializedAt: r.materialized_at };
}

function featureSpec(f: FeatureRecord): FeatureDef {
  const { status: _s, rows: _r, createdAt: _c, materializedAt: _m, ...spec } = f;
  return spec;
}

/** A registered model without what registration learned (dims, sha256): the runtime's spec. */
export function modelSpec(m: ModelRecord): ModelDef {
  const { dims: _d, sha256: _s, createdAt: _c, ...spec } = m;
  return spec;
}
