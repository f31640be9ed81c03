import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../src/config.ts';
import { Registry } from '../src/registry/registry.ts';
import { FeatureStore } from '../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from './helpers/fixtures.ts';

async function setup(dims = 8) {
  const home = tempDir();
  writeWords(home, 200, dims);
  const store = FeatureStore.open({ home });
  const file = writeDefs(home, wordDefs(dims));
  return { home, store, file };
}

function snapshot(registry: Registry) {
  const tables = ['providers', 'entities', 'sources', 'models', 'features', 'aliases', 'alias_history', 'materializations'];
  return Object.fromEntries(tables.map((t) => [t, registry.db.prepare(`SELECT * FROM ${t}`).all()]));
}

describe('registry and apply', () => {
  it('creates on the first apply and is idempotent after', async () => {
    const { store, file } = await setup();
    const first = await store.apply(await loadDefinitions(file));
    expect(first.applied).toBe(true);
    expect(first.plan.map((p) => p.action)).toEqual(Array(7).fill('create'));
    const before = snapshot(store.registry);
    const second = await store.apply(await loadDefinitions(file));
    expect(second.plan.every((p) => p.action === 'unchanged')).toBe(true);
    expect(snapshot(store.registry)).toEqual(before);
    await store.close();
  });

  it('records lineage: feature -> source, provider, entity', async () => {
    const { store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    const f = store.registry.getFeature('word_vec', 'v1')!;
    expect(f.source).toEqual({ name: 'words', variant: 'v1' });
    expect(f.provider).toBe('local');
    expect(store.registry.dependents('source', 'words', 'v1').map((x) => x.name)).toEqual(['word_freq', 'word_vec']);
    await store.close();
  });

  it('updates a variant that is not materialized yet', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    const changed = wordDefs(8, { metric: 'dot' });
    const { plan, applied } = await store.apply(await loadDefinitions(writeDefs(home, changed)));
    expect(applied).toBe(true);
    expect(plan.find((p) => p.name === 'word_vec@v1')?.action).toBe('update');
    expect(store.registry.getFeature('word_vec', 'v1')?.metric).toBe('dot');
    await store.close();
  });

  it('refuses to change a materialized variant with NL_VARIANT_IMMUTABLE and writes nothing', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    await store.materialize('word_vec@v1', { progress: false });
    const before = snapshot(store.registry);
    const changed = wordDefs(8, { metric: 'l2' });
    changed.entities.push({ name: 'user', key: 'user_id' });
    const { plan, applied } = await store.apply(await loadDefinitions(writeDefs(home, changed)));
    expect(applied).toBe(false);
    const item = plan.find((p) => p.name === 'word_vec@v1')!;
    expect(item).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });
    expect(plan.find((p) => p.name === 'user')?.action).toBe('create');
    expect(snapshot(store.registry)).toEqual(before);
    expect(() => store.registry.commit(changed as never, plan, new Map())).toThrow(/immutable/);
    await store.close();
  });

  it('refuses to change a source that a materialized variant was built from', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    await store.materialize('word_vec@v1', { progress: false });
    const changed = wordDefs(8, { source: 'other.jsonl' });
    const { plan } = await store.apply(await loadDefinitions(writeDefs(home, changed)));
    expect(plan.find((p) => p.kind === 'source')).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });
    await store.close();
  });

  it('quantization is part of a variant: a bad value is refused before anything is written, int8 materializes an int8 index, none reads as absent', async () => {
    const { home, store } = await setup();
    const empty = snapshot(store.registry);
    const bad = wordDefs(8);
    (bad.features[0].index as Record<string, unknown>).quantization = 'int4';
    await expect(loadDefinitions(writeDefs(home, bad))).rejects.toMatchObject({ code: 'NL_BAD_DEFINITION', message: expect.stringContaining('"quantization": expected one of none, int8') });
    expect(snapshot(store.registry)).toEqual(empty);

    const int8 = wordDefs(8);
    (int8.features[0].index as Record<string, unknown>).quantization = 'int8';
    await store.apply(await loadDefinitions(writeDefs(home, int8)));
    expect(store.registry.getFeature('word_vec', 'v1')?.index).toEqual({ M: 16, efConstruction: 200, ef: 100, quantization: 'int8' });
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
  });

  it('rejects references to undefined objects before writing anything', async () => {
    const { home, store } = await setup();
    const defs = wordDefs(8);
    defs.features[0].provider = 'nowhere';
    await expect(store.apply(await loadDefinitions(writeDefs(home, defs)))).rejects.toMatchObject({ code: 'NL_BAD_DEFINITION', message: expect.stringContaining('nowhere') });
    const scalarOnHnsw = wordDefs(8);
    scalarOnHnsw.features[1].provider = 'local';
    await expect(store.apply(await loadDefinitions(writeDefs(home, scalarOnHnsw)))).rejects.toMatchObject({ code: 'NL_BAD_DEFINITION' });
    expect(store.registry.listProviders()).toEqual([]);
    await store.close();
  });

  it('resolves bare names to the prod alias, else the only variant; aliases switch atomically and keep history', async () => {
    const { home, store, file } = await setup();
    await store.apply(await loadDefinitions(file));
    const v2 = wordDefs(8, { variant: 'v2' });
    v2.aliases = [];
    await store.apply(await loadDefinitions(writeDefs(home, v2)));
    const r = store.registry;
    expect(r.resolveFeature('word_vec').variant).toBe('v1');
    expect(r.resolveFeature('word_vec@v2').variant).toBe('v2');
    expect(r.resolveFeature('word_vec@prod').variant).toBe('v1');
    r.setAlias('word_vec', 'prod', 'v2');
    expect(r.resolveFeature('word_vec').variant).toBe('v2');
    expect(r.resolveFeature('word_vec@v1').variant).toBe('v1');
    expect(r.aliasHistory('word_vec', 'prod').map((h) => [h.variant, h.previous])).toEqual([
      ['v1', null],
      ['v2', 'v1'],
    ]);
    expect(r.resolveFeature('word_freq').variant).toBe('v1');
    expect(() => r.setAlias('word_vec', 'prod', 'v9')).toThrow(expect.objectContaining({ code: 'NL_FEATURE_NOT_FOUND' }));
    expect(() => r.resolveFeature('nothing')).toThrow(expect.objectContaining({ code: 'NL_FEATURE_NOT_FOUND' }));
    await store.close();
  });

  it('migrates a new file once and reopens an existing one without re-running migrations', () => {
    const home = tempDir();
    const a = Registry.open(home);
    const versions = a.db.prepare('SELECT version FROM schema_migrations').pluck().all();
    a.close();
    const b = Registry.open(home);
    expect(b.db.prepare('SELECT version FROM schema_migrations').pluck().all()).toEqual(versions);
    expect(b.db.pragma('journal_mode', { simple: true })).toBe('wal');
    b.close();
  });

  it('stores API keys hashed and finds them by the secret only', () => {
    const r = Registry.open(tempDir());
    const { key, record } = r.createKey('serve', ['word_vec']);
    expect(r.db.prepare('SELECT hash FROM api_keys').pluck().get()).not.toContain(key);
    expect(r.findKey(key)).toEqual(record);
    expect(r.findKey(key + 'x')).toBeUndefined();
    r.close();
  });
});
