import { NearlineError, nlError } from '../errors.ts';
import type { EmbeddingModel, ModelSpec } from './embedding/types.ts';
import type { OnlineStore } from './online/types.ts';
import type { Source, SourceSpec } from './sources/types.ts';
import type { VectorProvider } from './vector/types.ts';

/** What every provider factory receives besides its own options. */
export interface ProviderContext {
  /** The provider's configured name. */
  name: string;
  /** nearline's home folder (registry, indexes/). */
  home: string;
}

type Factory<T> = (options: Record<string, unknown>, ctx: ProviderContext) => T;

/**
 * Loads a backend's module; its client library or runtime is an optional peer dependency of nearline, so a
 * missing one becomes NL_MISSING_PACKAGE naming what to install instead of a resolution error.
 */
async function loadWith<T>(what: string, packages: readonly string[], load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const message = (e as Error).message ?? '';
    const missing = packages.find((p) => message.includes(`'${p}'`) || message.includes(`"${p}"`));
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && missing) {
      throw new NearlineError('NL_MISSING_PACKAGE', [what, missing, packages.join(' ')], { cause: e });
    }
    throw e;
  }
}

// Kind name -> lazy import, so a user of hnsw + sqlite never loads ioredis or the Qdrant client.
const VECTOR: Record<string, () => Promise<Factory<VectorProvider>>> = {
  hnsw: async () => (await import('./vector/hnsw/provider.ts')).createHnswProvider as Factory<VectorProvider>,
  qdrant: () =>
    loadWith('the qdrant provider', ['@qdrant/js-client-rest'], async () => (await import('./vector/qdrant.ts')).createQdrantProvider as Factory<VectorProvider>),
};

const ONLINE: Record<string, () => Promise<Factory<OnlineStore>>> = {
  sqlite: async () => (await import('./online/sqlite.ts')).createSqliteOnlineStore as Factory<OnlineStore>,
  redis: () => loadWith('the redis provider', ['ioredis'], async () => (await import('./online/redis.ts')).createRedisOnlineStore as Factory<OnlineStore>),
};

const EMBEDDING: Record<string, () => Promise<(spec: ModelSpec) => EmbeddingModel>> = {
  onnx: () => loadWith('the onnx runtime', ['onnxruntime-node', '@huggingface/tokenizers'], async () => (await import('./embedding/onnx.ts')).createOnnxModel),
  transformers: () => loadWith('the transformers runtime', ['@huggingface/transformers'], async () => (await import('./embedding/transformers.ts')).createTransformersModel),
  use: async () => (await import('./embedding/use.ts')).createUseModel,
};

const SOURCES: Record<string, () => Promise<(spec: SourceSpec) => Source>> = {
  csv: async () => (await import('./sources/csv.ts')).createCsvSource,
  jsonl: async () => (await import('./sources/jsonl.ts')).createJsonlSource,
  sqlite: async () => (await import('./sources/sqlite.ts')).createSqliteSource,
};

export const VECTOR_KINDS = Object.keys(VECTOR);
export const ONLINE_KINDS = Object.keys(ONLINE);
export const RUNTIMES = Object.keys(EMBEDDING);
export const SOURCE_KINDS = Object.keys(SOURCES);

export function isVectorKind(kind: string): boolean {
  return kind in VECTOR;
}

export async function createVectorProvider(kind: string, options: Record<string, unknown>, ctx: ProviderContext): Promise<VectorProvider> {
  const load = VECTOR[kind];
  if (!load) throw nlError('NL_UNSUPPORTED', `unknown vector provider kind ${kind} (have: ${VECTOR_KINDS.join(', ')})`);
  return (await load())(options, ctx);
}

export async function createOnlineStore(kind: string, options: Record<string, unknown>, ctx: ProviderContext): Promise<OnlineStore> {
  const load = ONLINE[kind];
  if (!load) throw nlError('NL_UNSUPPORTED', `unknown online provider kind ${kind} (have: ${ONLINE_KINDS.join(', ')})`);
  return (await load())(options, ctx);
}

export async function createEmbeddingModel(spec: ModelSpec): Promise<EmbeddingModel> {
  const load = EMBEDDING[spec.runtime];
  if (!load) throw nlError('NL_UNSUPPORTED', `unknown model runtime ${spec.runtime} (have: ${RUNTIMES.join(', ')})`);
  return (await load())(spec);
}

export async function createSource(spec: SourceSpec): Promise<Source> {
  const load = SOURCES[spec.kind];
  if (!load) throw nlError('NL_UNSUPPORTED', `unknown source kind ${spec.kind} (have: ${SOURCE_KINDS.join(', ')})`);
  return (await load())(spec);
}
