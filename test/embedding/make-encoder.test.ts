import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY, makeTiny, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;

beforeAll(() => {
  tmp = tempDir();
});

afterAll(() => tmp.cleanup());

describe('make-encoder', () => {
  it('writes the same bytes for the same seed and different weights for another seed', () => {
    const a = makeTiny(tmp.dir, 'a');
    const b = makeTiny(tmp.dir, 'b');
    const c = makeTiny(tmp.dir, 'c', { seed: 2 });
    for (const file of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx']) {
      expect(readFileSync(join(a, file)).equals(readFileSync(join(b, file))), file).toBe(true);
    }
    expect(readFileSync(join(a, 'onnx/model.onnx')).equals(readFileSync(join(c, 'onnx/model.onnx')))).toBe(false);
  });

  it('writes a config and a tokenizer that agree on the vocabulary', () => {
    const dir = makeTiny(tmp.dir, 'vocab', { vocab: 3000 });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const tokenizer = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'bert', vocab_size: 3000, hidden_size: TINY.hidden, num_hidden_layers: TINY.layers });
    const ids = Object.values(tokenizer.model.vocab as Record<string, number>);
    expect(ids.length).toBe(3000);
    expect(Math.max(...ids)).toBe(2999);
    expect(tokenizer.model.vocab['[PAD]']).toBe(0);
  });
});
