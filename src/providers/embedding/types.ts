import type { Vector } from '../../types.ts';

export type Pooling = 'mean' | 'cls';

/** A registered model's runtime settings, as the registry stores them. */
export interface ModelSpec {
  name: string;
  version: string;
  /** `onnx`, `transformers`, `use`. */
  runtime: string;
  /** Local folder (Hugging Face layout) resolved to an absolute path; absent for hub ids and packaged models. */
  path?: string;
  /** Hugging Face hub id (runtime `transformers`). */
  hub?: string;
  /** Where hub downloads are cached. */
  cacheDir?: string;
  pooling: Pooling;
  normalize: boolean;
  /** Longer texts are truncated to this many tokens, never rejected. */
  maxTokens: number;
  /** Intra-op threads for the runtime. Default 1. */
  threads?: number;
  /** A plugin runtime's own fields of the definition, checked against its options schema. */
  options?: Record<string, unknown>;
}

/** A loaded embedding model. */
export interface EmbeddingModel {
  readonly runtime: string;
  /** Output dimensionality, known after open(). */
  readonly dims: number;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Embeds texts in order; batches internally. Empty or non-string text is NL_BAD_TEXT. */
  embed(texts: string[]): Promise<Vector[]>;
}
