import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { providerError } from '../../errors.ts';
import type { Vector } from '../../types.ts';
import {
  batchesByLength,
  checkTexts,
  effectiveMaxTokens,
  embedInBatches,
  invalidModel,
  l2normalize,
  modelLabel,
  readModelFolder,
  readOptionalJson,
  tokenBudget,
  vocabMismatch,
} from './common.ts';
import { loadTokenizer, type TextTokenizer } from './tokenizer.ts';
import type { EmbeddingModel, ModelSpec, Pooling } from './types.ts';

/** The files the `onnx` runtime reads from a model folder. */
export const ONNX_MODEL_FILES = ['config.json', 'tokenizer.json', 'onnx/model.onnx'] as const;

/** The inputs this runtime can feed an encoder graph. */
const FED_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids'];

/** Session options shared with the benchmark's raw session, so both sides run the same graph. */
export function onnxSessionOptions(threads = 1): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Run failures reach the caller as exceptions with the same message; the native log would repeat them.
    logSeverityLevel: 4,
  };
}

/**
 * Mean (attention-mask weighted) or CLS pooling of token vectors `[batch, seq, hidden]`.
 * `lengths[b]` is text b's token count; its tokens are the first `lengths[b]` positions.
 */
export function poolTokens(hidden: Float32Array, lengths: readonly number[], seq: number, dims: number, pooling: Pooling): Float32Array[] {
  return lengths.map((len, b) => {
    const out = new Float32Array(dims);
    const base = b * seq * dims;
    if (pooling === 'cls') {
      out.set(hidden.subarray(base, base + dims));
      return out;
    }
    for (let t = 0; t < len; t++) {
      const row = base + t * dims;
      for (let d = 0; d < dims; d++) out[d] += hidden[row + d];
    }
    const inv = 1 / len;
    for (let d = 0; d < dims; d++) out[d] *= inv;
    return out;
  });
}

class OnnxModel implements EmbeddingModel {
  readonly runtime = 'onnx';
  dims = 0;
  private session?: ort.InferenceSession;
  private tokenizer?: TextTokenizer;
  private feedTypeIds = false;
  private output = '';

  constructor(private readonly spec: ModelSpec) {}

  async open(): Promise<void> {
    if (this.session) return;
    const spec = this.spec;
    const config = readModelFolder(spec, ONNX_MODEL_FILES);
    const dir = spec.path!;
    const tokenizerConfig = readOptionalJson(spec, join(dir, 'tokenizer_config.json'), 'tokenizer_config.json');
    const maxTokens = effectiveMaxTokens(spec, config, tokenizerConfig);
    const tokenizer = loadTokenizer(spec, dir, maxTokens);
    const mismatch = vocabMismatch(tokenizer.size, config.vocab_size);
    if (mismatch) throw invalidModel(spec, mismatch);

    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'), onnxSessionOptions(spec.threads));
    } catch (e) {
      throw invalidModel(spec, `onnx/model.onnx cannot be loaded: ${(e as Error).message}`, e);
    }
    const inputs = session.inputNames.join(', ');
    const missing = ['input_ids', 'attention_mask'].find((n) => !session.inputNames.includes(n));
    const unknown = session.inputNames.find((n) => !FED_INPUTS.includes(n));
    if (missing || unknown) {
      await session.release();
      throw invalidModel(
        spec,
        `onnx/model.onnx ${missing ? `has no ${missing} input` : `needs input ${unknown}, which an encoder is not fed`} (inputs: ${inputs})`,
      );
    }
    this.feedTypeIds = session.inputNames.includes('token_type_ids');
    this.output = ['last_hidden_state', 'token_embeddings', 'sentence_embedding'].find((n) => session.outputNames.includes(n)) ?? session.outputNames[0];
    this.session = session;
    this.tokenizer = tokenizer;

    // Probe with the tokenizer's largest id: an embedding table smaller than the vocabulary fails here,
    // at registration, instead of on the first text that uses a rare token. The probe also gives dims.
    try {
      const [probe] = await this.run([[...tokenizer.encode('probe'), tokenizer.maxId]]);
      this.dims = probe.length;
    } catch (e) {
      await this.close();
      const message = (e as Error).message;
      const reason = /indices|out of (data )?bounds|out of range/i.test(message)
        ? `the tokenizer's ids do not fit onnx/model.onnx's embedding table: ${message}`
        : `a probe run of onnx/model.onnx failed: ${message}`;
      throw invalidModel(spec, reason, e);
    }
    if (this.dims === 0) {
      await this.close();
      throw invalidModel(spec, 'onnx/model.onnx returns empty vectors');
    }
  }

  async close(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.tokenizer = undefined;
    await session?.release();
  }

  async embed(texts: string[]): Promise<Vector[]> {
    checkTexts(texts);
    const tokenizer = this.tokenizer;
    if (!tokenizer) throw providerError(modelLabel(this.spec), new Error('model is not open'));
    const ids = texts.map((t) => tokenizer.encode(t));
    const batches = batchesByLength(
      ids.map((x) => x.length),
      tokenBudget(this.spec.threads),
    );
    const vectors = await embedInBatches(texts.length, batches, (batch) => this.run(batch.map((i) => ids[i])));
    if (this.spec.normalize) for (const v of vectors) l2normalize(v);
    return vectors;
  }

  /** One session run on a batch of token id lists, padded to the longest; returns pooled vectors. */
  private async run(batch: number[][]): Promise<Float32Array[]> {
    const session = this.session!;
    const n = batch.length;
    let seq = 0;
    for (const x of batch) if (x.length > seq) seq = x.length;
    const inputIds = new BigInt64Array(n * seq);
    const mask = new BigInt64Array(n * seq);
    for (let b = 0; b < n; b++) {
      const x = batch[b];
      const row = b * seq;
      for (let t = 0; t < x.length; t++) {
        inputIds[row + t] = BigInt(x[t]);
        mask[row + t] = 1n;
      }
    }
    const dims = [n, seq];
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, dims),
      attention_mask: new ort.Tensor('int64', mask, dims),
    };
    if (this.feedTypeIds) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(n * seq), dims);
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await session.run(feeds, [this.output]);
    } catch (e) {
      throw providerError(modelLabel(this.spec), e);
    }
    const out = result[this.output];
    const data = out.data as Float32Array;
    if (out.dims.length === 2) {
      // Already a sentence vector (a graph exported with its pooling layer).
      const width = Number(out.dims[1]);
      return batch.map((_, b) => data.slice(b * width, (b + 1) * width));
    }
    return poolTokens(
      data,
      batch.map((x) => x.length),
      seq,
      Number(out.dims[2]),
      this.spec.pooling,
    );
  }
}

/** The `onnx` runtime: onnxruntime-node on a Hugging Face-layout folder (config.json, tokenizer.json, onnx/model.onnx). */
export function createOnnxModel(spec: ModelSpec): EmbeddingModel {
  return new OnnxModel(spec);
}
