import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisOnlineStore } from '../../src/providers/online/redis.ts';
import type { OnlineStore } from '../../src/providers/online/types.ts';
import { type RedisCluster, skipRedisTests, startRedisCluster } from '../helpers/redis-server.ts';
import { onlineStoreSuite } from './online.suite.ts';

const ctx = { name: 'kv-cluster', home: '/nonexistent' };

if (skipRedisTests()) {
  describe.skip('redis cluster online store: SKIPPED (redis-server not installed and NEARLINE_SKIP_REDIS=1)', () => {
    it('needs redis-server', () => {});
  });
} else {
  let cluster: Promise<RedisCluster> | undefined;
  const shared = () => (cluster ??= startRedisCluster(3));
  const seeds = async () => (await shared()).nodes.map((n) => `127.0.0.1:${n.port}`);
  afterAll(async () => {
    await (await cluster)?.stop();
  });

  onlineStoreSuite('redis cluster (3 masters)', async () => ({
    store: createRedisOnlineStore({ cluster: await seeds(), keyPrefix: 'suite:' }, ctx),
  }));

  describe('redis cluster online store', () => {
    let store: OnlineStore;
    let admins: Redis[];

    beforeAll(async () => {
      store = createRedisOnlineStore({ cluster: await seeds() }, ctx);
      await store.open();
      admins = (await shared()).nodes.map((n) => new Redis(n.port, '127.0.0.1'));
    });

    afterAll(async () => {
      await store?.close();
      for (const a of admins ?? []) a.disconnect();
    });

    it('reads features held by different nodes in one call, one HMGET per feature', async () => {
      // Pick feature keys until they live on at least two different nodes.
      const owner = async (feature: string) => {
        const slot = (await admins[0].call('CLUSTER', 'KEYSLOT', `nl:{${feature}}`)) as number;
        return Math.floor(slot / Math.ceil(16384 / admins.length));
      };
      const features: string[] = [];
      const owners = new Set<number>();
      for (let i = 0; features.length < 3; i++) {
        const f = `spread_${i}@v1`;
        const o = await owner(f);
        if (features.length < 2 && owners.has(o)) continue;
        features.push(f);
        owners.add(o);
      }
      expect(owners.size).toBeGreaterThanOrEqual(2);

      const ids = Array.from({ length: 100 }, (_, i) => `u${i}`);
      await store.put(
        features[0],
        ids.map((id, i) => [id, i]),
      );
      await store.put(
        features[1],
        ids.map((id, i) => [id, i % 2 === 0]),
      );
      await store.put(
        features[2],
        ids.map((id, i) => [id, new Float32Array([i, i + 0.5])]),
      );

      await Promise.all(admins.map((a) => a.config('RESETSTAT')));
      const rows = await store.get(ids, features);
      expect(rows[7]).toEqual([7, false, new Float32Array([7, 7.5])]);
      let hmget = 0;
      for (const a of admins) {
        const info = await a.info('commandstats');
        hmget += Number(/^cmdstat_hmget:calls=(\d+)/m.exec(info)?.[1] ?? 0);
        expect(info).not.toMatch(/^cmdstat_(hget|get|mget|scan|keys):/m);
      }
      expect(hmget).toBe(3);
    });
  });
}
