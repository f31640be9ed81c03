import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { itemVecFeature, seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');
const DIMS = 16;

const feature = (variant: string) => itemVecFeature(variant, { dims: DIMS, metric: 'l2', index: { M: 8, efConstruction: 64, ef: 32 } });

describe('a new variant killed while it catches up on pushed rows', () => {
  it('resumes after kill -9 and ends with the file rows overridden by every pushed row', { timeout: 240_000 }, async () => {
    const home = tempDir();
    const rnd = seeded(23);
    const vec = () => Array.from({ length: DIMS }, () => Math.round((rnd() - 0.5) * 1e4) / 1e4);
    writeFileSync(path.join(home, 'items.jsonl'), Array.from({ length: 500 }, (_, i) => JSON.stringify({ id: `i${i}`, vec: vec() })).join('\n') + '\n');
    const defs = {
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'item', key: 'id' }],
      sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
      features: [feature('v1')],
      aliases: [],
    };
    writeDefs(home, defs);
    // v1 takes 29,970 pushed rows (and 30 deletions of file rows) into the source's log.
    const store = FeatureStore.open({ home });
    await store.apply(await loadDefinitions(path.join(home, 'defs.yaml')));
    await store.materialize('item_vec@v1', { progress: false });
    const final = new Map<string, number[] | null>();
    for (let b = 0; b < 30; b++) {
      const rows: Array<Record<string, unknown>> = Array.from({ length: 999 }, (_, i) => ({ id: `p${b * 1000 + i}`, vec: vec() }));
      rows.push({ id: `i${b * 7}`, _deleted: true });
      await store.push('items', rows);
      for (const r of rows) final.set(r.id as string, r._deleted ? null : (r.vec as number[]));
    }
    writeDefs(home, { ...defs, features: [feature('v1'), feature('v2')] });
    await store.apply(await loadDefinitions(path.join(home, 'defs.yaml')));
    await store.close();

    const child = spawn(process.execPath, [BIN, 'materialize', 'item_vec@v2', '--home', home], { cwd: home, stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d;
        if (err.includes('catching up')) resolve();
      });
      child.once('exit', () => reject(new Error(`finished before it was killed: ${err}`)));
    });
    await new Promise((r) => setTimeout(r, 150));
    child.kill('SIGKILL');
    await exited;

    const resumed = spawnSync(process.execPath, [BIN, 'materialize', 'item_vec@v2', '--resume', '--home', home], { cwd: home, encoding: 'utf8' });
    expect(resumed.status, resumed.stderr).toBe(0);
    const again = FeatureStore.open({ home });
    const v2 = (await again.registry.getFeature('item_vec', 'v2'))!;
    const deletedFileRows = [...final.values()].filter((v) => v === null).length;
    expect(v2).toMatchObject({ status: 'materialized', rows: 500 - deletedFileRows + 30 * 999 });
    const probe = ['i0', 'i7', 'i8', 'p0', 'p29998', 'p15000'];
    const got = await again.online(probe, ['item_vec@v2']);
    for (const r of got) {
      const want = final.has(r.id) ? final.get(r.id) : 'file';
      if (want === null) expect(r.features['item_vec@v2'], r.id).toBeNull();
      else expect(r.features['item_vec@v2'], r.id).not.toBeNull();
      if (Array.isArray(want)) expect(Array.from(r.features['item_vec@v2'] as Float32Array).map((x) => Math.round(x * 1e4) / 1e4)).toEqual(want);
    }
    await again.close();
  });
});
