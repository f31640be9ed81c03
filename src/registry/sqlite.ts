import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { NearlineError } from '../errors.ts';
import { MIGRATIONS } from './migrations/index.ts';
import { Registry, type Sql } from './registry.ts';

/** How long a writer waits for another process's write transaction before giving up. */
const BUSY_MS = 5000;

/**
 * The registry in one SQLite file (WAL), the default: `<home>/nearline.db`. Reads go straight to the file, so a
 * change made by another process is seen by the next read; writers of every process take turns on the file.
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
    run: async (sql: string, params: readonly unknown[] = []) => this.stmt(sql).run(...params).changes,
  };

  /** A write outside a transaction waits for the transaction this process has open, so it never lands inside it. */
  protected readonly sql: Sql = {
    all: this.direct.all,
    get: this.direct.get,
    run: (sql, params) => this.exclusive(() => this.direct.run(sql, params)),
  };

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
      }
    });
  }

  /** Nothing is cached over SQLite: every read sees the file as it is. */
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
