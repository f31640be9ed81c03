/**
 * Versioned registry migrations, applied in order inside one transaction each.
 * Never edit a shipped migration: add the next version.
 */
export interface Migration {
  version: number;
  name: string;
  /** SQLite's statements; `postgresSql` derives PostgreSQL's from them. */
  sql: string;
  /** Statements PostgreSQL runs after the derived ones. */
  postgres?: string;
}

export const MIGRATIONS: ReadonlyArray<Migration> = [
  {
    version: 1,
    name: 'init',
    sql: `
      CREATE TABLE providers (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        options TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE entities (
        name TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE sources (
        name TEXT NOT NULL,
        variant TEXT NOT NULL,
        kind TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (name, variant)
      );
      CREATE TABLE models (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        runtime TEXT NOT NULL,
        spec TEXT NOT NULL,
        dims INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (name, version)
      );
      CREATE TABLE features (
        name TEXT NOT NULL,
        variant TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('embedding', 'scalar')),
        entity TEXT NOT NULL REFERENCES entities(name),
        source_name TEXT NOT NULL,
        source_variant TEXT NOT NULL,
        provider TEXT NOT NULL REFERENCES providers(name),
        model_name TEXT,
        model_version TEXT,
        spec TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'registered'
          CHECK (status IN ('registered', 'materializing', 'materialized', 'failed')),
        rows INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        materialized_at TEXT,
        PRIMARY KEY (name, variant),
        FOREIGN KEY (source_name, source_variant) REFERENCES sources(name, variant),
        FOREIGN KEY (model_name, model_version) REFERENCES models(name, version)
      );
      CREATE TABLE aliases (
        feature TEXT NOT NULL,
        name TEXT NOT NULL,
        variant TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (feature, name),
        FOREIGN KEY (feature, variant) REFERENCES features(name, variant)
      );
      CREATE TABLE alias_history (
        feature TEXT NOT NULL,
        name TEXT NOT NULL,
        variant TEXT NOT NULL,
        previous TEXT,
        at TEXT NOT NULL
      );
      CREATE TABLE materializations (
        feature TEXT NOT NULL,
        variant TEXT NOT NULL,
        status TEXT NOT NULL,
        position INTEGER NOT NULL DEFAULT 0,
        line INTEGER NOT NULL DEFAULT 0,
        rows_read INTEGER NOT NULL DEFAULT 0,
        rows_skipped INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        error TEXT,
        PRIMARY KEY (feature, variant),
        FOREIGN KEY (feature, variant) REFERENCES features(name, variant)
      );
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL CHECK (scope IN ('serve', 'write', 'admin')),
        features TEXT,
        created_at TEXT NOT NULL
      );
    `,
    // SQLite lists rows in insertion order by rowid; PostgreSQL has no rowid, so these tables get one.
    postgres: `
      ALTER TABLE sources ADD COLUMN seq BIGSERIAL;
      ALTER TABLE features ADD COLUMN seq BIGSERIAL;
      ALTER TABLE alias_history ADD COLUMN seq BIGSERIAL;
      ALTER TABLE api_keys ADD COLUMN seq BIGSERIAL;
    `,
  },
  {
    version: 2,
    name: 'log offsets',
    sql: `
      -- How far each variant has durably applied its source's pushed-row log. A snapshot-backed index (hnsw)
      -- keeps the authoritative offset in its own manifest; this copy serves show, metrics and compaction.
      CREATE TABLE log_offsets (
        feature TEXT NOT NULL,
        variant TEXT NOT NULL,
        offset INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (feature, variant),
        FOREIGN KEY (feature, variant) REFERENCES features(name, variant)
      );
    `,
  },
  {
    version: 4,
    name: 'audit',
    sql: `
      CREATE TABLE registry_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        feature TEXT,
        detail TEXT
      );
      CREATE INDEX registry_events_by_feature ON registry_events (feature, id);
      ALTER TABLE alias_history ADD COLUMN actor TEXT;
      ALTER TABLE api_keys ADD COLUMN created_by TEXT;
      ALTER TABLE api_keys ADD COLUMN revoked_at TEXT;
      ALTER TABLE api_keys ADD COLUMN revoked_by TEXT;
    `,
  },
  {
    version: 5,
    name: 'lifecycle',
    sql: `
      -- A dropped variant keeps its record and lineage; its data is gone and it is never served again.
      ALTER TABLE features ADD COLUMN dropped_at TEXT;
      -- Mirrored traffic: a share of an alias's nearest queries also runs on a candidate variant.
      CREATE TABLE shadows (
        feature TEXT NOT NULL,
        alias TEXT NOT NULL,
        variant TEXT NOT NULL,
        fraction REAL NOT NULL,
        queries INTEGER NOT NULL DEFAULT 0,
        overlap_sum REAL NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (feature, alias),
        FOREIGN KEY (feature, variant) REFERENCES features(name, variant)
      );
      -- One builder per variant: a lease its holder renews, lapsed when the holder stops renewing it.
      CREATE TABLE leases (
        feature TEXT NOT NULL,
        variant TEXT NOT NULL,
        holder TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (feature, variant)
      );
    `,
  },
  {
    version: 6,
    name: 'checkpoint_cursor',
    sql: `
      -- Where a resumed read continues when a number cannot say it: a keyset source's last key (JSON).
      ALTER TABLE materializations ADD COLUMN cursor TEXT;
    `,
  },
];

/**
 * A migration as PostgreSQL runs it: integers are 64-bit (offsets, epoch milliseconds), REAL is double precision,
 * `offset` is a reserved word there, and an AUTOINCREMENT key is a BIGSERIAL.
 */
export function postgresSql(m: Migration): string {
  const sql = m.sql
    .replace(/INTEGER PRIMARY KEY AUTOINCREMENT/g, 'BIGSERIAL PRIMARY KEY')
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/\bREAL\b/g, 'DOUBLE PRECISION')
    .replace(/^(\s*)offset /gm, '$1"offset" ');
  return sql + (m.postgres ?? '');
}
