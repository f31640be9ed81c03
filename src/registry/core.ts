import type { EntityDef, SourceDef } from '../config.ts';
import { nlError } from '../errors.ts';
import { formatRef, parseRef } from '../refs.ts';
import type { AliasRecord, FeatureRecord, ModelRecord, NewRegistryEvent, ProviderRecord, RegistryEvent, Sql } from './records.ts';
import { now, toFeature, toModel } from './rows.ts';

/**
 * The registry's storage contract (a backend implements `sql`, `transaction`, `announce`, `close`), the cache of
 * resolved references, every read and the audit trail. The layers above it decide what is written.
 */
export abstract class RegistryCore {
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

  /**
   * A value that changes whenever what the registry holds may have changed, here or in another process, or
   * undefined when this backend cannot tell (nothing may be kept then): while it stays equal, a caller may keep
   * what it derived from its reads, as serving does with a source's push plan.
   */
  changeToken(): unknown {
    return this.cacheResolved ? this.generation : undefined;
  }

  /** Forgets every resolved reference: a feature or alias changed here or in another process. */
  protected invalidate(): void {
    this.generation++;
    this.resolved.clear();
  }

  /** Marks a change to features or aliases: stale here at once, and in other processes when it commits. */
  protected async changed(q: Sql): Promise<void> {
    this.invalidate();
    await this.announce(q);
  }

  /** Runs a write transaction that changes features or aliases. */
  protected async change<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
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
        throw nlError(
          'NL_AMBIGUOUS_FEATURE',
          name,
          `it has ${variants.length} variants and no alias prod: ${list}; name one, or run \`nearline alias set ${name} prod VARIANT\``,
        );
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
}
