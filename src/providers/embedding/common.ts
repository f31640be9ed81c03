import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NearlineError, nlError } from '../../errors.ts';
import type { Vector } from '../../types.ts';
import type { ModelSpec } from './types.ts';
import { refOf } from '../../refs.ts';

/** `name@version`, as errors name a model. */
export function modelLabel(spec: ModelSpec): string {
  return refOf(spec);
}

export function invalidModel(spec: ModelSpec, reason: string, cause?: unknown): NearlineError {
  return new NearlineError('NL_MODEL_INVALID', [modelLabel(spec), reason], cause === undefined ? undefined : { cause });
}

/**
 * Rejects anything but non-blank strings before any work is done, so one bad row fails the whole call
 * instead of producing a vector for a blank text.
 */
export function checkTexts(texts: unknown): asserts texts is string[] {
  if (!Array.isArray(texts)) throw nlError('NL_BAD_TEXT', 'texts must be an array of strings');
  for (let i = 0; i < texts.length; i++) {
    const t: unknown = texts[i];
    if (typeof t !== 'string') throw nlError('NL_BAD_TEXT', `text ${i} is ${t === null ? 'null' : typeof t}, not a string`);
    if (t.trim() === '') throw nlError('NL_BAD_TEXT', `text ${i} is empty`);
  }
}

export function l2normalize(v: Float32Array): Float32Array {
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] * v[i];
  if (sum > 0) {
    const inv = 1 / Math.sqrt(sum);
    for (let i = 0; i < v.length; i++) v[i] *= inv;
  }
  return v;
}

/** Largest batch handed to a runtime in one run. */
export const MAX_BATCH = 32;

/**
 * Most padded tokens in one run, per intra-op thread. On CPU a run's cost per token rises once activations
 * and attention scores outgrow the caches: on a MiniLM-sized encoder with one thread, a 256-token text
 * embeds 5% faster alone than in pairs and twice as fast as in fours, and 16 short texts per run beat 32
 * and 128. Threads split a run's rows between them, so the budget grows with them.
 */
export const TOKENS_PER_THREAD = 256;

/** The padded-token budget of one run for `threads` intra-op threads. */
export function tokenBudget(threads = 1): number {
  return TOKENS_PER_THREAD * Math.max(1, threads);
}

/**
 * Splits texts into batches of similar length, as index lists into the input. Sorting by length means
 * a batch pads to a length close to each of its texts; a batch is also cut when padding would exceed a
 * quarter of its tokens or its padded size would pass `budget`, since CPU inference time follows padded
 * tokens, and small batches cost little on CPU.
 */
export function batchesByLength(lengths: readonly number[], budget = tokenBudget(), maxBatch = MAX_BATCH): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b]);
  const batches: number[][] = [];
  let batch: number[] = [];
  let tokens = 0;
  for (const i of order) {
    const len = lengths[i];
    // Sorted ascending, so `len` is the padded length if i joins the batch.
    const padded = (batch.length + 1) * len;
    if (batch.length > 0 && (batch.length === maxBatch || padded > budget || padded > 1.25 * (tokens + len))) {
      batches.push(batch);
      batch = [];
      tokens = 0;
    }
    batch.push(i);
    tokens += len;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** Runs `run` on each batch and puts the vectors back in input order. */
export async function embedInBatches(count: number, batches: number[][], run: (batch: number[]) => Promise<Vector[]>): Promise<Vector[]> {
  const out = new Array<Vector>(count);
  for (const batch of batches) {
    const vectors = await run(batch);
    batch.forEach((i, j) => (out[i] = vectors[j]));
  }
  return out;
}

/**
 * Checks a Hugging Face-layout folder for the files a runtime reads and returns config.json parsed.
 * The error names the first missing file, which is what a user needs to fix.
 */
export function readModelFolder(spec: ModelSpec, required: readonly string[]): Record<string, unknown> {
  const dir = spec.path;
  if (!dir) throw invalidModel(spec, `runtime ${spec.runtime} needs a model folder (path)`);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw invalidModel(spec, `model folder ${dir} does not exist`);
  for (const file of required) {
    if (!existsSync(join(dir, file))) throw invalidModel(spec, `missing file ${file} in ${dir}`);
  }
  return readJson(spec, join(dir, 'config.json'), 'config.json');
}

/** Like readJson, but undefined when the file is absent. */
export function readOptionalJson(spec: ModelSpec, file: string, label: string): Record<string, unknown> | undefined {
  return existsSync(file) ? readJson(spec, file, label) : undefined;
}

export function readJson(spec: ModelSpec, file: string, label: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw invalidModel(spec, `${label} is not valid JSON`, e);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalidModel(spec, `${label} is not a JSON object`);
  return parsed as Record<string, unknown>;
}

/**
 * The longest input the model accepts, in tokens: the spec's maxTokens, capped by the model's position
 * table, so a spec asking for more than the model has truncates instead of failing at run time.
 */
export function effectiveMaxTokens(spec: ModelSpec, config: Record<string, unknown>, tokenizerConfig?: Record<string, unknown>): number {
  let limit = spec.maxTokens > 0 ? spec.maxTokens : 512;
  const positions = config.max_position_embeddings;
  if (typeof positions === 'number' && positions > 0) {
    // RoBERTa-family position ids start after the padding index, which costs two slots.
    const offset = typeof config.model_type === 'string' && config.model_type.includes('roberta') ? 2 : 0;
    limit = Math.min(limit, positions - offset);
  }
  const declared = tokenizerConfig?.model_max_length;
  // Tokenizer configs without a limit carry a huge sentinel (1e30); only a real number caps.
  if (typeof declared === 'number' && declared > 0 && declared < 1e6) limit = Math.min(limit, declared);
  return limit;
}

/**
 * Whether the tokenizer's ids fit the model's embedding table. A table may be a little larger than the
 * vocabulary (padded to a multiple of 64 for alignment, as nomic-embed and jina-embeddings do); any other
 * difference means the tokenizer belongs to another model.
 */
export function vocabMismatch(tokenizerSize: number, configSize: unknown): string | undefined {
  if (typeof configSize !== 'number') return undefined;
  if (tokenizerSize === configSize) return undefined;
  if (configSize > tokenizerSize && configSize % 64 === 0 && configSize - tokenizerSize < 128) return undefined;
  return `tokenizer.json has ${tokenizerSize} tokens but config.json vocab_size is ${configSize}: the tokenizer does not belong to this model`;
}
