import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { openStore } from '../../src/index.ts';
import { createPostgresSource, type PostgresSourceSpec } from '../../src/providers/sources/postgres.ts';
import type { ReadFrom, Source, SourceRow } from '../../src/providers/sources/types.ts';
import { seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';
import { skipPostgresTests, startPostgres, type PostgresServer } from '../helpers/postgres.ts';

async function all(source: Source, from?: ReadFrom, limit = Infinity): Promise<SourceRow[]> {
  const out: SourceRow[] = [];
  for await (const row of source.read(from)) {
    out.push(row);
    if (out.length >= limit) break;
  }
  return out;
}

describe.skipIf(skipPostgresTests())('postgres source', () => {
  let server: PostgresServer;
  let url: string;
  const sql = async (text: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return await client.query(text, params);
    } finally {
      await client.end();
    }
  };
  const spec = (over: Partial<PostgresSourceSpec> = {}): PostgresSourceSpec => ({
    name: 'items',
    variant: 'v1',
    kind: 'postgres',
    url,
    table: 'items',
    key: 'id',
    ...over,
  });

  beforeAll(async () => {
    server = await startPostgres();
    url = await server.createDatabase();
    await sql(`CREATE TABLE items (id bigint PRIMARY KEY, title text, price numeric, stock int, live boolean, added timestamptz, vec real[], blob bytea)`);
    for (let i = 1; i <= 10; i++) {
      const blob = Buffer.alloc(8);
      blob.writeFloatLE(i, 0);
      blob.writeFloatLE(-i, 4);
      await sql(`INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [
        i * 10,
        `item ${i}`,
        (i * 1.5).toFixed(2),
        i,
        i % 2 === 0,
        new Date(Date.UTC(2026, 0, i)),
        [i, i / 2],
        blob,
      ]);
    }
  }, 120_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('reads a table in key order, one keyset page at a time, with values as the other sources give them', async () => {
    const rows = await all(createPostgresSource(spec({ pageSize: 3 })));
    expect(rows.map((r) => r.values.id)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    expect(rows.map((r) => r.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(rows[1].values).toEqual({ id: 20, title: 'item 2', price: 3, stock: 2, live: true, added: '2026-01-02T00:00:00.000Z', vec: [2, 1], blob: [2, -2] });
    const source = createPostgresSource(spec());
    expect(await source.columns()).toEqual(['id', 'title', 'price', 'stock', 'live', 'added', 'vec', 'blob']);
    expect(await source.size()).toBe(10);
  });

  it('resumes after the last key it reported, and sees rows inserted behind it', async () => {
    const source = createPostgresSource(spec({ pageSize: 2 }));
    const first = await all(source, undefined, 4);
    const last = first[3];
    expect(last.cursor).toBe('40');
    await sql(`INSERT INTO items (id, title) VALUES (5, 'before the cursor'), (45, 'after the cursor')`);
    try {
      const rest = await all(source, { position: last.position, line: last.line, cursor: last.cursor });
      expect(rest.map((r) => r.values.id)).toEqual([45, 50, 60, 70, 80, 90, 100]);
      expect(rest[0].line).toBe(5);
    } finally {
      await sql(`DELETE FROM items WHERE id IN (5, 45)`);
    }
  });

  it('reads a query, keyed by a text column', async () => {
    const source = createPostgresSource(
      spec({ table: undefined, query: `SELECT 'sku-' || lpad(id::text, 3, '0') AS sku, title FROM items WHERE stock > 5`, key: 'sku', pageSize: 2 }),
    );
    const rows = await all(source);
    expect(rows.map((r) => r.values.sku)).toEqual(['sku-060', 'sku-070', 'sku-080', 'sku-090', 'sku-100']);
    const resumed = await all(source, { position: 2, line: 2, cursor: rows[1].cursor });
    expect(resumed.map((r) => r.values.sku)).toEqual(['sku-080', 'sku-090', 'sku-100']);
    expect(await source.columns()).toEqual(['sku', 'title']);
  });

  it('fails with coded errors: missing table or column, unreachable server, bad options, an unset variable', async () => {
    await expect(all(createPostgresSource(spec({ table: 'nope' })))).rejects.toMatchObject({ code: 'NL_SOURCE_NOT_FOUND' });
    await expect(createPostgresSource(spec({ key: 'missing' })).columns()).resolves.toBeDefined();
    await expect(all(createPostgresSource(spec({ key: 'missing' })))).rejects.toMatchObject({ code: 'NL_SOURCE_NOT_FOUND' });
    await expect(createPostgresSource(spec({ url: 'postgres://postgres@127.0.0.1:1/x' })).columns()).rejects.toMatchObject({ code: 'NL_SOURCE_NOT_FOUND' });
    expect(() => createPostgresSource(spec({ query: 'SELECT 1' }))).toThrow(/exactly one of table or query/);
    expect(() => createPostgresSource(spec({ table: 'items; DROP TABLE items' }))).toThrow(/plain \[schema\.\]table/);
    await expect(createPostgresSource(spec({ url: 'postgres://u:${NEARLINE_TEST_UNSET_PW}@h/db' })).columns()).rejects.toThrow(/NEARLINE_TEST_UNSET_PW/);
    expect((await sql('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(10);
  });

  it('a materialization interrupted by a failing read resumes after the last checkpointed key, not from the start', async () => {
    const dir = tempDir();
    const rnd = seeded(11);
    await sql(`CREATE TABLE pages (page_id text PRIMARY KEY, emb real[], lang text)`);
    for (let i = 0; i < 300; i++)
      await sql(`INSERT INTO pages VALUES ($1, $2, $3)`, [`p${String(i).padStart(3, '0')}`, Array.from({ length: 4 }, () => rnd() - 0.5), 'en']);
    // The view fails while computing the page that holds p200, as an outage would, after earlier pages were written.
    const view = (fail: boolean) =>
      sql(
        `CREATE OR REPLACE VIEW pages_view AS SELECT page_id, emb, lang, ${fail ? "1 / (CASE WHEN page_id = 'p200' THEN 0 ELSE 1 END)" : '1'} AS one FROM pages`,
      );
    await view(true);
    const defs = {
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'page', key: 'page_id' }],
      sources: [{ name: 'pages', variant: 'v1', kind: 'postgres', url, table: 'pages_view', key: 'page_id', pageSize: 50 }],
      features: [
        {
          name: 'page_vec',
          variant: 'v1',
          entity: 'page',
          source: 'pages@v1',
          kind: 'embedding',
          vector: { column: 'emb' },
          dims: 4,
          metric: 'cosine',
          provider: 'local',
          metadata: ['lang'],
        },
      ],
    };
    const store = openStore({ home: dir });
    try {
      await store.apply(await loadDefinitions(writeDefs(dir, defs)));
      await expect(store.materialize('page_vec@v1', { progress: false, batchSize: 20, checkpointRows: 40 })).rejects.toMatchObject({
        code: 'NL_PROVIDER_ERROR',
        message: expect.stringContaining('division by zero'),
      });
      const state = await store.registry.getMaterialization('page_vec', 'v1');
      expect(state).toMatchObject({ status: 'failed' });
      const after = JSON.parse(state!.cursor!) as string;
      expect(after >= 'p100' && after < 'p200').toBe(true);
      // Rows behind the checkpoint are not read again; rows after it are.
      await sql(`UPDATE pages SET lang = 'behind' WHERE page_id = 'p010'`);
      await sql(`UPDATE pages SET lang = 'ahead' WHERE page_id = 'p250'`);
      await view(false);
      const resumed = await store.materialize('page_vec@v1', { progress: false, resume: true });
      expect(resumed).toMatchObject({ status: 'done', rows: 300 });
      const withLang = async (lang: string) =>
        (await store.nearest({ feature: 'page_vec@v1', k: 5, query: { id: 'p005' }, filter: { field: 'lang', op: 'eq', value: lang } })).hits.map((h) => h.id);
      expect(await withLang('ahead')).toEqual(['p250']);
      expect(await withLang('behind')).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('materializes a feature from a table, with options checked at apply', async () => {
    const dir = tempDir();
    const rnd = seeded(7);
    await sql(`CREATE TABLE docs (doc_id text PRIMARY KEY, emb real[], lang text)`);
    const docs = Array.from({ length: 300 }, (_, i) => ({
      id: `d${String(i).padStart(3, '0')}`,
      emb: Array.from({ length: 8 }, () => rnd() - 0.5),
      lang: i % 2 ? 'en' : 'fr',
    }));
    for (const d of docs) await sql(`INSERT INTO docs VALUES ($1, $2, $3)`, [d.id, d.emb, d.lang]);
    const defs = {
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'doc', key: 'doc_id' }],
      sources: [{ name: 'docs', variant: 'v1', kind: 'postgres', url: '${NEARLINE_TEST_PG_URL}', table: 'docs', key: 'doc_id', pageSize: 64 }],
      features: [
        {
          name: 'doc_vec',
          variant: 'v1',
          entity: 'doc',
          source: 'docs@v1',
          kind: 'embedding',
          vector: { column: 'emb' },
          dims: 8,
          metric: 'cosine',
          provider: 'local',
          metadata: ['lang'],
        },
      ],
    };
    process.env.NEARLINE_TEST_PG_URL = url;
    const store = openStore({ home: dir });
    try {
      const bad = { ...defs, sources: [{ ...defs.sources[0], pageSze: 64 }] };
      await expect(loadDefinitions(writeDefs(dir, bad, 'bad.yaml'))).rejects.toThrow(
        /sources\[0\] \(docs@v1\): field "pageSze": unknown option for a postgres source/,
      );
      await store.apply(await loadDefinitions(writeDefs(dir, defs)));
      const result = await store.materialize('doc_vec@v1');
      expect(result.rows).toBe(300);
      const hits = await store.nearest({ feature: 'doc_vec@v1', k: 3, query: { id: 'd042' }, filter: { field: 'lang', op: 'eq', value: 'fr' } });
      expect(hits.hits).toHaveLength(3);
      expect(hits.hits.every((h) => Number(h.id.slice(1)) % 2 === 0)).toBe(true);
      // The URL is stored as written: the password-bearing value stays in the environment.
      expect(JSON.stringify(await store.registry.getSource('docs', 'v1'))).toContain('${NEARLINE_TEST_PG_URL}');
    } finally {
      await store.close();
      delete process.env.NEARLINE_TEST_PG_URL;
    }
  });
});
