import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Definitions } from '../../src/config.ts';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { seeded, tempDir, writeDefs } from '../helpers/fixtures.ts';
import { startQdrantTestServer, type QdrantTestServer } from '../helpers/qdrant-test-server.ts';

/*
 * A nearline alias move also moves the vector provider's own alias, so that a service reading Qdrant
 * directly (by collection alias) switches at the same moment as nearline's readers.
 */

let server: QdrantTestServer;
let home: string;
let store: FeatureStore;

const variant = (name: string, provider = 'q') => ({
  name: 'item_vec',
  variant: name,
  entity: 'item',
  source: 'items@v1',
  kind: 'embedding',
  vector: { column: 'vec' },
  dims: 4,
  metric: 'cosine',
  provider,
  metadata: ['lang'],
});

async function defs(alias: string, features = ['v1', 'v2']): Promise<Definitions> {
  const file = writeDefs(home, {
    providers: [
      { name: 'q', kind: 'qdrant', url: server.url, retryDelay: 1 },
      { name: 'local', kind: 'hnsw' },
    ],
    entities: [{ name: 'item', key: 'id' }],
    sources: [{ name: 'items', variant: 'v1', kind: 'jsonl', path: 'items.jsonl' }],
    features: features.map((v) => (v === 'v9' ? variant(v, 'local') : variant(v))),
    aliases: [{ feature: 'item_vec', name: 'prod', variant: alias }],
  });
  return loadDefinitions(file);
}

async function qdrantAliases(): Promise<Record<string, string>> {
  const r = await server.raw('GET', '/aliases');
  const list = (r.body as { result: { aliases: Array<{ alias_name: string; collection_name: string }> } }).result.aliases;
  return Object.fromEntries(list.map((a) => [a.alias_name, a.collection_name]));
}

const aliasMoves = () => server.requests.filter((r) => r.operation === 'POST /collections/aliases');

beforeAll(async () => {
  server = await startQdrantTestServer();
  home = tempDir('nearline-alias-');
  const rnd = seeded(5);
  const rows = Array.from({ length: 30 }, (_, i) => ({ id: `i${i}`, vec: Array.from({ length: 4 }, () => rnd() - 0.5), lang: i % 2 ? 'en' : 'fr' }));
  writeFileSync(path.join(home, 'items.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  store = FeatureStore.open({ home });
});

afterAll(async () => {
  await store?.close();
  await server?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

afterEach(() => {
  expect(server.takeViolations()).toEqual([]);
});

describe('provider aliases follow nearline aliases', () => {
  it('an alias on a variant without data reaches Qdrant when the variant is published', async () => {
    expect((await store.apply(await defs('v1'))).applied).toBe(true);
    expect(await qdrantAliases()).toEqual({});
    await store.materialize('item_vec@v1', { progress: false });
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v1' });
    await store.materialize('item_vec@v2', { progress: false });
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v1' });
  });

  it('setAlias moves the registry and then the Qdrant alias, in one atomic alias request', async () => {
    const before = aliasMoves().length;
    const { alias, previous } = await store.setAlias('item_vec', 'prod', 'v2');
    expect(alias).toMatchObject({ feature: 'item_vec', name: 'prod', variant: 'v2' });
    expect(previous).toBe('v1');
    expect((await store.registry.resolveFeature('item_vec')).variant).toBe('v2');
    expect(
      aliasMoves()
        .slice(before)
        .map((r) => r.body),
    ).toEqual([
      { actions: [{ delete_alias: { alias_name: 'item_vec__prod' } }, { create_alias: { alias_name: 'item_vec__prod', collection_name: 'item_vec__v2' } }] },
    ]);
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v2' });
  });

  it("apply's alias items move the Qdrant alias too; unchanged ones send nothing", async () => {
    const { plan } = await store.apply(await defs('v1'));
    expect(plan.find((p) => p.kind === 'alias')).toMatchObject({ action: 'update', reason: 'v2 -> v1' });
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v1' });
    const before = server.requests.length;
    expect(plan.filter((p) => p.action === 'unchanged').length).toBeGreaterThan(0);
    await store.apply(await defs('v1'));
    expect(server.requests.length).toBe(before);
  });

  it('an alias forced onto an unmaterialized variant leaves Qdrant without it until that variant is published', async () => {
    await store.apply(await defs('v1', ['v1', 'v2', 'v3']));
    await expect(store.setAlias('item_vec', 'prod', 'v3')).rejects.toMatchObject({ code: 'NL_ALIAS_REFUSED' });
    await store.setAlias('item_vec', 'prod', 'v3', { force: true });
    expect(await qdrantAliases()).toEqual({});
    await store.materialize('item_vec@v3', { progress: false });
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v3' });
  });

  it('a provider failure is reported with the command that retries it; retrying moves the Qdrant alias', async () => {
    server.failNext(1, { status: 500 });
    const err = await store.setAlias('item_vec', 'prod', 'v2').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NL_PROVIDER_ERROR' });
    expect((err as Error).message).toContain('nearline alias set item_vec prod v2');
    // nearline's readers already switched; Qdrant's follow on the retry.
    expect((await store.registry.resolveFeature('item_vec')).variant).toBe('v2');
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v3' });
    await store.setAlias('item_vec', 'prod', 'v2');
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v2' });
  });

  it('apply refuses a new variant named like an alias, which would resolve to, and write into, the aliased variant', async () => {
    const { plan, applied } = await store.apply(await defs('v2', ['v1', 'v2', 'v3', 'prod']));
    expect(applied).toBe(false);
    expect(plan.find((p) => p.name === 'item_vec@prod')).toMatchObject({ action: 'refused', code: 'NL_CONFLICT' });
    expect(await store.registry.getFeature('item_vec', 'prod')).toBeUndefined();
  });

  it('an alias moved to a variant on a provider without aliases is removed from Qdrant', async () => {
    await store.apply(await defs('v2', ['v1', 'v2', 'v3', 'v9']));
    await store.materialize('item_vec@v9', { progress: false });
    await store.setAlias('item_vec', 'prod', 'v9');
    expect(await qdrantAliases()).toEqual({});
    expect((await store.nearest({ feature: 'item_vec', k: 3, query: { id: 'i1' } })).variant).toBe('v9');
    await store.setAlias('item_vec', 'prod', 'v1');
    expect(await qdrantAliases()).toEqual({ item_vec__prod: 'item_vec__v1' });
  });
});
