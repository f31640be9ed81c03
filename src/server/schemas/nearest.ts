import { errorResponses, featureRef, filter, HTTP_LIMITS, id, onlineValue, text, variantsUsed, vectorJson } from './common.ts';

const example = { anyOf: [id, vectorJson] } as const;

/** The four query forms; the store names which one was wrong when none fits. */
export const query = {
  type: 'object',
  oneOf: [
    { type: 'object', title: 'by vector', required: ['vector'], additionalProperties: false, properties: { vector: vectorJson } },
    { type: 'object', title: 'by id (itself excluded)', required: ['id'], additionalProperties: false, properties: { id } },
    { type: 'object', title: "by text (embedded with the feature's model)", required: ['text'], additionalProperties: false, properties: { text } },
    {
      type: 'object',
      title: 'by examples (ids or vectors)',
      required: ['positive'],
      additionalProperties: false,
      properties: {
        positive: { type: 'array', minItems: 1, maxItems: HTTP_LIMITS.examples, items: example },
        negative: { type: 'array', maxItems: HTTP_LIMITS.examples, items: example },
      },
    },
  ],
} as const;

/** A batch item: a query, or `{query, filter}` with a filter of its own that replaces the batch's. */
const batchQuery = {
  type: 'object',
  oneOf: [
    ...query.oneOf,
    {
      type: 'object',
      title: 'a query with its own filter',
      required: ['query'],
      additionalProperties: false,
      properties: { query, filter: { ...filter, description: "this query's filter, instead of the batch's" } },
    },
  ],
} as const;

const k = { type: 'integer', minimum: 1, maximum: HTTP_LIMITS.maxK, default: 10 } as const;

const include = {
  type: 'object',
  additionalProperties: false,
  properties: {
    vectors: { type: 'boolean', description: "return each hit's vector" },
    metadata: { type: 'boolean', description: "return each hit's metadata fields (like Qdrant's with_payload)" },
    features: { type: 'array', maxItems: HTTP_LIMITS.features, items: featureRef, description: 'scalar or embedding features joined to each hit' },
  },
} as const;

const hits = {
  type: 'array',
  items: {
    type: 'object',
    required: ['id', 'score'],
    properties: {
      id: { type: 'string' },
      score: { type: 'number', description: 'higher is closer: cosine similarity, dot product, or negative L2 distance' },
      vector: { type: 'array', items: { type: 'number' } },
      metadata: { type: 'object', additionalProperties: { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }] } },
      features: { type: 'object', additionalProperties: onlineValue },
    },
  },
} as const;

export const nearestSchema = {
  summary: 'nearest neighbours of one query',
  tags: ['serving'],
  body: {
    type: 'object',
    required: ['feature', 'query'],
    additionalProperties: false,
    properties: {
      feature: featureRef,
      k,
      query,
      filter,
      exclude: { type: 'array', maxItems: HTTP_LIMITS.exclude, items: id },
      ef: { type: 'integer', minimum: 1, maximum: HTTP_LIMITS.maxEf, description: 'query-time candidate list size' },
      include,
      diversity: {
        type: 'object',
        required: ['lambda'],
        additionalProperties: false,
        description:
          "maximal marginal relevance: from the nearest `candidates`, pick each next hit by lambda·sim(query, hit) − (1 − lambda)·max sim(hit, hits picked before) (cosine similarities); hits come in that selection order, and `score` stays the hit's similarity to the query",
        properties: {
          lambda: { type: 'number', minimum: 0, maximum: 1, description: '1 is pure relevance (the plain nearest-neighbour list), 0 pure diversity' },
          candidates: { type: 'integer', minimum: 1, maximum: HTTP_LIMITS.maxK, description: 'the pool MMR picks k from; default 4·k' },
        },
      },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['feature', 'variant', 'hits', 'took_ms'],
      properties: {
        feature: { type: 'string' },
        variant: { type: 'string', description: 'the variant that served the query' },
        hits,
        took_ms: { type: 'number' },
        variants: variantsUsed,
      },
    },
    ...errorResponses,
  },
} as const;

export const nearestBatchSchema = {
  summary: 'nearest neighbours of many queries against one feature',
  tags: ['serving'],
  body: {
    type: 'object',
    required: ['feature', 'queries'],
    additionalProperties: false,
    properties: {
      feature: featureRef,
      k,
      queries: { type: 'array', minItems: 1, maxItems: HTTP_LIMITS.batchQueries, items: batchQuery },
      filter: { ...filter, description: `${filter.description}; applies to every query without its own filter` },
      ef: { type: 'integer', minimum: 1, maximum: HTTP_LIMITS.maxEf },
      include,
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['feature', 'variant', 'results', 'took_ms'],
      properties: {
        feature: { type: 'string' },
        variant: { type: 'string' },
        results: { type: 'array', items: { type: 'object', required: ['hits'], properties: { hits } } },
        took_ms: { type: 'number' },
        variants: variantsUsed,
      },
    },
    ...errorResponses,
  },
} as const;
