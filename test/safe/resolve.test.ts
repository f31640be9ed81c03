import { describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { build } from '../../src/server/app.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { tempDir, wordDefs, writeDefs, writeWords } from '../helpers/fixtures.ts';
import { cli } from './helpers.ts';

/** word_vec@v1 (alias prod) and word_freq@v1, materialized; then word_freq@v2 applied and materialized, with no alias. */
async function homeWithTwoPriceVariants() {
  const home = tempDir();
  writeWords(home, 200, 8);
  const store = FeatureStore.open({ home });
  await store.apply(await loadDefinitions(writeDefs(home, wordDefs(8))));
  for (const ref of ['word_vec@v1', 'word_freq@v1']) await store.materialize(ref, { progress: false });
  return { home, store };
}

async function addFreqV2(store: FeatureStore, home: string) {
  const defs = wordDefs(8);
  defs.features.push({ ...defs.features[1], variant: 'v2', type: 'int' } as (typeof defs.features)[number]);
  await store.apply(await loadDefinitions(writeDefs(home, defs, 'v2.yaml')));
  await store.materialize('word_freq@v2', { progress: false });
}

describe('a bare feature name never silently follows a new variant (regression: applying price@v2 changed include: ["price"])', () => {
  it('resolves to the only variant, and every response says which variant of each feature answered', async () => {
    const { store } = await homeWithTwoPriceVariants();
    const res = await store.nearest({ feature: 'word_vec', k: 3, query: { id: 'w1' }, include: { features: ['word_freq'] } });
    expect(res.variants).toEqual({ word_vec: 'word_vec@v1', word_freq: 'word_freq@v1' });
    expect((await store.onlineWithVariants(['w1'], ['word_freq'])).variants).toEqual({ word_freq: 'word_freq@v1' });
    await store.close();
  });

  it('refuses a bare name with several variants and no prod alias, listing them (NL_AMBIGUOUS_FEATURE, 409)', async () => {
    const { store, home } = await homeWithTwoPriceVariants();
    const before = await store.nearest({ feature: 'word_vec', k: 3, query: { id: 'w1' }, include: { features: ['word_freq'] } });
    await addFreqV2(store, home);
    const call = store.nearest({ feature: 'word_vec', k: 3, query: { id: 'w1' }, include: { features: ['word_freq'] } });
    await expect(call).rejects.toMatchObject({ code: 'NL_AMBIGUOUS_FEATURE', status: 409 });
    await expect(call).rejects.toThrow(/word_freq@v1 \(materialized\), word_freq@v2 \(materialized\).*alias set word_freq prod/);
    // Naming the variant, or setting prod, answers again, and says which variant it was.
    const named = await store.nearest({ feature: 'word_vec', k: 3, query: { id: 'w1' }, include: { features: ['word_freq@v1'] } });
    expect(named.hits.map((h) => h.features)).toEqual(before.hits.map((h) => ({ 'word_freq@v1': h.features!.word_freq })));
    await store.setAlias('word_freq', 'prod', 'v2');
    const viaProd = await store.nearest({ feature: 'word_vec', k: 3, query: { id: 'w1' }, include: { features: ['word_freq'] } });
    expect(viaProd.variants.word_freq).toBe('word_freq@v2');
    await store.close();
  });

  it('a dropped variant does not count: the bare name resolves to the one left', async () => {
    const { store, home } = await homeWithTwoPriceVariants();
    await addFreqV2(store, home);
    await store.drop('word_freq@v1');
    const res = await store.nearest({ feature: 'word_vec', k: 2, query: { id: 'w1' }, include: { features: ['word_freq'] } });
    expect(res.variants.word_freq).toBe('word_freq@v2');
    await store.close();
  });

  it('answers HTTP callers 409 with the code, and reports the variants in /v1/nearest, batch and /v1/online', async () => {
    const { store, home } = await homeWithTwoPriceVariants();
    const app = await build({ store, warm: false });
    const nearest = { feature: 'word_vec', k: 2, query: { id: 'w1' }, include: { features: ['word_freq'] } };
    let r = await app.inject({ method: 'POST', url: '/v1/nearest', payload: nearest });
    expect(r.json().variants).toEqual({ word_vec: 'word_vec@v1', word_freq: 'word_freq@v1' });
    r = await app.inject({
      method: 'POST',
      url: '/v1/nearest/batch',
      payload: { feature: 'word_vec', k: 2, queries: [{ id: 'w1' }], include: { features: ['word_freq'] } },
    });
    expect(r.json().variants).toEqual({ word_vec: 'word_vec@v1', word_freq: 'word_freq@v1' });
    r = await app.inject({ method: 'POST', url: '/v1/online', payload: { ids: ['w1'], features: ['word_freq', 'word_vec@prod'] } });
    expect(r.json().variants).toEqual({ word_freq: 'word_freq@v1', 'word_vec@prod': 'word_vec@v1' });
    await addFreqV2(store, home);
    r = await app.inject({ method: 'POST', url: '/v1/online', payload: { ids: ['w1'], features: ['word_freq'] } });
    expect(r.statusCode).toBe(409);
    expect(r.json().error).toMatchObject({ code: 'NL_AMBIGUOUS_FEATURE', message: expect.stringContaining('word_freq@v2') });
    await app.close();
    await store.close();
  });

  it('apply warns, and needs --yes off a terminal, when a new variant would make a served bare name ambiguous', async () => {
    const { store, home } = await homeWithTwoPriceVariants();
    await store.close();
    const defs = wordDefs(8);
    defs.features.push({ ...defs.features[1], variant: 'v2' } as (typeof defs.features)[number]);
    writeDefs(home, defs, 'v2.yaml');
    const r = cli(home, 'apply', 'v2.yaml');
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      'warning: bare word_freq answers from word_freq@v1 now; with word_freq@v2 beside it and no alias prod, it is refused (NL_AMBIGUOUS_FEATURE). Add the alias { feature: word_freq, name: prod, variant: v1 }',
    );
    expect(r.err).toContain('error NL_CONFIRMATION_REQUIRED');
    expect(cli(home, 'list', 'features').out).not.toContain('word_freq@v2');
    // With the alias in the same file nothing changes for callers: no warning.
    defs.aliases.push({ feature: 'word_freq', name: 'prod', variant: 'v1' });
    writeDefs(home, defs, 'v2-prod.yaml');
    const ok = cli(home, 'apply', 'v2-prod.yaml');
    expect(ok.code, ok.err).toBe(0);
    expect(ok.err).not.toContain('warning');
    expect(JSON.parse(cli(home, 'nearest', 'word_vec', '--id', 'w1', '--k', '1', '--include-features', 'word_freq').out).variants.word_freq).toBe(
      'word_freq@v1',
    );
  });
});
