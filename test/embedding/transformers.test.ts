import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOnnxModel } from '../../src/providers/embedding/onnx.ts';
import { createTransformersModel } from '../../src/providers/embedding/transformers.ts';
import type { EmbeddingModel, ModelSpec } from '../../src/providers/embedding/types.ts';
import { SENTENCES, TINY, cosine, makeTiny, maxAbsDiff, norm, spec, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;
let path: string;
const open: EmbeddingModel[] = [];

async function load(runtime: 'onnx' | 'transformers', overrides: Partial<ModelSpec> = {}): Promise<EmbeddingModel> {
  const s = spec(runtime, path, overrides);
  const model = runtime === 'onnx' ? createOnnxModel(s) : createTransformersModel(s);
  await model.open();
  open.push(model);
  return model;
}

beforeAll(() => {
  tmp = tempDir();
  path = makeTiny(tmp.dir);
});

afterAll(async () => {
  for (const m of open) await m.close();
  tmp.cleanup();
});

describe('transformers runtime', () => {
  it('loads a local folder without the hub and knows its dims', async () => {
    const model = await load('transformers');
    expect(model.runtime).toBe('transformers');
    expect(model.dims).toBe(TINY.hidden);
  });

  for (const pooling of ['mean', 'cls'] as const) {
    it(`gives the onnx runtime's vectors (${pooling} pooling)`, async () => {
      const onnx = await load('onnx', { pooling });
      const tjs = await load('transformers', { pooling });
      const a = await onnx.embed(SENTENCES);
      const b = await tjs.embed(SENTENCES);
      a.forEach((v, i) => expect(cosine(v, b[i])).toBeGreaterThanOrEqual(0.999));
    });
  }

  it('passes normalization through', async () => {
    const unit = await load('transformers', { normalize: true });
    const raw = await load('transformers');
    const [u] = await unit.embed([SENTENCES[0]]);
    const [r] = await raw.embed([SENTENCES[0]]);
    expect(norm(u)).toBeCloseTo(1, 5);
    expect(Math.abs(norm(r) - 1)).toBeGreaterThan(1e-3);
  });

  it('truncates long text to maxTokens and keeps input order', async () => {
    const short = await load('transformers', { maxTokens: 16 });
    const long = 'the of and to a in is it you that '.repeat(2_000);
    const [first, , last] = await short.embed([long, 'hello', long]);
    expect(first.length).toBe(TINY.hidden);
    expect(maxAbsDiff(first, last)).toBeLessThan(1e-5);
    const [hello] = await short.embed(['hello']);
    const [, again] = await short.embed([long, 'hello']);
    expect(maxAbsDiff(hello, again)).toBeLessThan(1e-5);
  });
});
