import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { makeEncoder } from '../../scripts/make-encoder.ts';
import { TINY } from '../embedding/helpers.ts';
import { tempDir, writeDefs } from '../helpers/fixtures.ts';
import { makeHome, openApp } from '../server/fixture.ts';

describe('a served text feature is ready before the first query (regression: took_ms included a lazy model load)', () => {
  let home: string;
  let cleanup: () => void;

  beforeAll(async () => {
    ({ home, cleanup } = await makeHome());
  });
  afterAll(() => cleanup?.());

  it('/readyz says ready only once the models of served text features are loaded', async () => {
    const warm = await openApp(home);
    const cold = await openApp(home, { warm: false });
    try {
      // Touch the model's files: a model loaded from now on is refused (NL_MODEL_CHANGED), one already loaded keeps serving.
      appendFileSync(path.join(home, 'tiny', 'config.json'), ' ');
      const query = { feature: 'doc_vec', k: 3, query: { text: 'red shoe' } };
      const fromWarm = await warm.app.inject({ method: 'POST', url: '/v1/nearest', payload: query });
      expect(fromWarm.statusCode, fromWarm.body).toBe(200);
      expect(fromWarm.json().hits).toHaveLength(3);
      const fromCold = await cold.app.inject({ method: 'POST', url: '/v1/nearest', payload: query });
      expect(fromCold.json().error.code).toBe('NL_MODEL_CHANGED');
    } finally {
      await warm.close();
      await cold.close();
    }
  });
});

describe('dims are optional for text features (regression: they had to be copied from the model)', () => {
  it("takes the model's probed dims at apply; a given one must still match", async () => {
    const home = tempDir();
    makeEncoder({ ...TINY, out: path.join(home, 'tiny') });
    writeFileSync(path.join(home, 'docs.jsonl'), ['{"id":"a","body":"red shoe"}', '{"id":"b","body":"oak chair"}'].join('\n') + '\n');
    const defs = (dims?: number) => ({
      providers: [{ name: 'local', kind: 'hnsw' }],
      entities: [{ name: 'doc', key: 'id' }],
      sources: [{ name: 'docs', variant: 'v1', kind: 'jsonl', path: 'docs.jsonl' }],
      models: [{ name: 'tiny', version: '1', runtime: 'onnx', path: 'tiny' }],
      features: [
        {
          name: 'doc_vec',
          variant: 'v1',
          entity: 'doc',
          source: 'docs@v1',
          kind: 'embedding',
          text: { column: 'body', model: 'tiny@1' },
          provider: 'local',
          ...(dims ? { dims } : {}),
        },
      ],
    });
    const store = FeatureStore.open({ home });
    try {
      expect((await store.apply(await loadDefinitions(writeDefs(home, defs())))).applied).toBe(true);
      expect(await store.registry.getFeature('doc_vec', 'v1')).toHaveProperty('dims', TINY.hidden);
      expect((await store.materialize('doc_vec@v1', { progress: false })).rows).toBe(2);
      expect((await store.apply(await loadDefinitions(writeDefs(home, defs())))).plan.every((p) => p.action === 'unchanged')).toBe(true);
      expect((await store.apply(await loadDefinitions(writeDefs(home, defs(TINY.hidden))))).plan.every((p) => p.action === 'unchanged')).toBe(true);
      await expect(store.apply(await loadDefinitions(writeDefs(home, defs(7))))).rejects.toMatchObject({ code: 'NL_DIMENSION_MISMATCH' });
      const vectorWithout = { ...defs(), features: [{ ...defs().features[0], text: undefined, vector: { column: 'vec' } }] };
      await expect(loadDefinitions(writeDefs(home, vectorWithout, 'vec.yaml'))).rejects.toThrow(/field "dims": expected a positive integer/);
    } finally {
      await store.close();
    }
  });
});
