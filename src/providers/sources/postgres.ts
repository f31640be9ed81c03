import pg from 'pg';
import { NearlineError, nlError } from '../../errors.ts';
import type { ReadFrom, Source, SourceRow, SourceSpec } from './types.ts';
import { refOf } from '../../refs.ts';

/** Options of a `postgres` source, as its plugin's schema checks them. */
export interface PostgresSourceSpec extends SourceSpec {
  url: string;
  table?: string;
  query?: string;
  key: string;
  pageSize?: number;
}

const PAGE = 1000;
const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;
/** Postgres type ids parsed to numbers rather than left as strings: int8 (when exact) and numeric. */
const INT8 = 20;
const NUMERIC = 1700;

/**
 * A PostgreSQL table or query, read in order of a unique key one keyset page at a time
 * (`WHERE key > $last ORDER BY key LIMIT n`), so a page costs the same at the start and the end of a large
 * table, rows inserted behind the reader are never skipped, and a read resumes after the last key it reported.
 * Each read holds one connection while it runs; `${VAR}` in the URL is replaced from the environment.
 */
export function createPostgresSource(spec: PostgresSourceSpec): Source {
  const where = `source ${refOf(spec)}`;
  if ((spec.table === undefined) === (spec.query === undefined))
    throw nlError('NL_BAD_DEFINITION', `${where}: a postgres source needs exactly one of table or query`);
  if (!IDENT.test(spec.key)) throw nlError('NL_BAD_DEFINITION', `${where}: key ${JSON.stringify(spec.key)} is not a plain column name`);
  const relation = spec.table !== undefined ? tableName(spec.table, where) : `(${spec.query}) AS nearline_source`;
  const key = quote(spec.key);
  const pageSize = spec.pageSize ?? PAGE;

  const connect = async (): Promise<pg.Client> => {
    const client = new pg.Client({ connectionString: expandEnv(spec.url, where), types: { getTypeParser } });
    try {
      await client.connect();
    } catch (e) {
      await client.end().catch(() => undefined);
      throw new NearlineError('NL_SOURCE_NOT_FOUND', [`${refOf(spec)} (cannot connect to PostgreSQL: ${(e as Error).message})`], { cause: e });
    }
    return client;
  };
  const withClient = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = await connect();
    try {
      return await fn(client);
    } catch (e) {
      throw queryError(e, spec);
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  return {
    columns: () => withClient(async (c) => (await c.query(`SELECT * FROM ${relation} LIMIT 0`)).fields.map((f) => f.name)),
    size: () => withClient(async (c) => Number((await c.query(`SELECT count(*) AS n FROM ${relation}`)).rows[0].n)),
    async *read(from: ReadFrom = { position: 0, line: 0 }): AsyncGenerator<SourceRow> {
      const client = await connect();
      try {
        let after: unknown = from.cursor === undefined ? undefined : JSON.parse(from.cursor);
        let read = from.position;
        for (;;) {
          const sql =
            after === undefined
              ? `SELECT * FROM ${relation} ORDER BY ${key} LIMIT ${pageSize}`
              : `SELECT * FROM ${relation} WHERE ${key} > $1 ORDER BY ${key} LIMIT ${pageSize}`;
          let page: Array<Record<string, unknown>>;
          try {
            page = (await client.query(sql, after === undefined ? [] : [after])).rows;
          } catch (e) {
            throw queryError(e, spec);
          }
          for (const row of page) {
            const k = row[spec.key];
            if (k === null || k === undefined)
              throw nlError('NL_BAD_DEFINITION', `${where}: key column ${spec.key} is null in a row; the key must be unique and not null`);
            after = k instanceof Date ? k.toISOString() : k;
            read++;
            yield { line: read, values: plain(row), position: read, cursor: JSON.stringify(after) };
          }
          if (page.length < pageSize) return;
        }
      } finally {
        await client.end().catch(() => undefined);
      }
    },
  };
}

function getTypeParser(oid: number, format?: string): (value: string) => unknown {
  if (oid === INT8) return (v) => (Number.isSafeInteger(Number(v)) ? Number(v) : v);
  if (oid === NUMERIC) return (v) => Number(v);
  return pg.types.getTypeParser(oid, format as 'text');
}

/** Values as nearline's other sources give them: dates as ISO strings, a bytea as the float32 vector it holds. */
function plain(row: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(row)) {
    if (v instanceof Date) row[k] = v.toISOString();
    else if (Buffer.isBuffer(v)) row[k] = Array.from({ length: v.length >> 2 }, (_, i) => v.readFloatLE(i * 4));
  }
  return row;
}

function quote(ident: string): string {
  return `"${ident.replace(/"/g, '""')}"`;
}

function tableName(table: string, where: string): string {
  const parts = table.split('.');
  if (parts.length > 2 || !parts.every((p) => IDENT.test(p)))
    throw nlError('NL_BAD_DEFINITION', `${where}: table ${JSON.stringify(table)} is not a plain [schema.]table name`);
  return parts.map(quote).join('.');
}

function expandEnv(url: string, where: string): string {
  return url.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = process.env[name];
    if (v === undefined) throw nlError('NL_BAD_DEFINITION', `${where}: its url uses \${${name}}, which is not set in the environment`);
    return v;
  });
}

/**
 * A missing table or column reads as a source not found, another refused statement (SQLSTATE class 42: syntax,
 * permissions) as a bad definition; anything else (a lost connection, an error while rows are computed) is an
 * outage, after which a materialization keeps its checkpoint and `--resume` continues.
 */
function queryError(e: unknown, spec: SourceSpec): unknown {
  if (e instanceof NearlineError) return e;
  const code = (e as { code?: string }).code ?? '';
  const message = (e as Error).message;
  if (code === '42P01' || code === '42703' || code === '3F000') return new NearlineError('NL_SOURCE_NOT_FOUND', [`${refOf(spec)} (${message})`], { cause: e });
  if (code.startsWith('42')) return new NearlineError('NL_BAD_DEFINITION', [`source ${refOf(spec)}: PostgreSQL refused its query: ${message}`], { cause: e });
  return new NearlineError('NL_PROVIDER_ERROR', [`postgres source ${refOf(spec)}`, message], { cause: e });
}
