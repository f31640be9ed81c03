import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { isNearlineError, type ErrorCode } from '../../src/errors.ts';
import type { ModelSpec } from '../../src/providers/embedding/types.ts';
import { makeEncoder, type EncoderOptions } from '../../scripts/make-encoder.ts';

/** The tiny encoder the embedding tests share: 2 layers, hidden 32, 64 positions. */
export const TINY: Omit<EncoderOptions, 'out'> = { layers: 2, hidden: 32, heads: 2, ffn: 64, vocab: 1000, maxPositions: 64, seed: 1 };

/** A temp folder removed by the returned cleanup. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'nearline-embed-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function makeTiny(dir: string, name = 'tiny', options: Partial<EncoderOptions> = {}): string {
  return makeEncoder({ ...TINY, ...options, out: join(dir, name) });
}

export function spec(runtime: string, path: string | undefined, overrides: Partial<ModelSpec> = {}): ModelSpec {
  return { name: 'tiny', version: '1', runtime, path, pooling: 'mean', normalize: false, maxTokens: 64, ...overrides };
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

export function norm(v: Float32Array): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Asserts that `promise` rejects with a NearlineError of `code` whose message matches `message`. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${code}`).toBeDefined();
  expect(isNearlineError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  if (message) expect((error as Error).message).toMatch(message);
}

/** Sentences made of words in the tiny vocabulary, of various lengths. */
export const SENTENCES = [
  'the cat sat on the mat',
  'a kitten sat on a rug',
  'stock market prices fell sharply during the morning',
  'hello',
  'the quick brown fox jumps over the lazy dog near the river bank while the farmer watched from the old house',
  'search query vector model feature store',
];
