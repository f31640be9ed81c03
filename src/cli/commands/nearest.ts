import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { nlError, NearlineError } from '../../errors.ts';
import type { FeatureStore, NearestRequest } from '../../store/feature-store.ts';
import type { Command } from './index.ts';
import { toJson, withStore } from './open.ts';

const BATCH = 256;

export const nearest: Command = {
  summary: 'nearest neighbours of a vector, id, text, or a file of queries; JSON out',
  usage: `usage: nearline nearest FEATURE[@VARIANT] (--vector JSON | --id ID | --text TEXT | --queries FILE) [--k 10] [--ef N] [--filter JSON] [--include-vectors] [--include-metadata] [--include-features a,b] [--home DIR]
  --include-metadata      each hit's metadata fields
  --include-features a,b  scalar or vector features joined to each hit (two-stage ranking in one call)
  --queries FILE  JSON Lines: one query per line ({"id": ...}, {"vector": [...]}, {"text": ...}, {"positive": [...]},
                  or a request {"query": {...}, "k": 5, "filter": {...}}); one result line per query, in order`,
  options: {
    vector: { type: 'string' },
    id: { type: 'string' },
    text: { type: 'string' },
    queries: { type: 'string' },
    k: { type: 'string' },
    ef: { type: 'string' },
    filter: { type: 'string' },
    'include-vectors': { type: 'boolean' },
    'include-metadata': { type: 'boolean' },
    'include-features': { type: 'string' },
  },
  async run({ home, values, positionals }) {
    const [feature] = positionals;
    const modes = ['vector', 'id', 'text', 'queries'].filter((m) => values[m] !== undefined);
    if (!feature || positionals.length > 1 || modes.length !== 1) {
      process.stderr.write(`${this.usage}\n`);
      return 2;
    }
    const base: Omit<NearestRequest, 'feature' | 'query'> = {
      k: values.k === undefined ? 10 : Number(values.k),
      ...(values.ef !== undefined ? { ef: Number(values.ef) } : {}),
      ...(values.filter !== undefined ? { filter: parseJson(values.filter as string, '--filter') } : {}),
    };
    const include = {
      ...(values['include-vectors'] ? { vectors: true } : {}),
      ...(values['include-metadata'] ? { metadata: true } : {}),
      ...(values['include-features'] !== undefined
        ? {
            features: (values['include-features'] as string)
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean),
          }
        : {}),
    };
    if (Object.keys(include).length) base.include = include;
    return withStore(home, async (store) => {
      if (values.queries !== undefined) return runQueries(store, feature, values.queries as string, base);
      const query =
        values.vector !== undefined
          ? { vector: parseJson(values.vector as string, '--vector') }
          : values.id !== undefined
            ? { id: values.id as string }
            : { text: values.text as string };
      const result = await store.nearest({ feature, query, ...base });
      process.stdout.write(toJson(result, 2) + '\n');
      return 0;
    });
  },
};

/** Streams the queries file; each batch of lines goes to the provider as one batch search. */
async function runQueries(store: FeatureStore, feature: string, file: string, base: Omit<NearestRequest, 'feature' | 'query'>): Promise<number> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let failed = 0;
  let lineNo = 0;
  let pending: Array<{ line: number; req?: Omit<NearestRequest, 'feature'>; error?: NearlineError }> = [];
  const flush = async () => {
    const ok = pending.filter((p) => p.req);
    let results: Array<unknown> = [];
    try {
      results = ok.length
        ? await store.nearestMany(
            feature,
            ok.map((p) => p.req!),
          )
        : [];
    } catch (e) {
      // One bad query must not sink its batch: answer the batch query by query.
      if (!(e instanceof NearlineError) || e.code === 'NL_FEATURE_NOT_FOUND' || e.code === 'NL_NOT_MATERIALIZED') throw e;
      results = await Promise.all(ok.map((p) => store.nearest({ feature, ...p.req! }).catch((err: unknown) => ({ error: errorJson(err, p.line) }))));
    }
    let next = 0;
    for (const p of pending) {
      const out = p.error ? { error: errorJson(p.error, p.line) } : results[next++];
      if ((out as { error?: unknown }).error) failed++;
      process.stdout.write(toJson(out) + '\n');
    }
    pending = [];
  };
  for await (const text of lines) {
    lineNo++;
    if (!text.trim()) continue;
    try {
      const obj = JSON.parse(text) as Record<string, unknown>;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw nlError('NL_BAD_REQUEST', 'expected a JSON object');
      const req = 'query' in obj ? { ...base, ...(obj as object) } : { ...base, query: obj };
      pending.push({ line: lineNo, req: req as Omit<NearestRequest, 'feature'> });
    } catch (e) {
      pending.push({ line: lineNo, error: e instanceof NearlineError ? e : nlError('NL_BAD_REQUEST', `invalid JSON: ${(e as Error).message}`) });
    }
    if (pending.length >= BATCH) await flush();
  }
  await flush();
  if (failed) process.stderr.write(`${failed} of the queries failed\n`);
  return failed ? 1 : 0;
}

function errorJson(e: unknown, line: number) {
  const err = e instanceof NearlineError ? e : nlError('NL_INTERNAL', (e as Error).message);
  return { code: err.code, message: `line ${line}: ${err.message}` };
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw nlError('NL_BAD_REQUEST', `${what} must be JSON`);
  }
}
