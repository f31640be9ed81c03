import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { AliasDef, Definitions, EntityDef, FeatureDef, ModelDef, ProviderDef, SourceDef } from '../config.ts';
import { nlError, type ErrorCode } from '../errors.ts';
import { providerRole } from '../providers/index.ts';
import { MIGRATIONS } from './migrations/index.ts';

export type FeatureStatus = 'registered' | 'materializing' | 'materialized' | 'failed' | 'dropped';

export interface FeatureRecord extends FeatureDef {
  status: FeatureStatus;
  rows: number;
  createdAt: string;
  materializedAt: string | null;
}

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

/**
 * The registry: providers, entities, sources, models, features (name@variant), aliases,
 * materialization state and API keys, in one SQLite file (WAL).
 */
export class Registry {
  readonly db: Database.Database;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  private readonly statements = new Map<string, Database.Statement>();

  /** Prepared once per SQL text: serving resolves features on every request. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  static open(home: string): Registry {
    return new Registry(path.join(home, 'nearline.db'));
  }

  close(): void {
    this.db.close();
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    const applied = new Set(this.stmt('SELECT version FROM schema_migrations').pluck().all() as number[]);
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.db.transaction(() => {
        this.db.exec(m.sql);
        this.stmt('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, now());
      })();
    }
  }

  // ---- reads ----

  getProvider(name: string): ProviderRecord | undefined {
    const r = this.stmt('SELECT * FROM providers WHERE name = ?').get(name) as Row | undefined;
    return r && { name: r.name, kind: r.kind, options: JSON.parse(r.options), createdAt: r.created_at };
  }

  listProviders(): ProviderRecord[] {
    return (this.stmt('SELECT name FROM providers ORDER BY name').pluck().all() as string[]).map((n) => this.getProvider(n)!);
  }

  getEntity(name: string): EntityDef | undefined {
    const r = this.stmt('SELECT name, key FROM entities WHERE name = ?').get(name) as EntityDef | undefined;
    return r && { name: r.name, key: r.key };
  }

  getSource(name: string, variant: string): SourceDef | undefined {
    const r = this.stmt('SELECT spec FROM sources WHERE name = ? AND variant = ?').get(name, variant) as Row | undefined;
    return r && JSON.parse(r.spec);
  }

  getModel(name: string, version: string): ModelRecord | undefined {
    const r = this.stmt('SELECT * FROM models WHERE name = ? AND version = ?').get(name, version) as Row | undefined;
    return r && { ...JSON.parse(r.spec), dims: r.dims, sha256: r.sha256, createdAt: r.created_at };
  }

  listModels(name?: string): ModelRecord[] {
    const rows = this.db
      .prepare(`SELECT name, version FROM models ${name ? 'WHERE name = ?' : ''} ORDER BY name, created_at`)
      .all(...(name ? [name] : [])) as Row[];
    return rows.map((r) => this.getModel(r.name, r.version)!);
  }

  getFeature(name: string, variant: string): FeatureRecord | undefined {
    const r = this.stmt('SELECT * FROM features WHERE name = ? AND variant = ?').get(name, variant) as Row | undefined;
    return r && toFeature(r);
  }

  listFeatures(name?: string): FeatureRecord[] {
    const rows = this.db
      .prepare(`SELECT * FROM features ${name ? 'WHERE name = ?' : ''} ORDER BY name, created_at, rowid`)
      .all(...(name ? [name] : [])) as Row[];
    return rows.map(toFeature);
  }

  getAlias(feature: string, name: string): AliasRecord | undefined {
    const r = this.stmt('SELECT * FROM aliases WHERE feature = ? AND name = ?').get(feature, name) as Row | undefined;
    return r && { feature: r.feature, name: r.name, variant: r.variant, updatedAt: r.updated_at };
  }

  listAliases(feature?: string): AliasRecord[] {
    const rows = this.db
      .prepare(`SELECT * FROM aliases ${feature ? 'WHERE feature = ?' : ''} ORDER BY feature, name`)
      .all(...(feature ? [feature] : [])) as Row[];
    return rows.map((r) => ({ feature: r.feature, name: r.name, variant: r.variant, updatedAt: r.updated_at }));
  }

  /**
   * `name` -> alias `prod` if set, else the only variant (several and no `prod`: NL_AMBIGUOUS_FEATURE, never a
   * guess that changes when a variant is added); `name@x` -> alias x if one exists, else variant x.
   */
  resolveFeature(ref: string): FeatureRecord {
    const at = ref.indexOf('@');
    const name = at < 0 ? ref : ref.slice(0, at);
    const tag = at < 0 ? undefined : ref.slice(at + 1);
    if (tag === undefined) {
      const prod = this.getAlias(name, 'prod');
      if (prod) return this.getFeature(name, prod.variant)!;
      // Two rows tell "only one" from "several"; the full list is read only for the error. A dropped variant serves nothing.
      const first = this.stmt('SELECT * FROM features WHERE name = ? AND dropped_at IS NULL ORDER BY created_at, rowid LIMIT 2').all(name) as Row[];
      if (!first.length) {
        const dropped = this.stmt('SELECT * FROM features WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1').get(name) as Row | undefined;
        if (dropped) return toFeature(dropped);
        throw nlError('NL_FEATURE_NOT_FOUND', ref);
      }
      if (first.length > 1) {
        const variants = this.listFeatures(name).filter((v) => v.status !== 'dropped');
        const list = variants.map((v) => `${name}@${v.variant} (${v.status})`).join(', ');
        throw nlError('NL_AMBIGUOUS_FEATURE', name, `it has ${variants.length} variants and no alias prod: ${list}; name one, or run \`nearline alias set ${name} prod VARIANT\``);
      }
      return toFeature(first[0]);
    }
    const alias = this.getAlias(name, tag);
    const feature = this.getFeature(name, alias ? alias.variant : tag);
    if (!feature) throw nlError('NL_FEATURE_NOT_FOUND', ref);
    return feature;
  }

  /** Every feature variant built from any variant of source `name`: what a row pushed to it updates. */
  featuresOfSource(name: string): FeatureRecord[] {
    return (this.stmt('SELECT * FROM features WHERE source_name = ? ORDER BY name, created_at, rowid').all(name) as Row[]).map(toFeature);
  }

  /** Source variants by name. */
  listSourceVariants(name: string): SourceDef[] {
    return (this.stmt('SELECT spec FROM sources WHERE name = ? ORDER BY created_at, rowid').all(name) as Row[]).map((r) => JSON.parse(r.spec));
  }

  /** Names of every source. */
  listSourceNames(): string[] {
    return this.stmt('SELECT DISTINCT name FROM sources ORDER BY name').pluck().all() as string[];
  }

  /** The log offset a variant has made durable (0: none recorded). */
  getLogOffset(feature: string, variant: string): number {
    return (this.stmt('SELECT offset FROM log_offsets WHERE feature = ? AND variant = ?').pluck().get(feature, variant) as number | undefined) ?? 0;
  }

  setLogOffset(feature: string, variant: string, offset: number): void {
    this.stmt(
      'INSERT INTO log_offsets VALUES (?, ?, ?, ?) ON CONFLICT(feature, variant) DO UPDATE SET offset = excluded.offset, updated_at = excluded.updated_at',
    ).run(feature, variant, offset, now());
  }

  /** Features that use a model, source or provider: lineage read backwards. */
  dependents(kind: 'model' | 'source' | 'provider' | 'entity', name: string, variant?: string): FeatureRecord[] {
    const where = {
      model: 'model_name = ? AND model_version = ?',
      source: 'source_name = ? AND source_variant = ?',
      provider: 'provider = ?',
      entity: 'entity = ?',
    }[kind];
    const args = variant === undefined ? [name] : [name, variant];
    return (this.stmt(`SELECT * FROM features WHERE ${where} ORDER BY name, variant`).all(...args) as Row[]).map(toFeature);
  }

  // ---- apply ----

  /**
   * Compares definitions with the registry. Pure: writes nothing. A definition that would change
   * a materialized variant, a registered model, or anything in use is `refused`.
   */
  plan(defs: Definitions, probes: Map<string, ModelProbe>, opts: { force?: boolean } = {}): PlanItem[] {
    const items: PlanItem[] = [];
    const push = (kind: PlanItem['kind'], name: string, action: PlanAction, reason?: string, code?: ErrorCode) =>
      items.push({ kind, name, action, ...(reason ? { reason } : {}), ...(code ? { code } : {}) });
    const providerKinds = new Map(this.listProviders().map((p) => [p.name, p.kind]));

    for (const p of defs.providers) {
      const old = this.getProvider(p.name);
      if (!providerRole(p.kind)) throw nlError('NL_BAD_DEFINITION', `provider ${p.name}: unknown kind ${p.kind}`);
      providerKinds.set(p.name, p.kind);
      if (!old) push('provider', p.name, 'create');
      else if (old.kind === p.kind && canonical(old.options) === canonical(p.options)) push('provider', p.name, 'unchanged');
      else if (old.kind !== p.kind && this.dependents('provider', p.name).length) {
        push('provider', p.name, 'refused', `kind ${old.kind} -> ${p.kind} while features use it; define a new provider`, 'NL_CONFLICT');
      } else push('provider', p.name, 'update');
    }
    for (const e of defs.entities) {
      const old = this.getEntity(e.name);
      if (!old) push('entity', e.name, 'create');
      else if (old.key === e.key) push('entity', e.name, 'unchanged');
      else if (this.dependents('entity', e.name).length) push('entity', e.name, 'refused', `key ${old.key} -> ${e.key} while features use it`, 'NL_CONFLICT');
      else push('entity', e.name, 'update');
    }
    for (const s of defs.sources) {
      const ref = `${s.name}@${s.variant}`;
      const old = this.getSource(s.name, s.variant);
      if (!old) push('source', ref, 'create');
      else if (canonical(old) === canonical(s)) push('source', ref, 'unchanged');
      else {
        const used = this.dependents('source', s.name, s.variant).filter((f) => f.status === 'materialized' || f.status === 'materializing');
        if (used.length) push('source', ref, 'refused', `materialized by ${used.map((f) => `${f.name}@${f.variant}`).join(', ')}; a changed source is a new source variant`, 'NL_VARIANT_IMMUTABLE');
        else push('source', ref, 'update');
      }
    }
    for (const m of defs.models) {
      const ref = `${m.name}@${m.version}`;
      const old = this.getModel(m.name, m.version);
      const probe = probes.get(ref);
      if (!old) push('model', ref, 'create');
      else if (canonical(modelSpec(old)) !== canonical(m)) push('model', ref, 'refused', 'a registered model version is immutable; register a new version', 'NL_VARIANT_IMMUTABLE');
      else if (probe && probe.sha256 !== old.sha256) {
        push('model', ref, 'refused', `its files changed on disk (sha256 ${old.sha256.slice(0, 12)} -> ${probe.sha256.slice(0, 12)}); a new model means a new version`, 'NL_MODEL_CHANGED');
      } else push('model', ref, 'unchanged');
    }
    const sources = new Set([...defs.sources.map((s) => `${s.name}@${s.variant}`)]);
    const entities = new Set(defs.entities.map((e) => e.name));
    const modelDims = new Map(defs.models.map((m) => [`${m.name}@${m.version}`, probes.get(`${m.name}@${m.version}`)?.dims]));
    for (const f of defs.features) {
      const ref = `${f.name}@${f.variant}`;
      const where = `feature ${ref}`;
      const src = `${f.source.name}@${f.source.variant}`;
      if (!sources.has(src) && !this.getSource(f.source.name, f.source.variant)) throw nlError('NL_BAD_DEFINITION', `${where}: source ${src} is not defined`);
      if (!entities.has(f.entity) && !this.getEntity(f.entity)) throw nlError('NL_BAD_DEFINITION', `${where}: entity ${f.entity} is not defined`);
      const pkind = providerKinds.get(f.provider);
      if (!pkind) throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} is not defined`);
      if (f.kind === 'embedding' && providerRole(pkind) !== 'vector') throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} (${pkind}) is not a vector provider`);
      if (f.kind === 'scalar' && providerRole(pkind) !== 'online') throw nlError('NL_BAD_DEFINITION', `${where}: provider ${f.provider} (${pkind}) is not an online store`);
      if (f.text) {
        const mref = `${f.text.model.name}@${f.text.model.version}`;
        const dims = modelDims.has(mref) ? modelDims.get(mref) : this.getModel(f.text.model.name, f.text.model.version)?.dims;
        if (dims === undefined && !modelDims.has(mref)) throw nlError('NL_BAD_DEFINITION', `${where}: model ${mref} is not defined`);
        if (dims !== undefined && dims !== f.dims) {
          throw nlError('NL_DIMENSION_MISMATCH', `${f.dims} dims for ${where}`, `${dims} from model ${mref}`);
        }
      }
      const old = this.getFeature(f.name, f.variant);
      // `name@x` resolves to alias x first, and a provider may hold an alias `name__x` beside the collections,
      // where a collection of that name would be the aliased variant's.
      if (!old && this.getAlias(f.name, f.variant)) push('feature', ref, 'refused', `${ref} is an alias; name the variant differently`, 'NL_CONFLICT');
      else if (!old) push('feature', ref, 'create');
      else if (canonical(featureSpec(old)) === canonical(f)) push('feature', ref, 'unchanged');
      else if (old.status === 'materialized') push('feature', ref, 'refused', 'it is materialized; define a new variant instead', 'NL_VARIANT_IMMUTABLE');
      else if (old.status === 'materializing') {
        push('feature', ref, 'refused', `a materialization of it is running or was interrupted; let it finish (or \`materialize ${ref}\` again), or define a new variant`, 'NL_VARIANT_IMMUTABLE');
      }
      // Registered or failed: it never published anything, so its definition may still change.
      else push('feature', ref, 'update', old.status === 'failed' ? 'redefines a variant whose materialization failed' : undefined);
    }
    const features = new Set(defs.features.map((f) => `${f.name}@${f.variant}`));
    for (const a of defs.aliases) {
      const ref = `${a.feature}@${a.name}`;
      if (!features.has(`${a.feature}@${a.variant}`) && !this.getFeature(a.feature, a.variant)) {
        throw nlError('NL_BAD_DEFINITION', `alias ${ref}: feature ${a.feature}@${a.variant} is not defined`);
      }
      const old = this.getAlias(a.feature, a.name);
      const unsafe = old?.variant === a.variant || opts.force ? undefined : this.aliasTargetProblem(a.feature, a.variant);
      if (unsafe) push('alias', ref, 'refused', `-> ${a.variant}: ${unsafe}`, 'NL_ALIAS_REFUSED');
      else if (!old) push('alias', ref, 'create');
      else if (old.variant === a.variant) push('alias', ref, 'unchanged');
      else {
        push('alias', ref, 'update', `${old.variant} -> ${a.variant}`);
        const bare = a.name === 'prod' ? ` and to bare ${a.feature}` : '';
        items[items.length - 1].warning = `alias ${ref} moves ${old.variant} -> ${a.variant}: every call to ${ref}${bare} switches variant`;
      }
    }
    this.warnAmbiguous(defs, items);
    return items;
  }

  /**
   * A bare name resolves to the only variant while there is no alias prod: a second variant makes it refused
   * (NL_AMBIGUOUS_FEATURE) for the callers it serves now, so the item creating that variant carries a warning.
   */
  private warnAmbiguous(defs: Definitions, items: PlanItem[]): void {
    const names = new Set(defs.features.map((f) => f.name));
    for (const name of names) {
      if (this.getAlias(name, 'prod') || defs.aliases.some((a) => a.feature === name && a.name === 'prod')) continue;
      const existing = this.listFeatures(name);
      if (existing.length !== 1 || existing[0].status !== 'materialized') continue;
      const added = items.find((p) => p.kind === 'feature' && p.action === 'create' && p.name.startsWith(`${name}@`));
      if (!added) continue;
      const only = `${name}@${existing[0].variant}`;
      added.warning =
        `bare ${name} answers from ${only} now; with ${added.name} beside it and no alias prod, it is refused (NL_AMBIGUOUS_FEATURE). ` +
        `Add the alias { feature: ${name}, name: prod, variant: ${existing[0].variant} } to keep callers on ${only}, or have them name a variant`;
    }
  }

  /** Writes a plan that has no refusals, in one transaction: all of it or nothing. */
  commit(defs: Definitions, plan: PlanItem[], probes: Map<string, ModelProbe>, actor: Actor = osActor()): void {
    const refused = plan.filter((p) => p.action === 'refused');
    if (refused.length) {
      const first = refused[0];
      if (first.code === 'NL_ALIAS_REFUSED' || first.code === 'NL_CONFLICT') throw nlError('NL_CONFLICT', `${first.kind} ${first.name}: ${first.reason}`);
      throw nlError(first.code === 'NL_MODEL_CHANGED' ? 'NL_MODEL_CHANGED' : 'NL_VARIANT_IMMUTABLE', first.name, first.reason ?? 'refused');
    }
    const todo = new Set(plan.filter((p) => p.action === 'create' || p.action === 'update').map((p) => `${p.kind}:${p.name}`));
    const t = now();
    this.db.transaction(() => {
      for (const p of defs.providers) {
        if (!todo.has(`provider:${p.name}`)) continue;
        this.db
          .prepare('INSERT INTO providers VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, options = excluded.options')
          .run(p.name, p.kind, JSON.stringify(p.options), t);
      }
      for (const e of defs.entities) {
        if (!todo.has(`entity:${e.name}`)) continue;
        this.stmt('INSERT INTO entities VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET key = excluded.key').run(e.name, e.key, t);
      }
      for (const s of defs.sources) {
        if (!todo.has(`source:${s.name}@${s.variant}`)) continue;
        this.db
          .prepare('INSERT INTO sources VALUES (?, ?, ?, ?, ?) ON CONFLICT(name, variant) DO UPDATE SET kind = excluded.kind, spec = excluded.spec')
          .run(s.name, s.variant, s.kind, JSON.stringify(s), t);
      }
      for (const m of defs.models) {
        const ref = `${m.name}@${m.version}`;
        if (!todo.has(`model:${ref}`)) continue;
        const probe = probes.get(ref);
        if (!probe) throw nlError('NL_INTERNAL', `model ${ref} was not probed`);
        this.stmt('INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)').run(m.name, m.version, m.runtime, JSON.stringify(m), probe.dims, probe.sha256, t);
      }
      for (const f of defs.features) {
        if (!todo.has(`feature:${f.name}@${f.variant}`)) continue;
        this.db
          .prepare(
            `INSERT INTO features (name, variant, kind, entity, source_name, source_variant, provider, model_name, model_version, spec, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name, variant) DO UPDATE SET kind = excluded.kind, entity = excluded.entity,
               source_name = excluded.source_name, source_variant = excluded.source_variant, provider = excluded.provider,
               model_name = excluded.model_name, model_version = excluded.model_version, spec = excluded.spec,
               status = 'registered', rows = 0, materialized_at = NULL`,
          )
          .run(f.name, f.variant, f.kind, f.entity, f.source.name, f.source.variant, f.provider, f.text?.model.name ?? null, f.text?.model.version ?? null, JSON.stringify(f), t);
        // A redefined variant starts over: a checkpoint of its old definition must not be resumed.
        this.stmt('DELETE FROM materializations WHERE feature = ? AND variant = ?').run(f.name, f.variant);
      }
      for (const p of plan) {
        if (p.action !== 'create' && p.action !== 'update') continue;
        if (p.kind === 'alias') continue; // recorded as alias.set, with the variants
        const feature = p.kind === 'feature' ? p.name.split('@')[0] : null;
        this.recordEvent({ actor, action: p.action, kind: p.kind, name: p.name, feature, ...(p.reason ? { detail: { reason: p.reason } } : {}) });
      }
      for (const a of defs.aliases) {
        if (todo.has(`alias:${a.feature}@${a.name}`)) this.setAliasInTx(a.feature, a.name, a.variant, actor);
      }
    })();
  }

  // ---- aliases ----

  /**
   * Atomic alias switch; the previous variant stays servable and is recorded for rollback, with who moved it
   * (`actor`, default the OS user). Refuses a variant that could not answer (see `aliasTargetProblem`) unless `force`.
   */
  setAlias(feature: string, name: string, variant: string, opts: { force?: boolean; actor?: Actor } = {}): AliasRecord {
    this.db.transaction(() => {
      const problem = opts.force || this.getAlias(feature, name)?.variant === variant ? undefined : this.aliasTargetProblem(feature, variant);
      if (problem) throw nlError('NL_ALIAS_REFUSED', `${feature}@${name}`, variant, `${problem}`);
      this.setAliasInTx(feature, name, variant, opts.actor ?? osActor());
    })();
    return this.getAlias(feature, name)!;
  }

  /**
   * Why an alias must not name `feature@variant` now: callers of the alias would get NL_NOT_MATERIALIZED
   * (an outage) or silently empty answers. While no variant of the feature is materialized nothing is served
   * through its aliases, so defining an alias together with the first variants is allowed.
   */
  aliasTargetProblem(feature: string, variant: string): string | undefined {
    const variants = this.listFeatures(feature);
    if (!variants.some((f) => f.status === 'materialized')) return undefined;
    const target = variants.find((f) => f.variant === variant);
    const force = 'pass --force to point the alias anyway';
    if (!target) return `${feature}@${variant} is not registered yet and ${feature} has materialized variants; apply it, materialize it, then move the alias (or ${force})`;
    if (target.status !== 'materialized') {
      return `${feature}@${variant} is ${target.status}, not materialized, so every call through the alias would fail; materialize it first (or ${force})`;
    }
    if (target.rows === 0) return `${feature}@${variant} holds 0 rows, so every call through the alias would return no hits (or ${force})`;
    return undefined;
  }

  private setAliasInTx(feature: string, name: string, variant: string, actor: Actor): void {
    if (!this.getFeature(feature, variant)) throw nlError('NL_FEATURE_NOT_FOUND', `${feature}@${variant}`);
    if (this.getFeature(feature, name)) throw nlError('NL_CONFLICT', `alias ${name} would hide variant ${feature}@${name}`);
    const previous = this.getAlias(feature, name)?.variant ?? null;
    const t = now();
    this.db
      .prepare('INSERT INTO aliases VALUES (?, ?, ?, ?) ON CONFLICT(feature, name) DO UPDATE SET variant = excluded.variant, updated_at = excluded.updated_at')
      .run(feature, name, variant, t);
    this.stmt('INSERT INTO alias_history (feature, name, variant, previous, at, actor) VALUES (?, ?, ?, ?, ?, ?)').run(feature, name, variant, previous, t, actor);
    this.recordEvent({ actor, action: 'alias.set', kind: 'alias', name: `${feature}@${name}`, feature, detail: { variant, previous } }, t);
  }

  /** Every move of alias `name` of `feature`, oldest first; `actor` is null for moves made before it was recorded. */
  aliasHistory(feature: string, name: string): Array<{ variant: string; previous: string | null; at: string; actor: Actor | null }> {
    return this.stmt('SELECT variant, previous, at, actor FROM alias_history WHERE feature = ? AND name = ? ORDER BY rowid').all(feature, name) as Array<{
      variant: string;
      previous: string | null;
      at: string;
      actor: Actor | null;
    }>;
  }

  // ---- audit trail ----

  /** Records a change; call it inside the transaction that makes the change, so both land or neither. */
  recordEvent(e: NewRegistryEvent, at: string = now()): void {
    this.stmt('INSERT INTO registry_events (at, actor, action, kind, name, feature, detail) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      at,
      e.actor,
      e.action,
      e.kind,
      e.name,
      e.feature ?? null,
      e.detail ? JSON.stringify(e.detail) : null,
    );
  }

  /** Changes, newest first: all of them, or those about one feature; `before` pages back by event id. */
  listEvents(opts: { feature?: string; limit?: number; before?: number } = {}): RegistryEvent[] {
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
    return (this.stmt(sql).all(...args, opts.limit ?? 100) as Row[]).map((r) => ({
      id: r.id,
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

  getMaterialization(feature: string, variant: string): MaterializationState | undefined {
    const r = this.stmt('SELECT * FROM materializations WHERE feature = ? AND variant = ?').get(feature, variant) as Row | undefined;
    return (
      r && {
        status: r.status,
        position: r.position,
        line: r.line,
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
  beginMaterialization(feature: string, variant: string): void {
    const t = now();
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO materializations (feature, variant, status, started_at, updated_at) VALUES (?, ?, 'running', ?, ?)
           ON CONFLICT(feature, variant) DO UPDATE SET status = 'running', position = 0, line = 0, rows_read = 0, rows_skipped = 0,
             started_at = excluded.started_at, updated_at = excluded.updated_at, finished_at = NULL, error = NULL`,
        )
        .run(feature, variant, t, t);
      this.stmt("UPDATE features SET status = 'materializing', rows = 0 WHERE name = ? AND variant = ?").run(feature, variant);
      this.stmt('DELETE FROM log_offsets WHERE feature = ? AND variant = ?').run(feature, variant);
    })();
  }

  /** Marks an interrupted run as running again; its checkpoint stays where it was. */
  resumeMaterialization(feature: string, variant: string): void {
    const t = now();
    this.db.transaction(() => {
      this.stmt("UPDATE materializations SET status = 'running', finished_at = NULL, error = NULL, updated_at = ? WHERE feature = ? AND variant = ?").run(t, feature, variant);
      this.stmt("UPDATE features SET status = 'materializing' WHERE name = ? AND variant = ?").run(feature, variant);
    })();
  }

  /** Drops a run's checkpoint, so the next run starts from the first row. */
  forgetCheckpoint(feature: string, variant: string): void {
    this.stmt('DELETE FROM materializations WHERE feature = ? AND variant = ?').run(feature, variant);
  }

  /** Records how far a run got; called only after the providers made that much durable. */
  checkpoint(feature: string, variant: string, at: { position: number; line: number; rowsRead: number; rowsSkipped: number }): void {
    this.db
      .prepare("UPDATE materializations SET status = 'running', position = ?, line = ?, rows_read = ?, rows_skipped = ?, updated_at = ? WHERE feature = ? AND variant = ?")
      .run(at.position, at.line, at.rowsRead, at.rowsSkipped, now(), feature, variant);
  }

  /** Publishes the variant with the log offset its data contains: from here on it is servable and follows pushes. */
  finishMaterialization(feature: string, variant: string, rows: number, logOffset = 0): void {
    const t = now();
    this.db.transaction(() => {
      this.setLogOffset(feature, variant, logOffset);
      this.stmt("UPDATE materializations SET status = 'done', finished_at = ?, updated_at = ? WHERE feature = ? AND variant = ?").run(t, t, feature, variant);
      this.stmt("UPDATE features SET status = 'materialized', rows = ?, materialized_at = ? WHERE name = ? AND variant = ?").run(rows, t, feature, variant);
      this.recordEvent({ actor: osActor(), action: 'materialized', kind: 'feature', name: `${feature}@${variant}`, feature, detail: { rows } }, t);
    })();
  }

  failMaterialization(feature: string, variant: string, error: string): void {
    const t = now();
    this.db.transaction(() => {
      this.stmt("UPDATE materializations SET status = 'failed', error = ?, updated_at = ? WHERE feature = ? AND variant = ?").run(error, t, feature, variant);
      this.stmt("UPDATE features SET status = 'failed' WHERE name = ? AND variant = ?").run(feature, variant);
      this.recordEvent({ actor: osActor(), action: 'materialize.failed', kind: 'feature', name: `${feature}@${variant}`, feature, detail: { error } }, t);
    })();
  }

  /** Keeps a materialized variant's row count current after online upserts and deletes. */
  setFeatureRows(feature: string, variant: string, rows: number): void {
    this.stmt('UPDATE features SET rows = ? WHERE name = ? AND variant = ?').run(rows, feature, variant);
  }

  // ---- API keys ----

  /** Creates a key; the secret is returned once and only its hash is stored. */
  createKey(scope: ApiKeyRecord['scope'], features: string[] | null, actor: Actor = osActor()): { key: string; record: ApiKeyRecord } {
    const id = randomBytes(6).toString('hex');
    const key = `nl_${id}_${randomBytes(24).toString('base64url')}`;
    const t = now();
    this.db.transaction(() => {
      this.stmt('INSERT INTO api_keys (id, hash, scope, features, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)').run(
        id,
        hashKey(key),
        scope,
        features ? JSON.stringify(features) : null,
        t,
        actor,
      );
      this.recordEvent({ actor, action: 'key.create', kind: 'key', name: id, detail: { scope, features } }, t);
    })();
    return { key, record: { id, scope, features, createdAt: t } };
  }

  /** A key that may be used: revoked keys are not found. */
  findKey(key: string): ApiKeyRecord | undefined {
    const r = this.stmt('SELECT * FROM api_keys WHERE hash = ? AND revoked_at IS NULL').get(hashKey(key)) as Row | undefined;
    return r && { id: r.id, scope: r.scope, features: r.features ? JSON.parse(r.features) : null, createdAt: r.created_at };
  }

  /** Every key ever created, revoked ones included, oldest first. */
  listKeys(): ApiKeyInfo[] {
    return (this.stmt('SELECT * FROM api_keys ORDER BY created_at, rowid').all() as Row[]).map((r) => ({
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
  revokeKey(id: string, actor: Actor = osActor()): ApiKeyInfo {
    this.db.transaction(() => {
      const r = this.stmt('SELECT revoked_at, revoked_by FROM api_keys WHERE id = ?').get(id) as Row | undefined;
      if (!r) throw nlError('NL_NOT_FOUND', `API key ${id} not found; \`nearline keys list\` shows the ids`);
      if (r.revoked_at) throw nlError('NL_CONFLICT', `API key ${id} was already revoked at ${r.revoked_at} by ${r.revoked_by}`);
      const t = now();
      this.stmt('UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE id = ?').run(t, actor, id);
      this.recordEvent({ actor, action: 'key.revoke', kind: 'key', name: id }, t);
    })();
    return this.listKeys().find((k) => k.id === id)!;
  }

  /**
   * Keys ever created, revoked ones included: a server with keys stays closed when they are all revoked,
   * rather than opening to everyone.
   */
  countKeys(): number {
    return this.stmt('SELECT count(*) FROM api_keys').pluck().get() as number;
  }

  // ---- lifecycle: drop, shadows, leases ----

  /** Marks a variant dropped (its data is removed by the store); the record and its lineage stay. */
  markDropped(feature: string, variant: string): void {
    this.stmt('UPDATE features SET dropped_at = ? WHERE name = ? AND variant = ?').run(now(), feature, variant);
    this.stmt('DELETE FROM log_offsets WHERE feature = ? AND variant = ?').run(feature, variant);
  }

  /** The variant an alias named before its current one: what a rollback moves it back to. */
  previousAliasVariant(feature: string, name: string): string | undefined {
    const row = this.stmt('SELECT variant, previous FROM alias_history WHERE feature = ? AND name = ? ORDER BY rowid DESC LIMIT 1').get(feature, name) as
      | { variant: string; previous: string | null }
      | undefined;
    return row?.previous ?? undefined;
  }

  setShadow(feature: string, alias: string, variant: string, fraction: number): void {
    const t = now();
    this.stmt(
      `INSERT INTO shadows (feature, alias, variant, fraction, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(feature, alias) DO UPDATE SET variant = excluded.variant, fraction = excluded.fraction, queries = 0, overlap_sum = 0, errors = 0,
         created_at = CASE WHEN shadows.variant = excluded.variant THEN shadows.created_at ELSE excluded.created_at END, updated_at = excluded.updated_at`,
    ).run(feature, alias, variant, fraction, t, t);
  }

  deleteShadow(feature: string, alias: string): boolean {
    return this.stmt('DELETE FROM shadows WHERE feature = ? AND alias = ?').run(feature, alias).changes > 0;
  }

  listShadows(feature?: string): ShadowRecord[] {
    const rows = (feature === undefined ? this.stmt('SELECT * FROM shadows ORDER BY feature, alias').all() : this.stmt('SELECT * FROM shadows WHERE feature = ? ORDER BY alias').all(feature)) as Row[];
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
  addShadowResults(feature: string, alias: string, variant: string, queries: number, overlapSum: number, errors: number): void {
    this.stmt('UPDATE shadows SET queries = queries + ?, overlap_sum = overlap_sum + ?, errors = errors + ?, updated_at = ? WHERE feature = ? AND alias = ? AND variant = ?').run(
      queries,
      overlapSum,
      errors,
      now(),
      feature,
      alias,
      variant,
    );
  }

  /**
   * Takes (or renews) the build lease of a variant for `ttlMs`. Refused while another holder's lease runs,
   * unless that holder is a process of this host that no longer exists (killed: its lease is taken over at once).
   */
  acquireLease(feature: string, variant: string, holder: { id: string; host: string; pid: number }, ttlMs: number, alive: (pid: number) => boolean): { ok: true } | { ok: false; holder: string; expiresAt: number } {
    return this.db.transaction(() => {
      const cur = this.stmt('SELECT * FROM leases WHERE feature = ? AND variant = ?').get(feature, variant) as Row | undefined;
      const t = Date.now();
      if (cur && cur.holder !== holder.id && cur.expires_at > t && !(cur.host === holder.host && !alive(cur.pid))) {
        return { ok: false as const, holder: cur.holder, expiresAt: cur.expires_at };
      }
      this.stmt(
        'INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(feature, variant) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at',
      ).run(feature, variant, holder.id, holder.host, holder.pid, t + ttlMs);
      return { ok: true as const };
    }).immediate();
  }

  releaseLease(feature: string, variant: string, holder: string): void {
    this.stmt('DELETE FROM leases WHERE feature = ? AND variant = ? AND holder = ?').run(feature, variant, holder);
  }
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Row = Record<string, any>;

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
