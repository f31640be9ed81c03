import Database from 'better-sqlite3';
import { nlError } from '../../errors.ts';
import type { Source, SourceRow, SourceSpec } from './types.ts';
import { refOf } from '../../refs.ts';

const PAGE = 1000;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * A table of a SQLite file, read in rowid order one page at a time (the file is opened read-only and
 * never held open between pages); resumes after a rowid. `line` is the rowid.
 */
export function createSqliteSource(spec: SourceSpec): Source {
  const file = spec.path;
  const table = spec.table;
  if (!file || !table) throw nlError('NL_BAD_DEFINITION', `source ${refOf(spec)}: a sqlite source needs path and table`);
  if (!IDENT.test(table)) throw nlError('NL_BAD_DEFINITION', `source ${refOf(spec)}: table ${JSON.stringify(table)} is not a plain identifier`);
  const open = () => {
    try {
      return new Database(file, { readonly: true, fileMustExist: true });
    } catch (e) {
      throw nlError('NL_SOURCE_NOT_FOUND', `${file} (${(e as Error).message})`);
    }
  };
  const withDb = <T>(fn: (db: Database.Database) => T): T => {
    const db = open();
    try {
      return fn(db);
    } catch (e) {
      if ((e as Error).message.includes('no such table')) throw nlError('NL_SOURCE_NOT_FOUND', `${file}: table ${table}`);
      throw e;
    } finally {
      db.close();
    }
  };
  return {
    async columns() {
      const cols = withDb((db) => db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(table) as string[]);
      if (!cols.length) throw nlError('NL_SOURCE_NOT_FOUND', `${file}: table ${table}`);
      return cols;
    },
    size: async () => withDb((db) => (db.prepare(`SELECT max(rowid) FROM "${table}"`).pluck().get() as number | null) ?? 0),
    async *read(from = { position: 0, line: 0 }): AsyncGenerator<SourceRow> {
      let after = from.position;
      for (;;) {
        const page = withDb(
          (db) =>
            db.prepare(`SELECT rowid AS "__nearline_rowid", * FROM "${table}" WHERE rowid > ? ORDER BY rowid LIMIT ${PAGE}`).all(after) as Array<
              Record<string, unknown>
            >,
        );
        for (const row of page) {
          const rowid = row.__nearline_rowid as number;
          delete row.__nearline_rowid;
          for (const [k, v] of Object.entries(row)) if (Buffer.isBuffer(v)) row[k] = blobToNumbers(v);
          yield { line: rowid, values: row, position: rowid };
          after = rowid;
        }
        if (page.length < PAGE) return;
      }
    },
  };
}

/** A BLOB column holds a float32 vector (little-endian), as nearline's own stores write them. */
function blobToNumbers(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}
