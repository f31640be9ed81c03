import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { makeEncoder } from '../../scripts/make-encoder.ts';
import { tempDir, writeDefs } from '../helpers/fixtures.ts';
import { SENTENCES, TINY } from '../embedding/helpers.ts';

const DOCS = Array.from({ length: 60 }, (_, i) => ({ id: `d${i}`, body: `${SENTENCES[i % SENTENCES.length]} number ${i}`, topic: i % 2 ? 'odd' : 'even' }));

function defs(overrides: { dims?: number; modelPath?: string; variant?: string; version?: string } = {}) {
  const version = overrides.version ?? '1';
  return {
    providers: [{ name: 'local', kind: 'hnsw' }],
    entities: [{ name: 'doc', key: 'id' }],
    sources: [{ name: 'docs', variant: 'v1', kind: 'jsonl', path: 'docs.jsonl' }],
    models: [{ name: 'tiny', version, runtime: 'onnx', path: overrides.modelPath ?? 'models/tiny', pooling: 'mean', normalize: true, maxTokens: 32 }],
    features: [
      {
        name: 'doc_vec',
        variant: overrides.variant ?? 'v1',
        entity: 'doc',
        source: 'docs@v1',
        kind: 'embedding',
        text: { column: 'body', model: `tiny@${version}` },
        dims: overrides.dims ?? TINY.hidden,
        metric: 'cosine',
        provider: 'local',
        metadata: ['topic'],
      },
    ],
  };
}

describe('text embedding features', () => {
  let home: string;

  beforeAll(() => {
    home = tempDir();
    makeEncoder({ ...TINY, out: path.join(home, 'models/tiny') });
    writeFileSync(path.join(home, 'docs.jsonl'), DOCS.map((d) => JSON.stringify(d)).join('\n') + '\n');
  });

  it('registers the model with probed dims and sha256, materializes the text column, and answers --text queries with the same model', async () => {
    const store = FeatureStore.open({ home });
    const { plan, applied } = await store.apply(await loadDefinitions(writeDefs(home, defs())));
    expect(applied).toBe(true);
    expect(plan.find((p) => p.kind === 'model')).toMatchObject({ name: 'tiny@1', action: 'create' });
    const model = (await store.registry.getModel('tiny', '1'))!;
    expect(model.dims).toBe(TINY.hidden);
    expect(model.sha256).toMatch(/^[0-9a-f]{64}$/);
    const r = await store.materialize('doc_vec@v1', { progress: false });
    expect(r.rows).toBe(DOCS.length);

    // The vector stored for a document is the model's vector of its text: querying with that text finds it first.
    const res = await store.nearest({ feature: 'doc_vec', k: 3, query: { text: DOCS[13].body } });
    expect(res.hits[0].id).toBe('d13');
    expect(res.hits[0].score).toBeCloseTo(1, 4);
    const filtered = await store.nearest({ feature: 'doc_vec', k: 5, query: { text: DOCS[13].body }, filter: { field: 'topic', op: 'eq', value: 'even' } });
    expect(filtered.hits).toHaveLength(5);
    expect(filtered.hits.every((h) => Number(h.id.slice(1)) % 2 === 0)).toBe(true);
    const embedded = await store.embed('tiny@1', [DOCS[13].body]);
    expect(embedded.dims).toBe(TINY.hidden);
    await expect(store.nearest({ feature: 'doc_vec', query: { text: '   ' } })).rejects.toMatchObject({ code: 'NL_BAD_TEXT' });
    await store.close();
  });

  it('refuses a feature whose dims differ from the model, writing nothing', async () => {
    const store = FeatureStore.open({ home: tempDir() });
    const dir = store.home;
    makeEncoder({ ...TINY, out: path.join(dir, 'models/tiny') });
    await expect(store.apply(await loadDefinitions(writeDefs(dir, defs({ dims: 64 }))))).rejects.toMatchObject({ code: 'NL_DIMENSION_MISMATCH' });
    expect(await store.registry.listModels()).toEqual([]);
    expect(await store.registry.listProviders()).toEqual([]);
    await store.close();
  });

  it('refuses a model folder with missing files at apply time, writing nothing', async () => {
    const dir = tempDir();
    makeEncoder({ ...TINY, out: path.join(dir, 'models/tiny') });
    rmSync(path.join(dir, 'models/tiny/tokenizer.json'));
    const store = FeatureStore.open({ home: dir });
    await expect(store.apply(await loadDefinitions(writeDefs(dir, defs())))).rejects.toMatchObject({
      code: 'NL_MODEL_INVALID',
      message: expect.stringContaining('tokenizer.json'),
    });
    expect(await store.registry.listModels()).toEqual([]);
    await store.close();
  });

  it('refuses a registered model version whose files changed (NL_MODEL_CHANGED) at apply and at load', async () => {
    const dir = tempDir();
    makeEncoder({ ...TINY, out: path.join(dir, 'models/tiny') });
    writeFileSync(path.join(dir, 'docs.jsonl'), DOCS.map((d) => JSON.stringify(d)).join('\n') + '\n');
    const file = writeDefs(dir, defs());
    const first = FeatureStore.open({ home: dir });
    await first.apply(await loadDefinitions(file));
    await first.close();
    appendFileSync(path.join(dir, 'models/tiny/config.json'), '\n');
    const store = FeatureStore.open({ home: dir });
    const { plan, applied } = await store.apply(await loadDefinitions(file));
    expect(applied).toBe(false);
    expect(plan.find((p) => p.kind === 'model')).toMatchObject({ action: 'refused', code: 'NL_MODEL_CHANGED' });
    await expect(store.materialize('doc_vec@v1', { progress: false })).rejects.toMatchObject({ code: 'NL_MODEL_CHANGED' });
    // A new version of the changed files is a new model, and is accepted.
    const next = await store.apply(await loadDefinitions(writeDefs(dir, defs({ version: '2', variant: 'v2' }))));
    expect(next.applied).toBe(true);
    await store.close();
  });
});
