import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { isNearlineError } from '../../src/errors.ts';
import { openRegistry, registryLocation } from '../../src/registry/open.ts';
import { REGISTRY_LOCK } from '../../src/registry/postgres.ts';
import type { FeatureRecord, Registry, Row } from '../../src/registry/registry.ts';
import { SqliteRegistry } from '../../src/registry/sqlite.ts';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { type PostgresServer, skipPostgresTests, startPostgres } from '../helpers/postgres.ts';
import { freePort } from '../helpers/redis-server.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');

let postgres: PostgresServer | undefined;

beforeAll(async () => {
  if (!skipPostgresTests()) postgres = await startPostgres();
});

afterAll(async () => {
  await postgres?.stop();
});

/** A registry backend under test: where a fresh, empty registry lives, and how to read its tables directly. */
interface Backend {
  name: 'sqlite' | 'postgres';
  fresh(home: string): Promise<string>;
}

const BACKENDS: Backend[] = [
  { name: 'sqlite', fresh: async (home) => path.join(home, 'nearline.db') },
  { name: 'postgres', fresh: async () => postgres!.createDatabase() },
];

/** Rows of a table as the backend holds them, read around nearline's own code. */
async function tableRows(registry: Registry, table: string, order = ''): Promise<Row[]> {
  if (registry instanceof SqliteRegistry) return registry.db.prepare(`SELECT * FROM ${table} ${order}`).all() as Row[];
  const client = new pg.Client({ connectionString: registryUrl.get(registry) });
  await client.connect();
  try {
    return (await client.query(`SELECT * FROM ${table} ${order}`)).rows;
  } finally {
    await client.end();
  }
}
const registryUrl = new WeakMap<Registry, string>();

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

describe.each(BACKENDS)('registry and apply on $name', (backend) => {
  const skip = backend.name === 'postgres' && skipPostgresTests();

  async function setup(dims = 8) {
    const home = tempDir();
    writeWords(home, 200, dims);
    const location = await backend.fresh(home);
    const store = FeatureStore.open({ home, registry: location });
    registryUrl.set(store.registry, location);
    const file = writeDefs(home, wordDefs(dims));
    return { home, store, file, location };
  }

  async function snapshot(registry: Registry) {
    const tables = ['providers', 'entities', 'sources', 'models', 'features', 'aliases', 'alias_history', 'materializations'];
    const out: Record<string, Row[]> = {};
    for (const t of tables) out[t] = await tableRows(registry, t, 'ORDER BY 1, 2');
    return out;
  }

  it.skipIf(skip)('creates on the first apply and is idempotent after', async () => {
    const { store, file } = await setup();
    expect(store.registry.backend).toBe(backend.name);
    const first = await store.apply(await loadDefinitions(file));
    expect(first.applied).toBe(true);
    expect(first.plan.map((p) => p.action)).toEqual(Array(7).fill('create'));
    const before = await snapshot(store.registry);
    const second = await store.apply(await loadDefinitions(file));
    expect(second.plan.every((p) => p.action === 'unchanged')).toBe(true);
    expect(await snapshot(store.registry)).toEqual(before);
    await store.close();
  });

  it.skipIf(skip)('records lineage: feature -> source, provider, entity', async () => {
    const { store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    const f = (await store.registry.getFeature('word_vec', 'v1'))!;
    expect(f.source).toEqual({ name: 'words', variant: 'v1' });
    expect(f.provider).toBe('local');
    expect((await store.registry.dependents('source', 'words', 'v1')).map((x) => x.name)).toEqual(['word_freq', 'word_vec']);
    await store.close();
  });

  it.skipIf(skip)('updates a variant that is not materialized yet', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    const changed = wordDefs(8, { metric: 'dot' });
    const { plan, applied } = await store.apply(await loadDefinitions(writeDefs(home, changed)));
    expect(applied).toBe(true);
    expect(plan.find((p) => p.name === 'word_vec@v1')?.action).toBe('update');
    expect(embedding(await store.registry.getFeature('word_vec', 'v1'))?.metric).toBe('dot');
    await store.close();
  });

  it.skipIf(skip)('refuses to change a materialized variant with NL_VARIANT_IMMUTABLE and writes nothing; serves it end to end', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    await store.materialize('word_vec@v1', { progress: false });
    await store.materialize('word_freq@v1', { progress: false });
    expect(await store.registry.getFeature('word_vec', 'v1')).toMatchObject({ status: 'materialized', rows: 200 });
    const res = await store.nearest({ feature: 'word_vec', k: 3, query: { id: 'w5' } });
    expect(res.variant).toBe('v1');
    expect(res.hits).toHaveLength(3);
    expect(await store.registry.getMaterialization('word_vec', 'v1')).toMatchObject({ status: 'done', rowsRead: 200 });
    const before = await snapshot(store.registry);
    const changed = wordDefs(8, { metric: 'l2' });
    changed.entities.push({ name: 'user', key: 'user_id' });
    const { plan, applied } = await store.apply(await loadDefinitions(writeDefs(home, changed)));
    expect(applied).toBe(false);
    const item = plan.find((p) => p.name === 'word_vec@v1')!;
    expect(item).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });
    expect(plan.find((p) => p.name === 'user')?.action).toBe('create');
    expect(await snapshot(store.registry)).toEqual(before);
    await expect(store.registry.commit(changed as never, plan, new Map())).rejects.toThrow(/immutable/);
    await store.close();
  });

  it.skipIf(skip)('refuses to change a source that a materialized variant was built from', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    await store.materialize('word_vec@v1', { progress: false });
    const changed = wordDefs(8, { source: 'other.jsonl' });
    const { plan } = await store.apply(await loadDefinitions(writeDefs(home, changed)));
    expect(plan.find((p) => p.kind === 'source')).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });
    await store.close();
  });

  it.skipIf(skip)(
    'quantization is part of a variant: a bad value is refused before anything is written, int8 materializes an int8 index, none reads as absent',
    async () => {
      const { home, store } = await setup();
      await store.registry.listProviders(); // PostgreSQL connects (and migrates) on first use
      const empty = await snapshot(store.registry);
      const bad = wordDefs(8);
      (bad.features[0].index as Record<string, unknown>).quantization = 'int4';
      await expect(loadDefinitions(writeDefs(home, bad))).rejects.toMatchObject({
        code: 'NL_BAD_DEFINITION',
        message: expect.stringContaining('"quantization": expected one of none, int8'),
      });
      expect(await snapshot(store.registry)).toEqual(empty);

      const int8 = wordDefs(8);
      (int8.features[0].index as Record<string, unknown>).quantization = 'int8';
      await store.apply(await loadDefinitions(writeDefs(home, int8)));
      expect(embedding(await store.registry.getFeature('word_vec', 'v1'))?.index).toEqual({ M: 16, efConstruction: 200, ef: 100, quantization: 'int8' });
      await store.materialize('word_vec@v1', { progress: false });
      const manifest = JSON.parse(readFileSync(path.join(home, 'indexes', 'word_vec__v1', 'manifest.json'), 'utf8')) as { quantization?: string };
      expect(manifest.quantization).toBe('int8');
      const { plan } = await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
      expect(plan.find((p) => p.name === 'word_vec@v1')).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });

      // Spelled out, `none` is the default: variants defined before the field existed stay unchanged.
      const v2 = wordDefs(8, { variant: 'v2' });
      v2.aliases = [];
      await store.apply(await loadDefinitions(writeDefs(home, v2)));
      (v2.features[0].index as Record<string, unknown>).quantization = 'none';
      const again = await store.apply(await loadDefinitions(writeDefs(home, v2)));
      expect(again.plan.find((p) => p.name === 'word_vec@v2')?.action).toBe('unchanged');
      await store.close();
    },
  );

  it.skipIf(skip)('rejects references to undefined objects before writing anything', async () => {
    const { home, store } = await setup();
    const defs = wordDefs(8);
    defs.features[0].provider = 'nowhere';
    await expect(store.apply(await loadDefinitions(writeDefs(home, defs)))).rejects.toMatchObject({
      code: 'NL_BAD_DEFINITION',
      message: expect.stringContaining('nowhere'),
    });
    const scalarOnHnsw = wordDefs(8);
    scalarOnHnsw.features[1].provider = 'local';
    await expect(store.apply(await loadDefinitions(writeDefs(home, scalarOnHnsw)))).rejects.toMatchObject({ code: 'NL_BAD_DEFINITION' });
    expect(await store.registry.listProviders()).toEqual([]);
    await store.close();
  });

  it.skipIf(skip)('refuses a plan made before another apply changed what it planned, and writes nothing', async () => {
    const { home, store, file, location } = await setup();
    const defs = await loadDefinitions(file);
    const stale = await store.registry.plan(defs, new Map());
    // Another writer registers word_vec@v1 differently in between.
    const other = FeatureStore.open({ home, registry: location });
    await other.apply(await loadDefinitions(writeDefs(home, wordDefs(8, { metric: 'dot' }), 'other.yaml')));
    await other.close();
    const events = (await store.registry.listEvents()).length;
    await expect(store.registry.commit(defs, stale, new Map())).rejects.toMatchObject({
      code: 'NL_CONFLICT',
      message: expect.stringContaining('since this plan was made'),
    });
    expect((await store.registry.listEvents()).length).toBe(events);
    expect(embedding(await store.registry.getFeature('word_vec', 'v1'))?.metric).toBe('dot');
    await store.close();
  });

  it.skipIf(skip)('resolves bare names to the prod alias, else the only variant; aliases switch atomically and keep history', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    const v2 = wordDefs(8, { variant: 'v2' });
    v2.aliases = [];
    await store.apply(await loadDefinitions(writeDefs(home, v2)));
    const r = store.registry;
    expect((await r.resolveFeature('word_vec')).variant).toBe('v1');
    expect((await r.resolveFeature('word_vec@v2')).variant).toBe('v2');
    expect((await r.resolveFeature('word_vec@prod')).variant).toBe('v1');
    await r.setAlias('word_vec', 'prod', 'v2');
    expect((await r.resolveFeature('word_vec')).variant).toBe('v2');
    expect((await r.resolveFeature('word_vec@v1')).variant).toBe('v1');
    expect((await r.aliasHistory('word_vec', 'prod')).map((h) => [h.variant, h.previous])).toEqual([
      ['v1', null],
      ['v2', 'v1'],
    ]);
    expect(await r.previousAliasVariant('word_vec', 'prod')).toBe('v1');
    expect((await r.resolveFeature('word_freq')).variant).toBe('v1');
    await expect(r.setAlias('word_vec', 'prod', 'v9')).rejects.toMatchObject({ code: 'NL_FEATURE_NOT_FOUND' });
    expect((await r.resolveFeature('word_vec')).variant).toBe('v2');
    await expect(r.resolveFeature('nothing')).rejects.toMatchObject({ code: 'NL_FEATURE_NOT_FOUND' });
    await store.close();
  });

  it.skipIf(skip)('migrates a new registry once and reopens it without re-running migrations', async () => {
    const home = tempDir();
    const location = await backend.fresh(home);
    const a = openRegistry(location);
    const versions = await a.migrations();
    expect(versions).toEqual([1, 2, 4, 5, 6]);
    await a.close();
    const b = openRegistry(location);
    expect(await b.migrations()).toEqual(versions);
    if (b instanceof SqliteRegistry) expect(b.db.pragma('journal_mode', { simple: true })).toBe('wal');
    await b.close();
  });

  it.skipIf(skip)('stores API keys hashed and finds them by the secret only', async () => {
    const home = tempDir();
    const location = await backend.fresh(home);
    const r = openRegistry(location);
    registryUrl.set(r, location);
    const { key, record } = await r.createKey('serve', ['word_vec']);
    expect((await tableRows(r, 'api_keys'))[0].hash).not.toContain(key);
    expect(await r.findKey(key)).toEqual(record);
    expect(await r.findKey(key + 'x')).toBeUndefined();
    expect(await r.countKeys()).toBe(1);
    await r.revokeKey(record.id);
    expect(await r.findKey(key)).toBeUndefined();
    await expect(r.revokeKey(record.id)).rejects.toMatchObject({ code: 'NL_CONFLICT' });
    await r.close();
  });

  it.skipIf(skip)('two processes applying at once take turns: each apply lands whole, never interleaved with the other', async () => {
    const home = tempDir();
    writeWords(home, 20, 8);
    const location = await backend.fresh(home);
    // Shared objects (provider, entity, source) identical in both; each adds its own 40 variants.
    const defsOf = (prefix: string) => {
      const base = wordDefs(8);
      const vec = base.features[0];
      return { ...base, features: Array.from({ length: 40 }, (_, i) => ({ ...vec, name: `${prefix}_vec`, variant: `v${i}` })), aliases: [] };
    };
    const files = ['a', 'b'].map((p) => writeDefs(home, defsOf(p), `${p}.yaml`));
    const runs = await Promise.all(files.map((f) => cli(['apply', f, '--yes', '--home', home, '--registry', location])));
    for (const run of runs) expect(run.code, run.err).toBe(0);
    const registry = openRegistry(location);
    registryUrl.set(registry, location);
    const events = await registry.listEvents({ limit: 1000 });
    const order = events
      .filter((e) => e.kind === 'feature')
      .reverse()
      .map((e) => e.name.split('_')[0]);
    expect(order).toHaveLength(80);
    // One apply's events all come before the other's.
    expect(order.join('')).toMatch(/^(a{40}b{40}|b{40}a{40})$/);
    expect((await registry.listFeatures()).length).toBe(80);
    await registry.close();
  });
});

describe.skipIf(skipPostgresTests())('PostgreSQL registry across processes', () => {
  it('an alias switch made by another process reaches a running store well within a second', async () => {
    const home = tempDir();
    writeWords(home, 50, 8);
    const location = await postgres!.createDatabase();
    const store = FeatureStore.open({ home, registry: location });
    try {
      await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
      const v2 = wordDefs(8, { variant: 'v2' });
      v2.aliases = [];
      await store.apply(await loadDefinitions(writeDefs(home, v2)));
      // Resolved once: from here on it is answered from this process's cache.
      expect((await store.registry.resolveFeature('word_vec')).variant).toBe('v1');
      expect((await store.registry.resolveFeature('word_vec')).variant).toBe('v1');
      const moved = await cli(['alias', 'set', 'word_vec', 'prod', 'v2', '--force', '--home', tempDir()], { NEARLINE_REGISTRY: location });
      expect(moved.code, moved.err).toBe(0);
      // The other process has committed and exited; its NOTIFY is on its way.
      const deadline = Date.now() + 1000;
      let seen = (await store.registry.resolveFeature('word_vec')).variant;
      while (seen !== 'v2' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        seen = (await store.registry.resolveFeature('word_vec')).variant;
      }
      expect(seen).toBe('v2');
      expect((await store.registry.aliasHistory('word_vec', 'prod')).map((h) => h.variant)).toEqual(['v1', 'v2']);
    } finally {
      await store.close();
    }
  });

  it('an apply waits for the registry lock another transaction holds, plans again on what that one committed, and refuses a plan it changed', async () => {
    const home = tempDir();
    writeWords(home, 20, 8);
    const location = await postgres!.createDatabase();
    const registry = openRegistry(location);
    await registry.migrations();
    const holder = new pg.Client({ connectionString: location });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(REGISTRY_LOCK);
      const file = writeDefs(home, wordDefs(8));
      const apply = cli(['apply', file, '--yes', '--home', home, '--registry', location]);
      // The apply has planned (an empty registry: everything is `create`) and now waits for the lock.
      const waiting = async () => (await holder.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rowCount;
      while (!(await waiting())) await new Promise((resolve) => setTimeout(resolve, 50));
      // Meanwhile this transaction registers provider local differently, and commits.
      await holder.query("INSERT INTO providers VALUES ('local', 'hnsw', '{\"initialCapacity\":5}', '2026-01-01T00:00:00.000Z')");
      await holder.query('COMMIT');
      const run = await apply;
      expect(run.code).toBe(1);
      expect(run.err).toContain('error NL_CONFLICT: provider local changed in the registry since this plan was made');
      expect(await registry.listFeatures()).toEqual([]);
      expect(await registry.listEvents()).toEqual([]);
      expect((await registry.getProvider('local'))?.options).toEqual({ initialCapacity: 5 });
    } finally {
      await holder.end();
      await registry.close();
    }
  });

  it('a lost notification connection stops caching until it is back, so no switch is missed', async () => {
    const home = tempDir();
    writeWords(home, 50, 8);
    const location = await postgres!.createDatabase();
    const serving = FeatureStore.open({ home, registry: location });
    const writer = FeatureStore.open({ home, registry: location });
    const admin = new pg.Client({ connectionString: location });
    await admin.connect();
    const listeners = async () =>
      (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'")).rows.map(
        (r) => r.pid,
      );
    try {
      await writer.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
      const v2 = wordDefs(8, { variant: 'v2' });
      v2.aliases = [];
      await writer.apply(await loadDefinitions(writeDefs(home, v2)));
      expect((await serving.registry.resolveFeature('word_vec')).variant).toBe('v1');
      const before = await listeners();
      expect(before).toHaveLength(2);
      // Kill every listening connection: the server drops them as a failover or a network cut would.
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid = ANY($1)', [before]);
      await writer.registry.setAlias('word_vec', 'prod', 'v2', { force: true });
      let seen = '';
      while (seen !== 'v2') {
        seen = (await serving.registry.resolveFeature('word_vec')).variant;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Both registries listen again on new connections, and a switch reaches the cache through them.
      while ((await listeners()).filter((pid) => !before.includes(pid)).length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await serving.registry.resolveFeature('word_vec')).variant).toBe('v2');
      await writer.registry.setAlias('word_vec', 'prod', 'v1', { force: true });
      while ((await serving.registry.resolveFeature('word_vec')).variant !== 'v1') await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      await admin.end();
      await serving.close();
      await writer.close();
    }
  });

  it('two servers on one registry: an alias moved through one is served by the other', async () => {
    const home = tempDir();
    writeWords(home, 50, 8);
    const location = await postgres!.createDatabase();
    const stores = [FeatureStore.open({ home, registry: location }), FeatureStore.open({ home, registry: location })];
    const apps = await Promise.all(stores.map((store) => build({ store, warm: false })));
    try {
      await stores[0].apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
      const v2 = wordDefs(8, { variant: 'v2', metric: 'l2' });
      v2.aliases = [];
      await stores[0].apply(await loadDefinitions(writeDefs(home, v2)));
      await stores[0].materialize('word_vec@v1', { progress: false });
      await stores[0].materialize('word_vec@v2', { progress: false });
      const nearest = async () =>
        (await apps[1].inject({ method: 'POST', url: '/v1/nearest', payload: { feature: 'word_vec', k: 3, query: { id: 'w1' } } })).json();
      expect(await nearest()).toMatchObject({ variant: 'v1' });
      const moved = await apps[0].inject({ method: 'PUT', url: '/v1/registry/aliases/word_vec/prod', payload: { variant: 'v2' } });
      expect(moved.json()).toMatchObject({ variant: 'v2', previous: 'v1' });
      let served = await nearest();
      while (served.variant !== 'v2') served = await nearest();
      expect(served.hits).toHaveLength(3);
    } finally {
      for (const app of apps) await app.close();
      for (const store of stores) await store.close();
    }
  });

  it('a bad or unreachable registry is a coded error', async () => {
    expect(() => openRegistry('mysql://localhost/x')).toThrow(expect.objectContaining({ code: 'NL_BAD_REGISTRY' }));
    expect(() => openRegistry('postgres://')).toThrow(expect.objectContaining({ code: 'NL_BAD_REGISTRY' }));
    const port = await freePort();
    const down = openRegistry(`postgres://postgres:secret@127.0.0.1:${port}/nearline`);
    const err = await down.listFeatures().catch((e) => e);
    expect(err).toMatchObject({ code: 'NL_REGISTRY_UNAVAILABLE' });
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).not.toContain('secret');
    await down.close();
    const missing = openRegistry(postgres!.url.replace(/\/postgres$/, '/no_such_db'));
    await expect(missing.countKeys()).rejects.toMatchObject({ code: 'NL_REGISTRY_UNAVAILABLE', message: expect.stringContaining('no_such_db') });
    await missing.close();
    const r = spawnSync(process.execPath, [BIN, 'list', '--home', tempDir(), '--registry', `postgres://127.0.0.1:${port}/x`], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('error NL_REGISTRY_UNAVAILABLE');
  });
});

/** The record when it is an embedding feature, to read its embedding fields. */
const embedding = (f: FeatureRecord | undefined) => (f?.kind === 'embedding' ? f : undefined);

describe('where the registry lives', () => {
  it('the option, else NEARLINE_REGISTRY, else <home>/nearline.db; the CLI flag wins over the environment', async () => {
    const saved = process.env.NEARLINE_REGISTRY;
    try {
      delete process.env.NEARLINE_REGISTRY;
      expect(registryLocation('/h')).toBe(path.join('/h', 'nearline.db'));
      process.env.NEARLINE_REGISTRY = 'postgres://db/x';
      expect(registryLocation('/h')).toBe('postgres://db/x');
      expect(registryLocation('/h', '/elsewhere/r.db')).toBe('/elsewhere/r.db');
    } finally {
      if (saved === undefined) delete process.env.NEARLINE_REGISTRY;
      else process.env.NEARLINE_REGISTRY = saved;
    }
    const home = tempDir();
    writeWords(home, 20, 8);
    const file = path.join(tempDir(), 'shared.db');
    const r = await cli(['apply', writeDefs(home, wordDefs(8)), '--yes', '--home', home, '--registry', file], { NEARLINE_REGISTRY: path.join(home, 'env.db') });
    expect(r.code, r.err).toBe(0);
    expect(existsSync(file)).toBe(true);
    expect(existsSync(path.join(home, 'env.db'))).toBe(false);
    expect(existsSync(path.join(home, 'nearline.db'))).toBe(false);
  });
});

describe('SQLite registry across processes', () => {
  /** A store on a home of 20 words with their definitions applied, closed after `fn`. */
  async function withWords(fn: (store: FeatureStore, home: string) => Promise<void>): Promise<void> {
    const home = tempDir();
    writeWords(home, 20, 8);
    const store = FeatureStore.open({ home });
    try {
      await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
      await fn(store, home);
    } finally {
      await store.close();
    }
  }

  /** `fn` on a second connection to the home's registry file, as another process would run it. */
  function elsewhere<T>(home: string, fn: (db: Database.Database) => T): T {
    const other = new Database(path.join(home, 'nearline.db'));
    try {
      return fn(other);
    } finally {
      other.close();
    }
  }

  it('a write that waits too long for another connection holding the file is a coded error and changes nothing', async () => {
    await withWords(async (store, home) => {
      const other = new Database(path.join(home, 'nearline.db'));
      other.exec('BEGIN IMMEDIATE');
      try {
        await expect(store.registry.setAlias('word_vec', 'prod', 'v1', { force: true })).rejects.toMatchObject({
          code: 'NL_REGISTRY_BUSY',
          message: expect.stringContaining('nearline.db'),
        });
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
      expect((await store.registry.aliasHistory('word_vec', 'prod')).length).toBe(1);
      await store.registry.setAlias('word_vec', 'prod', 'v1', { force: true });
      expect((await store.registry.aliasHistory('word_vec', 'prod')).length).toBe(2);
    });
  });

  it('reads are cached until the file changes: a commit by another connection, or a write of this one, is seen by the next read', async () => {
    await withWords(async (store, home) => {
      await store.registry.setAlias('word_vec', 'prod', 'v1', { force: true });
      const before = await store.registry.resolveFeature('word_vec');
      // The same read again is the same (shared, frozen) record.
      expect(await store.registry.resolveFeature('word_vec')).toBe(before);
      expect(Object.isFrozen(before)).toBe(true);
      expect(() => ((before as { rows: number }).rows = 1)).toThrow(TypeError);
      expect((await store.registry.getAlias('word_vec', 'prod'))?.variant).toBe('v1');
      // Another connection (as another process would) deletes the alias: the next read sees it gone.
      elsewhere(home, (other) => other.prepare("DELETE FROM aliases WHERE feature = 'word_vec' AND name = 'prod'").run());
      expect(await store.registry.getAlias('word_vec', 'prod')).toBeUndefined();
      // A write of this connection: seen at once too.
      await store.registry.setAlias('word_vec', 'prod', 'v1', { force: true });
      expect((await store.registry.getAlias('word_vec', 'prod'))?.variant).toBe('v1');
    });
  });

  it('the change token holds while nothing commits and moves on a commit by another connection or a write of this one', async () => {
    await withWords(async (store, home) => {
      const first = store.registry.changeToken();
      expect(first).not.toBeUndefined();
      await store.registry.listFeatures();
      expect(store.registry.changeToken()).toBe(first);
      elsewhere(home, (other) => other.prepare("UPDATE features SET rows = rows + 1 WHERE name = 'word_freq'").run());
      const second = store.registry.changeToken();
      expect(second).not.toBe(first);
      await store.registry.setAlias('word_vec', 'prod', 'v1', { force: true });
      expect(store.registry.changeToken()).not.toBe(second);
    });
  });

  it('a push checks its rows against a variant another process published after the previous push', async () => {
    await withWords(async (store, home) => {
      await store.materialize('word_vec@v1', { progress: false });
      await store.push('words', [{ id: 'n1', vec: [1, 2, 3, 4, 5, 6, 7, 8] }]);
      // Another process would publish a new variant; here a second connection to the file does: a variant of
      // word_freq that reads column freq, made materialized by hand so no log is needed.
      elsewhere(home, (other) => {
        const row = other.prepare("SELECT * FROM features WHERE name = 'word_freq'").get() as Record<string, unknown>;
        other
          .prepare(
            `INSERT INTO features (${Object.keys(row).join(', ')}) VALUES (${Object.keys(row)
              .map(() => '?')
              .join(', ')})`,
          )
          .run(
            ...Object.entries(row).map(
              ([k, v]) => ({ variant: 'v9', status: 'materialized', spec: JSON.stringify({ ...JSON.parse(row.spec as string), variant: 'v9' }) })[k] ?? v,
            ),
          );
      });
      const err = await store.push('words', [{ id: 'n2', vec: [1, 2, 3, 4, 5, 6, 7, 8], freq: 'many' }]).catch((e: unknown) => e);
      expect(isNearlineError(err, 'NL_BAD_SOURCE_ROW')).toBe(true);
      expect((err as Error).message).toContain('word_freq@v9');
    });
  });
});
