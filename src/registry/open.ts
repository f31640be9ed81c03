import path from 'node:path';
import { nlError } from '../errors.ts';
import { isPostgresUrl, PostgresRegistry } from './postgres.ts';
import type { Registry } from './registry.ts';
import { SqliteRegistry } from './sqlite.ts';

/**
 * Where the registry of `home` lives, decided here only: `registry` (the `--registry` flag, openStore's
 * option), else `NEARLINE_REGISTRY`, else the SQLite file `<home>/nearline.db`.
 */
export function registryLocation(home: string, registry?: string): string {
  return registry || process.env.NEARLINE_REGISTRY || path.join(home, 'nearline.db');
}

/** `postgres://` or `postgresql://` opens PostgreSQL (connected on first use); anything else is a SQLite file path. */
export function openRegistry(location: string): Registry {
  if (isPostgresUrl(location)) return new PostgresRegistry(location);
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(location)) {
    throw nlError('NL_BAD_REGISTRY', location, 'a registry is a SQLite file path or a postgres:// URL');
  }
  return new SqliteRegistry(location);
}

export { isPostgresUrl };
