import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOnnxModel } from '../../src/providers/embedding/onnx.ts';
import { createTransformersModel } from '../../src/providers/embedding/transformers.ts';
import type { EmbeddingModel, ModelSpec } from '../../src/providers/embedding/types.ts';
import { createEmbeddingModel } from '../../src/providers/index.ts';
import { expectCode, makeTiny, spec, tempDir } from './helpers.ts';

const RUNTIMES = { onnx: createOnnxModel, transformers: createTransformersModel } as const;

let tmp: ReturnType<typeof tempDir>;
let good: string;
let bigVocab: string;

beforeAll(() => {
  tmp = tempDir();
  good = makeTiny(tmp.dir, 'good');
  bigVocab = makeTiny(tmp.dir, 'big-vocab', { vocab: 2000 });
});

afterAll(() => tmp.cleanup());

/** A copy of the good model, changed by `edit`. */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(tmp.dir, name);
  cpSync(good, dir, { recursive: true });
  edit(dir);
  return dir;
}

function open(runtime: keyof typeof RUNTIMES, path: string, overrides: Partial<ModelSpec> = {}): Promise<EmbeddingModel> {
  const model = RUNTIMES[runtime](spec(runtime, path, overrides));
  return model.open().then(() => model);
}

for (const runtime of ['onnx', 'transformers'] as const) {
  describe(`${runtime} runtime errors`, () => {
    it('rejects empty, blank and non-string text with NL_BAD_TEXT', async () => {
      const model = await open(runtime, good);
      try {
        for (const bad of [[''], ['ok', '   '], [7], [null], [undefined], [{ text: 'x' }]]) {
          await expectCode(model.embed(bad as string[]), 'NL_BAD_TEXT');
        }
        await expectCode(model.embed('not an array' as unknown as string[]), 'NL_BAD_TEXT');
        expect(await model.embed([])).toEqual([]);
      } finally {
        await model.close();
      }
    });

    const required =
      runtime === 'onnx' ? ['config.json', 'tokenizer.json', 'onnx/model.onnx'] : ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx'];
    for (const file of required) {
      it(`names a missing ${file} in NL_MODEL_INVALID`, async () => {
        const dir = variant(`${runtime}-no-${file.replace('/', '-')}`, (d) => rmSync(join(d, file)));
        await expectCode(open(runtime, dir), 'NL_MODEL_INVALID', new RegExp(`missing file ${file.replace('.', '\\.')}`));
      });
    }

    it('rejects a missing folder with NL_MODEL_INVALID', async () => {
      await expectCode(open(runtime, join(tmp.dir, 'does-not-exist')), 'NL_MODEL_INVALID', /does not exist/);
    });

    it("rejects a tokenizer whose vocabulary is not the model's", async () => {
      const dir = variant(`${runtime}-foreign-tokenizer`, (d) => cpSync(join(bigVocab, 'tokenizer.json'), join(d, 'tokenizer.json')));
      await expectCode(open(runtime, dir), 'NL_MODEL_INVALID', /tokenizer/);
    });
  });
}

describe('onnx runtime: models that lie or are broken', () => {
  it('rejects token ids beyond the embedding table even when config.json agrees with the tokenizer', async () => {
    const dir = variant('lying-config', (d) => {
      cpSync(join(bigVocab, 'tokenizer.json'), join(d, 'tokenizer.json'));
      const config = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, vocab_size: 2000 }));
    });
    await expectCode(open('onnx', dir), 'NL_MODEL_INVALID', /do not fit/);
  });

  it('rejects a config.json vocab_size that differs from the tokenizer', async () => {
    const dir = variant('config-vocab', (d) => {
      const config = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, vocab_size: 1500 }));
    });
    await expectCode(open('onnx', dir), 'NL_MODEL_INVALID', /vocab_size is 1500/);
  });

  it('rejects a corrupt graph and bad JSON', async () => {
    const corrupt = variant('corrupt-onnx', (d) => writeFileSync(join(d, 'onnx', 'model.onnx'), 'not a protobuf'));
    await expectCode(open('onnx', corrupt), 'NL_MODEL_INVALID', /onnx\/model\.onnx/);
    const badJson = variant('bad-json', (d) => writeFileSync(join(d, 'tokenizer.json'), '{'));
    await expectCode(open('onnx', badJson), 'NL_MODEL_INVALID', /tokenizer\.json/);
  });

  it('rejects a model without a path and an unknown runtime', async () => {
    await expectCode(open('onnx', undefined as unknown as string), 'NL_MODEL_INVALID', /path/);
    await expectCode(createEmbeddingModel(spec('tensorflow', good)), 'NL_UNSUPPORTED');
  });
});
