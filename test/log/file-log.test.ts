import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openFileLog } from '../../src/log/file.ts';
import type { LogEntry } from '../../src/log/types.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { all, checkAppendOrder } from './log.suite.ts';

const segmentFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .sort();

describe('file log', () => {
  it('appends in order with contiguous offsets, and reads them back after a reopen', async () => {
    const dir = tempDir();
    await checkAppendOrder(() => openFileLog(dir, 'items', { writable: true }));
  });

  it('group commit: concurrent appends share fsyncs, each gets its own offsets', async () => {
    const dir = tempDir();
    const log = await openFileLog(dir, 'items', { writable: true });
    const n = 200;
    const firsts = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        log.append([
          { key: `k${i}`, data: i },
          { key: `k${i}`, data: i + 1000 },
        ]),
      ),
    );
    expect(new Set(firsts).size).toBe(n);
    expect([...firsts].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => 1 + 2 * i));
    const stats = log.stats();
    expect(stats.appended).toBe(2 * n);
    expect(stats.syncs).toBeLessThan(n / 2);
    // Each append's two entries stay together, in the order appended.
    const entries = await all(log);
    for (let i = 0; i < n; i++) {
      const at = entries.findIndex((e) => e.offset === firsts[i]);
      expect([entries[at].data, entries[at + 1].data]).toEqual([i, i + 1000]);
    }
    await log.close();
  });

  it('a torn tail is cut on open and appends continue after the last whole frame', async () => {
    const dir = tempDir();
    const log = await openFileLog(dir, 'items', { writable: true });
    await log.append([{ key: 'a', data: 1 }]);
    await log.append([{ key: 'b', data: 2 }]);
    await log.append([{ key: 'c', data: 3 }]);
    await log.close();
    const file = path.join(dir, segmentFiles(dir)[0]);
    truncateSync(file, statSync(file).size - 3);
    const reader = await openFileLog(dir, 'items');
    expect((await all(reader)).map((e) => e.key)).toEqual(['a', 'b']);
    const again = await openFileLog(dir, 'items', { writable: true });
    expect(again.end()).toBe(2);
    expect(await again.append([{ key: 'd', data: 4 }])).toBe(3);
    expect((await all(again)).map((e) => [e.offset, e.key])).toEqual([
      [1, 'a'],
      [2, 'b'],
      [3, 'd'],
    ]);
    await again.close();
  });

  it('a CRC mismatch in the last frame drops it; in a sealed segment it is reported as corruption', async () => {
    const dir = tempDir();
    const log = await openFileLog(dir, 'items', { writable: true, segmentBytes: 64 });
    for (let i = 0; i < 6; i++) await log.append([{ key: `k${i}`, data: 'x'.repeat(40) }]);
    await log.close();
    const files = segmentFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    // Flip a payload byte of the active segment's last frame.
    const last = path.join(dir, files[files.length - 1]);
    const buf = readFileSync(last);
    buf[buf.length - 3] ^= 0x20;
    writeFileSync(last, buf);
    const again = await openFileLog(dir, 'items', { writable: true, segmentBytes: 64 });
    expect(again.end()).toBe(5);
    expect((await all(again)).map((e) => e.key)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4']);
    await again.close();
    // The same damage in a sealed segment is not a torn write.
    const first = path.join(dir, files[0]);
    const sealed = readFileSync(first);
    sealed[sealed.length - 3] ^= 0x20;
    writeFileSync(first, sealed);
    await expect(openFileLog(dir, 'items', { writable: true })).rejects.toMatchObject({ code: 'NL_LOG_CORRUPT' });
  });

  it('compaction keeps the latest entry per key and every tombstone, at their offsets, and nothing past upTo changes', async () => {
    const dir = tempDir();
    const log = await openFileLog(dir, 'items', { writable: true, segmentBytes: 256 });
    const expected = new Map<string, LogEntry>();
    let offset = 0;
    for (let round = 0; round < 20; round++) {
      const batch = Array.from({ length: 5 }, (_, i) => {
        const key = `id${(round * 3 + i) % 12}`;
        return { key, data: round % 4 === 3 && i === 0 ? { _deleted: true } : { round, i } };
      });
      const first = await log.append(batch);
      batch.forEach((e, i) => expected.set(e.key, { offset: first + i, key: e.key, data: e.data }));
      offset = first + batch.length - 1;
    }
    expect(offset).toBe(100);
    const before = await all(log);
    const upTo = 60;
    const segmentsBefore = log.stats().segments;
    const r = await log.compact(upTo);
    expect(r).not.toBeNull();
    expect(r!.after).toBeLessThan(r!.before);
    expect(log.stats().segments).toBeLessThan(segmentsBefore);
    const after = await all(log);
    // Past the compacted run everything is as it was.
    const sealedEnd = Math.max(...after.filter((e) => e.offset <= upTo).map((e) => e.offset));
    expect(after.filter((e) => e.offset > sealedEnd)).toEqual(before.filter((e) => e.offset > sealedEnd));
    // Within it, exactly the latest entry per key, in offset order.
    const compacted = after.filter((e) => e.offset <= sealedEnd);
    const latest = new Map<string, LogEntry>();
    for (const e of before.filter((x) => x.offset <= sealedEnd)) latest.set(e.key, e);
    expect(compacted).toEqual([...latest.values()].sort((a, b) => a.offset - b.offset));
    // Replaying the compacted log gives the same final state as replaying the full one, tombstones included.
    const final = (entries: LogEntry[]) => Object.fromEntries(entries.map((e) => [e.key, e.data]));
    expect(final(after)).toEqual(final(before));
    expect(final(after)).toEqual(Object.fromEntries([...expected.values()].map((e) => [e.key, e.data])));
    expect(Object.values(final(after)).some((d) => (d as { _deleted?: boolean })._deleted)).toBe(true);
    // A reader from the middle of the compacted range sees only what it still needs.
    expect((await all(log, 30)).every((e) => e.offset > 30)).toBe(true);
    await log.close();
    const reopened = await openFileLog(dir, 'items');
    expect(await all(reopened)).toEqual(after);
    expect(reopened.end()).toBe(100);
  });

  it('a second writer is refused while the holder lives, and takes over a lock left by a killed process', async () => {
    const dir = tempDir();
    const fixture = path.resolve(import.meta.dirname, 'log-writer.fixture.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => (d.toString().includes('ready') ? resolve() : undefined));
      child.on('exit', () => reject(new Error('writer exited early')));
    });
    await expect(openFileLog(dir, 'items', { writable: true })).rejects.toMatchObject({ code: 'NL_LOG_LOCKED' });
    // Readers never need the lock.
    const reader = await openFileLog(dir, 'items');
    expect(reader.end()).toBe(1);
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    const log = await openFileLog(dir, 'items', { writable: true });
    expect(await log.append([{ key: 'b', data: 2 }])).toBe(2);
    await log.close();
  });
});
