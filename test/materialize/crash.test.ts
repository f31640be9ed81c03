import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

function cli(home: string, args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args, '--home', home], { encoding: 'utf8', cwd: home });
}

function checkpointLine(home: string): number {
  try {
    const db = new Database(path.join(home, 'nearline.db'), { readonly: true, fileMustExist: true });
    try {
      return (db.prepare("SELECT line FROM materializations WHERE feature = 'word_vec'").pluck().get() as number | undefined) ?? 0;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

describe('materialization survives kill -9', () => {
  it('resumes after SIGKILL mid-run and ends complete and consistent, without duplicates', { timeout: 240_000 }, async () => {
    const home = tempDir();
    const n = 40_000;
    const dims = 32;
    const rows = writeWords(home, n, dims, 7);
    writeDefs(home, wordDefs(dims));
    expect(cli(home, ['apply', 'defs.yaml']).status).toBe(0);

    const child = spawn(process.execPath, [BIN, 'materialize', 'word_vec@v1', '--home', home, '--batch', '500', '--checkpoint-rows', '5000'], {
      cwd: home,
      stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    const deadline = Date.now() + 120_000;
    let seen = 0;
    while (Date.now() < deadline && (seen = checkpointLine(home)) < 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(seen).toBeGreaterThanOrEqual(10_000);
    expect(seen).toBeLessThan(n);
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const before = checkpointLine(home);
    const resumed = cli(home, ['materialize', 'word_vec@v1', '--resume']);
    expect(resumed.stderr).toContain(`resumed after source line ${before}`);
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain(`${n} rows materialized`);

    const store = FeatureStore.open({ home });
    try {
      const feature = (await store.registry.getFeature('word_vec', 'v1'))!;
      expect(feature.status).toBe('materialized');
      expect(feature.rows).toBe(n);
      const coll = await store.collection(feature);
      expect(await coll.count()).toBe(n);
      const got = await coll.get(rows.map((r) => r.id));
      const missing = got.filter((g) => g === null).length;
      expect(missing).toBe(0);
      for (const i of [0, 12_345, n - 1]) {
        const want = rows[i].vec;
        const norm = Math.hypot(...want);
        want.forEach((x, j) => expect(got[i]!.vector[j]).toBeCloseTo(x / norm, 5));
        expect(got[i]!.metadata).toEqual({ lang: rows[i].lang, freq: rows[i].freq });
      }
      const res = await store.nearest({ feature: 'word_vec', k: 1, query: { vector: rows[4242].vec } });
      expect(res.hits[0].id).toBe('w4242');
    } finally {
      await store.close();
    }

    const rerun = cli(home, ['materialize', 'word_vec@v1']);
    expect(rerun.status).toBe(0);
    expect(rerun.stdout).toContain('already materialized');
  });
});
