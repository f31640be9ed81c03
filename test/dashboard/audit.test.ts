import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');
const ME = `user:${os.userInfo().username}`;

function cli(home: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd: home, env: { ...process.env, NEARLINE_HOME: home } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('the audit trail: keys list / revoke, history', () => {
  let home: string;
  let store: FeatureStore;
  let apps: FastifyInstance[];
  const keys: Record<string, { id: string; key: string }> = {};

  const createKey = (name: string, ...args: string[]) => {
    const r = cli(home, 'keys', 'create', ...args);
    expect(r.code, r.err).toBe(0);
    keys[name] = { key: r.out.trim(), id: /created key (\w+)/.exec(r.err)![1] };
  };
  const get = async (app: FastifyInstance, url: string, who: string) => {
    const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${keys[who].key}` } });
    return { status: res.statusCode, body: res.json() };
  };

  beforeAll(async () => {
    home = tempDir();
    writeWords(home, 200, 8);
    writeDefs(home, wordDefs(8));
    writeDefs(home, wordDefs(8, { variant: 'v2' }), 'v2.yaml');
    expect(cli(home, 'apply', 'defs.yaml').code).toBe(0);
    expect(cli(home, 'materialize', 'word_vec@v1').code).toBe(0);
    // Creates v2 and moves prod to it: a move to an unmaterialized variant needs --force, and --yes off a terminal.
    expect(cli(home, 'apply', 'v2.yaml', '--force', '--yes').code).toBe(0);
    expect(cli(home, 'alias', 'set', 'word_vec', 'prod', 'v1').code).toBe(0);
    createKey('admin', '--scope', 'admin');
    createKey('serve', '--scope', 'serve');
    createKey('limited', '--scope', 'serve', '--features', 'word_freq');
    store = FeatureStore.open({ home });
    // Two servers on one registry, as two serving processes would be.
    apps = [await build({ store, warm: false }), await build({ store, warm: false })];
  });

  afterAll(async () => {
    for (const app of apps ?? []) await app.close();
    await store?.close();
  });

  it('records apply, alias moves, materialization and keys with when and who (the OS user for the CLI)', async () => {
    const r = cli(home, 'history', '--json');
    expect(r.code, r.err).toBe(0);
    const events = JSON.parse(r.out) as Array<{
      id: number;
      at: string;
      actor: string;
      action: string;
      kind: string;
      name: string;
      detail: Record<string, unknown> | null;
    }>;
    const seen = events.map((e) => `${e.action} ${e.kind} ${e.name}`).reverse();
    expect(seen).toEqual([
      'create provider local',
      'create provider kv',
      'create entity word',
      'create source words@v1',
      'create feature word_vec@v1',
      'create feature word_freq@v1',
      'alias.set alias word_vec@prod',
      'materialized feature word_vec@v1',
      'create feature word_vec@v2',
      'alias.set alias word_vec@prod',
      'alias.set alias word_vec@prod',
      `key.create key ${keys.admin.id}`,
      `key.create key ${keys.serve.id}`,
      `key.create key ${keys.limited.id}`,
    ]);
    for (const e of events) {
      expect(e.actor).toBe(ME);
      expect(Date.now() - Date.parse(e.at)).toBeLessThan(10 * 60_000);
    }
    expect(
      events
        .filter((e) => e.action === 'alias.set')
        .map((e) => e.detail)
        .reverse(),
    ).toEqual([
      { variant: 'v1', previous: null },
      { variant: 'v2', previous: 'v1' },
      { variant: 'v1', previous: 'v2' },
    ]);
    expect((await store.registry.aliasHistory('word_vec', 'prod')).map((h) => h.actor)).toEqual([ME, ME, ME]);

    const table = cli(home, 'history', '--feature', 'word_vec', '--limit', '2');
    expect(table.code).toBe(0);
    const lines = table.out.trim().split('\n');
    expect(lines[0]).toMatch(/^at\s+who\s+what\s+name\s+detail$/);
    expect(lines.slice(1)).toHaveLength(2);
    expect(lines[1]).toMatch(new RegExp(`${ME}\\s+alias.set alias\\s+word_vec@prod\\s+v2 -> v1$`));
    expect(lines[2]).toMatch(/alias.set alias\s+word_vec@prod\s+v1 -> v2$/);
  });

  it('history refuses bad input with a coded error', () => {
    expect(cli(home, 'history', '--feature', 'nope')).toMatchObject({ code: 1, err: expect.stringContaining('NL_FEATURE_NOT_FOUND') });
    expect(cli(home, 'history', '--limit', 'x')).toMatchObject({ code: 1, err: expect.stringContaining('NL_BAD_REQUEST') });
  });

  it('keys list shows ids, scopes, features and who created them, never a secret', () => {
    const r = cli(home, 'keys', 'list');
    expect(r.code).toBe(0);
    for (const k of Object.values(keys)) {
      expect(r.out).toContain(k.id);
      expect(r.out).not.toContain(k.key);
    }
    expect(r.out).toMatch(new RegExp(`${keys.limited.id}\\s+serve\\s+word_freq\\s+\\S+\\s+${ME}`));
    const json = JSON.parse(cli(home, 'keys', 'list', '--json').out);
    expect(json.map((k: { scope: string }) => k.scope)).toEqual(['admin', 'serve', 'serve']);
    expect(Object.keys(json[0]).sort()).toEqual(['createdAt', 'createdBy', 'features', 'id', 'revokedAt', 'revokedBy', 'scope']);
  });

  it('GET /v1/registry/history: serve scope; a limited key sees its features only; key changes only for admin', async () => {
    const [app] = apps;
    const all = await get(app, '/v1/registry/history', 'admin');
    expect(all.status).toBe(200);
    expect(all.body.events).toHaveLength(14);
    expect(all.body.events[0]).toMatchObject({
      action: 'key.create',
      kind: 'key',
      name: keys.limited.id,
      actor: ME,
      detail: { scope: 'serve', features: ['word_freq'] },
    });

    const serve = await get(app, '/v1/registry/history', 'serve');
    expect(serve.body.events.filter((e: { kind: string }) => e.kind === 'key')).toEqual([]);
    expect(serve.body.events).toHaveLength(11);

    const limited = await get(app, '/v1/registry/history', 'limited');
    expect(limited.body.events.every((e: { feature: string | null }) => e.feature === null || e.feature === 'word_freq')).toBe(true);
    expect(limited.body.events.map((e: { name: string }) => e.name)).toContain('word_freq@v1');
    expect((await get(app, '/v1/registry/history?feature=word_vec', 'limited')).status).toBe(403);

    const paged = await get(app, '/v1/registry/history?feature=word_vec&limit=2', 'serve');
    expect(paged.body.events.map((e: { action: string }) => e.action)).toEqual(['alias.set', 'alias.set']);
    const older = await get(app, `/v1/registry/history?feature=word_vec&limit=2&before=${paged.body.events[1].id}`, 'serve');
    expect(older.body.events.map((e: { name: string }) => e.name)).toEqual(['word_vec@v2', 'word_vec@v1']);

    expect((await get(app, '/v1/registry/history?feature=nope', 'serve')).body.error.code).toBe('NL_FEATURE_NOT_FOUND');
    const bad = await get(app, '/v1/registry/history?limit=0', 'serve');
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('NL_BAD_REQUEST');
  });

  it('a revoked key is refused by every running server within a second; the others keep working', async () => {
    for (const app of apps) expect((await get(app, '/v1/registry/features', 'serve')).status).toBe(200);
    const r = cli(home, 'keys', 'revoke', keys.serve.id);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`revoked key ${keys.serve.id}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const app of apps) {
      const res = await get(app, '/v1/registry/features', 'serve');
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('NL_UNAUTHORIZED');
      expect((await get(app, '/v1/registry/features', 'admin')).status).toBe(200);
    }
    const listed = JSON.parse(cli(home, 'keys', 'list', '--json').out).find((k: { id: string }) => k.id === keys.serve.id);
    expect(listed).toMatchObject({ revokedBy: ME, revokedAt: expect.any(String) });
    expect((await store.registry.listEvents({ limit: 1 }))[0]).toMatchObject({ action: 'key.revoke', name: keys.serve.id, actor: ME });
  });

  it('revoking an unknown or already revoked key is a coded error and changes nothing', async () => {
    const before = cli(home, 'keys', 'list', '--json').out;
    const events = (await store.registry.listEvents()).length;
    expect(cli(home, 'keys', 'revoke', 'nosuchkey')).toMatchObject({ code: 1, err: expect.stringContaining('NL_NOT_FOUND') });
    expect(cli(home, 'keys', 'revoke', keys.serve.id)).toMatchObject({ code: 1, err: expect.stringContaining('NL_CONFLICT') });
    expect(cli(home, 'keys', 'revoke')).toMatchObject({ code: 2 });
    expect(cli(home, 'keys', 'list', '--json').out).toBe(before);
    expect((await store.registry.listEvents()).length).toBe(events);
  });

  it('a server whose keys are all revoked stays closed', async () => {
    for (const k of ['admin', 'limited']) expect(cli(home, 'keys', 'revoke', keys[k].id).code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const res = await apps[0].inject({ method: 'GET', url: '/v1/registry/features' });
    expect(res.statusCode).toBe(401);
  });
});
