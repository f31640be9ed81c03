import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type AnySchemaObject, type ValidateFunction } from 'ajv';
import formatsPlugin from 'ajv-formats';

/**
 * Qdrant's published OpenAPI document lives beside the repository (`<repo>/../shared/qdrant/openapi.json`),
 * not in it: it is read at test time and never copied into the project. NEARLINE_QDRANT_OPENAPI points
 * elsewhere (a newer Qdrant's document, or a missing file to see the skip path).
 */
export const QDRANT_OPENAPI_PATH =
  process.env.NEARLINE_QDRANT_OPENAPI ?? resolve(fileURLToPath(new URL('../../', import.meta.url)), '../shared/qdrant/openapi.json');

export interface RequestToCheck {
  method: string;
  /** Path without query string, e.g. `/collections/x/points`. */
  path: string;
  query: URLSearchParams;
  contentType?: string;
  /** Parsed JSON body, or undefined when the request had none. */
  body: unknown;
}

export interface CheckedRequest {
  /** `METHOD /template`, e.g. `PUT /collections/{collection_name}/points`; undefined when no path matched. */
  operation?: string;
  operationId?: string;
  pathParams: Record<string, string>;
  errors: string[];
}

export interface OpenApiValidator {
  readonly title: string;
  readonly version: string;
  checkRequest(req: RequestToCheck): CheckedRequest;
  /** Errors of a response body against what the operation documents for that status. */
  checkResponse(operation: string, status: number, body: unknown): string[];
}

type Json = Record<string, unknown>;
interface Operation {
  operationId?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema: Json }>;
  requestBody?: { required?: boolean; content?: Record<string, { schema: Json }> };
  responses: Record<string, { content?: Record<string, { schema: Json }> }>;
}

const DOC_ID = 'qdrant-openapi';
const META = new Set(['example', 'deprecated', 'nullable']);
const SCHEMA_MAPS = new Set(['properties', 'patternProperties']);
const SCHEMA_ONE = new Set(['items', 'additionalProperties', 'not']);
const SCHEMA_LIST = new Set(['anyOf', 'oneOf', 'allOf']);

/**
 * OpenAPI 3.0 schema -> JSON Schema draft-07 for ajv:
 * - `nullable: true` becomes a `null` member of `type` (and of `enum`), or `{type: "null"}` when it stands
 *   alone, as it does inside Qdrant's `anyOf: [{$ref}, {nullable: true}]` pattern;
 * - `$ref: #/components/schemas/X` points into one registered document;
 * - `example` and `deprecated` are annotations and are dropped;
 * - objects that declare `properties` but say nothing of others are closed. Qdrant's serde structs
 *   mostly ignore unknown fields, so a misspelt field would silently do nothing on a real server;
 *   here it is a violation.
 */
function convert(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(convert);
  if (schema === null || typeof schema !== 'object') return schema;
  const s = schema as Json;
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) {
    if (META.has(k)) continue;
    if (k === '$ref') out.$ref = String(v).replace('#/components/schemas/', `${DOC_ID}#/definitions/`);
    else if (SCHEMA_MAPS.has(k)) out[k] = Object.fromEntries(Object.entries(v as Json).map(([n, x]) => [n, convert(x)]));
    else if (SCHEMA_ONE.has(k) && typeof v === 'object') out[k] = convert(v);
    else if (SCHEMA_LIST.has(k)) out[k] = (v as unknown[]).map(convert);
    else out[k] = v;
  }
  if (out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  if (s.nullable !== true) return out;
  if (typeof out.type === 'string') {
    out.type = [out.type, 'null'];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
    return out;
  }
  const substantive = Object.keys(out).filter((k) => k !== 'description' && k !== 'default');
  return substantive.length === 0 ? { ...out, type: 'null' } : { anyOf: [out, { type: 'null' }] };
}

const INT_RANGES: Record<string, [number, number]> = {
  uint: [0, Number.MAX_SAFE_INTEGER],
  uint8: [0, 255],
  uint32: [0, 2 ** 32 - 1],
  uint64: [0, 2 ** 64 - 1],
  int64: [-(2 ** 63), 2 ** 63 - 1],
};
const F32_MAX = 3.4028234663852886e38;

function makeAjv(): Ajv {
  // strict: unknown keywords and unknown formats fail at compile time instead of passing everything.
  const ajv = new Ajv({ strict: true, strictTypes: false, strictTuples: false, strictRequired: false, allowUnionTypes: true, allErrors: true });
  const addFormats = ((formatsPlugin as unknown as { default?: typeof formatsPlugin }).default ?? formatsPlugin) as unknown as (a: Ajv, f: string[]) => void;
  addFormats(ajv, ['date-time', 'uri', 'uuid']);
  for (const [name, [lo, hi]] of Object.entries(INT_RANGES)) {
    ajv.addFormat(name, { type: 'number', validate: (x: number) => Number.isInteger(x) && x >= lo && x <= hi });
  }
  // Qdrant parses these as f32 and f64: finite, and within f32's range for `float`.
  ajv.addFormat('float', { type: 'number', validate: (x: number) => Number.isFinite(x) && Math.abs(x) <= F32_MAX });
  ajv.addFormat('double', { type: 'number', validate: (x: number) => Number.isFinite(x) });
  // Used only by snapshot uploads and by a datetime variant nearline never sends; any string passes.
  ajv.addFormat('binary', true);
  ajv.addFormat('partial-date-time', true);
  return ajv;
}

function segments(path: string): string[] {
  return path.split('/').filter(Boolean);
}

let warned = false;

/** Loads the document, or returns undefined (warning once) when it is absent. */
export function loadQdrantOpenApi(file = QDRANT_OPENAPI_PATH): OpenApiValidator | undefined {
  if (!existsSync(file)) {
    if (!warned) console.warn(`[qdrant tests] ${file} not found: requests and responses are NOT validated against Qdrant's OpenAPI document`);
    warned = true;
    return undefined;
  }
  const doc = JSON.parse(readFileSync(file, 'utf8')) as {
    info: { title: string; version: string };
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Json };
  };
  const ajv = makeAjv();
  const definitions = Object.fromEntries(Object.entries(doc.components.schemas).map(([name, schema]) => [name, convert(schema)]));
  ajv.addSchema({ $id: DOC_ID, definitions } as AnySchemaObject);
  const compiled = new Map<string, ValidateFunction>();
  const validator = (key: string, schema: Json): ValidateFunction => {
    let v = compiled.get(key);
    if (!v) compiled.set(key, (v = ajv.compile(convert(schema) as AnySchemaObject)));
    return v;
  };
  const run = (key: string, schema: Json, value: unknown, where: string): string[] => {
    const v = validator(key, schema);
    if (v(value)) return [];
    // anyOf failures report every branch; the deepest errors are the ones that say what is wrong.
    const errors = [...(v.errors ?? [])].sort((a, b) => b.instancePath.split('/').length - a.instancePath.split('/').length);
    const lines = errors.map((e) => `${where}${e.instancePath} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`);
    return [...new Set(lines)].slice(0, 10);
  };
  const templates = Object.keys(doc.paths).map((t) => ({ t, segs: segments(t) }));

  function match(path: string, method: string): { template: string; params: Record<string, string> } | undefined {
    const segs = segments(path);
    let best: { template: string; params: Record<string, string>; literal: number } | undefined;
    for (const { t, segs: ts } of templates) {
      if (ts.length !== segs.length || !doc.paths[t][method]) continue;
      const params: Record<string, string> = {};
      let literal = 0;
      const ok = ts.every((s, i) => {
        if (s.startsWith('{') && s.endsWith('}')) {
          params[s.slice(1, -1)] = decodeURIComponent(segs[i]);
          return true;
        }
        literal++;
        return s === segs[i];
      });
      // A literal segment beats a parameter: `/collections/aliases` is not a collection named "aliases".
      if (ok && (!best || literal > best.literal)) best = { template: t, params, literal };
    }
    return best && { template: best.template, params: best.params };
  }

  function coerce(raw: string): unknown[] {
    const out: unknown[] = [raw];
    if (/^-?\d+(\.\d+)?$/.test(raw)) out.push(Number(raw));
    if (raw === 'true' || raw === 'false') out.push(raw === 'true');
    return out;
  }

  return {
    title: doc.info.title,
    version: doc.info.version,

    checkRequest(req) {
      const errors: string[] = [];
      const method = req.method.toLowerCase();
      const m = match(req.path, method);
      if (!m) return { pathParams: {}, errors: [`no ${req.method.toUpperCase()} operation in the document matches ${req.path}`] };
      const op = doc.paths[m.template][method];
      const operation = `${req.method.toUpperCase()} ${m.template}`;
      const params = op.parameters ?? [];
      for (const p of params.filter((x) => x.in === 'path')) {
        errors.push(...run(`${operation} path ${p.name}`, p.schema, m.params[p.name], `path parameter ${p.name}`));
      }
      const queryParams = new Map(params.filter((x) => x.in === 'query').map((p) => [p.name, p]));
      for (const name of new Set(req.query.keys())) {
        const p = queryParams.get(name);
        if (!p) {
          errors.push(`query parameter ${name} is not documented for ${operation}`);
          continue;
        }
        const values = req.query.getAll(name);
        if (values.length > 1) errors.push(`query parameter ${name} given ${values.length} times`);
        const candidates = coerce(values[0]);
        const ok = candidates.some((c) => run(`${operation} query ${name}`, p.schema, c, '').length === 0);
        if (!ok) errors.push(`query parameter ${name}=${values[0]}: ${run(`${operation} query ${name}`, p.schema, candidates.at(-1), '').join('; ')}`);
      }
      for (const p of queryParams.values()) if (p.required && !req.query.has(p.name)) errors.push(`required query parameter ${p.name} missing`);
      const body = op.requestBody;
      if (!body) {
        if (req.body !== undefined) errors.push(`${operation} takes no request body`);
      } else if (req.body === undefined) {
        if (body.required) errors.push(`${operation} requires a body`);
      } else {
        const schema = body.content?.['application/json']?.schema;
        if (!schema) errors.push(`${operation} documents no JSON body`);
        else if (!req.contentType?.startsWith('application/json')) errors.push(`body sent as ${req.contentType ?? 'no content-type'}, not application/json`);
        else errors.push(...run(`${operation} body`, schema, req.body, 'body'));
      }
      return { operation, operationId: op.operationId, pathParams: m.params, errors };
    },

    checkResponse(operation, status, body) {
      const [method, template] = operation.split(' ');
      const op = doc.paths[template]?.[method.toLowerCase()];
      if (!op) return [`unknown operation ${operation}`];
      const r = op.responses[String(status)] ?? op.responses[`${String(status)[0]}XX`] ?? op.responses.default;
      if (!r) return [`${operation} does not document status ${status}`];
      const schema = r.content?.['application/json']?.schema;
      if (!schema) return [];
      return run(`${operation} response ${status}`, schema, body, `response ${status} body`);
    },
  };
}
