import type { FastifyInstance } from 'fastify';
import type { NearestRequest, Query } from '../../store/feature-store.ts';
import { Coalescer } from '../coalesce.ts';
import type { ServerContext } from '../context.ts';
import { hitsJson } from '../json.ts';
import { nearestBatchSchema, nearestSchema, type NearestBatchBody, type NearestBody } from '../schemas/nearest.ts';
import { formatRef } from '../../refs.ts';

type Include = NearestRequest['include'];
/** `k` is optional on the wire; validation fills in its default. */
type Validated<T> = T & { k: number };

/** Filter conditions evaluated per row of the index, beyond which a filtered search counts as heavy (about a millisecond of JS). */
export const FILTER_BUDGET = 250_000;

/** Leaf conditions of a filter: the per-row cost of evaluating it (`in` and `nin` are set lookups: one each). */
export function filterConditions(filter: unknown, depth = 0): number {
  if (!filter || typeof filter !== 'object' || depth > 32) return 1;
  const f = filter as Record<string, unknown>;
  if (Array.isArray(f.and)) return f.and.reduce((n: number, x) => n + filterConditions(x, depth + 1), 0);
  if (Array.isArray(f.or)) return f.or.reduce((n: number, x) => n + filterConditions(x, depth + 1), 0);
  if ('not' in f) return filterConditions(f.not, depth + 1);
  return 1;
}

/**
 * Searches whose cost is bounded and small go to the cheap lane. Anything that can hold the JS thread for
 * milliseconds (a filter evaluated over every row of a large index, MMR, a text embedding) or one of the
 * libuv pool's four threads for tens of them (a wide graph walk: large k or ef, large batches) goes to the
 * heavy lane. That lane runs one task at a time, lets waiting requests in before each, and paces itself
 * while cheap searches are in flight, so they always find a free pool thread and most of the JS thread;
 * when its queue is full it sheds with 503. A text query is heavy only when its model embeds on the JS
 * thread (`textBlocks`); embedding in worker threads leaves that thread free.
 */
export function isHeavy(req: { k: number; ef?: number; filter?: unknown; diversity?: unknown; queries: Query[] }, rows: number, textBlocks = true): boolean {
  if (req.diversity !== undefined) return true;
  if (req.filter !== undefined && rows * filterConditions(req.filter) > FILTER_BUDGET) return true;
  if (textBlocks && req.queries.some((q) => 'text' in q)) return true;
  const width = Math.max(req.k, req.ef ?? 0, 100);
  return req.queries.length * width > 64 * 100 || req.k > 100 || width > 400;
}

export async function nearestRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const { store, auth, lanes } = ctx;
  const coalescer = new Coalescer(store);
  // Index sizes for the filter cost, read from the registry at most once a second per feature reference.
  const sizes = new Map<string, { rows: number; at: number }>();
  const rowsOf = async (ref: string): Promise<number> => {
    const now = performance.now();
    const hit = sizes.get(ref);
    if (hit && now - hit.at < 1000) return hit.rows;
    let rows = 0;
    try {
      rows = (await store.servable(ref, 'embedding')).rows;
    } catch {
      // The store answers the request with the precise error.
    }
    if (sizes.size >= 1024) sizes.clear();
    sizes.set(ref, { rows, at: now });
    return rows;
  };

  const features = (feature: string, include: Include) => [feature, ...(include?.features ?? [])];

  app.post('/nearest', { schema: nearestSchema, config: { scope: 'serve' } }, async (request) => {
    const body = request.body as Validated<NearestBody>;
    await auth.requireFeatures(request.apiKey, features(body.feature, body.include));
    // A text query is not coalesced: grouped with vector queries, it would make them wait for its embedding.
    const res = isHeavy({ ...body, queries: [body.query] }, body.filter === undefined ? 0 : await rowsOf(body.feature), await store.textBlocks(body.feature))
      ? await lanes.heavy.run(() => store.nearest(body))
      : await lanes.cheap.run(() => ('text' in body.query ? store.nearest(body) : coalescer.nearest(body)));
    request.servedFeature = formatRef(res.feature, res.variant);
    return { feature: res.feature, variant: res.variant, hits: hitsJson(res.hits), took_ms: res.took_ms, variants: res.variants };
  });

  app.post('/nearest/batch', { schema: nearestBatchSchema, config: { scope: 'serve' } }, async (request) => {
    const body = request.body as Validated<NearestBatchBody>;
    await auth.requireFeatures(request.apiKey, features(body.feature, body.include));
    const { k, ef, include } = body;
    // A query may carry its own filter, which replaces the batch's.
    const items = body.queries.map((q) => ('query' in q ? { query: q.query, filter: q.filter ?? body.filter } : { query: q, filter: body.filter }));
    const reqs = items.map(({ query, filter }) => ({
      k,
      query,
      ...(ef !== undefined ? { ef } : {}),
      ...(filter !== undefined ? { filter } : {}),
      ...(include !== undefined ? { include } : {}),
    }));
    const queries = items.map((i) => i.query);
    const filtered = items.filter((i) => i.filter !== undefined);
    const rows = filtered.length ? await rowsOf(body.feature) : 0;
    const textBlocks = await store.textBlocks(body.feature);
    const heavy =
      isHeavy({ ...body, filter: undefined, queries }, rows, textBlocks) ||
      filtered.some((i) => isHeavy({ k, filter: i.filter, queries: [i.query] }, rows, textBlocks));
    const lane = heavy ? lanes.heavy : lanes.cheap;
    const results = await lane.run(() => store.nearestMany(body.feature, reqs));
    const first = results[0];
    request.servedFeature = formatRef(first.feature, first.variant);
    return {
      feature: first.feature,
      variant: first.variant,
      results: results.map((r) => ({ hits: hitsJson(r.hits) })),
      took_ms: first.took_ms,
      variants: first.variants,
    };
  });
}
