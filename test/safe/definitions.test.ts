import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDefinitions } from '../../src/config.ts';
import { closest } from '../../src/store/columns.ts';
import { FeatureStore } from '../../src/store/feature-store.ts';
import { makeEncoder } from '../../scripts/make-encoder.ts';
import { TINY } from '../embedding/helpers.ts';
import { tempDir, writeDefs } from '../helpers/fixtures.ts';
import { cli } from './helpers.ts';

const PRODUCTS = Array.from({ length: 40 }, (_, i) => ({
  id: `p${i}`,
  title: ['Red shoe', 'Blue shirt', 'Desk lamp', 'Oak chair'][i % 4] + ` ${i}`,
  description: ['leather, size 42', 'cotton, slim fit', 'LED, warm light', 'solid oak, for dining'][i % 4],
  price: 10 + i,
  category: ['shoes', 'shirts', 'lamps', 'chairs'][i % 4],
  in_stock: i % 3 ? 'true' : 'false',
}));

const csv = () =>
  [
    'id,title,description,price,category,in_stock',
    ...PRODUCTS.map((p) => [p.id, p.title, `"${p.description}"`, p.price, p.category, p.in_stock].join(',')),
  ].join('\n') + '\n';

function catalogue(text: Record<string, unknown>, extra: Record<string, unknown> = {}, source = 'products@v1') {
  return {
    providers: [
      { name: 'local', kind: 'hnsw' },
      { name: 'kv', kind: 'sqlite' },
    ],
    entities: [{ name: 'product', key: 'id' }],
    sources: [
      { name: 'products', variant: 'v1', kind: 'csv', path: 'products.csv' },
      { name: 'products', variant: 'v2', kind: 'jsonl', path: 'products.jsonl' },
      { name: 'products', variant: 'v3', kind: 'sqlite', path: 'products.db', table: 'products' },
    ],
    models: [{ name: 'tiny', version: '1', runtime: 'onnx', path: 'tiny', pooling: 'mean', normalize: true, maxTokens: 64 }],
    features: [
      {
        name: 'product_vec',
        variant: 'v1',
        entity: 'product',
        source,
        kind: 'embedding',
        text: { model: 'tiny@1', ...text },
        dims: TINY.hidden,
        provider: 'local',
        metadata: ['category', 'in_stock'],
        ...extra,
      },
      { name: 'product_price', variant: 'v1', entity: 'product', source, kind: 'scalar', column: 'price', type: 'float', provider: 'kv' },
    ],
  };
}

describe('apply checks every referenced column against the source (regression: titel, categroy and prise were accepted)', () => {
  let home: string;

  beforeAll(() => {
    home = tempDir();
    makeEncoder({ ...TINY, out: path.join(home, 'tiny') });
    writeFileSync(path.join(home, 'products.csv'), csv());
    writeFileSync(path.join(home, 'products.jsonl'), PRODUCTS.map((p) => JSON.stringify(p)).join('\n') + '\n');
    const db = new Database(path.join(home, 'products.db'));
    db.exec('CREATE TABLE products (id TEXT, title TEXT, description TEXT, price REAL, category TEXT, in_stock TEXT)');
    const insert = db.prepare('INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)');
    for (const p of PRODUCTS) insert.run(p.id, p.title, p.description, p.price, p.category, p.in_stock);
    db.close();
  });

  const refused = async (defs: unknown, message: RegExp) => {
    const store = FeatureStore.open({ home: tempDir() });
    try {
      await expect(store.apply(await loadDefinitions(writeDefs(home, defs, 'typo.yaml')))).rejects.toMatchObject({
        code: 'NL_BAD_DEFINITION',
        message: expect.stringMatching(message),
      });
      expect(await store.registry.listProviders()).toEqual([]);
    } finally {
      await store.close();
    }
  };

  it('a text column typo in a CSV: the header, and a did-you-mean', async () => {
    await refused(
      catalogue({ column: 'titel' }),
      /feature product_vec@v1: column "titel" \(text\) is not in products\.csv \(have: id, title, description, price, category, in_stock\); did you mean "title"\?/,
    );
  });

  it('a metadata typo, a scalar column typo, a template placeholder typo and an entity key typo', async () => {
    await refused(
      catalogue({ column: 'title' }, { metadata: ['categroy'] }),
      /column "categroy" \(metadata\) is not in products\.csv.*did you mean "category"/,
    );
    const prise = catalogue({ column: 'title' });
    prise.features[1].column = 'prise';
    await refused(prise, /feature product_price@v1: column "prise" \(column\).*did you mean "price"/);
    await refused(catalogue({ template: '{title}. {descripton}' }), /column "descripton" \(a text.template placeholder\).*did you mean "description"/);
    const key = catalogue({ column: 'title' });
    key.entities[0].key = 'ID';
    await refused(key, /column "ID" \(the key of entity product\).*did you mean "id"/);
  });

  it('reads the first rows of a JSON Lines source and the columns of a sqlite table', async () => {
    await refused(
      catalogue({ columns: ['title', 'desc'] }, {}, 'products@v2'),
      /column "desc" \(text\) is not in products\.jsonl \(have: id, title, description/,
    );
    await refused(catalogue({ column: 'name' }, {}, 'products@v3'), /column "name" \(text\) is not in table products of products\.db/);
  });

  it('a source that cannot be read fails apply, naming it', async () => {
    const defs = catalogue({ column: 'title' });
    defs.sources[0].path = 'missing.csv';
    await refused(defs, /source products@v1: cannot read missing\.csv/);
  });

  it('the CLI prints the coded error and writes nothing', () => {
    const fresh = tempDir();
    makeEncoder({ ...TINY, out: path.join(fresh, 'tiny') });
    writeFileSync(path.join(fresh, 'products.csv'), csv());
    writeDefs(fresh, catalogue({ column: 'titel' }));
    const r = cli(fresh, 'apply', 'defs.yaml');
    expect(r.code).toBe(1);
    expect(r.err).toContain('error NL_BAD_DEFINITION: feature product_vec@v1: column "titel" (text) is not in products.csv');
    expect(cli(fresh, 'list', 'features').out).toBe('(none)\n');
  });

  it('suggests only near names', () => {
    expect(closest('titel', ['id', 'title'])).toBe('title');
    expect(closest('zzzzzz', ['id', 'title'])).toBeUndefined();
    expect(closest('Price', ['price'])).toBe('price');
  });
});

describe('texts from several columns (regression: users pre-concatenated title and description in the CSV)', () => {
  let home: string;
  let store: FeatureStore;

  beforeAll(async () => {
    home = tempDir();
    makeEncoder({ ...TINY, out: path.join(home, 'tiny') });
    writeFileSync(path.join(home, 'products.csv'), csv());
    const defs = catalogue({ template: '{title}. {description}' });
    (defs.features as Array<Record<string, unknown>>).push({
      ...defs.features[0],
      variant: 'v2',
      text: { columns: ['title', 'description'], model: 'tiny@1' },
    });
    store = FeatureStore.open({ home });
    await store.apply(await loadDefinitions(writeDefs(home, defs)));
    for (const ref of ['product_vec@v1', 'product_vec@v2']) expect((await store.materialize(ref, { progress: false })).rows).toBe(40);
    return () => store.close();
  });

  it('embeds the template (or the columns joined by a newline) built from each row', async () => {
    const p = PRODUCTS[5];
    const [fromTemplate, fromColumns] = await Promise.all(['product_vec@v1', 'product_vec@v2'].map((f) => store.online([p.id], [f])));
    const { vectors } = await store.embed('tiny@1', [`${p.title}. ${p.description}`, `${p.title}\n${p.description}`]);
    const close = (a: unknown, b: Float32Array) => Array.from(a as Float32Array).forEach((x, i) => expect(x).toBeCloseTo(b[i], 5));
    close(fromTemplate[0].features['product_vec@v1'], vectors[0]);
    close(fromColumns[0].features['product_vec@v2'], vectors[1]);
    const hit = await store.nearest({ feature: 'product_vec@v1', k: 1, query: { text: `${p.title}. ${p.description}` } });
    expect(hit.hits[0]).toMatchObject({ id: p.id });
    expect(hit.hits[0].score).toBeCloseTo(1, 4);
  });

  it('rows pushed to the source are embedded through the same template and columns', async () => {
    const row = { id: 'p99', title: 'Green lamp', description: 'brass, dimmable', price: 30, category: 'lamps', in_stock: 'true' };
    await store.push('products', [row]);
    const got = await store.online(['p99'], ['product_vec@v1', 'product_vec@v2']);
    const { vectors } = await store.embed('tiny@1', ['Green lamp. brass, dimmable', 'Green lamp\nbrass, dimmable']);
    Array.from(got[0].features['product_vec@v1'] as Float32Array).forEach((x, i) => expect(x).toBeCloseTo(vectors[0][i], 5));
    Array.from(got[0].features['product_vec@v2'] as Float32Array).forEach((x, i) => expect(x).toBeCloseTo(vectors[1][i], 5));
    await expect(store.push('products', [{ ...row, id: 'p100', title: '', description: null }])).rejects.toMatchObject({
      message: expect.stringMatching(/product_vec@v1: the text built from template "\{title\}\. \{description\}" is empty/),
    });
  });

  it('is part of the definition and its lineage (show), and a different template is a new variant', async () => {
    const show = JSON.parse(cli(home, 'show', 'product_vec@v1').out);
    expect(show.text).toEqual({ template: '{title}. {description}', model: { name: 'tiny', version: '1' } });
    expect(show.lineage.text).toEqual({ template: '{title}. {description}', columns: ['title', 'description'], model: 'tiny@1' });
    // Regression test for "immutable once materialized" read as frozen rows: show states the exact contract.
    expect(show.mutability).toMatch(/^definition immutable .*; rows follow writes/);
    const changed = catalogue({ template: '{title}: {description}' });
    const { plan } = await store.apply(await loadDefinitions(writeDefs(home, changed, 'changed.yaml')));
    expect(plan.find((p) => p.name === 'product_vec@v1')).toMatchObject({ action: 'refused', code: 'NL_VARIANT_IMMUTABLE' });
  });

  it('rejects a malformed text definition with the field', async () => {
    const bad = async (text: Record<string, unknown>) => loadDefinitions(writeDefs(home, catalogue(text), 'bad.yaml'));
    await expect(bad({ column: 'title', template: '{title}' })).rejects.toThrow(
      /features\[0\] \(product_vec@v1\)\.text: field "column": a text feature needs exactly one of/,
    );
    await expect(bad({ template: '{title. {description}' })).rejects.toThrow(/field "template": unbalanced "\{"/);
    await expect(bad({ template: 'no placeholders' })).rejects.toThrow(/field "template": it names no column/);
  });
});
