import { errorResponses, featureRef, HTTP_LIMITS, id, onlineValue, text, variantsUsed, vectorJson } from './common.ts';

export const onlineSchema = {
  summary: 'feature values by id: scalars and vectors, many ids x many features',
  tags: ['serving'],
  body: {
    type: 'object',
    required: ['ids', 'features'],
    additionalProperties: false,
    properties: {
      ids: { type: 'array', maxItems: HTTP_LIMITS.onlineIds, items: id },
      features: { type: 'array', minItems: 1, maxItems: HTTP_LIMITS.features, items: featureRef },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['rows'],
      properties: {
        rows: {
          type: 'array',
          items: {
            type: 'object',
            required: ['id', 'features'],
            properties: { id: { type: 'string' }, features: { type: 'object', additionalProperties: onlineValue } },
          },
        },
        variants: variantsUsed,
      },
    },
    ...errorResponses,
  },
} as const;

export const embedSchema = {
  summary: 'embed texts with a registered model',
  tags: ['serving'],
  body: {
    type: 'object',
    required: ['model', 'texts'],
    additionalProperties: false,
    properties: {
      model: { type: 'string', minLength: 3, maxLength: 200, description: 'name@version' },
      texts: { type: 'array', minItems: 1, maxItems: HTTP_LIMITS.embedTexts, items: text },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['model', 'dims', 'vectors'],
      properties: {
        model: { type: 'string' },
        dims: { type: 'integer' },
        vectors: { type: 'array', items: { type: 'array', items: { type: 'number' } } },
      },
    },
    ...errorResponses,
  },
} as const;

export const writeVectorsSchema = {
  summary: 'upsert and delete vectors of an embedding feature (scope write); all validated before any is written',
  tags: ['writing'],
  params: { type: 'object', required: ['feature'], properties: { feature: featureRef } },
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      upserts: {
        type: 'array',
        maxItems: HTTP_LIMITS.upserts,
        items: {
          type: 'object',
          required: ['id'],
          additionalProperties: false,
          properties: {
            id,
            vector: vectorJson,
            text,
            metadata: {
              type: 'object',
              additionalProperties: { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }, { type: 'null' }] },
            },
          },
        },
      },
      deletes: { type: 'array', maxItems: HTTP_LIMITS.deletes, items: id },
    },
  },
  response: {
    200: {
      type: 'object',
      required: ['feature', 'variant', 'upserted', 'deleted'],
      properties: {
        feature: { type: 'string' },
        variant: { type: 'string' },
        upserted: { type: 'integer' },
        deleted: { type: 'integer' },
        offset: { type: 'integer', description: "log offset of the write in its source's log" },
      },
    },
    ...errorResponses,
  },
} as const;
