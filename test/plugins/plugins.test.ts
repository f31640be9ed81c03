import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { isNearlineError } from '../../src/errors.ts';
import { createOnlineStore, createVectorProvider } from '../../src/providers/index.ts';
import { openRegistry } from '../../src/registry/open.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { exactCosine, tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { onlineStoreSuite } from '../providers/online.suite.ts';
import { vectorProviderSuite } from '../providers/vector.suite.ts';

const PLUGIN = path.resolve(import.meta.dirname, '../fixtures/plugins/map-online-store.ts');
const VECTOR_PLUGIN = path.resolve(import.meta.dirname, '../fixtures/plugins/scan-vector-provider.ts');
const RUNTIME_PLUGIN = path.resolve(import.meta.dirname, '../fixtures/plugins/hash-runtime.ts');
const BIN = path.resolve(import.meta.dirname, '../../bin/nearline.mjs');
const dirs: string[] = [];
const dir = () => {
  const d = tempDir();
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** `./…` from `from` to the fixture plugin, as a definitions file beside it would name it. */
const relativePlugin = (from: string) => {
  const rel = path.relative(from, PLUGIN);
  return rel.startsWith('.') ? rel : `./${rel}`;
};

async function definitionError(defs: unknown, at: string): Promise<string> {
  const file = writeDefs(at, defs);
  const err = await loadDefinitions(file).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isNearlineError(err, 'NL_BAD_DEFINITION'), String(err)).toBe(true);
  return (err as Error).message;
}

// The fixture plugin, loaded by module path, passes the same conformance suite as the built-in stores.
onlineStoreSuite('plugin loaded by module path (test/fixtures/plugins/map-online-store.ts)', async () => ({
  store: await createOnlineStore(PLUGIN, {}, { name: 'kv', home: dir() }),
}));

// So does the vector fixture plugin (in memory: the persistence case does not apply).
vectorProviderSuite(
  'plugin loaded by module path (test/fixtures/plugins/scan-vector-provider.ts)',
  async () => ({ provider: await createVectorProvider(VECTOR_PLUGIN, {}, { name: 'scan', home: dir() }) }),
  { persistent: false },
);

describe('plugins named in definitions', () => {
  it('a vector provider named by module path is materialized into and serves nearest queries', async () => {
    const home = dir();
    const rows = writeWords(home, 60, 4);
    const defs = wordDefs(4);
    const rel = path.relative(home, VECTOR_PLUGIN);
    defs.providers[0] = { name: 'local', kind: rel.startsWith('.') ? rel : `./${rel}`, maxRows: 1000 } as (typeof defs.providers)[number];
    const store = FeatureStore.open({ home });
    try {
      await store.apply(await loadDefinitions(writeDefs(home, defs)));
      await store.materialize('word_vec@v1', { progress: false });
      const res = await store.nearest({ feature: 'word_vec', k: 3, query: { vector: rows[5].vec }, filter: { field: 'lang', op: 'eq', value: 'en' } });
      const expected = exactCosine(
        rows.filter((r) => r.lang === 'en'),
        rows[5].vec,
        3,
      );
      expect(res.hits.map((h) => h.id)).toEqual(expected);
    } finally {
      await store.close();
    }
  });

  it('a provider named by module path is applied with its options, materialized into and served', async () => {
    const home = dir();
    writeWords(home, 50, 4);
    const defs = wordDefs(4);
    defs.providers[1] = { name: 'kv', kind: relativePlugin(home), maxIds: 1000 } as (typeof defs.providers)[number];
    const loaded = await loadDefinitions(writeDefs(home, defs));
    expect(loaded.providers[1]).toEqual({ name: 'kv', kind: PLUGIN, options: { maxIds: 1000 } });
    const store = FeatureStore.open({ home });
    try {
      const { applied } = await store.apply(loaded);
      expect(applied).toBe(true);
      await store.materialize('word_freq@v1', { progress: false });
      expect(await store.online(['w3', 'w12', 'nope'], ['word_freq'])).toEqual([
        { id: 'w3', features: { word_freq: 3 } },
        { id: 'w12', features: { word_freq: 2 } },
        { id: 'nope', features: { word_freq: null } },
      ]);
    } finally {
      await store.close();
    }
  });

  it('the plugin enforces its own option at run time', async () => {
    const store = await createOnlineStore(PLUGIN, { maxIds: 2 }, { name: 'small', home: dir() });
    await store.put('f@v1', [
      ['a', 1],
      ['b', 2],
    ]);
    const err = await store.put('f@v1', [['c', 3]]).catch((e: unknown) => e);
    expect(isNearlineError(err, 'NL_LIMIT_EXCEEDED')).toBe(true);
    expect(await store.count('f@v1')).toBe(2);
  });

  it('a runtime named by module path takes its own model fields, checked at apply, and embeds a text feature', async () => {
    const home = dir();
    const titles = ['red apple pie recipe', 'green tea ceremony', 'apple orchard in autumn', 'tea kettle whistle', 'blue whale song'];
    writeFileSync(path.join(home, 'docs.jsonl'), titles.map((title, i) => JSON.stringify({ id: `d${i}`, title })).join('\n') + '\n');
    const rel = path.relative(home, RUNTIME_PLUGIN);
    const model = { name: 'grams', version: '1', runtime: rel.startsWith('.') ? rel : `./${rel}`, dims: 64, ngram: 3 };
    const defs = (m: Record<string, unknown>) => ({
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'doc', key: 'id' }],
      sources: [{ name: 'docs', variant: 'v1', kind: 'jsonl', path: 'docs.jsonl' }],
      models: [m],
      features: [
        {
          name: 'doc_vec',
          variant: 'v1',
          entity: 'doc',
          source: 'docs@v1',
          kind: 'embedding',
          text: { column: 'title', model: 'grams@1' },
          metric: 'cosine',
          provider: 'local',
        },
      ],
    });
    expect(await definitionError(defs({ ...model, dimz: 64 }), home)).toContain('models[0] (grams): field "dimz": unknown option for a hash runtime');
    expect(await definitionError(defs({ ...model, dims: '64' }), home)).toContain('models[0] (grams): field "dims": expected integer, got "64"');
    const loaded = await loadDefinitions(writeDefs(home, defs(model)));
    expect(loaded.models[0].options).toEqual({ dims: 64, ngram: 3 });
    const store = FeatureStore.open({ home });
    try {
      await store.apply(loaded);
      expect(await store.registry.getFeature('doc_vec', 'v1')).toMatchObject({ dims: 64 });
      await store.materialize('doc_vec@v1', { progress: false });
      const res = await store.nearest({ feature: 'doc_vec', k: 2, query: { text: 'apple pie' } });
      expect(res.hits[0].id).toBe('d0');
    } finally {
      await store.close();
    }
  });

  it('refuses unknown and mistyped options at apply with the file, the object and the field', async () => {
    const at = dir();
    const with0 = (p: Record<string, unknown>) => ({ ...wordDefs(4), providers: [p, { name: 'kv', kind: 'sqlite' }] });
    expect(await definitionError(with0({ name: 'local', kind: 'hnsw', threds: 2 }), at)).toBe(
      `${path.join(at, 'defs.yaml')}: providers[0] (local): field "threds": unknown option for a hnsw provider`,
    );
    expect(await definitionError(with0({ name: 'local', kind: 'qdrant', timeout: '5s' }), at)).toContain(
      'providers[0] (local): field "timeout": expected integer, got "5s"',
    );
    expect(await definitionError(with0({ name: 'local', kind: 'redis', cluster: [] }), at)).toContain('providers[0] (local): field "cluster"');
    const plugin = {
      ...wordDefs(4),
      providers: [
        { name: 'local', kind: 'hnsw' },
        { name: 'kv', kind: relativePlugin(at), maxIds: 0 },
      ],
    };
    expect(await definitionError(plugin, at)).toContain('providers[1] (kv): field "maxIds": expected integer to be greater or equal to 1, got 0');
    expect(await definitionError(with0({ name: 'local', kind: 'hnws' }), at)).toContain('providers[0] (local): field "kind": cannot load plugin hnws');
  });

  it('apply from the CLI writes nothing when an option is wrong', async () => {
    const home = dir();
    writeWords(home, 10, 4);
    const defs = {
      ...wordDefs(4),
      providers: [
        { name: 'local', kind: 'hnsw', initialCapacity: -5 },
        { name: 'kv', kind: 'sqlite' },
      ],
    };
    const r = spawnSync(process.execPath, [BIN, 'apply', writeDefs(home, defs), '--home', home], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('error NL_BAD_DEFINITION');
    expect(r.stderr).toContain('providers[0] (local): field "initialCapacity": expected integer to be greater or equal to 1, got -5');
    const registry = openRegistry(path.join(home, 'nearline.db'));
    try {
      expect(await registry.listProviders()).toEqual([]);
      expect(await registry.listFeatures()).toEqual([]);
    } finally {
      await registry.close();
    }
  });

  it('names a module that is not a plugin, one that does not load, and a plugin in the wrong role', async () => {
    const at = dir();
    writeFileSync(path.join(at, 'not-a-plugin.mjs'), 'export default { hello: "world" };\n');
    const withKv = (kind: string) => ({
      ...wordDefs(4),
      providers: [
        { name: 'local', kind: 'hnsw' },
        { name: 'kv', kind },
      ],
    });
    expect(await definitionError(withKv('./not-a-plugin.mjs'), at)).toContain(
      'providers[1] (kv): field "kind": module ' + path.join(at, 'not-a-plugin.mjs') + ' does not export a plugin',
    );
    expect(await definitionError(withKv('./missing-plugin.ts'), at)).toContain('providers[1] (kv): field "kind": cannot load plugin');
    // An online store cannot hold an embedding feature's vectors.
    const home = dir();
    writeWords(home, 10, 4);
    const wrong = {
      ...wordDefs(4),
      providers: [
        { name: 'local', kind: relativePlugin(home) },
        { name: 'kv', kind: 'sqlite' },
      ],
    };
    const store = FeatureStore.open({ home });
    try {
      const err = await store.apply(await loadDefinitions(writeDefs(home, wrong))).catch((e: unknown) => e);
      expect(isNearlineError(err, 'NL_BAD_DEFINITION'), String(err)).toBe(true);
      expect((err as Error).message).toContain('is not a vector provider');
      expect(await store.registry.listProviders()).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
