import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOnnxModel } from '../../src/providers/embedding/onnx.ts';
import type { EmbeddingModel, ModelSpec } from '../../src/providers/embedding/types.ts';
import { SENTENCES, TINY, cosine, makeTiny, maxAbsDiff, norm, spec, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;
let path: string;
const open: EmbeddingModel[] = [];

async function load(overrides: Partial<ModelSpec> = {}): Promise<EmbeddingModel> {
  const model = createOnnxModel(spec('onnx', path, overrides));
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

// Early entries of the generated vocabulary: each is one token.
const ONE_TOKEN_WORDS = 'the of and to a in is it you that he was for on are with as his they be at one have this from'.split(' ');
const words = (n: number) => Array.from({ length: n }, (_, i) => ONE_TOKEN_WORDS[i % ONE_TOKEN_WORDS.length]).join(' ');

describe('onnx runtime', () => {
  it('knows its dims after open', async () => {
    const model = await load();
    expect(model.runtime).toBe('onnx');
    expect(model.dims).toBe(TINY.hidden);
    const [v] = await model.embed(['hello']);
    expect(v).toBeInstanceOf(Float32Array);
    expect(v.length).toBe(TINY.hidden);
  });

  it('mean pooling equals a hand average of last_hidden_state over the attention mask', async () => {
    const model = await load();
    const texts = ['the cat', 'the cat sat on the mat today'];
    const tokenizer = new Tokenizer(
      JSON.parse(readFileSync(join(path, 'tokenizer.json'), 'utf8')),
      JSON.parse(readFileSync(join(path, 'tokenizer_config.json'), 'utf8')),
    );
    const ids: number[][] = texts.map((t) => tokenizer.encode(t).ids);
    expect(ids[0].length).toBeLessThan(ids[1].length);
    const seq = ids[1].length;
    const flat = (f: (row: number[], t: number) => number) =>
      BigInt64Array.from(ids.flatMap((row) => Array.from({ length: seq }, (_, t) => BigInt(f(row, t)))));
    const session = await ort.InferenceSession.create(join(path, 'onnx', 'model.onnx'));
    const out = await session.run({
      input_ids: new ort.Tensor(
        'int64',
        flat((row, t) => row[t] ?? 0),
        [2, seq],
      ),
      attention_mask: new ort.Tensor(
        'int64',
        flat((row, t) => (t < row.length ? 1 : 0)),
        [2, seq],
      ),
      token_type_ids: new ort.Tensor('int64', new BigInt64Array(2 * seq), [2, seq]),
    });
    await session.release();
    const hidden = out.last_hidden_state.data as Float32Array;
    const h = TINY.hidden!;
    const expected = ids.map((row, b) => {
      const v = new Float32Array(h);
      for (let t = 0; t < row.length; t++) for (let d = 0; d < h; d++) v[d] += hidden[(b * seq + t) * h + d] / row.length;
      return v;
    });
    const got = await model.embed(texts);
    for (let b = 0; b < 2; b++) expect(maxAbsDiff(got[b], expected[b])).toBeLessThan(1e-5);

    const cls = await load({ pooling: 'cls' });
    const [first] = await cls.embed([texts[1]]);
    expect(maxAbsDiff(first, hidden.slice(seq * h, seq * h + h))).toBeLessThan(1e-5);
  });

  it("a text's vector does not depend on the batch it is in", async () => {
    const model = await load();
    const alone = await Promise.all(SENTENCES.map(async (s) => (await model.embed([s]))[0]));
    const long = [words(60), 'x', words(30), 'tiny'];
    const together = await model.embed([...long.slice(0, 2), ...SENTENCES, ...long.slice(2)]);
    SENTENCES.forEach((_, i) => expect(maxAbsDiff(together[i + 2], alone[i])).toBeLessThan(1e-5));
  });

  it('returns vectors in input order across internal batches', async () => {
    const model = await load();
    const texts = Array.from({ length: 75 }, (_, i) => words(1 + ((i * 37) % 50)));
    const batched = await model.embed(texts);
    for (const i of [0, 1, 17, 40, 74]) expect(maxAbsDiff(batched[i], (await model.embed([texts[i]]))[0])).toBeLessThan(1e-5);
  });

  it('normalizes to unit length when asked, and only then', async () => {
    const raw = await load();
    const unit = await load({ normalize: true });
    const [r] = await raw.embed([SENTENCES[2]]);
    const [u] = await unit.embed([SENTENCES[2]]);
    expect(Math.abs(norm(r) - 1)).toBeGreaterThan(1e-3);
    expect(norm(u)).toBeCloseTo(1, 5);
    expect(cosine(r, u)).toBeCloseTo(1, 6);
  });

  it('truncates long text to maxTokens, keeping the special tokens', async () => {
    const model = await load({ maxTokens: 16 });
    // 14 words + [CLS] + [SEP] fill 16 tokens exactly.
    const [atLimit, beyond, huge, shorter] = await model.embed([words(14), words(500), words(50_000), words(13)]);
    expect(maxAbsDiff(beyond, atLimit)).toBeLessThan(1e-5);
    expect(maxAbsDiff(huge, atLimit)).toBeLessThan(1e-5);
    expect(maxAbsDiff(shorter, atLimit)).toBeGreaterThan(1e-4);
  });

  it('never fails on long text: maxTokens above the position table is capped, unbroken text is fine', async () => {
    const model = await load({ maxTokens: 100_000 });
    const capped = await load({ maxTokens: TINY.maxPositions });
    const [a, noSpaces] = await model.embed([words(5_000), 'z'.repeat(200_000)]);
    const [b] = await capped.embed([words(5_000)]);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
    expect(noSpaces.length).toBe(TINY.hidden);
  });

  it('gives the same vectors with more intra-op threads', async () => {
    const one = await load();
    const two = await load({ threads: 2 });
    const a = await one.embed(SENTENCES);
    const b = await two.embed(SENTENCES);
    a.forEach((v, i) => expect(maxAbsDiff(v, b[i])).toBeLessThan(1e-4));
  });

  it('feeds token_type_ids only to a model that has that input', async () => {
    const withoutTypes = makeTiny(tmp.dir, 'no-types', { tokenTypes: false });
    const session = await ort.InferenceSession.create(join(withoutTypes, 'onnx', 'model.onnx'));
    expect(session.inputNames).not.toContain('token_type_ids');
    await session.release();
    const model = createOnnxModel(spec('onnx', withoutTypes));
    await model.open();
    open.push(model);
    const [v] = await model.embed(['hello world']);
    expect(v.length).toBe(TINY.hidden);
  });
});
