import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { NearlineError, nlError } from '../errors.ts';
import {
  isPlugin,
  type OnlineStorePlugin,
  type Plugin,
  type ProviderContext,
  type RuntimePlugin,
  type SourcePlugin,
  type VectorProviderPlugin,
} from '../plugins.ts';
import { builtinPlugins } from './builtins.ts';
import type { EmbeddingModel, ModelSpec } from './embedding/types.ts';
import type { OnlineStore } from './online/types.ts';
import type { Source, SourceSpec } from './sources/types.ts';
import type { VectorProvider } from './vector/types.ts';

export type { ProviderContext } from '../plugins.ts';

type Role = Plugin['plugin'];
interface ByRole {
  vector: VectorProviderPlugin;
  online: OnlineStorePlugin;
  runtime: RuntimePlugin;
  source: SourcePlugin;
}

let builtin: Map<string, Plugin> | undefined;
const builtins = () => (builtin ??= new Map(builtinPlugins().map((p) => [`${p.plugin}:${p.kind}`, p])));
/** Plugins loaded from modules, by the module path or package name definitions name them with. */
const loaded = new Map<string, Plugin>();

/** nearline's own kinds for a role (`hnsw`, `qdrant` for vector providers...). */
export function builtinKinds(role: Role): string[] {
  return builtinPlugins()
    .filter((p) => p.plugin === role)
    .map((p) => p.kind);
}
const kinds = builtinKinds;

const WHAT: Record<Role, string> = { vector: 'vector provider kind', online: 'online provider kind', runtime: 'model runtime', source: 'source kind' };

/** Whether `kind` names one of nearline's own backends of any role (anything else is a plugin module). */
export function isBuiltinKind(kind: string): boolean {
  return builtinPlugins().some((p) => p.kind === kind);
}

/** A relative module path in a definitions file resolves against that file's folder; package names and absolute paths stay. */
export function pluginSpecifier(kind: string, baseDir: string): string {
  return kind.startsWith('./') || kind.startsWith('../') ? path.resolve(baseDir, kind) : kind;
}

/** The plugin `kind` names for `role`, if built in or already loaded; see loadPlugin for the rest. */
export function pluginFor<R extends Role>(role: R, kind: string): ByRole[R] | undefined {
  const p = builtins().get(`${role}:${kind}`) ?? loaded.get(kind);
  return p?.plugin === role ? (p as ByRole[R]) : undefined;
}

/** A provider kind's role, for kinds built in or loaded: does it hold vectors or online values? */
export function providerRole(kind: string): 'vector' | 'online' | undefined {
  return pluginFor('vector', kind) ? 'vector' : pluginFor('online', kind) ? 'online' : undefined;
}

async function importModule(specifier: string): Promise<Record<string, unknown>> {
  const url = path.isAbsolute(specifier) ? pathToFileURL(specifier).href : specifier;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (e) {
    // A TypeScript plugin under plain Node: compile it through tsx, loaded only for it.
    if ((e as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw e;
    const { tsImport } = await import('tsx/esm/api');
    return (await tsImport(url, import.meta.url)) as Record<string, unknown>;
  }
}

/**
 * Loads the plugin a module exports (its default export, made by a define* helper), once per module. Errors are
 * NL_BAD_DEFINITION naming the module; the caller adds where the definitions named it.
 */
export async function importPlugin(specifier: string): Promise<Plugin> {
  const known = loaded.get(specifier);
  if (known) return known;
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(specifier);
  } catch (e) {
    throw new NearlineError('NL_BAD_DEFINITION', [`cannot load plugin ${specifier}: ${(e as Error).message}`], { cause: e });
  }
  // Outside a `"type": "module"` package tsx compiles a TypeScript plugin to CommonJS: its exports arrive as `default`.
  const candidate = isPlugin(mod.default) ? mod.default : (mod.default as Record<string, unknown> | undefined)?.default;
  if (!isPlugin(candidate)) {
    throw nlError(
      'NL_BAD_DEFINITION',
      `module ${specifier} does not export a plugin: its default export must be made by defineVectorProvider, defineOnlineStore, defineRuntime or defineSource`,
    );
  }
  loaded.set(specifier, candidate);
  return candidate;
}

/** The plugin for `role` and `kind`: built in, or imported from the module `kind` names. */
export async function loadPlugin<R extends Role>(role: R, kind: string): Promise<ByRole[R]> {
  const known = pluginFor(role, kind);
  if (known) return known;
  const have = `built in: ${kinds(role).join(', ')}; or a plugin's module path or package name`;
  if (isBuiltinKind(kind)) throw nlError('NL_UNSUPPORTED', `${kind} is not a ${WHAT[role]} (${have})`);
  let p: Plugin;
  try {
    p = await importPlugin(kind);
  } catch (e) {
    throw new NearlineError('NL_UNSUPPORTED', [`unknown ${WHAT[role]} ${kind} (${have}): ${(e as Error).message}`], { cause: e });
  }
  if (p.plugin !== role) throw nlError('NL_UNSUPPORTED', `plugin ${kind} is a ${p.plugin} plugin, not a ${WHAT[role]}`);
  return p as ByRole[R];
}

export async function createVectorProvider(kind: string, options: Record<string, unknown>, ctx: ProviderContext): Promise<VectorProvider> {
  return (await loadPlugin('vector', kind)).create(options, ctx);
}

export async function createOnlineStore(kind: string, options: Record<string, unknown>, ctx: ProviderContext): Promise<OnlineStore> {
  return (await loadPlugin('online', kind)).create(options, ctx);
}

/** Whether models of `runtime` can embed in worker threads: its plugin declares it (`supportsWorkers`). */
export function isPoolable(runtime: string): boolean {
  return pluginFor('runtime', runtime)?.supportsWorkers === true;
}

/**
 * A model of `spec`'s runtime. With `workers` >= 1 and a runtime that supports it, it runs in that many
 * worker threads (embedding/pool.ts); otherwise on the calling thread.
 */
export async function createEmbeddingModel(spec: ModelSpec, opts: { workers?: number } = {}): Promise<EmbeddingModel> {
  const plugin = await loadPlugin('runtime', spec.runtime);
  if (opts.workers && opts.workers > 0 && plugin.supportsWorkers) return (await import('./embedding/pool.ts')).createPooledModel(spec, opts.workers);
  return plugin.create(spec);
}

export async function createSource(spec: SourceSpec): Promise<Source> {
  return (await loadPlugin('source', spec.kind)).create(spec);
}
