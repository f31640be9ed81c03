import { existsSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { skipPostgresTests, startPostgres } from './postgres.ts';

describe.skipIf(skipPostgresTests())('throwaway PostgreSQL', () => {
  it('starts on a loopback port, hands out fresh databases, and leaves nothing behind', async () => {
    const server = await startPostgres();
    let dataDir = '';
    try {
      const url = await server.createDatabase();
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const { rows } = await client.query<{ db: string; fsync: string; dir: string }>(
        "SELECT current_database() AS db, current_setting('fsync') AS fsync, current_setting('data_directory') AS dir",
      );
      await client.end();
      expect(url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\//);
      expect(url.endsWith(`/${rows[0].db}`)).toBe(true);
      expect(rows[0].fsync).toBe('on');
      dataDir = rows[0].dir;
      expect(existsSync(dataDir)).toBe(true);
    } finally {
      await server.stop();
      await server.stop();
    }
    expect(existsSync(dataDir)).toBe(false);
    expect(() => process.kill(server.pid, 0)).toThrow();
  });
});
