import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEmbeddingModel, pluginFor } from '../index.ts';
import { invalidModel, modelLabel } from './common.ts';
import type { ModelSpec } from './types.ts';
import { useModelDir } from './use.ts';

/**
 * Which files of a model folder determine its vectors: the top-level JSON (config, tokenizer, tokenizer
 * config) and the fp32 graph with its external weights. Other files (READMEs, quantized variants the
 * runtimes do not load) can change without changing a vector, so they do not count.
 */
function isModelFile(rel: string): boolean {
  if (!rel.includes('/')) return rel.endsWith('.json');
  return rel === 'onnx/model.onnx' || rel.startsWith('onnx/model.onnx_data');
}

function listFiles(dir: string, keep: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const rel = relative(dir, full).split(sep).join('/');
        if (keep(rel)) out.push(rel);
      }
    }
  };
  walk(dir);
  return out.sort();
}

async function hashFiles(dir: string, files: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const rel of files) {
    // Path and size frame each file, so moving bytes from one file to the next changes the digest.
    hash.update(`${rel}\0${statSync(join(dir, rel)).size}\0`);
    for await (const chunk of createReadStream(join(dir, rel))) hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** The folder whose files a spec's vectors depend on, or undefined for a hub model not yet downloaded. */
async function modelDir(spec: ModelSpec): Promise<string | undefined> {
  if (spec.runtime === 'use') return useModelDir();
  if (spec.path) return spec.path;
  if (spec.hub) {
    // Imported here so that fingerprinting a local model does not load transformers.js.
    const { transformersCacheDir } = await import('./transformers.ts');
    const cache = transformersCacheDir(spec);
    const dir = cache ? join(cache, spec.hub) : undefined;
    return dir && existsSync(dir) ? dir : undefined;
  }
  throw invalidModel(spec, `runtime ${spec.runtime} needs a model folder (path) or a hub id (hub)`);
}

/**
 * sha256 over a model's files, sorted by relative path: the registry records it and refuses a registered
 * version whose files changed. For `use` these are the packaged model files; for a hub id, the cached
 * download (fetched first if absent, as registering the model will load it anyway).
 */
export async function modelFingerprint(spec: ModelSpec): Promise<string> {
  if (!spec.path && !spec.hub && spec.runtime !== 'use' && pluginFor('runtime', spec.runtime)?.model === 'packaged') return packagedFingerprint(spec);
  let dir = await modelDir(spec);
  if (dir === undefined) {
    const model = await createEmbeddingModel(spec);
    await model.open();
    await model.close();
    dir = await modelDir(spec);
    if (dir === undefined) throw invalidModel(spec, `hub model ${spec.hub} is not in the cache after loading it`);
  }
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw invalidModel(spec, `model folder ${dir} does not exist`);
  const keep = spec.runtime === 'use' ? (rel: string) => !rel.endsWith('.js') && !rel.endsWith('.ts') : isModelFile;
  const files = listFiles(dir, keep);
  if (files.length === 0) throw invalidModel(spec, `no model files in ${dir}`);
  return hashFiles(dir, files);
}

/**
 * A plugin runtime that packages its model in its own code: its vectors depend on that module and on the
 * definition's options, so the sha256 covers both.
 */
function packagedFingerprint(spec: ModelSpec): string {
  const file = isAbsolute(spec.runtime) ? spec.runtime : fileURLToPath(import.meta.resolve(spec.runtime));
  return createHash('sha256')
    .update(readFileSync(file))
    .update(`\0${JSON.stringify(spec.options ?? {})}`)
    .digest('hex');
}

/** Loads a model, embeds a probe text, and reports its dims; failures are the model's coded errors. */
export async function probeModel(spec: ModelSpec): Promise<{ dims: number }> {
  const model = await createEmbeddingModel(spec);
  await model.open();
  try {
    const [vector] = await model.embed([`probe text for ${modelLabel(spec)}`]);
    return { dims: vector.length };
  } finally {
    await model.close();
  }
}
