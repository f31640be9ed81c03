import type { Client, Pool, PoolClient, QueryResultRow } from 'pg';
import { NearlineError, nlError } from '../errors.ts';
import { peer } from '../providers/peer.ts';
import { MIGRATIONS, postgresSql } from './migrations/index.ts';
import { Registry, type Sql } from './registry.ts';

/** The channel every registry change is announced on, so each process forgets what it resolved. */
const CHANNEL = 'nearline_registry';
/** One advisory lock serializes registry transactions across every process, as SQLite's write lock does. */
export const REGISTRY_LOCK = "SELECT pg_advisory_xact_lock(hashtext('nearline registry'))";
/** How soon a lost notification connection is opened again; meanwhile nothing is cached. */
const RELISTEN_MS = 1000;

/** Whether a registry location names PostgreSQL rather than a SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/**
 * The registry in PostgreSQL, for many writers and serving nodes: the same schema and migration versions as the
 * SQLite file, one transaction per apply and alias switch under an advisory lock (so two applies take turns),
 * and NOTIFY after each change so every process drops the feature references it resolved, within milliseconds.
 * Connects on first use; `pg` is an optional peer dependency, loaded only here.
 */
export class PostgresRegistry extends Registry {
  readonly backend = 'postgres';
  readonly location: string;
  private readonly url: string;
  private opening?: Promise<Pool>;
  private pool?: Pool;
  private listener?: Client;
  private relisten?: NodeJS.Timeout;
  private closed = false;
  private readonly translated = new Map<string, string>();

  protected readonly sql: Sql = this.executor(async (text, params) => (await this.open()).query(text, params as unknown[]));

  constructor(url: string) {
    super();
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw nlError('NL_BAD_REGISTRY', redact(url), 'not a URL; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE');
    }
    if (!parsed.hostname && !parsed.searchParams.get('host'))
      throw nlError('NL_BAD_REGISTRY', redact(url), 'no host; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE');
    this.url = url;
    this.location = redact(url);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.relisten);
    const opening = this.opening;
    this.opening = undefined;
    await opening?.catch(() => undefined);
    await this.listener?.end().catch(() => undefined);
    await this.pool?.end().catch(() => undefined);
    this.listener = this.pool = undefined;
  }

  /** Connects, migrates and listens once; a failure is reported to the caller and retried by the next one. */
  private open(): Promise<Pool> {
    if (this.closed) return Promise.reject(nlError('NL_REGISTRY_UNAVAILABLE', this.location, 'it was closed'));
    this.opening ??= this.connect().catch((e) => {
      this.opening = undefined;
      throw e;
    });
    return this.opening;
  }

  private async connect(): Promise<Pool> {
    const { default: pg } = await peer('a PostgreSQL registry (NEARLINE_REGISTRY=postgres://...)', ['pg'], () => import('pg'));
    // Counts, offsets and epoch milliseconds are BIGINT here; they fit a JS number, as in the SQLite file.
    const types = {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === 20 ? Number : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    };
    const pool = new pg.Pool({ connectionString: this.url, types, connectionTimeoutMillis: 10_000 });
    // An idle connection that breaks is replaced by the pool; the next query reports its own error.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await this.migrate(client);
      } finally {
        client.release();
      }
      this.pool = pool;
      // Without notifications (a pooler that drops LISTEN, say) the registry still works, uncached, and keeps trying.
      await this.listen(pg.Client, types).catch(() => this.listenLater(pg.Client, types));
      return pool;
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw unavailable(this.location, e);
    }
  }

  /**
   * Every migration not applied yet, under the lock: two processes starting at once migrate once. A registry that
   * is current is only read, so opening it never waits for a running apply.
   */
  private async migrate(client: PoolClient): Promise<void> {
    const versions = async () => new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    const exists = (await client.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t")).rows[0].t !== null;
    if (exists) {
      const current = await versions();
      if (MIGRATIONS.every((m) => current.has(m.version))) return;
    }
    await client.query('BEGIN');
    try {
      await client.query(REGISTRY_LOCK);
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
      const applied = await versions();
      for (const m of MIGRATIONS) {
        if (applied.has(m.version)) continue;
        await client.query(postgresSql(m));
        await client.query('INSERT INTO schema_migrations VALUES ($1, $2, $3)', [m.version, m.name, new Date().toISOString()]);
      }
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    }
  }

  /**
   * A connection of its own LISTENs for changes; resolved references are cached only while it does. When it
   * breaks, caching stops at once and it is opened again a second later.
   */
  private async listen(ClientClass: typeof Client, types: unknown): Promise<void> {
    const client = new ClientClass({ connectionString: this.url, types: types as never, connectionTimeoutMillis: 10_000 });
    const lost = () => {
      this.cacheResolved = false;
      this.invalidate();
      if (this.listener !== client) return;
      this.listener = undefined;
      client.end().catch(() => undefined);
      this.listenLater(ClientClass, types);
    };
    client.on('notification', () => this.invalidate());
    client.on('error', lost);
    client.on('end', lost);
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      throw e;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    this.invalidate();
    this.cacheResolved = true;
  }

  private listenLater(ClientClass: typeof Client, types: unknown): void {
    if (this.closed) return;
    clearTimeout(this.relisten);
    this.relisten = setTimeout(() => void this.listen(ClientClass, types).catch(() => this.listenLater(ClientClass, types)), RELISTEN_MS);
    this.relisten.unref();
  }

  protected async transaction<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
    const client = await (await this.open()).connect();
    try {
      await client.query('BEGIN');
      await client.query(REGISTRY_LOCK);
      const out = await fn(this.executor((text, params) => client.query(text, params as unknown[])));
      await client.query('COMMIT');
      return out;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  /** NOTIFY is transactional: listeners hear it when the change commits, never before. */
  protected async announce(q: Sql): Promise<void> {
    await q.run(`SELECT pg_notify('${CHANNEL}', '')`);
  }

  /** The registry's SQL (`?` placeholders, SQLite's `rowid`) as PostgreSQL takes it. */
  private executor(query: (text: string, params: readonly unknown[]) => Promise<{ rows: QueryResultRow[]; rowCount: number | null }>): Sql {
    const run = async (sql: string, params: readonly unknown[] = []) => {
      let text = this.translated.get(sql);
      if (text === undefined) {
        let n = 0;
        text = sql.replace(/\?/g, () => `$${++n}`).replace(/\browid\b/g, 'seq');
        this.translated.set(sql, text);
      }
      try {
        return await query(text, params);
      } catch (e) {
        throw e instanceof NearlineError || !isConnectionError(e) ? e : unavailable(this.location, e);
      }
    };
    return {
      all: async <T>(sql: string, params?: readonly unknown[]) => (await run(sql, params)).rows as T[],
      get: async <T>(sql: string, params?: readonly unknown[]) => (await run(sql, params)).rows[0] as T | undefined,
      run: async (sql: string, params?: readonly unknown[]) => (await run(sql, params)).rowCount ?? 0,
    };
  }
}

/** A URL as it may be shown: without its password. */
function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*):[^@]*@/i, '$1:***@');
}

/** Errors of reaching the server (refused, unknown host, authentication, no such database), not of a statement. */
function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  return (
    /^(ECONN|ENOTFOUND|EAI_|ETIMEDOUT|EHOSTUNREACH|EPIPE)/.test(code) ||
    /^(08|28|3D|57P)/.test(code) ||
    /Connection terminated|timeout exceeded when trying to connect/i.test(String((e as Error).message))
  );
}

function unavailable(location: string, e: unknown): NearlineError {
  if (e instanceof NearlineError) return e;
  const message = (e as Error).message || String((e as { code?: string }).code ?? e);
  return new NearlineError('NL_REGISTRY_UNAVAILABLE', [location, message], { cause: e });
}
