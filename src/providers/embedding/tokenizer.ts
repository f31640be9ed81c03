import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { invalidModel, readJson, readOptionalJson } from './common.ts';
import type { ModelSpec } from './types.ts';

/** A Hugging Face tokenizer.json with truncation that keeps the special tokens, as the Python library does. */
export interface TextTokenizer {
  /** Vocabulary size, added tokens included: the largest id plus one. */
  readonly size: number;
  /** The largest id the tokenizer can produce. */
  readonly maxId: number;
  /** Token ids with special tokens, at most `maxTokens` of them. */
  encode(text: string): number[];
}

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. Its published types do not resolve under
 * NodeNext (extensionless relative imports), so the subset is declared instead of trusting `any`.
 */
interface HfTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
}

// Whole-text tokenization of a huge input is wasted work past maxTokens, so texts are first cut at a
// whitespace this many characters per token in; if the cut text comes out short, the full text is used.
const CHARS_PER_TOKEN_BOUND = 32;

export function loadTokenizer(spec: ModelSpec, dir: string, maxTokens: number): TextTokenizer {
  const json = readJson(spec, join(dir, 'tokenizer.json'), 'tokenizer.json');
  const config = readOptionalJson(spec, join(dir, 'tokenizer_config.json'), 'tokenizer_config.json') ?? {};
  let tokenizer: HfTokenizer;
  try {
    tokenizer = new Tokenizer(json, config) as HfTokenizer;
  } catch (e) {
    throw invalidModel(spec, `tokenizer.json cannot be loaded: ${(e as Error).message}`, e);
  }

  let maxId = -1;
  for (const id of tokenizer.get_vocab(true).values()) if (id > maxId) maxId = id;

  // The post-processor's template, found by encoding a probe with and without special tokens:
  // prefix + text + suffix for every single-sequence template (BERT, RoBERTa, XLM-R, none at all).
  const probe = 'a';
  const bare = tokenizer.encode(probe, { add_special_tokens: false }).ids;
  const full = tokenizer.encode(probe).ids;
  let at = -1;
  for (let i = 0; i + bare.length <= full.length && at < 0; i++) {
    if (bare.every((id, j) => full[i + j] === id)) at = i;
  }
  if (at < 0) throw invalidModel(spec, 'tokenizer.json post-processor does not keep the text between its special tokens');
  const prefix = full.slice(0, at);
  const suffix = full.slice(at + bare.length);
  const room = maxTokens - prefix.length - suffix.length;
  if (room < 1) throw invalidModel(spec, `maxTokens ${maxTokens} leaves no room beside ${prefix.length + suffix.length} special tokens`);

  const cutAt = room * CHARS_PER_TOKEN_BOUND;
  const encodeBare = (text: string): number[] => tokenizer.encode(text, { add_special_tokens: false }).ids;

  return {
    size: maxId + 1,
    maxId,
    encode(text: string): number[] {
      let ids: number[] | undefined;
      if (text.length > cutAt) {
        const space = text.lastIndexOf(' ', cutAt);
        if (space > 0) {
          ids = encodeBare(text.slice(0, space));
          if (ids.length < room) ids = undefined;
        }
      }
      ids ??= encodeBare(text);
      if (ids.length > room) ids = ids.slice(0, room);
      return prefix.length === 0 && suffix.length === 0 ? ids : [...prefix, ...ids, ...suffix];
    },
  };
}
