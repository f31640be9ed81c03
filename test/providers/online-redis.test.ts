import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isNearlineError } from '../../src/errors.ts';
import { createOnlineStore } from '../../src/providers/index.ts';
import { createRedisOnlineStore } from '../../src/providers/online/redis.ts';
import type { OnlineStore } from '../../src/providers/online/types.ts';
import { freePort, type RedisServer, skipRedisTests, startRedisServer } from '../helpers/redis-server.ts';
import { onlineStoreSuite } from './online.suite.ts';

const ctx = { name: 'kv-redis', home: '/nonexistent' };

if (skipRedisTests()) {
  describe.skip('redis online store: SKIPPED (redis-server not installed and NEARLINE_SKIP_REDIS=1)', () => {
    it('needs redis-server', () => {});
  });
} else {
  let server: Promise<RedisServer> | undefined;
  const shared = () => (server ??= startRedisServer());
  afterAll(async () => {
    await (await server)?.stop();
  });

  onlineStoreSuite('redis', async () => {
    const { url } = await shared();
    return { store: createRedisOnlineStore({ url, keyPrefix: 'suite:' }, ctx) };
  });

  describe('redis online store', () => {
    let admin: Redis;
    let store: OnlineStore;
    let url: string;

    beforeAll(async () => {
      url = (await shared()).url;
      admin = new Redis(url);
      store = await createOnlineStore('redis', { url }, ctx);
      await store.open();
    });

    afterAll(async () => {
      await store?.close();
      admin?.disconnect();
    });

    it('keeps one hash per feature key, tagged for cluster slots, with typed binary values', async () => {
      await store.put('item_vec@v1', [
        ['i1', new Float32Array([1, -2.5])],
        ['i2', 7],
      ]);
      await store.put('item_vec@v2', [
        ['i1', 'x'],
        ['i2', true],
      ]);
      expect(await admin.type('nl:{item_vec@v1}')).toBe('hash');
      expect(await admin.hlen('nl:{item_vec@v1}')).toBe(2);
      const raw = await admin.hgetBuffer('nl:{item_vec@v1}', 'i1');
      expect(raw).toEqual(Buffer.concat([Buffer.from('v'), Buffer.from(new Float32Array([1, -2.5]).buffer)]));
      expect(await admin.hgetBuffer('nl:{item_vec@v2}', 'i2')).toEqual(Buffer.from('t'));
    });

    it('reads 100 ids x 3 features with three HMGETs and no per-key commands', async () => {
      const ids = Array.from({ length: 100 }, (_, i) => `u${i}`);
      const features = ['rt_a@v1', 'rt_b@v1', 'rt_vec@v1'];
      await store.put(
        features[0],
        ids.map((id, i) => [id, i]),
      );
      await store.put(
        features[1],
        ids.map((id, i) => [id, `s${i}`]),
      );
      await store.put(
        features[2],
        ids.map((id, i) => [id, new Float32Array(100).fill(i)]),
      );

      await admin.config('RESETSTAT');
      const rows = await store.get(ids, features);
      const stats = await commandsSinceReset(admin);
      expect(stats).toEqual({ hmget: 3 });
      expect(rows[42]).toEqual([42, 's42', new Float32Array(100).fill(42)]);
    });

    it('sends the whole read before the first reply arrives: one round trip', async () => {
      const proxy = await startProxy(Number(new URL(url).port));
      const viaProxy = createRedisOnlineStore({ url: `redis://127.0.0.1:${proxy.port}` }, ctx);
      try {
        await viaProxy.open();
        const ids = Array.from({ length: 100 }, (_, i) => `u${i}`);
        await viaProxy.get(ids, ['rt_a@v1']); // warm-up: connection handshake traffic stays out of the log
        proxy.log.length = 0;
        const rows = await viaProxy.get(ids, ['rt_a@v1', 'rt_b@v1', 'rt_vec@v1']);
        expect(rows[99][1]).toBe('s99');
        const firstReply = proxy.log.indexOf('server');
        expect(firstReply).toBeGreaterThan(0);
        expect(proxy.log.slice(firstReply)).not.toContain('client');
      } finally {
        await viaProxy.close();
        await proxy.close();
      }
    });

    it('deleteFeature and count touch one key and never scan the keyspace', async () => {
      await store.put('del@v1', [
        ['a', 1],
        ['b', 2],
      ]);
      await admin.config('RESETSTAT');
      expect(await store.count('del@v1')).toBe(2);
      await store.deleteFeature('del@v1');
      const stats = await commandsSinceReset(admin);
      expect(stats).toEqual({ hlen: 1, unlink: 1 });
      expect(await admin.exists('nl:{del@v1}')).toBe(0);
    });

    it('writes a put as one transaction', async () => {
      await admin.config('RESETSTAT');
      await store.put('tx@v1', [['a', 1], ['b', null], ...Array.from({ length: 2500 }, (_, i): [string, number] => [`k${i}`, i])]);
      const stats = await commandsSinceReset(admin);
      // 2501 fields in chunks of 1000 -> 3 HSETs, plus the delete, inside MULTI/EXEC.
      expect(stats).toEqual({ multi: 1, hdel: 1, hset: 3, exec: 1 });
    });

    it('separates stores by keyPrefix', async () => {
      const other = createRedisOnlineStore({ url, keyPrefix: 'tenant2:' }, ctx);
      try {
        await store.put('shared@v1', [['a', 'mine']]);
        await other.put('shared@v1', [['a', 'theirs']]);
        expect(await store.get(['a'], ['shared@v1'])).toEqual([['mine']]);
        expect(await other.get(['a'], ['shared@v1'])).toEqual([['theirs']]);
      } finally {
        await other.close();
      }
    });

    it('rejects bad options as a bad definition', () => {
      expect(() => createRedisOnlineStore({ url: 'http://x' }, ctx)).toThrow(expect.objectContaining({ code: 'NL_BAD_DEFINITION' }));
      expect(() => createRedisOnlineStore({ commandTimeoutMs: -1 }, ctx)).toThrow(expect.objectContaining({ code: 'NL_BAD_DEFINITION' }));
    });
  });

  describe('redis online store when the server is unreachable', () => {
    it('fails to open quickly with a coded error naming the provider', async () => {
      const port = await freePort();
      const store = createRedisOnlineStore({ url: `redis://127.0.0.1:${port}` }, { name: 'kv-down', home: '/' });
      const started = performance.now();
      const err = await store.open().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(isNearlineError(err, 'NL_PROVIDER_ERROR'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/kv-down.*ECONNREFUSED/);
      // Operations on a store that never connected fail the same way.
      await expect(store.get(['a'], ['f@v1'])).rejects.toMatchObject({ code: 'NL_PROVIDER_ERROR' });
      await store.close();
    });

    it('fails fast when the server dies or stalls after open, and recovers when it is back', async () => {
      let own = await startRedisServer();
      const store = createRedisOnlineStore({ url: own.url, commandTimeoutMs: 500 }, { name: 'kv-flaky', home: '/' });
      try {
        await store.open();
        await store.put('f@v1', [['a', 1]]);

        own.signal('SIGSTOP');
        let started = performance.now();
        await expect(store.get(['a'], ['f@v1'])).rejects.toMatchObject({ code: 'NL_PROVIDER_ERROR', message: expect.stringContaining('kv-flaky') });
        expect(performance.now() - started).toBeLessThan(2_000);
        own.signal('SIGCONT');
        expect(await store.get(['a'], ['f@v1'])).toEqual([[1]]);

        await own.stop();
        started = performance.now();
        await expect(store.get(['a'], ['f@v1'])).rejects.toMatchObject({ code: 'NL_PROVIDER_ERROR', message: expect.stringContaining('kv-flaky') });
        await expect(store.count('f@v1')).rejects.toMatchObject({ code: 'NL_PROVIDER_ERROR' });
        expect(performance.now() - started).toBeLessThan(3_000);

        own = await startRedisServer({ port: own.port });
        await expect.poll(() => store.count('f@v1').catch(() => -1), { timeout: 5_000, interval: 100 }).toBe(0);
      } finally {
        await store.close();
        await own.stop();
      }
    });
  });
}

/** Calls per command since CONFIG RESETSTAT, without the admin connection's own RESETSTAT and INFO. */
async function commandsSinceReset(admin: Redis): Promise<Record<string, number>> {
  const stats: Record<string, number> = {};
  for (const m of (await admin.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats[m[1]] = Number(m[2]);
  delete stats.info;
  delete stats['config|resetstat'];
  return stats;
}

/** A TCP relay that logs which side sent each chunk, to observe round trips from outside the client. */
async function startProxy(target: number): Promise<{ port: number; log: Array<'client' | 'server'>; close(): Promise<void> }> {
  const log: Array<'client' | 'server'> = [];
  const sockets = new Set<Socket>();
  const proxy: Server = createServer((down) => {
    const up = netConnect(target, '127.0.0.1');
    sockets.add(down).add(up);
    down.on('data', (chunk) => {
      log.push('client');
      up.write(chunk);
    });
    up.on('data', (chunk) => {
      log.push('server');
      down.write(chunk);
    });
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        proxy.close(() => resolve());
      }),
  };
}
