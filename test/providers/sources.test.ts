import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCsvSource } from '../../src/providers/sources/csv.ts';
import { createJsonlSource } from '../../src/providers/sources/jsonl.ts';
import type { Source, SourceRow } from '../../src/providers/sources/types.ts';
import { tempDir } from '../helpers/fixtures.ts';

async function all(source: Source, from?: { position: number; line: number }): Promise<SourceRow[]> {
  const out: SourceRow[] = [];
  for await (const row of source.read(from)) out.push(row);
  return out;
}

describe('sources', () => {
  it('csv: quoted delimiters, doubled quotes, newlines inside quotes, CRLF, and line numbers', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'x.csv');
    writeFileSync(file, 'id,title,vec\r\n1,"a, b","[1,2]"\r\n2,"say ""hi""\nthere",3 4\r\n\r\n3,é,"[5,6]"\n');
    const rows = await all(createCsvSource({ name: 'x', variant: 'v1', kind: 'csv', path: file }));
    expect(rows.map((r) => r.values)).toEqual([
      { id: '1', title: 'a, b', vec: '[1,2]' },
      { id: '2', title: 'say "hi"\nthere', vec: '3 4' },
      { id: '3', title: 'é', vec: '[5,6]' },
    ]);
    expect(rows.map((r) => r.line)).toEqual([2, 3, 6]);
  });

  it('csv: a row with the wrong field count is reported with its line, not thrown', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'x.csv');
    writeFileSync(file, 'id,a\n1,2\n3\n4,5\n');
    const rows = await all(createCsvSource({ name: 'x', variant: 'v1', kind: 'csv', path: file }));
    expect(rows.map((r) => [r.line, r.error ?? null])).toEqual([
      [2, null],
      [3, 'expected 2 fields, found 1'],
      [4, null],
    ]);
  });

  it.each(['csv', 'jsonl'])('%s: resuming from any reported position yields exactly the remaining rows', async (kind) => {
    const dir = tempDir();
    const file = path.join(dir, `x.${kind}`);
    const n = 3000;
    const body =
      kind === 'csv'
        ? 'id,text\n' + Array.from({ length: n }, (_, i) => `${i},"row ${i}, ok"`).join('\n') + '\n'
        : Array.from({ length: n }, (_, i) => JSON.stringify({ id: String(i), text: `row ${i}, ok ü` })).join('\n');
    writeFileSync(file, body);
    const make = kind === 'csv' ? createCsvSource : createJsonlSource;
    const source = make({ name: 'x', variant: 'v1', kind, path: file });
    const rows = await all(source);
    expect(rows.length).toBe(n);
    for (const cut of [0, 1, 1234, n - 1]) {
      const rest = await all(source, { position: rows[cut].position, line: rows[cut].line });
      expect(rest.map((r) => r.values.id)).toEqual(rows.slice(cut + 1).map((r) => r.values.id));
      expect(rest.map((r) => r.line)).toEqual(rows.slice(cut + 1).map((r) => r.line));
    }
  });

  it('jsonl: reads a file larger than its read chunk without holding it whole, and reports bad lines', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'big.jsonl');
    const line = JSON.stringify({ id: 'x', pad: 'p'.repeat(5000) });
    writeFileSync(file, Array.from({ length: 600 }, () => line).join('\n') + '\n{not json\n[1]\n');
    const rows = await all(createJsonlSource({ name: 'b', variant: 'v1', kind: 'jsonl', path: file }));
    expect(rows.length).toBe(602);
    expect(rows[599].values.pad).toHaveLength(5000);
    expect(rows[600]).toMatchObject({ line: 601, error: expect.stringContaining('invalid JSON') });
    expect(rows[601]).toMatchObject({ line: 602, error: 'expected a JSON object' });
  });

  it('a missing file is NL_SOURCE_NOT_FOUND', async () => {
    await expect(all(createJsonlSource({ name: 'm', variant: 'v1', kind: 'jsonl', path: '/no/such.jsonl' }))).rejects.toMatchObject({
      code: 'NL_SOURCE_NOT_FOUND',
    });
  });
});

describe('sqlite table source', () => {
  it('reads a table in rowid order with float32 BLOB vectors, resumes after a rowid, and names a missing table', async () => {
    const Database = (await import('better-sqlite3')).default;
    const { createSqliteSource } = await import('../../src/providers/sources/sqlite.ts');
    const dir = tempDir();
    const file = path.join(dir, 'words.db');
    const db = new Database(file);
    db.exec('CREATE TABLE words (id TEXT, vec BLOB, freq REAL)');
    const insert = db.prepare('INSERT INTO words VALUES (?, ?, ?)');
    for (let i = 0; i < 2500; i++) insert.run(`w${i}`, Buffer.from(new Float32Array([i, -i, 0.5]).buffer), i / 2);
    db.close();
    const source = createSqliteSource({ name: 's', variant: 'v1', kind: 'sqlite', path: file, table: 'words' });
    const rows = await all(source);
    expect(rows).toHaveLength(2500);
    expect(rows[7].values).toEqual({ id: 'w7', vec: [7, -7, 0.5], freq: 3.5 });
    expect(await source.size()).toBe(2500);
    const rest = await all(source, { position: rows[1999].position, line: rows[1999].line });
    expect(rest.map((r) => r.values.id)).toEqual(rows.slice(2000).map((r) => r.values.id));
    const missing = createSqliteSource({ name: 's', variant: 'v1', kind: 'sqlite', path: file, table: 'nope' });
    await expect(all(missing)).rejects.toMatchObject({ code: 'NL_SOURCE_NOT_FOUND' });
    expect(() => createSqliteSource({ name: 's', variant: 'v1', kind: 'sqlite', path: file, table: 'x; DROP TABLE words' })).toThrow(/identifier/);
  });
});
