import { Type, type Static } from '@sinclair/typebox';
import { errorResponses, featureRef, filter, HTTP_LIMITS, id, onlineValue, recordOf, scalar, text, variantsUsed, vectorJson } from './common.ts';

const example = Type.Union([id, vectorJson]);

const queryForms = [
  Type.Object({ vector: vectorJson }, { title: 'by vector', additionalProperties: false }),
  Type.Object({ id }, { title: 'by id (itself excluded)', additionalProperties: false }),
  Type.Object({ text }, { title: "by text (embedded with the feature's model)", additionalProperties: false }),
  Type.Object(
    {
      positive: Type.Array(example, { minItems: 1, maxItems: HTTP_LIMITS.examples }),
      negative: Type.Optional(Type.Array(example, { maxItems: HTTP_LIMITS.examples })),
    },
    { title: 'by examples (ids or vectors)', additionalProperties: false },
  ),
] as const;

/** The four query forms, exactly one of them; the store names which one was wrong when none fits. */
export const Query = Type.Unsafe<Static<(typeof queryForms)[number]>>({ type: 'object', oneOf: [...queryForms] });
export type Query = Static<typeof Query>;

const QueryWithFilter = Type.Object(
  { query: Query, filter: Type.Optional(Type.Unsafe<Static<typeof filter>>({ ...filter, description: "this query's filter, instead of the batch's" })) },
  { title: 'a query with its own filter', additionalProperties: false },
);

/** A batch item: a query, or `{query, filter}` with a filter of its own that replaces the batch's. */
export const BatchQuery = Type.Unsafe<Query | Static<typeof QueryWithFilter>>({ type: 'object', oneOf: [...queryForms, QueryWithFilter] });
export type BatchQuery = Static<typeof BatchQuery>;

const k = Type.Integer({ minimum: 1, maximum: HTTP_LIMITS.maxK, default: 10 });
const ef = Type.Integer({ minimum: 1, maximum: HTTP_LIMITS.maxEf, description: 'query-time candidate list size' });

const Include = Type.Object(
  {
    vectors: Type.Optional(Type.Boolean({ description: "return each hit's vector" })),
    metadata: Type.Optional(Type.Boolean({ description: "return each hit's metadata fields (like Qdrant's with_payload)" })),
    features: Type.Optional(Type.Array(featureRef, { maxItems: HTTP_LIMITS.features, description: 'scalar or embedding features joined to each hit' })),
  },
  { additionalProperties: false },
);

export const Hit = Type.Object({
  id: Type.String(),
  score: Type.Number({ description: 'higher is closer: cosine similarity, dot product, or negative L2 distance' }),
  vector: Type.Optional(Type.Array(Type.Number())),
  metadata: Type.Optional(recordOf(scalar)),
  features: Type.Optional(recordOf(onlineValue)),
});
export type Hit = Static<typeof Hit>;

export const NearestBody = Type.Object(
  {
    feature: featureRef,
    k: Type.Optional(k),
    query: Query,
    filter: Type.Optional(filter),
    exclude: Type.Optional(Type.Array(id, { maxItems: HTTP_LIMITS.exclude })),
    ef: Type.Optional(ef),
    include: Type.Optional(Include),
    diversity: Type.Optional(
      Type.Object(
        {
          lambda: Type.Number({ minimum: 0, maximum: 1, description: '1 is pure relevance (the plain nearest-neighbour list), 0 pure diversity' }),
          candidates: Type.Optional(Type.Integer({ minimum: 1, maximum: HTTP_LIMITS.maxK, description: 'the pool MMR picks k from; default 4·k' })),
        },
        {
          additionalProperties: false,
          description:
            "maximal marginal relevance: from the nearest `candidates`, pick each next hit by lambda·sim(query, hit) − (1 − lambda)·max sim(hit, hits picked before) (cosine similarities); hits come in that selection order, and `score` stays the hit's similarity to the query",
        },
      ),
    ),
  },
  { additionalProperties: false },
);
export type NearestBody = Static<typeof NearestBody>;

export const NearestResponse = Type.Object({
  feature: Type.String(),
  variant: Type.String({ description: 'the variant that served the query' }),
  hits: Type.Array(Hit),
  took_ms: Type.Number(),
  variants: Type.Optional(variantsUsed),
});
export type NearestResponse = Static<typeof NearestResponse>;

export const nearestSchema = {
  summary: 'nearest neighbours of one query',
  tags: ['serving'],
  body: NearestBody,
  response: { 200: NearestResponse, ...errorResponses },
} as const;

export const NearestBatchBody = Type.Object(
  {
    feature: featureRef,
    k: Type.Optional(k),
    queries: Type.Array(BatchQuery, { minItems: 1, maxItems: HTTP_LIMITS.batchQueries }),
    filter: Type.Optional(
      Type.Unsafe<Static<typeof filter>>({ ...filter, description: `${filter.description}; applies to every query without its own filter` }),
    ),
    ef: Type.Optional(Type.Integer({ minimum: 1, maximum: HTTP_LIMITS.maxEf })),
    include: Type.Optional(Include),
  },
  { additionalProperties: false },
);
export type NearestBatchBody = Static<typeof NearestBatchBody>;

export const NearestBatchResponse = Type.Object({
  feature: Type.String(),
  variant: Type.String(),
  results: Type.Array(Type.Object({ hits: Type.Array(Hit) })),
  took_ms: Type.Number(),
  variants: Type.Optional(variantsUsed),
});
export type NearestBatchResponse = Static<typeof NearestBatchResponse>;

export const nearestBatchSchema = {
  summary: 'nearest neighbours of many queries against one feature',
  tags: ['serving'],
  body: NearestBatchBody,
  response: { 200: NearestBatchResponse, ...errorResponses },
} as const;
