import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logLocation } from '../../src/log/open.ts';
import { openRedisLog } from '../../src/log/redis.ts';
import type { LogEntry } from '../../src/log/types.ts';
import { skipRedisTests, startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { all, checkAppendOrder } from './log.suite.ts';

let redis: RedisServer;
let n = 0;
/** A fresh source name per test: the tests share one server. */
const source = () => `items${++n}`;

describe.skipIf(skipRedisTests())('redis log', () => {
  beforeAll(async () => {
    redis = await startRedisServer({ durable: true });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('appends in order with contiguous offsets, and another connection reads them back', async () => {
    const name = source();
    const first = await openRedisLog(redis.url, name);
    expect([first.writable, first.shared]).toEqual([true, true]);
    await first.close();
    await checkAppendOrder(() => openRedisLog(redis.url, name));
  });

  it('two connections appending at once get distinct, increasing offsets; each append stays together', async () => {
    const name = source();
    const [one, two] = [await openRedisLog(redis.url, name), await openRedisLog(redis.url, name)];
    const count = 100;
    const appends = Array.from({ length: count }, (_, i) =>
      (i % 2 ? one : two).append([
        { key: `k${i}`, data: i },
        { key: `k${i}`, data: i + 1000 },
      ]),
    );
    const firsts = await Promise.all(appends);
    expect([...firsts].sort((x, y) => x - y)).toEqual(Array.from({ length: count }, (_, i) => 1 + 2 * i));
    const entries = await all(one);
    expect(entries.map((e) => e.offset)).toEqual(Array.from({ length: 2 * count }, (_, i) => i + 1));
    for (let i = 0; i < count; i++) {
      const at = entries.findIndex((e) => e.offset === firsts[i]);
      expect([entries[at].data, entries[at + 1].data]).toEqual([i, i + 1000]);
    }
    // The other connection sees the whole log once it waits for it.
    expect(await two.wait(0, 1000)).toBe(2 * count);
    await one.close();
    await two.close();
  });

  it('wait wakes when another connection appends, and returns the end as it is after the timeout', async () => {
    const name = source();
    const [reader, writer] = [await openRedisLog(redis.url, name), await openRedisLog(redis.url, name)];
    expect(await reader.wait(0, 50)).toBe(0);
    const woken = reader.wait(0, 10_000);
    await writer.append([{ key: 'a', data: 1 }]);
    expect(await woken).toBe(1);
    expect(await reader.wait(Infinity, 0)).toBe(1);
    await reader.close();
    await writer.close();
  });

  it('compaction keeps the latest entry per key (tombstones included) at or below upTo, and nothing past it changes', async () => {
    const name = source();
    const log = await openRedisLog(redis.url, name, { compactEvery: 1 });
    let offset = 0;
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 5 }, (_, i) => {
        const key = `id${(round * 3 + i) % 12}`;
        return { key, data: round % 4 === 3 && i === 0 ? { _deleted: true } : { round, i } };
      });
      offset = (await log.append(batch)) + batch.length - 1;
    }
    expect(offset).toBe(100);
    const before = await all(log);
    const upTo = 60;
    const r = await log.compact(upTo);
    expect(r).not.toBeNull();
    expect(r!.after).toBeLessThan(r!.before);
    const after = await all(log);
    expect(after.filter((e) => e.offset > upTo)).toEqual(before.filter((e) => e.offset > upTo));
    const latest = new Map<string, LogEntry>();
    for (const e of before.filter((x) => x.offset <= upTo)) latest.set(e.key, e);
    expect(after.filter((e) => e.offset <= upTo)).toEqual([...latest.values()].sort((a, b) => a.offset - b.offset));
    const final = (entries: LogEntry[]) => Object.fromEntries(entries.map((e) => [e.key, e.data]));
    expect(final(after)).toEqual(final(before));
    expect(Object.values(final(after)).some((d) => (d as { _deleted?: boolean })._deleted)).toBe(true);
    expect((await all(log, 30)).every((e) => e.offset > 30)).toBe(true);
    // Offsets are never reused: appends continue after the end.
    expect(await log.append([{ key: 'id0', data: 'last' }])).toBe(101);
    await log.close();
  });

  it('NEARLINE_LOG is file or a redis URL; anything else is refused; an unreachable server is NL_LOG_UNAVAILABLE', async () => {
    expect(logLocation('/h/log', undefined)).toEqual({ kind: 'file', dir: '/h/log' });
    expect(logLocation('/h/log', 'file')).toEqual({ kind: 'file', dir: '/h/log' });
    expect(logLocation('/h/log', redis.url)).toEqual({ kind: 'redis', url: redis.url });
    expect(() => logLocation('/h/log', 'kafka://x')).toThrow(/NEARLINE_LOG must be "file" or a redis:\/\/ URL/);
    await expect(openRedisLog('redis://127.0.0.1:1', 'x')).rejects.toMatchObject({ code: 'NL_LOG_UNAVAILABLE' });
  });

  it('warns when the server does not fsync acknowledged appends', async () => {
    const loose = await startRedisServer();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const log = await openRedisLog(loose.url, 'items');
      await new Promise((r) => setImmediate(r));
      expect(warnings.join('\n')).toMatch(/appendonly no.*appendfsync always/);
      await log.close();
    } finally {
      process.off('warning', onWarning);
      await loose.stop();
    }
  });
});
