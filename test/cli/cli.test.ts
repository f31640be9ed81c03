import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { exactCosine, tempDir, wordDefs, writeDefs, writeWords, type WordRow } from '../helpers/fixtures.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

function cli(home: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: home, env: { ...process.env, NEARLINE_HOME: home } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the CLI, as a new user runs it', () => {
  let home: string;
  let rows: WordRow[];

  beforeAll(() => {
    home = tempDir();
    rows = writeWords(home, 3000, 24, 3);
    writeDefs(home, wordDefs(24));
    expect(cli(home, 'apply', 'defs.yaml').code).toBe(0);
    const m = cli(home, 'materialize', 'word_vec@v1');
    expect(m.code).toBe(0);
    expect(m.err).toMatch(/materialize word_vec@v1 done \(3,000 rows/);
    expect(cli(home, 'materialize', 'word_freq@v1').code).toBe(0);
  });

  it('nearest --id returns the exact neighbours as JSON, without the query itself', () => {
    const r = cli(home, 'nearest', 'word_vec', '--id', 'w5', '--k', '10');
    expect(r.code).toBe(0);
    const res = JSON.parse(r.out);
    expect(res).toMatchObject({ feature: 'word_vec', variant: 'v1' });
    const truth = exactCosine(rows, rows[5].vec, 10, 'w5');
    expect(res.hits.filter((h: { id: string }) => truth.includes(h.id)).length).toBeGreaterThanOrEqual(9);
    expect(res.hits[0].score).toBeGreaterThanOrEqual(res.hits[9].score);
  });

  it('nearest --vector with --filter returns only matching rows', () => {
    const r = cli(
      home,
      'nearest',
      'word_vec@prod',
      '--vector',
      JSON.stringify(rows[9].vec),
      '--k',
      '7',
      '--filter',
      '{"and":[{"field":"lang","op":"eq","value":"fr"},{"field":"freq","op":"gte","value":5}]}',
    );
    expect(r.code).toBe(0);
    const hits = JSON.parse(r.out).hits as Array<{ id: string }>;
    expect(hits).toHaveLength(7);
    for (const h of hits) {
      const row = rows[Number(h.id.slice(1))];
      expect(row.lang === 'fr' && row.freq >= 5).toBe(true);
    }
  });

  it('nearest --queries answers one line per query, in order, and reports bad lines in place', () => {
    const file = path.join(home, 'q.jsonl');
    const queries = [
      JSON.stringify({ id: 'w1' }),
      JSON.stringify({ vector: rows[2].vec }),
      '{bad json',
      JSON.stringify({ query: { id: 'w3' }, k: 2 }),
      JSON.stringify({ vector: [1, 2] }),
      JSON.stringify({ id: 'w4' }),
    ];
    writeFileSync(file, queries.join('\n') + '\n');
    const r = cli(home, 'nearest', 'word_vec', '--queries', file, '--k', '3');
    expect(r.code).toBe(1);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    expect(lines[0].hits.map((h: { id: string }) => h.id)).toEqual(exactCosine(rows, rows[1].vec, 3, 'w1'));
    expect(lines[1].hits[0].id).toBe('w2');
    expect(lines[2].error.code).toBe('NL_BAD_REQUEST');
    expect(lines[3].hits).toHaveLength(2);
    expect(lines[4].error).toMatchObject({ code: 'NL_DIMENSION_MISMATCH', message: expect.stringContaining('line 5') });
    expect(lines[5].hits.map((h: { id: string }) => h.id)).toEqual(exactCosine(rows, rows[4].vec, 3, 'w4'));
    expect(r.err).toContain('2 of the queries failed');
  });

  it('apply refuses to change a materialized variant: non-zero exit, NL_VARIANT_IMMUTABLE, nothing written', () => {
    const changed = wordDefs(24, { metric: 'dot' });
    writeDefs(home, changed, 'changed.yaml');
    const before = cli(home, 'show', 'word_vec@v1').out;
    const r = cli(home, 'apply', 'changed.yaml');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/refused\s+feature\s+word_vec@v1.*NL_VARIANT_IMMUTABLE/);
    expect(r.out).toContain('nothing was written');
    expect(cli(home, 'show', 'word_vec@v1').out).toBe(before);
  });

  it('show prints lineage; list prints features; alias set switches atomically', () => {
    const show = JSON.parse(cli(home, 'show', 'word_vec').out);
    expect(show).toMatchObject({ feature: 'word_vec@v1', status: 'live', rows: 3000, aliases: ['prod'] });
    expect(show.lineage.source.ref).toBe('words@v1');
    expect(show.lineage.provider).toEqual({ name: 'local', kind: 'hnsw' });
    expect(show.materialization.status).toBe('done');
    const list = cli(home, 'list', 'features');
    expect(list.out).toMatch(/word_vec@v1\s+embedding\s+materialized\s+3000/);
    expect(cli(home, 'alias', 'set', 'word_vec', 'staging', 'v1').out).toContain('word_vec@staging -> v1');
    expect(cli(home, 'list', 'aliases').out).toMatch(/word_vec@staging\s+v1/);
  });

  it('errors are coded, on stderr, with a non-zero exit', () => {
    const r = cli(home, 'nearest', 'nope', '--id', 'x');
    expect(r.code).toBe(1);
    expect(r.err).toContain('error NL_FEATURE_NOT_FOUND');
    expect(cli(home, 'nearest', 'word_vec', '--id', 'zzz').err).toContain('NL_ID_NOT_FOUND');
    expect(cli(home, 'nearest', 'word_vec', '--id', 'w1', '--k', '0').err).toContain('NL_LIMIT_EXCEEDED');
    expect(cli(home, 'nearest', 'word_vec', '--id', 'w1', '--filter', '{"field":"nope","op":"eq","value":1}').err).toContain('NL_BAD_FILTER');
    expect(cli(home, 'frobnicate').code).toBe(2);
    expect(cli(home, 'nearest', 'word_vec').code).toBe(2);
  });
});
