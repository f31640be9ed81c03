import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { cli } from './helpers.ts';

/** 200 good 8-d rows, then `bad` rows with a 3-d vector. */
async function setup(bad: number, dims = 8) {
  const home = tempDir();
  writeWords(home, 200, 8);
  appendFileSync(
    path.join(home, 'words.jsonl'),
    Array.from({ length: bad }, (_, i) => JSON.stringify({ id: `bad${i}`, vec: [1, 2, 3], lang: 'en', freq: 1 }) + '\n').join(''),
  );
  const store = FeatureStore.open({ home });
  await store.apply(await loadDefinitions(writeDefs(home, wordDefs(dims))));
  return { home, store };
}

const reportLines = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('--skip-invalid has a threshold and reports every bad row (regression: all rows invalid published an empty variant, exit 0)', () => {
  it('fails when every row is invalid, publishes nothing, and lists every row', async () => {
    const { store, home } = await setup(0, 9);
    const err = await store.materialize('word_vec@v1', { progress: false, skipInvalid: true }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'NL_BAD_SOURCE_ROW',
      message: expect.stringMatching(
        /200 of 200 rows read are invalid, more than --max-invalid allows \(1% of the rows read \(2 of 200\)\); nothing was published/,
      ),
    });
    expect(await store.registry.getFeature('word_vec', 'v1')).toMatchObject({ status: 'failed', rows: 0 });
    const report = path.join(home, 'reports', 'word_vec@v1.invalid.jsonl');
    expect((err as Error).message).toContain(report);
    expect(reportLines(report)).toHaveLength(200);
    expect(reportLines(report)[199]).toEqual({ line: 200, reason: expect.stringContaining('expected 9, got 8') });
    await store.close();
  });

  it('a fraction or a count: 3 bad rows of 203 fail the default 1% and a count of 2, pass 0.05 and 3', async () => {
    const { store } = await setup(3);
    const run = (maxInvalid?: number) =>
      store.materialize('word_vec@v1', { progress: false, skipInvalid: true, ...(maxInvalid !== undefined ? { maxInvalid } : {}) });
    await expect(run()).rejects.toMatchObject({ code: 'NL_BAD_SOURCE_ROW', message: expect.stringContaining('3 of 203 rows read are invalid') });
    await expect(run(2)).rejects.toMatchObject({ message: expect.stringContaining('(2 rows)') });
    expect((await store.registry.getFeature('word_vec', 'v1'))!.status).toBe('failed');
    const ok = await run(0.05);
    expect(ok).toMatchObject({ status: 'done', rows: 200, skipped: 3 });
    expect(reportLines(ok.invalidReport!).map((r) => r.line)).toEqual([201, 202, 203]);
    await expect(store.materialize('word_vec@v1', { skipInvalid: true, maxInvalid: 1.5 })).rejects.toMatchObject({ code: 'NL_BAD_REQUEST' });
    await store.close();
  });

  it('the CLI prints the first 10 bad rows, counts the rest, and names the file holding all of them', async () => {
    const { store, home } = await setup(25);
    await store.close();
    const failed = cli(home, 'materialize', 'word_vec@v1', '--skip-invalid');
    expect(failed.code).toBe(1);
    expect(failed.err).toContain('error NL_BAD_SOURCE_ROW');
    const r = cli(home, 'materialize', 'word_vec@v1', '--skip-invalid', '--max-invalid', '25');
    expect(r.code).toBe(0);
    expect(r.err.match(/^skipped line \d+:/gm)).toHaveLength(10);
    expect(r.err).toContain('... and 15 more');
    expect(r.err).toContain(`every skipped row is listed in ${path.join(home, 'reports', 'word_vec@v1.invalid.jsonl')}`);
    expect(reportLines(path.join(home, 'reports', 'word_vec@v1.invalid.jsonl'))).toHaveLength(25);
    expect(cli(home, 'materialize', 'word_vec@v1', '--max-invalid', '3').err).toContain('--max-invalid goes with --skip-invalid');
  });
});

describe('a variant that never published may be redefined (regression: NL_VARIANT_IMMUTABLE: it is failed)', () => {
  it('apply updates a failed variant, which then starts over; a materialized one stays immutable', async () => {
    const { store, home } = await setup(0, 9);
    await expect(store.materialize('word_vec@v1', { progress: false })).rejects.toMatchObject({ code: 'NL_BAD_SOURCE_ROW' });
    const fixed = await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8), 'fixed.yaml')));
    expect(fixed.applied).toBe(true);
    expect(fixed.plan.find((p) => p.name === 'word_vec@v1')).toMatchObject({ action: 'update', reason: 'redefines a variant whose materialization failed' });
    expect(await store.registry.getFeature('word_vec', 'v1')).toMatchObject({ status: 'registered', dims: 8 });
    expect(await store.registry.getMaterialization('word_vec', 'v1')).toBeUndefined();
    expect(await store.materialize('word_vec@v1', { progress: false, resume: true })).toMatchObject({ status: 'done', rows: 200 });
    const again = await store.apply(await loadDefinitions(writeDefs(home, wordDefs(9), 'back.yaml')));
    expect(again.plan.find((p) => p.name === 'word_vec@v1')).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });
    await store.close();
  });
});
