import { join } from 'node:path';
import { env, pipeline, type FeatureExtractionPipeline } from '@huggingface/transformers';
import { NearlineError, providerError } from '../../errors.ts';
import type { Vector } from '../../types.ts';
import {
  batchesByLength,
  checkTexts,
  effectiveMaxTokens,
  embedInBatches,
  invalidModel,
  modelLabel,
  readModelFolder,
  readOptionalJson,
  tokenBudget,
  vocabMismatch,
} from './common.ts';
import type { EmbeddingModel, ModelSpec } from './types.ts';

/** The files the `transformers` runtime reads from a local folder (fp32 weights). */
export const TRANSFORMERS_MODEL_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx'] as const;

/** Where transformers.js caches hub downloads for `spec`: its cacheDir, or the library's default. */
export function transformersCacheDir(spec: ModelSpec): string | undefined {
  return spec.cacheDir ?? env.cacheDir ?? undefined;
}

type Tokenize = (texts: string[], options: Record<string, unknown>) => { input_ids: { dims: number[] } };

class TransformersModel implements EmbeddingModel {
  readonly runtime = 'transformers';
  dims = 0;
  private pipe?: FeatureExtractionPipeline;

  constructor(private readonly spec: ModelSpec) {}

  async open(): Promise<void> {
    if (this.pipe) return;
    const spec = this.spec;
    let modelId: string;
    let local: boolean;
    let maxTokens = spec.maxTokens;
    if (spec.path) {
      const config = readModelFolder(spec, TRANSFORMERS_MODEL_FILES);
      const tokenizerConfig = readOptionalJson(spec, join(spec.path, 'tokenizer_config.json'), 'tokenizer_config.json');
      maxTokens = effectiveMaxTokens(spec, config, tokenizerConfig);
      // An absolute path is not a hub id, so transformers.js reads it as is; localModelPath is not involved.
      modelId = spec.path;
      local = true;
    } else if (spec.hub) {
      modelId = spec.hub;
      local = false;
    } else {
      throw invalidModel(spec, 'runtime transformers needs a model folder (path) or a hub id (hub)');
    }

    let pipe: FeatureExtractionPipeline;
    try {
      pipe = (await pipeline('feature-extraction', modelId, {
        local_files_only: local,
        cache_dir: local ? undefined : transformersCacheDir(spec),
        dtype: 'fp32',
        device: 'cpu',
        session_options: { intraOpNumThreads: spec.threads ?? 1, interOpNumThreads: 1 },
      })) as FeatureExtractionPipeline;
    } catch (e) {
      if (!local) throw providerError(`transformers (${modelLabel(spec)})`, e);
      throw invalidModel(spec, `transformers.js cannot load ${modelId}: ${(e as Error).message}`, e);
    }

    const tokenizer = pipe.tokenizer as unknown as Tokenize & { get_vocab(): Map<string, number> | Record<string, number> };
    const vocab = tokenizer.get_vocab();
    const size = vocab instanceof Map ? vocab.size : Object.keys(vocab).length;
    const mismatch = vocabMismatch(size, (pipe.model.config as unknown as Record<string, unknown>).vocab_size);
    if (mismatch) {
      await pipe.dispose();
      throw invalidModel(spec, mismatch);
    }
    // The pipeline truncates to the tokenizer's model_max_length; the spec's maxTokens is applied on top
    // through the tokenizer's public max_length option rather than by editing its private config.
    const limit = maxTokens;
    pipe.tokenizer = new Proxy(pipe.tokenizer, {
      apply: (target, self, [texts, options]: [string[], Record<string, unknown>]) =>
        Reflect.apply(target as unknown as Tokenize, self, [texts, { ...options, max_length: limit }]),
    });
    this.pipe = pipe;

    try {
      const [probe] = await this.embedBatch(['probe']);
      this.dims = probe.length;
    } catch (e) {
      await this.close();
      throw e instanceof NearlineError ? e : invalidModel(spec, `probe embedding failed: ${(e as Error).message}`, e);
    }
  }

  async close(): Promise<void> {
    const pipe = this.pipe;
    this.pipe = undefined;
    await pipe?.dispose();
  }

  async embed(texts: string[]): Promise<Vector[]> {
    checkTexts(texts);
    if (!this.pipe) throw providerError(modelLabel(this.spec), new Error('model is not open'));
    // Character length orders texts well enough to group similar token lengths without tokenizing twice;
    // English averages about four characters per WordPiece token, which scales the token budget.
    const batches = batchesByLength(
      texts.map((t) => t.length),
      4 * tokenBudget(this.spec.threads),
    );
    return embedInBatches(texts.length, batches, (batch) => this.embedBatch(batch.map((i) => texts[i])));
  }

  private async embedBatch(texts: string[]): Promise<Float32Array[]> {
    let out;
    try {
      out = await this.pipe!(texts, { pooling: this.spec.pooling, normalize: this.spec.normalize });
    } catch (e) {
      throw providerError(modelLabel(this.spec), e);
    }
    const data = out.data as Float32Array;
    const width = Number(out.dims[out.dims.length - 1]);
    return texts.map((_, b) => data.slice(b * width, (b + 1) * width));
  }
}

/** The `transformers` runtime: a transformers.js feature-extraction pipeline on a local folder or a hub id. */
export function createTransformersModel(spec: ModelSpec): EmbeddingModel {
  return new TransformersModel(spec);
}
