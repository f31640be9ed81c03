import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDefinitions, validateDefinitions } from '../src/config.ts';
import { NearlineError } from '../src/errors.ts';
import { tempDir, wordDefs, writeDefs } from './helpers/fixtures.ts';

function errorOf(fn: () => unknown): NearlineError {
  try {
    fn();
  } catch (e) {
    return e as NearlineError;
  }
  throw new Error('expected an error');
}

describe('definitions', () => {
  it('loads YAML, JSON and TypeScript modules to the same definitions, with paths resolved against the file', async () => {
    const dir = tempDir();
    const yaml = await loadDefinitions(writeDefs(dir, wordDefs(8), 'defs.yaml'));
    const json = await loadDefinitions(writeDefs(dir, wordDefs(8), 'defs.json'));
    writeFileSync(path.join(dir, 'defs.ts'), `const defs: Record<string, unknown> = ${JSON.stringify(wordDefs(8))};\nexport default defs;\n`);
    const ts = await loadDefinitions(path.join(dir, 'defs.ts'));
    expect(json).toEqual(yaml);
    expect(ts).toEqual(yaml);
    expect(yaml.sources[0].path).toBe(path.join(dir, 'words.jsonl'));
    expect(yaml.features[0].kind === 'embedding' && yaml.features[0].index).toEqual({ M: 16, efConstruction: 200, ef: 100 });
    expect(yaml.features[0].source).toEqual({ name: 'words', variant: 'v1' });
  });

  it('names the file, the object and the field in every error', () => {
    const bad = wordDefs(8);
    (bad.features[0] as Record<string, unknown>).dims = 'eight';
    const e = errorOf(() => validateDefinitions(bad, 'defs.yaml', '/tmp'));
    expect(e.code).toBe('NL_BAD_DEFINITION');
    expect(e.message).toContain('defs.yaml');
    expect(e.message).toContain('features[0] (word_vec@v1)');
    expect(e.message).toContain('"dims"');
  });

  it.each([
    ['an unknown field', (d: any) => (d.features[0].dimz = 3), 'dimz'],
    ['an unknown section', (d: any) => (d.featurez = []), 'featurez'],
    ['a bad metric', (d: any) => (d.features[0].metric = 'manhattan'), 'metric'],
    ['vector and text together', (d: any) => (d.features[0].text = { column: 't', model: 'm@1' }), 'exactly one'],
    ['a source ref without variant', (d: any) => (d.features[0].source = 'words'), 'name@variant'],
    ['a duplicate feature variant', (d: any) => d.features.push({ ...d.features[0] }), 'defined twice'],
    ['a scalar without type', (d: any) => delete d.features[1].type, 'type'],
    ['a bad name', (d: any) => (d.entities[0].name = '9 lives'), 'not a valid name'],
    ['a csv source without a path', (d: any) => (d.sources[0] = { name: 's', variant: 'v1', kind: 'csv' }), 'field "path": missing: a csv source needs it'],
    [
      'a sqlite source without a table',
      (d: any) => (d.sources[0] = { name: 's', variant: 'v1', kind: 'sqlite', path: 'x.db' }),
      'field "table": missing: a sqlite source needs it',
    ],
    ['an option a source kind does not have', (d: any) => (d.sources[0].delimiter = ';'), 'field "delimiter": unknown option for a jsonl source'],
    ['a non-positive index parameter', (d: any) => (d.features[0].index.M = 0), '"M"'],
    ['an unknown quantization', (d: any) => (d.features[0].index.quantization = 'int4'), 'expected one of none, int8'],
  ])('rejects %s', (_label, mutate, needle) => {
    const defs = wordDefs(8);
    mutate(defs);
    const e = errorOf(() => validateDefinitions(defs, 'defs.yaml', '/tmp'));
    expect(e.code).toBe('NL_BAD_DEFINITION');
    expect(e.message).toContain(needle);
  });

  it('reports a missing file and unparsable YAML as definition errors', async () => {
    await expect(loadDefinitions('/nonexistent/defs.yaml')).rejects.toMatchObject({
      code: 'NL_BAD_DEFINITION',
      message: expect.stringContaining('file not found'),
    });
    const dir = tempDir();
    writeFileSync(path.join(dir, 'bad.yaml'), 'features: [ {name: x\n');
    await expect(loadDefinitions(path.join(dir, 'bad.yaml'))).rejects.toMatchObject({ code: 'NL_BAD_DEFINITION' });
  });
});
