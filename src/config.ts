import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { NearlineError, nlError } from './errors.ts';
import type { ModelSpec } from './providers/embedding/types.ts';
import { optionsProblem } from './plugins.ts';
import { builtinKinds, importPlugin, isBuiltinKind, pluginFor, pluginSpecifier } from './providers/index.ts';
import type { SourceSpec } from './providers/sources/types.ts';
import { QUANTIZATIONS } from './providers/vector/types.ts';
import type { Metric } from './types.ts';
import { parseTemplate, type TextSource } from './materialize/text.ts';
import { formatRef, refOf, parseFullRef } from './refs.ts';

/** A configured backend. Every key besides name and kind is the backend's own option. */
export interface ProviderDef {
  name: string;
  kind: string;
  options: Record<string, unknown>;
}

export interface EntityDef {
  name: string;
  key: string;
}

/** A source as defined; paths are absolute, resolved against the definitions file's folder. */
export type SourceDef = SourceSpec;

/** A model as defined; `path` and `cacheDir` are absolute, resolved against the definitions file's folder. */
export type ModelDef = ModelSpec;

export interface VariantRef {
  name: string;
  variant: string;
}

/** A feature variant as defined: an embedding or a scalar, told apart by `kind`. */
export type FeatureDef = EmbeddingFeatureDef | ScalarFeatureDef;

interface FeatureDefBase {
  name: string;
  variant: string;
  entity: string;
  source: VariantRef;
  provider: string;
  /** Metadata columns stored with each vector, usable in filters (always empty for a scalar feature). */
  metadata: string[];
}

export interface EmbeddingFeatureDef extends FeatureDefBase {
  kind: 'embedding';
  /** A precomputed vector column ... */
  vector?: { column: string };
  /** ... or a text embedded through a registered model: one column, several joined by a newline, or a template. */
  text?: TextSource & { model: { name: string; version: string } };
  /** Optional for a text feature, which takes its model's at apply; every registered variant has it. */
  dims?: number;
  metric: Metric;
  /** `quantization` is set only when it is not `none`, so variants defined before it existed read the same. */
  index: IndexParams;
}

export interface IndexParams {
  M: number;
  efConstruction: number;
  ef: number;
  quantization?: 'int8';
}

/** A scalar feature: one source column and its type. */
export interface ScalarFeatureDef extends FeatureDefBase {
  kind: 'scalar';
  column: string;
  type: ScalarType;
  /** Never set: `if (f.text)` and `if (f.vector)` read on any feature, and narrow it to an embedding. */
  vector?: undefined;
  text?: undefined;
}

export type ScalarType = 'float' | 'int' | 'string' | 'bool';

export interface AliasDef {
  feature: string;
  name: string;
  variant: string;
}

export interface Definitions {
  providers: ProviderDef[];
  entities: EntityDef[];
  sources: SourceDef[];
  models: ModelDef[];
  features: FeatureDef[];
  aliases: AliasDef[];
}

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const VARIANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SECTIONS = ['providers', 'entities', 'sources', 'models', 'features', 'aliases'] as const;
/** Fields of a model definition every runtime shares; a runtime plugin's options are the others. */
const MODEL_FIELDS = ['name', 'version', 'runtime', 'pooling', 'normalize', 'maxTokens', 'path', 'hub', 'cacheDir', 'threads'];
const METRICS: Metric[] = ['cosine', 'dot', 'l2'];
const SCALAR_TYPES: ScalarType[] = ['float', 'int', 'string', 'bool'];
export const DEFAULT_INDEX = { M: 16, efConstruction: 200, ef: 100 };

/** A JS module through Node; a TypeScript one through tsx, loaded only for it, so compiled nearline needs no compiler otherwise. */
async function importModule(abs: string, ext: string): Promise<unknown> {
  if (!ext.endsWith('ts')) return import(pathToFileURL(abs).href);
  const { tsImport } = await import('tsx/esm/api');
  const mod = (await tsImport(pathToFileURL(abs).href, import.meta.url)) as Record<string, unknown>;
  // Outside a `"type": "module"` package tsx compiles the file to CommonJS: its exports arrive as `default`.
  const cjs = mod.default as Record<string, unknown> | undefined;
  return cjs && typeof cjs === 'object' && ('default' in cjs || 'definitions' in cjs) ? cjs : mod;
}

/** Reads a YAML, JSON, or TS/JS module definitions file and validates it. */
export async function loadDefinitions(file: string): Promise<Definitions> {
  const abs = path.resolve(file);
  const ext = path.extname(abs).toLowerCase();
  let raw: unknown;
  try {
    if (['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'].includes(ext)) {
      const mod = (await importModule(abs, ext)) as Record<string, unknown>;
      raw = mod.default ?? mod.definitions;
    } else {
      const text = await readFile(abs, 'utf8');
      raw = ext === '.json' ? JSON.parse(text) : YAML.parse(text);
    }
  } catch (e) {
    if (e instanceof NearlineError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : (e as Error).message;
    throw new NearlineError('NL_BAD_DEFINITION', [`${file}: ${why}`], { cause: e });
  }
  await loadPlugins(raw, file, path.dirname(abs));
  return validateDefinitions(raw, file, path.dirname(abs));
}

/**
 * Imports the plugin modules definitions name (a provider `kind`, a model `runtime` or a source `kind` that is
 * not built in), so validation can check their options; failures name the file, the object and the field.
 */
export async function loadPlugins(raw: unknown, file: string, baseDir: string): Promise<void> {
  if (!isObject(raw)) return;
  const fields: Array<[section: string, field: string]> = [
    ['providers', 'kind'],
    ['models', 'runtime'],
    ['sources', 'kind'],
  ];
  for (const [section, field] of fields) {
    const list = (raw as Record<string, unknown>)[section];
    if (!Array.isArray(list)) continue;
    for (const [i, item] of list.entries()) {
      const kind = isObject(item) ? item[field] : undefined;
      if (typeof kind !== 'string' || kind === '' || isBuiltinKind(kind)) continue;
      try {
        await importPlugin(pluginSpecifier(kind, baseDir));
      } catch (e) {
        const label = typeof item.name === 'string' ? ` (${item.name})` : '';
        throw new NearlineError('NL_BAD_DEFINITION', [`${file}: ${section}[${i}]${label}: field "${field}": ${(e as Error).message}`], { cause: e });
      }
    }
  }
}

/** Validates a definitions object; errors name the file, the object and the field. */
export function validateDefinitions(raw: unknown, file: string, baseDir: string): Definitions {
  const fail = (where: string, msg: string): never => {
    throw nlError('NL_BAD_DEFINITION', `${file}: ${where}: ${msg}`);
  };
  if (!isObject(raw)) fail('top level', 'expected an object with providers, entities, sources, models, features, aliases');
  const top = raw as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!(SECTIONS as readonly string[]).includes(key)) fail('top level', `unknown section "${key}" (expected ${SECTIONS.join(', ')})`);
  }
  const section = (key: (typeof SECTIONS)[number]): Array<{ where: string; f: Fields }> => {
    const list = top[key] ?? [];
    if (!Array.isArray(list)) fail(key, 'expected a list');
    return (list as unknown[]).map((item, i) => {
      const label = isObject(item) && typeof item.name === 'string' ? ` (${item.name}${typeof item.variant === 'string' ? '@' + item.variant : ''})` : '';
      const where = `${key}[${i}]${label}`;
      if (!isObject(item)) fail(where, 'expected an object');
      return { where, f: new Fields(item as Record<string, unknown>, where, fail) };
    });
  };
  const resolvePath = (p: string | undefined) => (p === undefined ? undefined : path.resolve(baseDir, p));

  const providers = section('providers').map(({ f }) => {
    const name = f.name('name');
    const kind = pluginSpecifier(f.str('kind'), baseDir);
    const options = f.rest(['name', 'kind']);
    const plugin = pluginFor('vector', kind) ?? pluginFor('online', kind);
    if (!plugin)
      f.fail(
        'kind',
        `unknown provider kind "${kind}" (built in: ${[...builtinKinds('vector'), ...builtinKinds('online')].join(', ')}; or a plugin's module path or package name)`,
      );
    const problem = optionsProblem(plugin!, options);
    if (problem) f.fail(problem.field, problem.message);
    return { name, kind, options };
  });
  const entities = section('entities').map(({ f }) => {
    const def = { name: f.name('name'), key: f.str('key') };
    f.done();
    return def;
  });
  const sources = section('sources').map(({ f }) => {
    const head = { name: f.name('name'), variant: f.variant('variant'), kind: f.plugin('kind', 'source', builtinKinds('source'), baseDir) };
    // Every other field is the source kind's own option, checked against its plugin's schema.
    const options = f.rest(['name', 'variant', 'kind']);
    const problem = optionsProblem(pluginFor('source', head.kind)!, options);
    if (problem) f.fail(problem.field, problem.message);
    if (typeof options.path === 'string') options.path = resolvePath(options.path);
    return { ...options, ...head } as SourceDef;
  });
  const models = section('models').map(({ f }) => {
    const def: ModelDef = {
      name: f.name('name'),
      version: f.version('version'),
      runtime: f.plugin('runtime', 'runtime', builtinKinds('runtime'), baseDir),
      pooling: f.oneOf('pooling', ['mean', 'cls'], 'mean'),
      normalize: f.bool('normalize', true),
      maxTokens: f.posInt('maxTokens', 256),
    };
    const p = f.optStr('path');
    if (p !== undefined) def.path = resolvePath(p);
    setDefined(def, 'hub', f.optStr('hub'));
    const cache = f.optStr('cacheDir');
    if (cache !== undefined) def.cacheDir = resolvePath(cache);
    const threads = f.optPosInt('threads');
    if (threads !== undefined) def.threads = threads;
    const runtime = pluginFor('runtime', def.runtime);
    const needs = runtime?.model;
    if ((needs === 'folder' && !def.path) || (needs === 'folder-or-hub' && !def.path && !def.hub)) {
      f.fail('path', `runtime ${def.runtime} needs a model folder${needs === 'folder-or-hub' ? ' or a hub id' : ''}`);
    }
    // What no common getter read is the runtime's own option, when its plugin declares a schema for them.
    if (runtime?.options) {
      const options = f.rest(MODEL_FIELDS);
      const problem = optionsProblem({ ...runtime, options: runtime.options }, options);
      if (problem) f.fail(problem.field, problem.message);
      if (Object.keys(options).length) def.options = options;
    } else f.done();
    return def;
  });
  const features = section('features').map(({ f }): FeatureDef => {
    const kind = f.oneOf('kind', ['embedding', 'scalar'] as const);
    const base = {
      name: f.name('name'),
      variant: f.variant('variant'),
      entity: f.str('entity'),
      source: f.ref('source'),
      provider: f.str('provider'),
      metadata: f.strList('metadata'),
    };
    if (kind === 'scalar') {
      const def: ScalarFeatureDef = { ...base, kind, column: f.str('column'), type: f.oneOf('type', SCALAR_TYPES) };
      if (def.metadata.length) f.fail('metadata', 'only embedding features have metadata columns');
      f.done();
      return def;
    }
    const vector = f.optObj('vector');
    const text = f.optObj('text');
    if (!!vector === !!text) f.fail('vector', 'an embedding feature needs exactly one of vector: {column} or text: {column | columns | template, model}');
    let source: Pick<EmbeddingFeatureDef, 'vector' | 'text'> = {};
    if (vector) source = { vector: { column: vector.str('column') } };
    if (text) {
      const m = text.str('model');
      const model = parseFullRef(m) ?? text.fail('model', `expected name@version, got "${m}"`);
      const column = text.optStr('column');
      const columns = text.optStrList('columns');
      const template = text.optStr('template');
      const given = [column, columns, template].filter((x) => x !== undefined).length;
      if (given !== 1) text.fail('column', 'a text feature needs exactly one of column: NAME, columns: [A, B] (joined by a newline) or template: "{A}. {B}"');
      if (template !== undefined) {
        try {
          parseTemplate(template);
        } catch (e) {
          text.fail('template', (e as Error).message);
        }
      }
      if (columns !== undefined && !columns.length) text.fail('columns', 'expected at least one column');
      source = {
        text: {
          ...(column !== undefined ? { column } : {}),
          ...(columns !== undefined ? { columns } : {}),
          ...(template !== undefined ? { template } : {}),
          model: { name: model.name, version: model.tag },
        },
      };
    }
    vector?.done();
    text?.done();
    // A text feature's dims are its model's (found by the probe at apply); given, they must match.
    const dims = text ? f.optPosInt('dims') : f.posInt('dims');
    const metric = f.oneOf('metric', METRICS, 'cosine');
    const index = f.optObj('index');
    const params: IndexParams = {
      M: index?.posInt('M', DEFAULT_INDEX.M) ?? DEFAULT_INDEX.M,
      efConstruction: index?.posInt('efConstruction', DEFAULT_INDEX.efConstruction) ?? DEFAULT_INDEX.efConstruction,
      ef: index?.posInt('ef', DEFAULT_INDEX.ef) ?? DEFAULT_INDEX.ef,
    };
    if (index?.oneOf('quantization', QUANTIZATIONS, 'none') === 'int8') params.quantization = 'int8';
    index?.done();
    f.done();
    return { ...base, kind, ...source, ...(dims !== undefined ? { dims } : {}), metric, index: params };
  });
  const aliases = section('aliases').map(({ f }) => {
    const def = { feature: f.name('feature'), name: f.name('name'), variant: f.variant('variant') };
    f.done();
    return def;
  });

  const defs: Definitions = { providers, entities, sources, models, features, aliases };
  checkUnique(defs, fail);
  return defs;
}

function checkUnique(defs: Definitions, fail: (where: string, msg: string) => never): void {
  const seen = (key: string, items: string[]) => {
    const set = new Set<string>();
    for (const item of items) {
      if (set.has(item)) fail(key, `"${item}" is defined twice`);
      set.add(item);
    }
  };
  seen(
    'providers',
    defs.providers.map((p) => p.name),
  );
  seen(
    'entities',
    defs.entities.map((e) => e.name),
  );
  seen(
    'sources',
    defs.sources.map((s) => refOf(s)),
  );
  seen(
    'models',
    defs.models.map((m) => refOf(m)),
  );
  seen(
    'features',
    defs.features.map((f) => refOf(f)),
  );
  seen(
    'aliases',
    defs.aliases.map((a) => formatRef(a.feature, a.name)),
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function setDefined<T extends object, K extends keyof T>(obj: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) obj[key] = value;
}

/** Field reader for one definitions object: typed getters that fail with the object's location. */
class Fields {
  private readonly used = new Set<string>();

  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly where: string,
    private readonly onFail: (where: string, msg: string) => never,
  ) {}

  fail(field: string, msg: string): never {
    return this.onFail(this.where, `field "${field}": ${msg}`);
  }

  private get(field: string): unknown {
    this.used.add(field);
    return this.obj[field];
  }

  private got(v: unknown): string {
    return v === undefined ? 'nothing' : JSON.stringify(v);
  }

  str(field: string): string {
    const v = this.get(field);
    if (typeof v !== 'string' || v.length === 0) this.fail(field, `expected a non-empty string, got ${this.got(v)}`);
    return v as string;
  }

  optStr(field: string): string | undefined {
    return this.get(field) === undefined ? undefined : this.str(field);
  }

  name(field: string): string {
    const v = this.str(field);
    if (!NAME.test(v)) this.fail(field, `"${v}" is not a valid name (letters, digits, _ and -, starting with a letter)`);
    return v;
  }

  variant(field: string): string {
    const v = this.get(field);
    const s = typeof v === 'number' ? String(v) : v;
    if (typeof s !== 'string' || !VARIANT.test(s)) this.fail(field, `expected a variant like v1, got ${this.got(v)}`);
    return s as string;
  }

  version(field: string): string {
    return this.variant(field);
  }

  ref(field: string): VariantRef {
    const v = this.str(field);
    const ref = parseFullRef(v);
    if (!ref) this.fail(field, `expected name@variant, got "${v}"`);
    return { name: ref.name, variant: ref.tag };
  }

  bool(field: string, dflt: boolean): boolean {
    const v = this.get(field);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') this.fail(field, `expected true or false, got ${this.got(v)}`);
    return v as boolean;
  }

  posInt(field: string, dflt?: number): number {
    const v = this.get(field);
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, `expected a positive integer, got ${this.got(v)}`);
    return v as number;
  }

  optPosInt(field: string): number | undefined {
    return this.obj[field] === undefined ? (this.used.add(field), undefined) : this.posInt(field);
  }

  oneOf<T extends string>(field: string, allowed: readonly T[], dflt?: T): T {
    const v = this.get(field);
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v !== 'string' || !allowed.includes(v as T)) this.fail(field, `expected one of ${allowed.join(', ')}, got ${this.got(v)}`);
    return v as T;
  }

  optStrList(field: string): string[] | undefined {
    return this.obj[field] === undefined ? (this.used.add(field), undefined) : this.strList(field);
  }

  strList(field: string): string[] {
    const v = this.get(field);
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x.length > 0)) this.fail(field, `expected a list of column names, got ${this.got(v)}`);
    return v as string[];
  }

  /** A built-in kind from `builtins`, or a plugin module of `role` (loaded beforehand by loadPlugins). */
  plugin(field: string, role: 'runtime' | 'source', builtins: readonly string[], baseDir: string): string {
    const v = this.get(field);
    const kind = typeof v === 'string' && v !== '' ? pluginSpecifier(v, baseDir) : undefined;
    if (kind === undefined || !pluginFor(role, kind)) {
      this.fail(field, `expected one of ${builtins.join(', ')} or a ${role} plugin's module path or package name, got ${this.got(v)}`);
    }
    return kind as string;
  }

  optObj(field: string): Fields | undefined {
    const v = this.get(field);
    if (v === undefined) return undefined;
    if (!isObject(v)) this.fail(field, `expected an object, got ${this.got(v)}`);
    return new Fields(v as Record<string, unknown>, `${this.where}.${field}`, this.onFail);
  }

  /** The keys not named: a provider's own options. */
  rest(known: string[]): Record<string, unknown> {
    return Object.fromEntries(Object.entries(this.obj).filter(([k]) => !known.includes(k)));
  }

  /** Rejects keys no getter asked for, so a typo never passes silently. */
  done(): void {
    for (const key of Object.keys(this.obj)) {
      if (!this.used.has(key)) this.fail(key, 'unknown field');
    }
  }
}
