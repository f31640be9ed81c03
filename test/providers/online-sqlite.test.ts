import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { isNearlineError } from '../../src/errors.ts';
import { createOnlineStore } from '../../src/providers/index.ts';
import { Checkpointer } from '../../src/providers/online/checkpointer.ts';
import { createSqliteOnlineStore } from '../../src/providers/online/sqlite.ts';
import { onlineStoreSuite } from './online.suite.ts';

onlineStoreSuite('sqlite (file)', async () => {
  const home = mkdtempSync(join(tmpdir(), 'nearline-online-'));
  return {
    store: createSqliteOnlineStore({}, { name: 'kv', home }),
    cleanup: async () => rmSync(home, { recursive: true, force: true }),
  };
});

onlineStoreSuite('sqlite (:memory:)', async () => ({
  store: createSqliteOnlineStore({ path: ':memory:' }, { name: 'kv', home: tmpdir() }),
}));

describe('sqlite online store', () => {
  it('persists to <home>/online.db across reopen, and is reachable through the provider registry', async () => {
    const home = mkdtempSync(join(tmpdir(), 'nearline-online-'));
    try {
      const first = await createOnlineStore('sqlite', {}, { name: 'kv', home });
      await first.open();
      await first.put('f@v1', [
        ['a', true],
        ['b', new Float32Array([1.5, -2])],
      ]);
      await first.close();
      const second = createSqliteOnlineStore({ path: 'online.db' }, { name: 'kv', home: home });
      await second.open();
      expect(await second.get(['a', 'b'], ['f@v1'])).toEqual([[true], [new Float32Array([1.5, -2])]]);
      expect(await second.count('f@v1')).toBe(2);
      await second.close();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('checkpoints from a worker thread: after flush() the database file alone holds every commit', async () => {
    const home = mkdtempSync(join(tmpdir(), 'nearline-online-'));
    try {
      const store = createSqliteOnlineStore({}, { name: 'kv', home });
      await store.open();
      // Past SQLite's 1,000-page mark: with its own checkpoints the last of these commits would copy the WAL.
      for (let b = 0; b < 10; b++)
        await store.put(
          'f@v1',
          Array.from({ length: 500 }, (_, i) => [`id-${b}-${i}`, 'x'.repeat(200)] as [string, string]),
        );
      await store.flush!();
      // The database file alone (no WAL beside it) holds every row.
      copyFileSync(join(home, 'online.db'), join(home, 'copy.db'));
      const copy = new Database(join(home, 'copy.db'), { readonly: true });
      expect(copy.prepare('SELECT count(*) FROM online_values').pluck().get()).toBe(5000);
      copy.close();
      await store.close();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('a checkpoint worker that ends on its own says so, and refuses checkpoints after', async () => {
    const home = mkdtempSync(join(tmpdir(), 'nearline-online-'));
    try {
      // A directory is no database: the worker's connection fails as it starts.
      let lost!: () => void;
      const ended = new Promise<void>((resolve) => (lost = resolve));
      const c = new Checkpointer(home, () => lost());
      expect(c.start()).toBe(true);
      await ended;
      expect(c.running).toBe(false);
      await expect(c.checkpoint()).rejects.toThrow('not running');
      await c.close();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('maps an unusable database file to a coded provider error naming the provider', async () => {
    const home = mkdtempSync(join(tmpdir(), 'nearline-online-'));
    try {
      // A directory where the database file should be cannot be opened as a database.
      const store = createSqliteOnlineStore({ path: home }, { name: 'kv-broken', home });
      const err = await store.open().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isNearlineError(err, 'NL_PROVIDER_ERROR')).toBe(true);
      expect((err as Error).message).toContain('kv-broken');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('rejects a non-string path as a bad definition', () => {
    expect(() => createSqliteOnlineStore({ path: 42 as unknown as string }, { name: 'kv', home: tmpdir() })).toThrow(
      expect.objectContaining({ code: 'NL_BAD_DEFINITION' }),
    );
  });
});
