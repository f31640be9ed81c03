import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { NearlineError } from '../errors.ts';
import { MIGRATIONS } from './migrations/index.ts';
import { Registry, type Sql } from './registry.ts';

/** How long a writer waits for another process's write transaction before giving up. */
const BUSY_MS = 5000;

/** Cached reads kept at most; past it the cache starts over (the registry's hot reads are a handful). */
const CACHED_READS = 10_000;

/** Freezes a row (or rows) a cached read hands to every caller, so none can change what the others see. */
function freezeRows<T>(value: T): T {
  if (Array.isArray(value)) value.forEach((r) => Object.freeze(r));
  else if (value && typeof value === 'object') Object.freeze(value);
  return Object.freeze(value);
}

/**
 * The registry in one SQLite file (WAL), the default: `<home>/nearline.db`. Writers of every process take turns
 * on the file. Reads outside a transaction are cached until the file changes: SQLite's `data_version` tells a
 * commit by another connection (another process), and every write of this connection clears the cache, so a
 * change made anywhere is seen by the next read, while serving, which reads the same few rows on every request,
 * runs one cheap pragma instead of its queries.
 */
export class SqliteRegistry extends Registry {
  readonly backend = 'sqlite';
  readonly location: string;
  readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  /** The end of the last transaction or write queued in this process: one connection writes one thing at a time. */
  private tail: Promise<void> = Promise.resolve();

  /** Statements run as they come; inside a transaction they are its statements. */
  private readonly direct: Sql = {
    all: async <T>(sql: string, params: readonly unknown[] = []) => this.stmt(sql).all(...params) as T[],
    get: async <T>(sql: string, params: readonly unknown[] = []) => this.stmt(sql).get(...params) as T | undefined,
    run: async (sql: string, params: readonly unknown[] = []) => {
      try {
        return this.stmt(sql).run(...params).changes;
      } finally {
        this.wrote();
      }
    },
  };

  /**
   * Reads cached (see the class comment); a write outside a transaction waits for the transaction this process
   * has open, so it never lands inside it.
   */
  protected readonly sql: Sql = {
    all: async <T>(sql: string, params: readonly unknown[] = []) => this.cachedRead('all', sql, params) as T[],
    get: async <T>(sql: string, params: readonly unknown[] = []) => this.cachedRead('get', sql, params) as T | undefined,
    run: (sql, params) => this.exclusive(() => this.direct.run(sql, params)),
  };

  private readonly reads = new Map<string, unknown>();
  /** `data_version` when the cache was last known good. */
  private readVersion: unknown;
  /** Counts the times the cache was cleared: `changeToken()`. */
  private epoch = 0;
  private dataVersion!: Database.Statement;

  constructor(file: string) {
    super();
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.location = file;
    this.db = new Database(file);
    // Waits for another process's writer first: switching to WAL and migrating take the write lock too.
    this.db.pragma(`busy_timeout = ${BUSY_MS}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    this.dataVersion = this.db.prepare('PRAGMA data_version').pluck();
  }

  /** Clears the cache when another connection committed since it was filled. */
  private checkVersion(): void {
    const version = this.dataVersion.get();
    if (version !== this.readVersion) {
      this.wrote();
      this.readVersion = version;
    }
  }

  /** Moves on each commit seen, by this connection or another; undefined inside a transaction of this one. */
  override changeToken(): unknown {
    if (this.db.inTransaction) return undefined;
    this.checkVersion();
    return this.epoch;
  }

  private cachedRead(kind: 'all' | 'get', sql: string, params: readonly unknown[]): unknown {
    const st = this.stmt(sql);
    // A transaction of this connection may be open (across awaits): what it wrote is not committed yet.
    if (this.db.inTransaction) return kind === 'all' ? st.all(...params) : st.get(...params);
    this.checkVersion();
    const key = `${kind}\0${sql}\0${JSON.stringify(params)}`;
    if (this.reads.has(key)) return this.reads.get(key);
    const out = freezeRows(kind === 'all' ? st.all(...params) : st.get(...params));
    if (this.reads.size >= CACHED_READS) this.reads.clear();
    this.reads.set(key, out);
    return out;
  }

  /** This connection wrote: `data_version` only counts other connections' commits. */
  private wrote(): void {
    this.reads.clear();
    this.epoch++;
  }

  async close(): Promise<void> {
    await this.tail;
    this.db.close();
  }

  /** Prepared once per SQL text: serving resolves features on every request. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.tail;
    let release!: () => void;
    this.tail = new Promise((resolve) => (release = resolve));
    return before.then(fn).finally(release);
  }

  /** BEGIN IMMEDIATE takes the file's write lock first, so other processes' writers wait (busy_timeout) or this one does. */
  protected transaction<T>(fn: (q: Sql) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      try {
        this.db.exec('BEGIN IMMEDIATE');
      } catch (e) {
        if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
        throw new NearlineError('NL_REGISTRY_BUSY', [this.location, `another process held its write lock for ${BUSY_MS / 1000} s; retry`], { cause: e });
      }
      try {
        const out = await fn(this.direct);
        this.db.exec('COMMIT');
        return out;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw e;
      } finally {
        this.wrote();
      }
    });
  }

  /** Nothing to announce: other processes see the commit in `data_version`. */
  protected async announce(): Promise<void> {}

  /** Each migration in its own write transaction, checked again inside it: processes opening a new file at once migrate it once. */
  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    const applied = () => new Set(this.stmt('SELECT version FROM schema_migrations').pluck().all() as number[]);
    const pending = applied();
    for (const m of MIGRATIONS) {
      if (pending.has(m.version)) continue;
      this.db
        .transaction(() => {
          if (applied().has(m.version)) return;
          this.db.exec(m.sql);
          this.stmt('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
        })
        .immediate();
    }
  }
}
