import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelFingerprint, probeModel } from '../../src/providers/embedding/fingerprint.ts';
import { expectCode, makeTiny, spec, tempDir } from './helpers.ts';

let tmp: ReturnType<typeof tempDir>;
let path: string;

beforeAll(() => {
  tmp = tempDir();
  path = makeTiny(tmp.dir);
});

afterAll(() => tmp.cleanup());

describe('modelFingerprint', () => {
  it('is a sha256 that depends on file contents, not on where the folder is', async () => {
    const a = await modelFingerprint(spec('onnx', path));
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    const copy = join(tmp.dir, 'copy');
    cpSync(path, copy, { recursive: true });
    expect(await modelFingerprint(spec('onnx', copy))).toBe(a);
    expect(await modelFingerprint(spec('transformers', copy))).toBe(a);
  });

  it('changes when one byte of the weights or the tokenizer changes', async () => {
    const base = await modelFingerprint(spec('onnx', path));
    const weights = join(tmp.dir, 'weights');
    cpSync(path, weights, { recursive: true });
    const graph = readFileSync(join(weights, 'onnx', 'model.onnx'));
    graph[graph.length - 1] ^= 1;
    writeFileSync(join(weights, 'onnx', 'model.onnx'), graph);
    expect(await modelFingerprint(spec('onnx', weights))).not.toBe(base);

    const tokenizer = join(tmp.dir, 'tokenizer');
    cpSync(path, tokenizer, { recursive: true });
    writeFileSync(join(tokenizer, 'tokenizer.json'), readFileSync(join(path, 'tokenizer.json'), 'utf8').replace('"lowercase":true', '"lowercase":false'));
    expect(await modelFingerprint(spec('onnx', tokenizer))).not.toBe(base);
  });

  it('ignores files the runtimes do not read', async () => {
    const base = await modelFingerprint(spec('onnx', path));
    const extra = join(tmp.dir, 'extra');
    cpSync(path, extra, { recursive: true });
    writeFileSync(join(extra, 'README.md'), '# notes');
    writeFileSync(join(extra, 'onnx', 'model_quantized.onnx'), 'other weights');
    expect(await modelFingerprint(spec('onnx', extra))).toBe(base);
  });

  it('fingerprints the packaged USE model', async () => {
    const a = await modelFingerprint(spec('use', undefined));
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(await modelFingerprint(spec('use', undefined))).toBe(a);
  });

  it('rejects a folder that does not exist', async () => {
    await expectCode(modelFingerprint(spec('onnx', join(tmp.dir, 'missing'))), 'NL_MODEL_INVALID');
  });
});

describe('probeModel', () => {
  it('reports dims for each runtime', async () => {
    expect(await probeModel(spec('onnx', path))).toEqual({ dims: 32 });
    expect(await probeModel(spec('transformers', path))).toEqual({ dims: 32 });
    expect(await probeModel(spec('use', undefined))).toEqual({ dims: 512 });
  });

  it('fails with the coded error of a broken model', async () => {
    await expectCode(probeModel(spec('onnx', join(tmp.dir, 'missing'))), 'NL_MODEL_INVALID');
  });
});
