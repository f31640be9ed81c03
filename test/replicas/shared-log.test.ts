import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { skipRedisTests, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { DIMS, makeHome, seeded } from '../server/fixture.ts';

/*
 * Two stores (two nodes' worth, in one process) on one registry file, one Redis log and one snapshot folder,
 * pushing at the same time: their appends interleave in the log, and each ends up with every row of both.
 */

let redis: RedisServer;
let shared: Awaited<ReturnType<typeof makeHome>>;
let settings: { registryFile: string; snapshots: string; live: { log: string } };
const scratch = mkdtempSync(path.join(tmpdir(), 'nearline-shared-log-'));

beforeAll(async () => {
  redis = await startRedisServer({ durable: true });
  settings = { registryFile: path.join(scratch, 'nearline.db'), snapshots: path.join(scratch, 'snapshots'), live: { log: redis.url } };
  shared = await makeHome(settings);
}, 120_000);

afterAll(async () => {
  await redis?.stop();
  shared?.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

async function caughtUp(store: FeatureStore, end: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const lag = await store.live.lag();
    if (lag.length && lag.every((l) => l.applied >= end)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never caught up with offset ${end}: ${JSON.stringify(await store.live.lag())}`);
}

describe.skipIf(skipRedisTests())('stores sharing a Redis log', () => {
  it('concurrent pushes through two stores interleave in the log and both stores end with every row', { timeout: 120_000 }, async () => {
    const open = () => FeatureStore.open({ home: mkdtempSync(path.join(scratch, 'node-')), ...settings });
    const [x, y] = [open(), open()];
    try {
      const feature = (await x.registry.getFeature('item_vec', 'v1'))!;
      await x.collection(feature);
      await y.collection(feature);
      const rnd = seeded(5);
      const row = (id: string) => ({ id, vec: Array.from({ length: DIMS }, () => rnd() - 0.5), lang: 'en', bucket: 1, price: 2, title: `row ${id}` });
      const pushes = [];
      for (let i = 0; i < 30; i++) {
        pushes.push(x.push('items', [row(`x${i}a`), row(`x${i}b`)]));
        pushes.push(y.push('items', [row(`y${i}`)]));
      }
      await Promise.all(pushes);
      // Deletions through one store while the other pushes more.
      const deleted = [2, 7, 12, 17, 22, 27].map((i) => `x${i}a`);
      const more = await Promise.all([
        ...deleted.map((id) => y.push('items', [{ id, _deleted: true }])),
        ...[0, 1, 2].map((i) => x.push('items', [row(`z${i}`)])),
      ]);
      const end = Math.max(...more.map((r) => r.offset));
      // Every offset handed out once: 30 pushes of 2 rows, 30 of 1, 6 deletions, 3 more rows.
      expect(end).toBe(30 * 2 + 30 + 6 + 3);
      await caughtUp(x, end);
      await caughtUp(y, end);
      const ids = [...[...Array(30).keys()].flatMap((i) => [`x${i}a`, `x${i}b`, `y${i}`]), 'z0', 'z1', 'z2'];
      const [gx, gy] = [await (await x.collection(feature)).get(ids), await (await y.collection(feature)).get(ids)];
      expect(gy).toEqual(gx);
      const missing = ids.filter((_, i) => gx[i] === null);
      expect(missing).toEqual(deleted);
      expect((await x.live.stats()).applyEmbeddedTexts).toBe(0);
      expect((await y.live.stats()).applyEmbeddedTexts).toBe(0);
    } finally {
      await x.close();
      await y.close();
    }
  });

  it('NEARLINE_REGISTRY names the registry file every store opens; a URL of another kind is refused', async () => {
    const saved = process.env.NEARLINE_REGISTRY;
    try {
      process.env.NEARLINE_REGISTRY = settings.registryFile;
      const store = FeatureStore.open({ home: mkdtempSync(path.join(scratch, 'env-')) });
      try {
        expect((await store.registry.getFeature('item_vec', 'v1'))?.status).toBe('materialized');
      } finally {
        await store.close();
      }
      process.env.NEARLINE_REGISTRY = 'mysql://db/nearline';
      expect(() => FeatureStore.open({ home: mkdtempSync(path.join(scratch, 'env-')) })).toThrow(expect.objectContaining({ code: 'NL_BAD_REGISTRY' }));
    } finally {
      if (saved === undefined) delete process.env.NEARLINE_REGISTRY;
      else process.env.NEARLINE_REGISTRY = saved;
    }
  });
});
