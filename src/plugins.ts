import type { Static, TObject } from '@sinclair/typebox';
import { createRequire } from 'node:module';
import type { EmbeddingModel, ModelSpec } from './providers/embedding/types.ts';
import type { OnlineStore } from './providers/online/types.ts';
import type { Source, SourceSpec } from './providers/sources/types.ts';
import type { VectorProvider } from './providers/vector/types.ts';

/*
 * The plugin contract. A backend is a definition made with one of the define* helpers: its kind name, the
 * TypeBox schema of its options (checked when definitions are applied, so a typo fails `apply`, not the first
 * query), what core code needs to know about it, and `create`. Built-in backends are defined the same way
 * (providers/builtins.ts); an outside one is named in definitions by module path or package name, and that
 * module's default export is its definition.
 */

/** What every provider factory receives besides its own options. */
export interface ProviderContext {
  /** The provider's configured name. */
  name: string;
  /** nearline's home folder (registry, indexes/). */
  home: string;
  /**
   * A folder several nodes share for the snapshots of in-process indexes (`NEARLINE_SNAPSHOTS`); unset, each
   * home keeps its own under `indexes/`.
   */
  snapshots?: string;
}

export interface VectorProviderPlugin<O extends TObject = TObject> {
  readonly plugin: 'vector';
  /** The `kind` definitions use for it. */
  readonly kind: string;
  /** Options beside `name` and `kind`; unknown keys should be refused (`additionalProperties: false`). */
  readonly options: O;
  create(options: Static<O>, ctx: ProviderContext): VectorProvider | Promise<VectorProvider>;
}

export interface OnlineStorePlugin<O extends TObject = TObject> {
  readonly plugin: 'online';
  readonly kind: string;
  readonly options: O;
  create(options: Static<O>, ctx: ProviderContext): OnlineStore | Promise<OnlineStore>;
}

export interface RuntimePlugin {
  readonly plugin: 'runtime';
  /** The `runtime` of a model definition. */
  readonly kind: string;
  /** Where a model's files come from: a `path` folder, a folder or a Hugging Face hub id, or the runtime's own package. */
  readonly model: 'folder' | 'folder-or-hub' | 'packaged';
  /**
   * Its models may run as copies in worker threads, each made by `create` there from the built-in kind:
   * runtimes whose work would otherwise hold the JS thread. Default false.
   */
  readonly supportsWorkers?: boolean;
  /**
   * Fields of a model definition beside the ones every runtime shares (name, version, runtime, path, hub,
   * cacheDir, pooling, normalize, maxTokens, threads), checked at apply and handed to `create` as `spec.options`.
   * Without it a model definition may carry no other field.
   */
  readonly options?: TObject;
  create(spec: ModelSpec): EmbeddingModel | Promise<EmbeddingModel>;
}

export interface SourcePlugin<O extends TObject = TObject> {
  readonly plugin: 'source';
  /** The `kind` of a source definition. */
  readonly kind: string;
  /**
   * Fields of a source definition beside `name`, `variant` and `kind`; unknown keys should be refused
   * (`additionalProperties: false`). A `path` field is resolved against the definitions file's folder.
   */
  readonly options: O;
  create(spec: SourceSpec & Static<O>): Source | Promise<Source>;
}

export type Plugin = VectorProviderPlugin | OnlineStorePlugin | RuntimePlugin | SourcePlugin;
export type ProviderPlugin = VectorProviderPlugin | OnlineStorePlugin;
/** Plugins whose definitions carry options checked against their schema. */
export type OptionsPlugin = ProviderPlugin | SourcePlugin | (RuntimePlugin & { options: TObject });

/** Declares a vector provider: `defineVectorProvider({ kind: 'hnsw', options: HnswOptions, create })`. */
export function defineVectorProvider<O extends TObject>(def: Omit<VectorProviderPlugin<O>, 'plugin'>): VectorProviderPlugin<O> {
  return Object.freeze({ plugin: 'vector' as const, ...def });
}

/** Declares an online store (scalar values and vectors by id). */
export function defineOnlineStore<O extends TObject>(def: Omit<OnlineStorePlugin<O>, 'plugin'>): OnlineStorePlugin<O> {
  return Object.freeze({ plugin: 'online' as const, ...def });
}

/** Declares an embedding runtime. */
export function defineRuntime(def: Omit<RuntimePlugin, 'plugin'>): RuntimePlugin {
  return Object.freeze({ plugin: 'runtime' as const, ...def });
}

/** Declares a source kind. */
export function defineSource<O extends TObject>(def: Omit<SourcePlugin<O>, 'plugin'>): SourcePlugin<O> {
  return Object.freeze({ plugin: 'source' as const, ...def });
}

const ROLES = new Set(['vector', 'online', 'runtime', 'source']);

/** Whether a module's export is a plugin definition (made by a define* helper here or in another copy of nearline). */
export function isPlugin(x: unknown): x is Plugin {
  const p = x as Partial<Plugin> | null;
  return !!p && typeof p === 'object' && ROLES.has(p.plugin as string) && typeof p.kind === 'string' && typeof p.create === 'function';
}

/** The first problem with `options` against a provider's schema, as a field and a message; undefined when they fit. */
export function optionsProblem(plugin: OptionsPlugin, options: Record<string, unknown>): { field: string; message: string } | undefined {
  // TypeBox loads here, on first use, not when nearline is imported.
  const { Errors } = createRequire(import.meta.url)('@sinclair/typebox/errors') as typeof import('@sinclair/typebox/errors');
  for (const e of Errors(plugin.options, options)) {
    const field = e.path.replace(/^\//, '').replace(/\//g, '.') || '(options)';
    const unknown = e.message === 'Unexpected property';
    const what = plugin.plugin === 'source' ? 'source' : plugin.plugin === 'runtime' ? 'runtime' : 'provider';
    if (e.value === undefined && /required property/i.test(e.message)) return { field, message: `missing: a ${plugin.kind} ${what} needs it` };
    return {
      field,
      message: unknown ? `unknown option for a ${plugin.kind} ${what}` : `${e.message.replace(/^Expected/, 'expected')}, got ${JSON.stringify(e.value)}`,
    };
  }
  return undefined;
}
